"""From a registered run file to the run's items: which interpreter reads which file."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy.orm import Session

from cryovault.db.base import utcnow
from cryovault.db.elements import Element
from cryovault.db.runs import RunFile
from cryovault.ingest.downscale import DownscaledCopy
from cryovault.ingest.epu.layout import EpuPath, classify_epu_path
from cryovault.ingest.tomo.layout import classify_tomo_path
from cryovault.storage.backends import StagedWrite
from cryovault.storage.registry import StorageSet

MAX_PARSED_BYTES = 64 * 1024 * 1024  # session/XML/.mdoc files are far smaller


@dataclass(frozen=True)
class ItemRef:
    kind: str  # micrograph | tilt_series | grid_square | foil_hole | atlas | session
    id: uuid.UUID
    name: str
    status: str | None


@dataclass
class Prepared:
    """What a batch reads from one file's bytes before its transaction (parsing and
    downscaling need no database, so they are not done while the run is locked): the parsed
    record or why it could not be parsed, the downscaled copy (written; durable once the
    caller commits `staged`; not yet recorded) or why none could be made. Empty for files
    whose content is not read."""

    record: Any = None
    error: Exception | None = None
    copy: DownscaledCopy | None = None
    staged: StagedWrite | None = None  # the copy's bytes until the caller commits them
    unreadable: str | None = None

    def parsed(self) -> Any:
        """The record; raises the parse error (IngestFormatError, ValueError) instead."""
        if self.error is not None:
            raise self.error
        return self.record


@dataclass
class RunLookups:
    """Rows of one run that a batch's transaction reads once, in one query per table, instead
    of once per file; the interpreters query the database for anything not found here. Valid
    for one transaction only."""

    files: dict[str, RunFile] = field(default_factory=dict)  # by relative path, copies too
    movies_expected: bool | None = None  # None: not read yet (or to be read again)
    micrographs: dict[str, Any] = field(default_factory=dict)  # by acquisition name
    squares: dict[str, Any] = field(default_factory=dict)  # by EPU grid-square id
    holes: dict[tuple[uuid.UUID, str], Any] = field(default_factory=dict)  # (square, EPU id)


@lru_cache(maxsize=8192)
def epu_where(relative_path: str) -> EpuPath:
    """`classify_epu_path`, remembered (a pure function of the path that a batch's checks and
    interpretation ask several times per file). Raises IngestFormatError."""
    return classify_epu_path(relative_path)


def classify(dataset_type: str, relative_path: str) -> str:
    if dataset_type == "tomo_run":
        return classify_tomo_path(relative_path).kind
    return epu_where(relative_path).kind


def read_small(storages: StorageSet, run_file: RunFile) -> bytes:
    if run_file.size_bytes > MAX_PARSED_BYTES:
        raise ValueError(f"{run_file.relative_path} is {run_file.size_bytes:,} bytes, larger "
                         "than a metadata file can be")
    return b"".join(storages.get(run_file.storage).read(run_file.key))


def prepare(storages: StorageSet, dataset_type: str, dataset_id: uuid.UUID, relative_path: str,
            content: bytes | memoryview, storage_name: str, key: str) -> Prepared:
    """Read what can be read from a file's bytes (stored at `key`) without the database: a
    batch does it before its transaction. A downscaled copy is written but not committed:
    the caller commits `staged` at `copy.key`, or aborts it."""
    if dataset_type == "tomo_run":
        return Prepared()  # tomography files are read in the transaction (few and small)
    from cryovault.ingest.epu_items import prepare_epu_file
    return prepare_epu_file(storages, dataset_id, relative_path, content, storage_name, key)


def prefetch(db: Session, dataset_type: str, dataset_id: uuid.UUID,
             files: list[tuple[str, str]], lookups: RunLookups) -> None:
    """Read (and create where missing) the item rows the files (relative path, session) will
    update, in one query per table, into `lookups`."""
    if dataset_type != "tomo_run":
        from cryovault.ingest.epu_items import prefetch_epu_rows
        prefetch_epu_rows(db, dataset_id, files, lookups)


def interpret(db: Session, storages: StorageSet, dataset_type: str, run_file: RunFile,
              prepared: Prepared | None = None,
              lookups: RunLookups | None = None) -> tuple[ItemRef | None, str | None]:
    """Update the run's items from the file; returns the item it belongs to and, when its
    content could not be used, the problem in words. `prepared` and `lookups` come from a
    batch (what was read before the transaction, rows read once for all its files)."""
    if dataset_type == "tomo_run":
        from cryovault.ingest.tomo_items import interpret_tomo_file
        item, problem = interpret_tomo_file(db, storages, run_file)
    else:
        from cryovault.ingest.epu_items import interpret_epu_file
        item, problem = interpret_epu_file(db, storages, run_file, prepared, lookups)
    mark_dataset_activity(db, run_file.dataset_id, failed=bool(problem) and item is not None
                          and item.status == "failed")
    return item, problem


def mark_dataset_activity(db: Session, dataset_id: uuid.UUID, failed: bool) -> None:
    """WS-3: a run is in progress while data arrives; warning once items failed. Written only
    when the status changes (the dataset is already in the session's identity map)."""
    dataset = db.get(Element, dataset_id)
    if dataset is None:
        return
    if failed and dataset.status in ("not_started", "in_progress", None):
        dataset.status, dataset.updated_at = "warning", utcnow()
    elif not failed and dataset.status in ("not_started", None):
        dataset.status, dataset.updated_at = "in_progress", utcnow()


def dumps(values: dict) -> str:
    return json.dumps(values, sort_keys=True, default=str)


def merged(existing: str, values: dict) -> str:
    current = json.loads(existing or "{}")
    current.update({k: v for k, v in values.items() if v is not None})
    return dumps(current)

"""From a registered run file to the run's items: which interpreter reads which file."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from cryovault.db.base import utcnow
from cryovault.db.elements import Element
from cryovault.db.runs import RunFile
from cryovault.ingest.epu.layout import classify_epu_path
from cryovault.ingest.tomo.layout import classify_tomo_path
from cryovault.storage.registry import StorageSet

MAX_PARSED_BYTES = 64 * 1024 * 1024  # session/XML/.mdoc files are far smaller


@dataclass(frozen=True)
class ItemRef:
    kind: str  # micrograph | tilt_series | grid_square | foil_hole | atlas | session
    id: uuid.UUID
    name: str
    status: str | None


def classify(dataset_type: str, relative_path: str) -> str:
    if dataset_type == "tomo_run":
        return classify_tomo_path(relative_path).kind
    return classify_epu_path(relative_path).kind


def read_small(storages: StorageSet, run_file: RunFile) -> bytes:
    if run_file.size_bytes > MAX_PARSED_BYTES:
        raise ValueError(f"{run_file.relative_path} is {run_file.size_bytes:,} bytes, larger "
                         "than a metadata file can be")
    return b"".join(storages.get(run_file.storage).read(run_file.key))


def interpret(db: Session, storages: StorageSet, dataset_type: str,
              run_file: RunFile) -> tuple[ItemRef | None, str | None]:
    """Update the run's items from the file; returns the item it belongs to and, when its
    content could not be used, the problem in words."""
    if dataset_type == "tomo_run":
        from cryovault.ingest.tomo_items import interpret_tomo_file
        item, problem = interpret_tomo_file(db, storages, run_file)
    else:
        from cryovault.ingest.epu_items import interpret_epu_file
        item, problem = interpret_epu_file(db, storages, run_file)
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

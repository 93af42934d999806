"""Registering the files of an acquisition run (SPEC SPA-1, ET-1).

A watcher (or an instrument) sends every file of a session with its path relative to the
session folder. Registration has two phases, like uploads, so that no transaction stays open
while bytes travel: `check_ingest_target` before the transfer (permission, path, idempotency),
`register_run_file` after it, which checks again, stores the bytes, records the file and lets
the run's interpreter (EPU or tomography) turn it into items.

Idempotency key: session + relative path + source size + source mtime. The same key again is
"already registered"; a different file under a registered path is refused (409) unless the
instrument legitimately rewrites that file (EpuSession.dm, a grid square's .dm, an .mdoc), in
which case the new version replaces the old one. The bytes are always kept, even when their
content cannot be used: the problem is recorded on the file and on the item (failed).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import unicodedata
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.access.guard import require_access
from cryovault.access.levels import COLLABORATOR
from cryovault.db.base import utcnow
from cryovault.db.elements import Element
from cryovault.db.files import StorageTrash
from cryovault.db.runs import Atlas, RunFile, RunFileTombstone
from cryovault.errors import Conflict, DomainError, Invalid, TooLarge
from cryovault.formats.filetypes import media_type
from cryovault.ingest.errors import IngestFormatError
from cryovault.ingest.interpret import (
    ItemRef,
    Prepared,
    RunLookups,
    classify,
    epu_where,
    interpret,
)
from cryovault.ingest.interpret import prefetch as interpret_prefetch
from cryovault.ingest.interpret import prepare as interpret_prepare
from cryovault.ingest.rows import chunks
from cryovault.storage.backends import StagedWrite, Storage
from cryovault.storage.keys import run_file_key
from cryovault.storage.registry import StorageSet

log = logging.getLogger(__name__)

MAX_PATH_BYTES = 1024
INGEST_DATASET_TYPES = ("epu_run", "tomo_run")
# Files the instruments rewrite while the session goes on: a new version replaces the old.
ATLAS_KINDS = frozenset({"atlas", "atlas_image", "atlas_image_xml", "atlas_tile"})
REWRITTEN_KINDS = frozenset({"session", "grid_square_metadata", "mdoc", "screening_session",
                             "sample", "atlas"})


@dataclass(frozen=True)
class IngestTarget:
    dataset_id: uuid.UUID
    dataset_type: str
    session: str
    relative_path: str
    kind: str
    source_size: int
    source_mtime: float


@dataclass(frozen=True)
class IngestResult:
    status: str  # "registered" | "already_registered"
    file_id: uuid.UUID
    item: ItemRef | None
    problem: str | None


def validate_relative_path(path: str) -> str:
    """A POSIX path inside the session folder: no absolute path, '..', backslash or control
    characters; at most 1024 bytes."""
    path = unicodedata.normalize("NFC", path or "")
    if not path or path.startswith("/") or "\\" in path or path.startswith(".cryovault/"):
        raise Invalid(f"invalid file path {path!r}: give a POSIX path relative to the session "
                      "folder")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in path):
        raise Invalid("a file path must not contain control characters")
    parts = PurePosixPath(path).parts
    if any(part in ("", ".", "..") for part in parts) or "/".join(parts) != path:
        raise Invalid(f"invalid file path {path!r}: '.', '..' and empty parts are not allowed")
    if len(path.encode()) > MAX_PATH_BYTES:
        raise Invalid(f"a file path must not be longer than {MAX_PATH_BYTES} bytes")
    return path


def _dataset_for_ingest(db: Session, actor: Actor, dataset_id: uuid.UUID) -> Element:
    dataset, _ = require_access(db, actor, dataset_id, COLLABORATOR, "register files into")
    if dataset.kind != "dataset" or dataset.dataset_type not in INGEST_DATASET_TYPES:
        raise Invalid(f"{dataset.kind} {dataset.name!r} is not an EPU or Tomo run; instruments "
                      "register files into datasets of type epu_run or tomo_run")
    return dataset


def check_ingest_target(db: Session, actor: Actor, dataset_id: uuid.UUID, session: str,
                        relative_path: str, source_size: int,
                        source_mtime: float) -> IngestTarget | IngestResult:
    """May the actor register this file? An IngestResult when it is already registered."""
    dataset = _dataset_for_ingest(db, actor, dataset_id)
    return _checked_target(db, dataset, _valid_session(session), relative_path, source_size,
                           source_mtime)


def _valid_session(session: str) -> str:
    session = (session or "").strip()
    if not session or len(session) > 255:
        raise Invalid("give the session's name (X-Session header), at most 255 characters")
    return session


def _checked_target(db: Session, dataset: Element, session: str, relative_path: str,
                    source_size: int, source_mtime: float) -> IngestTarget | IngestResult:
    """The checks of one file once the run's access is granted: size, path, kind, deleted
    atlas, idempotency. Raises Invalid (refused) or Conflict."""
    target = _target(dataset, session, relative_path, source_size, source_mtime)
    if target.kind in ATLAS_KINDS:
        _refuse_deleted_atlas(db, dataset.id, target.relative_path)
    known = _registered(db, dataset.id, session, target.relative_path, target.kind,
                        source_size, source_mtime)
    if isinstance(known, IngestResult):
        return known
    return target


def _target(dataset: Element, session: str, relative_path: str, source_size: int,
            source_mtime: float) -> IngestTarget:
    """The checks that need no database: size, path, kind."""
    if source_size < 0:
        raise Invalid("X-Source-Size must be the file's size in bytes (0 or more)")
    relative_path = validate_relative_path(relative_path)
    try:
        kind = classify(dataset.dataset_type or "", relative_path)
    except IngestFormatError as exc:
        raise Invalid(exc.message) from None
    return IngestTarget(dataset.id, dataset.dataset_type or "", session, relative_path, kind,
                        source_size, source_mtime)


def _registered(db: Session, dataset_id: uuid.UUID, session: str, relative_path: str,
                kind: str, source_size: int, source_mtime: float) -> IngestResult | RunFile | None:
    """The idempotency check: "already registered" for the same file (also one whose bytes a
    cleanup removed); the registered file a rewritten session file replaces; None if new."""
    existing = _existing(db, dataset_id, relative_path)
    if existing is None:
        cleaned = db.scalar(select(RunFileTombstone).where(
            RunFileTombstone.dataset_id == dataset_id,
            RunFileTombstone.relative_path == relative_path))
        if cleaned is not None and _same(cleaned, session, source_size, source_mtime):
            return IngestResult("already_registered", cleaned.id, None, None)
        return None
    return _compared(existing, IngestTarget(dataset_id, "", session, relative_path, kind,
                                            source_size, source_mtime))


def _compared(existing: RunFile, target: IngestTarget) -> IngestResult | RunFile:
    """A file registered under the target's path: the same one (already registered), one that
    a rewritten session file replaces, or a conflict."""
    if _same(existing, target.session, target.source_size, target.source_mtime):
        return IngestResult("already_registered", existing.id, None, existing.problem)
    if target.kind not in REWRITTEN_KINDS:
        created = existing.created_at or utcnow()  # (recorded earlier in the same batch)
        raise Conflict(f"{target.relative_path}: a different file with this path was "
                       f"registered on {created:%Y-%m-%d %H:%M:%S} UTC "
                       f"({existing.source_size:,} bytes); the new one is not registered")
    return existing


def _same(row: RunFile | RunFileTombstone, session: str, source_size: int,
          source_mtime: float) -> bool:
    return (row.session == session and row.source_size == source_size
            and abs(row.source_mtime - source_mtime) < 1e-3)


def _refuse_deleted_atlas(db: Session, dataset_id: uuid.UUID, relative_path: str) -> None:
    """Atlas data deleted by a user (SPA-8) is not brought back by a watcher sending it again."""
    from cryovault.ingest.epu_items import atlas_name

    name = atlas_name(epu_where(relative_path).cassette_slot)
    if db.scalar(select(Atlas.id).where(Atlas.dataset_id == dataset_id, Atlas.name == name,
                                        Atlas.deleted.is_(True))) is not None:
        raise Conflict(f"{relative_path}: the data of atlas {name} was deleted from this run; "
                       "its files are not registered again")


def _existing(db: Session, dataset_id: uuid.UUID, relative_path: str) -> RunFile | None:
    return db.scalar(select(RunFile).where(RunFile.dataset_id == dataset_id,
                                           RunFile.relative_path == relative_path))


def register_run_file(db: Session, actor: Actor, storages: StorageSet, target: IngestTarget,
                      staged: StagedWrite, sha256: str, size_bytes: int) -> IngestResult:
    """Store the complete bytes, record the file and interpret it. The caller commits; on any
    error before that the staged bytes must be aborted by the caller."""
    # Checked again now that the bytes are here: the run may have been deleted meanwhile, or
    # the same file registered by a concurrent request. (Access was checked when the transfer
    # began, within this request.)
    try:
        previous = _recheck(db, target)
    except DomainError:
        staged.abort()
        raise
    if isinstance(previous, IngestResult):
        staged.abort()
        return previous
    file_id = uuid.uuid4()
    key = run_file_key(target.dataset_id, file_id, target.relative_path)
    staged.commit(key)
    return _record(db, storages, target, previous, file_id, key, sha256, size_bytes)


def _recheck(db: Session, target: IngestTarget, *,
             atlas: bool = False) -> IngestResult | RunFile | None:
    dataset = db.get(Element, target.dataset_id)
    if dataset is None or dataset.deleting:
        raise Conflict("the run was deleted while the file was being sent; it is not "
                       "registered")
    if atlas and target.kind in ATLAS_KINDS:
        _refuse_deleted_atlas(db, target.dataset_id, target.relative_path)
    return _registered(db, target.dataset_id, target.session, target.relative_path,
                       target.kind, target.source_size, target.source_mtime)


def _record(db: Session, storages: StorageSet, target: IngestTarget, previous: RunFile | None,
            file_id: uuid.UUID, key: str, sha256: str, size_bytes: int) -> IngestResult:
    """Record a file whose bytes are durable at `key` and interpret it (the caller commits).
    On any error the bytes at `key` are deleted."""
    storage = storages.primary
    try:
        _lock_run(db, target.dataset_id)
        if previous is not None:  # a rewritten session file: the old bytes go to the trash
            db.add(StorageTrash(storage=previous.storage, key=previous.key, queued_at=utcnow()))
            db.delete(previous)
            db.flush()
        run_file = RunFile(
            id=file_id, dataset_id=target.dataset_id, session=target.session,
            relative_path=target.relative_path, role=target.kind, storage=storage.name,
            key=key, size_bytes=size_bytes, sha256=sha256,
            media_type=media_type(target.relative_path), source_size=target.source_size,
            source_mtime=target.source_mtime)
        # The run is locked (the item lookups below cannot race another registration, and on
        # SQLite the savepoints inside them are real ones); a concurrent registration of the
        # same path that was not locked out fails here.
        db.add(run_file)
        db.flush()
        item, problem = interpret(db, storages, target.dataset_type, run_file)
        run_file.problem = problem
        if item is not None:
            run_file.item_id = item.id
        db.flush()
    except IntegrityError:
        # The same path registered by a concurrent request: keep that one.
        storage.delete(key)
        db.rollback()
        existing = _existing(db, target.dataset_id, target.relative_path)
        if existing is None:
            raise
        return IngestResult("already_registered", existing.id, None, existing.problem)
    except BaseException:
        storage.delete(key)
        raise
    if problem:
        log.warning("run %s: %s: %s", target.dataset_id, target.relative_path, problem)
    return IngestResult("registered", file_id, item, problem)


# --- many small files in one request ---------------------------------------------------------

MAX_BATCH_FILES = 256
MAX_BATCH_BYTES = 64 * 2**20  # the files' bytes, without their header lines
MAX_BATCH_HEADER_BYTES = 4096  # one header line: the path is at most 1024 bytes
MAX_BATCH_BODY_BYTES = MAX_BATCH_BYTES + MAX_BATCH_FILES * MAX_BATCH_HEADER_BYTES
BATCH_FRAMING = (
    "For each file, one line of JSON `{\"path\": str, \"size\": int, \"mtime\": float, "
    "\"sha256\": str|null}` ending in a newline (`\\n`), followed by exactly `size` raw bytes "
    "(the file's content); the next file's line follows at once. The session is given once, "
    f"in the X-Session header. At most {MAX_BATCH_FILES} files and {MAX_BATCH_BYTES // 2**20} "
    "MiB of file bytes per batch (413 otherwise). Malformed framing registers nothing (422).")


@dataclass(frozen=True)
class BatchEntry:
    """One file of a batch as it arrived: its identity and its bytes."""

    relative_path: str
    source_size: int
    source_mtime: float
    sha256: str | None  # announced by the sender; checked against the bytes
    content: bytes | memoryview


@dataclass(frozen=True)
class BatchTarget:
    """A run the actor may register files into, for one session (from `open_batch`)."""

    dataset: Element
    session: str


@dataclass(frozen=True)
class BatchOutcome:
    relative_path: str
    status: str  # registered | already_registered | conflict | refused
    file_id: uuid.UUID | None = None
    item: ItemRef | None = None
    problem: str | None = None  # registered, but the content could not be used
    detail: str | None = None  # why a file was refused or is a conflict


@dataclass
class _Stored:
    index: int
    target: IngestTarget
    file_id: uuid.UUID
    key: str
    sha256: str
    size_bytes: int


def parse_batch(body: bytes) -> list[BatchEntry]:
    """Split a batch body (see BATCH_FRAMING). Raises Invalid for malformed framing and
    TooLarge beyond the limits; nothing of a malformed batch is registered."""
    entries: list[BatchEntry] = []
    view = memoryview(body)
    position, total_bytes = 0, 0
    while position < len(body):
        number = len(entries) + 1
        if number > MAX_BATCH_FILES:
            raise TooLarge(f"a batch holds at most {MAX_BATCH_FILES} files; send the others "
                           "in another batch")
        end = body.find(b"\n", position, position + MAX_BATCH_HEADER_BYTES)
        if end < 0:
            raise Invalid(f"batch framing: file {number}: expected a JSON header line ending in "
                          f"a newline (at most {MAX_BATCH_HEADER_BYTES} bytes)")
        header = _batch_header(body[position:end], number)
        path, size = header["path"], header["size"]
        total_bytes += size
        if total_bytes > MAX_BATCH_BYTES:
            raise TooLarge(f"a batch holds at most {MAX_BATCH_BYTES:,} bytes of files; send "
                           f"{path!r} and the files after it in another batch")
        start = end + 1
        if start + size > len(body):
            raise Invalid(f"batch framing: file {number} ({path!r}) announces {size:,} bytes "
                          f"but only {len(body) - start:,} follow")
        entries.append(BatchEntry(path, size, header["mtime"], header["sha256"],
                                  view[start:start + size]))
        position = start + size
    if not entries:
        raise Invalid("the batch is empty; send at least one file")
    return entries


def _batch_header(line: bytes, number: int) -> dict:
    def bad(why: str) -> Invalid:
        return Invalid(f"batch framing: file {number}: {why}")

    try:
        header = json.loads(line)
    except ValueError:
        raise bad("the header line is not JSON") from None
    if not isinstance(header, dict):
        raise bad('the header line must be a JSON object {"path", "size", "mtime", "sha256"}')
    path, size = header.get("path"), header.get("size")
    mtime, sha256 = header.get("mtime"), header.get("sha256")
    if not isinstance(path, str) or not path:
        raise bad('"path" must be the file\'s path relative to the session folder')
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise bad(f'{path!r}: "size" must be the file\'s size in bytes (0 or more)')
    if not isinstance(mtime, int | float) or isinstance(mtime, bool) \
            or not math.isfinite(mtime):
        raise bad(f'{path!r}: "mtime" must be the modification time in seconds')
    if sha256 is not None and (not isinstance(sha256, str) or len(sha256) != 64):
        raise bad(f'{path!r}: "sha256" must be 64 hexadecimal digits or null')
    return {"path": path, "size": size, "mtime": float(mtime),
            "sha256": sha256.lower() if sha256 else None}


def open_batch(db: Session, actor: Actor, dataset_id: uuid.UUID, session: str) -> BatchTarget:
    """The checks of the whole batch, before its bytes are read: access to the run (the
    caller's 401/403/404 fail the request) and the session's name."""
    return BatchTarget(_dataset_for_ingest(db, actor, dataset_id), _valid_session(session))


def register_batch(db: Session, storages: StorageSet, batch: BatchTarget,
                   entries: Sequence[BatchEntry]) -> list[BatchOutcome]:
    """Register many small files, each on its own: one file's refusal or conflict does not
    fail the others (this function commits).

    1. The checks that need no database (size, checksum, path, kind), then the idempotency
       check against what the run holds (one query): a file already registered is answered
       without writing its bytes again.
    2. The bytes of the others are written and their metadata parsed and images downscaled
       (copies written too), with one directory sync for them all — no transaction is open
       and the run is not locked meanwhile.
    3. One transaction records them all: the run is locked for it (SQLite's write lock; on
       PostgreSQL the run's row), the files' rows and the item rows they update are read
       with one query per table, each file is checked again (deleted atlas, idempotency),
       recorded and interpreted in order, and everything is written at the commit.

    A crash leaves the batch registered or not at all; the bytes of a file not registered
    (already there, a conflict, a crash before the commit) are deleted. Should the
    transaction fail on a race with another registration (a unique key, a deadlock) it runs
    again; should it fail for one file, the files are registered one by one instead."""
    outcomes: list[BatchOutcome | None] = [None] * len(entries)
    checked: list[tuple[int, IngestTarget, str]] = []
    for index, entry in enumerate(entries):
        try:
            sha256 = _verified_sha256(entry)
            target = _target(batch.dataset, batch.session, entry.relative_path,
                             entry.source_size, entry.source_mtime)
        except DomainError as exc:
            outcomes[index] = _refusal(entry.relative_path, exc)
            continue
        checked.append((index, target, sha256))
    known = _RunState.read(db, batch.dataset.id, [target for _, target, _ in checked])
    new: list[tuple[int, IngestTarget, str]] = []
    for index, target, sha256 in checked:
        try:
            previous = known.check(target)
        except DomainError as exc:
            outcomes[index] = _refusal(target.relative_path, exc)
            continue
        if isinstance(previous, IngestResult):
            outcomes[index] = _outcome(target.relative_path, previous)
        else:
            new.append((index, target, sha256))
    db.commit()  # no transaction stays open while the bytes are written
    storage = storages.primary
    stored = _store(storage, [(index, target, sha256, entries[index].content)
                              for index, target, sha256 in new], sync_directory=False)
    unregistered = {item.key for item in stored}  # deleted unless registered
    prepared: dict[int, Prepared] = {}
    try:
        for item in stored:
            prepared[item.index] = interpret_prepare(
                storages, item.target.dataset_type, item.target.dataset_id,
                item.target.relative_path, entries[item.index].content, storage.name,
                item.key)
        copies = [(p.staged, p.copy.key) for p in prepared.values()
                  if p.staged is not None and p.copy is not None]
        for p in prepared.values():
            p.staged = None
        commit_together(storage, copies)
        unregistered.update(key for _, key in copies)
        if stored:  # the files and their copies all lie in the run's directory
            storage.sync_directory_of(stored[0].key)
        together = _register_together(db, storages, stored, prepared)
        if together is None:  # one file failed the transaction: each on its own
            for item in stored:
                outcomes[item.index] = _register_stored(db, storages, item)
                unregistered.discard(item.key)
        else:
            results, unused = together
            for item in stored:
                outcomes[item.index] = results[item.index]
            registered = {item.key for item in stored} | {
                p.copy.key for p in prepared.values() if p.copy is not None}
            unregistered = (unregistered - registered) | set(unused)
    except BaseException:
        for p in prepared.values():
            if p.staged is not None:
                p.staged.abort()
        for key in unregistered:
            storage.delete(key)
        raise
    for key in unregistered:
        storage.delete(key)
    return [outcome for outcome in outcomes if outcome is not None]


MAX_TRANSACTION_ATTEMPTS = 3


def _register_together(db: Session, storages: StorageSet, stored: list[_Stored],
                       prepared: dict[int, Prepared]
                       ) -> tuple[dict[int, BatchOutcome], list[str]] | None:
    """Record the stored files in one transaction and commit it: their outcomes by index and
    the keys whose bytes are not used (to delete after the commit). None (nothing recorded)
    when a file raised a DomainError in it, or races kept failing the transaction."""
    if not stored:
        return {}, []
    for attempt in range(1, MAX_TRANSACTION_ATTEMPTS + 1):
        try:
            with _turn(db):
                results = _record_together(db, storages, stored, prepared)
                db.commit()
            return results
        except DomainError as exc:
            db.rollback()
            log.info("run %s: a batch goes file by file (%s)", stored[0].target.dataset_id,
                     exc.message)
            return None
        except (IntegrityError, OperationalError) as exc:
            # A registration into the same run outside a batch, or a deadlock on PostgreSQL;
            # SQLite's "database is locked" after its busy timeout as well.
            db.rollback()
            log.info("run %s: batch transaction attempt %d failed (%s)",
                     stored[0].target.dataset_id, attempt, type(exc).__name__)
        except BaseException:
            db.rollback()
            raise
    return None


def _record_together(db: Session, storages: StorageSet, stored: list[_Stored],
                     prepared: dict[int, Prepared]
                     ) -> tuple[dict[int, BatchOutcome], list[str]]:
    first = stored[0].target
    dataset_type, dataset_id = first.dataset_type, first.dataset_id
    _lock_run(db, dataset_id)
    dataset = db.get(Element, dataset_id, populate_existing=True)
    outcomes: dict[int, BatchOutcome] = {}
    copies = {item.index: prepared[item.index].copy for item in stored
              if prepared[item.index].copy is not None}
    if dataset is None or dataset.deleting:
        refusal = Conflict("the run was deleted while the file was being sent; it is not "
                           "registered")
        for item in stored:
            outcomes[item.index] = _refusal(item.target.relative_path, refusal)
        return outcomes, [item.key for item in stored] + [c.key for c in copies.values()]
    state = _RunState.read(db, dataset_id, [item.target for item in stored],
                           [copy.path for copy in copies.values()])
    lookups = RunLookups(files=state.files)
    # The item rows of the files that will be recorded, read (or created) all at once.
    recorded = []
    for item in stored:
        try:
            if not isinstance(state.check(item.target), IngestResult):
                recorded.append((item.target.relative_path, item.target.session))
        except DomainError:
            continue
    interpret_prefetch(db, dataset_type, dataset_id, recorded, lookups)
    unused: list[str] = []
    for item in stored:
        target = item.target
        try:
            previous = state.check(target)
        except DomainError as exc:
            outcomes[item.index] = _refusal(target.relative_path, exc)
            unused.append(item.key)
            continue
        if isinstance(previous, IngestResult):
            outcomes[item.index] = _outcome(target.relative_path, previous)
            unused.append(item.key)
            continue
        if previous is not None:  # a rewritten session file: the old bytes go to the trash
            db.flush()  # (the old one may have come earlier in this batch)
            db.add(StorageTrash(storage=previous.storage, key=previous.key, queued_at=utcnow()))
            db.delete(previous)
            db.flush()
        run_file = RunFile(
            id=item.file_id, dataset_id=dataset_id, session=target.session,
            relative_path=target.relative_path, role=target.kind,
            storage=storages.primary.name, key=item.key, size_bytes=item.size_bytes,
            sha256=item.sha256, media_type=media_type(target.relative_path),
            source_size=target.source_size, source_mtime=target.source_mtime)
        db.add(run_file)
        state.files[target.relative_path] = run_file
        item_ref, problem = interpret(db, storages, dataset_type, run_file,
                                      prepared[item.index], lookups)
        run_file.problem = problem
        if item_ref is not None:
            run_file.item_id = item_ref.id
        if problem:
            log.warning("run %s: %s: %s", dataset_id, target.relative_path, problem)
        outcomes[item.index] = BatchOutcome(target.relative_path, "registered", item.file_id,
                                            item_ref, problem)
    db.flush()
    for copy in copies.values():
        row = lookups.files.get(copy.path)
        if row is None or row.id != copy.file_id:  # not registered, or the run had a copy
            unused.append(copy.key)
    return outcomes, unused


@dataclass
class _RunState:
    """What a run holds under a batch's paths: registered files (by path) and tombstones,
    and which atlases were deleted — read with one query per table."""

    files: dict[str, RunFile]
    tombstones: dict[str, RunFileTombstone]
    deleted_atlases: set[str]

    @classmethod
    def read(cls, db: Session, dataset_id: uuid.UUID, targets: Sequence[IngestTarget],
             extra_paths: Sequence[str] = ()) -> _RunState:
        paths = sorted({target.relative_path for target in targets} | set(extra_paths))
        files: dict[str, RunFile] = {}
        tombstones: dict[str, RunFileTombstone] = {}
        for part in chunks(paths):
            files.update((row.relative_path, row) for row in db.scalars(select(RunFile).where(
                RunFile.dataset_id == dataset_id, RunFile.relative_path.in_(part))))
        missing = [path for path in paths if path not in files]
        for part in chunks(missing):
            tombstones.update((row.relative_path, row) for row in db.scalars(
                select(RunFileTombstone).where(RunFileTombstone.dataset_id == dataset_id,
                                               RunFileTombstone.relative_path.in_(part))))
        deleted: set[str] = set()
        if any(target.kind in ATLAS_KINDS for target in targets):
            deleted = set(db.scalars(select(Atlas.name).where(Atlas.dataset_id == dataset_id,
                                                              Atlas.deleted.is_(True))))
        return cls(files, tombstones, deleted)

    def check(self, target: IngestTarget) -> IngestResult | RunFile | None:
        """As `_refuse_deleted_atlas` and `_registered`, from what was read (and what the
        batch recorded since)."""
        if target.kind in ATLAS_KINDS and self.deleted_atlases:
            from cryovault.ingest.epu_items import atlas_name

            name = atlas_name(epu_where(target.relative_path).cassette_slot)
            if name in self.deleted_atlases:
                raise Conflict(f"{target.relative_path}: the data of atlas {name} was deleted "
                               "from this run; its files are not registered again")
        existing = self.files.get(target.relative_path)
        if existing is None:
            cleaned = self.tombstones.get(target.relative_path)
            if cleaned is not None and _same(cleaned, target.session, target.source_size,
                                             target.source_mtime):
                return IngestResult("already_registered", cleaned.id, None, None)
            return None
        return _compared(existing, target)


_sqlite_turns = threading.Lock()


@contextmanager
def _turn(db: Session) -> Iterator[None]:
    """On SQLite the batches of this process take turns on a lock of their own before they
    ask for the database's write lock: a waiting batch starts as soon as the one before it
    commits, not when SQLite's busy handler next looks (it sleeps up to 100 ms between
    looks). Other processes and single-file registrations still meet at SQLite's lock."""
    if db.get_bind().dialect.name != "sqlite":
        yield
        return
    with _sqlite_turns:
        yield


def _lock_run(db: Session, dataset_id: uuid.UUID) -> None:
    """Registrations into one run take turns for their (short) transactions: what they read
    stays true until they commit. SQLite: the database's write lock, taken at once (BEGIN
    IMMEDIATE) rather than at the first write, so that the reads before it are in the same
    transaction. PostgreSQL: the run's row (FOR NO KEY UPDATE: rows that refer to it can
    still be inserted by others)."""
    connection = db.connection()
    if connection.dialect.name == "sqlite":
        if not connection.connection.driver_connection.in_transaction:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        return
    db.execute(select(Element.id).where(Element.id == dataset_id)
               .with_for_update(key_share=True))


def _register_stored(db: Session, storages: StorageSet, item: _Stored) -> BatchOutcome:
    path, storage = item.target.relative_path, storages.primary
    try:
        previous = _recheck(db, item.target, atlas=True)
        if isinstance(previous, IngestResult):
            storage.delete(item.key)
            db.commit()
            return _outcome(path, previous)
        result = _record(db, storages, item.target, previous, item.file_id, item.key,
                         item.sha256, item.size_bytes)
        db.commit()
    except DomainError as exc:
        db.rollback()
        storage.delete(item.key)
        return _refusal(path, exc)
    except BaseException:
        db.rollback()
        storage.delete(item.key)
        raise
    return _outcome(path, result)


def _store(storage: Storage, files: list[tuple[int, IngestTarget, str, bytes | memoryview]],
           *, sync_directory: bool = True) -> list[_Stored]:
    """Write the files' bytes at their keys (all in the run's directory) and make them durable
    with one directory sync. All are written before the first is synced, and the syncs are
    issued together (see `commit_together`)."""
    staged: list[tuple[StagedWrite, str]] = []
    items: list[_Stored] = []
    try:
        for index, target, sha256, content in files:
            file_id = uuid.uuid4()
            key = run_file_key(target.dataset_id, file_id, target.relative_path)
            write = storage.stage()
            staged.append((write, key))
            items.append(_Stored(index, target, file_id, key, sha256, len(content)))
            write.write_all([content])
    except BaseException:
        for write, _ in staged:
            write.abort()
        raise
    commit_together(storage, staged)
    if items and sync_directory:
        try:
            storage.sync_directory_of(items[0].key)
        except BaseException:
            for item in items:
                storage.delete(item.key)
            raise
    return items


SYNC_THREADS = 8
_sync_pool: ThreadPoolExecutor | None = None
_sync_pool_lock = threading.Lock()


def commit_together(storage: Storage, staged: Sequence[tuple[StagedWrite, str]]) -> None:
    """Commit staged writes at their keys without syncing their directory (the caller syncs
    it once). On a local file system the commits run in a few threads: fsyncs issued
    together are written by one journal commit (about 0.2 ms a file instead of 3 ms one after
    the other on ext4). All or nothing: on an error the others are aborted or deleted."""
    global _sync_pool
    if not staged:
        return
    if storage.kind != "local" or len(staged) == 1:
        outcomes: list[BaseException | None] = []
        for write, key in staged:
            try:
                write.commit(key, sync_directory=False)
                outcomes.append(None)
            except BaseException as exc:  # noqa: BLE001 (re-raised below)
                outcomes.append(exc)
                break
        outcomes += [RuntimeError("not committed")] * (len(staged) - len(outcomes))
    else:
        with _sync_pool_lock:
            if _sync_pool is None:
                _sync_pool = ThreadPoolExecutor(SYNC_THREADS,
                                                thread_name_prefix="cryovault-fsync")
        futures = [_sync_pool.submit(write.commit, key, sync_directory=False)
                   for write, key in staged]
        wait(futures)
        outcomes = [future.exception() for future in futures]
    failure = next((exc for exc in outcomes if exc is not None), None)
    if failure is None:
        return
    for (write, key), outcome in zip(staged, outcomes, strict=True):
        if outcome is None:
            storage.delete(key)
        else:
            write.abort()
    raise failure


def _verified_sha256(entry: BatchEntry) -> str:
    if len(entry.content) != entry.source_size:
        raise Invalid(f"{entry.relative_path}: {len(entry.content):,} bytes arrived but "
                      f"{entry.source_size:,} were announced; send the file again")
    sha256 = hashlib.sha256(entry.content).hexdigest()
    if entry.sha256 is not None and entry.sha256 != sha256:
        raise Invalid(f"{entry.relative_path}: the bytes that arrived do not match their "
                      "sha256; send the file again")
    return sha256


def _refusal(relative_path: str, exc: DomainError) -> BatchOutcome:
    status = "conflict" if isinstance(exc, Conflict) else "refused"
    return BatchOutcome(relative_path, status, detail=exc.message)


def _outcome(relative_path: str, result: IngestResult) -> BatchOutcome:
    return BatchOutcome(relative_path, result.status, result.file_id, result.item,
                        result.problem)

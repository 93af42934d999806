"""Registering the files of an acquisition run (SPEC SPA-1, ET-1): one file per request, and
the checks every registration shares.

A watcher (or an instrument) sends every file of a session with its path relative to the
session folder. Registration has two phases, like uploads, so that no transaction stays open
while bytes travel: `check_ingest_target` before the transfer (permission, path, idempotency),
`register_run_file` after it, which checks again, stores the bytes, records the file and lets
the run's interpreter (EPU or tomography) turn it into items. Many small files in one request:
`batch_registry` (its wire format: `batch_framing`).

Idempotency key: session + relative path + source size + source mtime. The same key again is
"already registered"; a different file under a registered path is refused (409) unless the
instrument legitimately rewrites that file (EpuSession.dm, a grid square's .dm, an .mdoc), in
which case the new version replaces the old one. The bytes are always kept, even when their
content cannot be used: the problem is recorded on the file and on the item (failed).
"""

from __future__ import annotations

import logging
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import PurePosixPath

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.access.guard import require_access
from cryovault.access.levels import COLLABORATOR
from cryovault.db.base import utcnow
from cryovault.db.elements import Element
from cryovault.db.files import StorageTrash
from cryovault.db.runs import Atlas, RunFile, RunFileTombstone
from cryovault.errors import Conflict, DomainError, Invalid
from cryovault.formats.filetypes import media_type
from cryovault.ingest.errors import IngestFormatError
from cryovault.ingest.interpret import ItemRef, classify, epu_where, interpret
from cryovault.ingest.run_lock import lock_run
from cryovault.storage.backends import StagedWrite
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


def dataset_for_ingest(db: Session, actor: Actor, dataset_id: uuid.UUID) -> Element:
    """The run (an epu_run or tomo_run dataset) the actor may register files into; raises
    the access errors (401/403/404) or Invalid."""
    dataset, _ = require_access(db, actor, dataset_id, COLLABORATOR, "register files into")
    if dataset.kind != "dataset" or dataset.dataset_type not in INGEST_DATASET_TYPES:
        raise Invalid(f"{dataset.kind} {dataset.name!r} is not an EPU or Tomo run; instruments "
                      "register files into datasets of type epu_run or tomo_run")
    return dataset


def check_ingest_target(db: Session, actor: Actor, dataset_id: uuid.UUID, session: str,
                        relative_path: str, source_size: int,
                        source_mtime: float) -> IngestTarget | IngestResult:
    """May the actor register this file? An IngestResult when it is already registered."""
    dataset = dataset_for_ingest(db, actor, dataset_id)
    return _checked_target(db, dataset, valid_session(session), relative_path, source_size,
                           source_mtime)


def valid_session(session: str) -> str:
    """The session's name, stripped: 1 to 255 characters (Invalid otherwise)."""
    session = (session or "").strip()
    if not session or len(session) > 255:
        raise Invalid("give the session's name (X-Session header), at most 255 characters")
    return session


def _checked_target(db: Session, dataset: Element, session: str, relative_path: str,
                    source_size: int, source_mtime: float) -> IngestTarget | IngestResult:
    """The checks of one file once the run's access is granted: size, path, kind, deleted
    atlas, idempotency. Raises Invalid (refused) or Conflict."""
    target = file_target(dataset, session, relative_path, source_size, source_mtime)
    if target.kind in ATLAS_KINDS:
        _refuse_deleted_atlas(db, dataset.id, target.relative_path)
    known = _registered(db, dataset.id, session, target.relative_path, target.kind,
                        source_size, source_mtime)
    if isinstance(known, IngestResult):
        return known
    return target


def file_target(dataset: Element, session: str, relative_path: str, source_size: int,
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
        if cleaned is not None and same_source(cleaned, session, source_size, source_mtime):
            return IngestResult("already_registered", cleaned.id, None, None)
        return None
    return compare_registered(existing, IngestTarget(dataset_id, "", session, relative_path,
                                                     kind, source_size, source_mtime))


def compare_registered(existing: RunFile, target: IngestTarget) -> IngestResult | RunFile:
    """A file registered under the target's path: the same one (already registered), one that
    a rewritten session file replaces, or a conflict."""
    if same_source(existing, target.session, target.source_size, target.source_mtime):
        return IngestResult("already_registered", existing.id, None, existing.problem)
    if target.kind not in REWRITTEN_KINDS:
        created = existing.created_at or utcnow()  # (recorded earlier in the same batch)
        raise Conflict(f"{target.relative_path}: a different file with this path was "
                       f"registered on {created:%Y-%m-%d %H:%M:%S} UTC "
                       f"({existing.source_size:,} bytes); the new one is not registered")
    return existing


def same_source(row: RunFile | RunFileTombstone, session: str, source_size: int,
                source_mtime: float) -> bool:
    """Is the row (a file or its tombstone) the same source file: session, size in bytes and
    mtime in seconds (within 1 ms)?"""
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
        previous = recheck(db, target)
    except DomainError:
        staged.abort()
        raise
    if isinstance(previous, IngestResult):
        staged.abort()
        return previous
    file_id = uuid.uuid4()
    key = run_file_key(target.dataset_id, file_id, target.relative_path)
    staged.commit(key)
    return record_file(db, storages, target, previous, file_id, key, sha256, size_bytes)


def recheck(db: Session, target: IngestTarget, *,
            atlas: bool = False) -> IngestResult | RunFile | None:
    """The checks again once the bytes are stored: the run still there (Conflict otherwise),
    the atlas not deleted (with `atlas`), idempotency (as `_registered`)."""
    dataset = db.get(Element, target.dataset_id)
    if dataset is None or dataset.deleting:
        raise Conflict("the run was deleted while the file was being sent; it is not "
                       "registered")
    if atlas and target.kind in ATLAS_KINDS:
        _refuse_deleted_atlas(db, target.dataset_id, target.relative_path)
    return _registered(db, target.dataset_id, target.session, target.relative_path,
                       target.kind, target.source_size, target.source_mtime)


def record_file(db: Session, storages: StorageSet, target: IngestTarget,
                previous: RunFile | None, file_id: uuid.UUID, key: str, sha256: str,
                size_bytes: int) -> IngestResult:
    """Record a file whose bytes are durable at `key` and interpret it (the caller commits).
    On any error the bytes at `key` are deleted."""
    storage = storages.primary
    try:
        lock_run(db, target.dataset_id)
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


"""Registering many small files of a run in one request (SPEC SPA-1, ET-1): each file is
registered as by `registry.register_run_file`, on its own, but the checks read the run once,
the bytes are written and made durable together, and one transaction records them all (see
`register_batch`). The body's format: `batch_framing`."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.db.base import utcnow
from cryovault.db.elements import Element
from cryovault.db.files import StorageTrash
from cryovault.db.runs import Atlas, RunFile, RunFileTombstone
from cryovault.errors import Conflict, DomainError, Invalid
from cryovault.formats.filetypes import media_type
from cryovault.ingest.batch_framing import BatchEntry
from cryovault.ingest.grouped_fsync import commit_together
from cryovault.ingest.interpret import ItemRef, Prepared, RunLookups, epu_where, interpret
from cryovault.ingest.interpret import prefetch as interpret_prefetch
from cryovault.ingest.interpret import prepare as interpret_prepare
from cryovault.ingest.registry import (
    ATLAS_KINDS,
    IngestResult,
    IngestTarget,
    compare_registered,
    dataset_for_ingest,
    file_target,
    recheck,
    record_file,
    same_source,
    valid_session,
)
from cryovault.ingest.rows import chunks
from cryovault.ingest.run_lock import lock_run, take_turn
from cryovault.storage.backends import StagedWrite, Storage
from cryovault.storage.keys import run_file_key
from cryovault.storage.registry import StorageSet

log = logging.getLogger(__name__)

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


def open_batch(db: Session, actor: Actor, dataset_id: uuid.UUID, session: str) -> BatchTarget:
    """The checks of the whole batch, before its bytes are read: access to the run (the
    caller's 401/403/404 fail the request) and the session's name."""
    return BatchTarget(dataset_for_ingest(db, actor, dataset_id), valid_session(session))


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
            target = file_target(batch.dataset, batch.session, entry.relative_path,
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
            with take_turn(db):
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
    lock_run(db, dataset_id)
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
        """As the deleted-atlas and idempotency checks of `registry`, from what was read
        (and what the batch recorded since)."""
        if target.kind in ATLAS_KINDS and self.deleted_atlases:
            from cryovault.ingest.epu_items import atlas_name

            name = atlas_name(epu_where(target.relative_path).cassette_slot)
            if name in self.deleted_atlases:
                raise Conflict(f"{target.relative_path}: the data of atlas {name} was deleted "
                               "from this run; its files are not registered again")
        existing = self.files.get(target.relative_path)
        if existing is None:
            cleaned = self.tombstones.get(target.relative_path)
            if cleaned is not None and same_source(cleaned, target.session,
                                                   target.source_size, target.source_mtime):
                return IngestResult("already_registered", cleaned.id, None, None)
            return None
        return compare_registered(existing, target)


def _register_stored(db: Session, storages: StorageSet, item: _Stored) -> BatchOutcome:
    path, storage = item.target.relative_path, storages.primary
    try:
        previous = recheck(db, item.target, atlas=True)
        if isinstance(previous, IngestResult):
            storage.delete(item.key)
            db.commit()
            return _outcome(path, previous)
        result = record_file(db, storages, item.target, previous, item.file_id, item.key,
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

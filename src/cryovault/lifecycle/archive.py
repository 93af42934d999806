"""Archive and restore (SPEC JOB-3): an element's files move to the archive (cold) storage and
back. The element stays listed, with an "archived" badge. The files of the acquisition runs in
the element's subtree (run files: movies, images, metadata, downscaled copies) move with them.

Each file moves on its own and in an order that survives a crash anywhere (OPS-3): the bytes
are copied and checked against their SHA-256, then the record is switched to the new storage
(committed), then the old bytes are removed. A crash leaves either the old record with an
unregistered copy (removed by the cleanup pass) or the new record with old bytes queued for
removal; running the job again moves only what has not moved yet.
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.access.guard import require_access
from cryovault.access.levels import OWNER
from cryovault.db.elements import ElementAncestor
from cryovault.db.files import StorageTrash, StoredFile
from cryovault.db.jobs import Job
from cryovault.db.runs import RunFile
from cryovault.errors import Conflict, Invalid
from cryovault.jobs.records import PENDING, create_job
from cryovault.jobs.runner import JobContext, register_handler
from cryovault.storage.backends import Storage
from cryovault.storage.registry import StorageSet
from cryovault.storage.transfer import copy_verified

ARCHIVE_JOB, RESTORE_JOB = "archive", "restore"


def _storage_names(storages: StorageSet, role: str) -> list[str]:
    return [s.name for s in storages.all() if s.role == role]


def _target(storages: StorageSet, role: str) -> Storage:
    for storage in storages.all():
        if storage.role == role:
            return storage
    raise Invalid(f"no {role} storage is configured; ask an administrator to add one")


def request_move(db: Session, actor: Actor, storages: StorageSet, element_id: uuid.UUID,
                 kind: str) -> Job:
    """Register an archive or restore job for an element (owners)."""
    action = "archive" if kind == ARCHIVE_JOB else "restore"
    element, _ = require_access(db, actor, element_id, OWNER, action)
    _target(storages, "archive")  # refuse at once when there is no archive storage
    busy = db.scalar(select(func.count()).select_from(Job).where(
        Job.element_id == element_id, Job.kind.in_((ARCHIVE_JOB, RESTORE_JOB)),
        Job.status.in_(PENDING)))
    if busy:
        raise Conflict(f"{element.kind} {element.name!r} is already being archived or "
                       "restored; wait for that job to end")
    source_role = "primary" if kind == ARCHIVE_JOB else "archive"
    sources = _storage_names(storages, source_role)
    movable = db.scalar(
        select(func.count()).select_from(StoredFile)
        .join(ElementAncestor, ElementAncestor.element_id == StoredFile.element_id)
        .where(ElementAncestor.ancestor_id == element_id, StoredFile.storage.in_(sources)))
    movable = movable or db.scalar(
        select(func.count()).select_from(RunFile)
        .where(RunFile.dataset_id.in_(_subtree(element_id)), RunFile.storage.in_(sources)))
    if not movable:
        raise Invalid(f"{element.kind} {element.name!r} has no files to {action}"
                      + (" (nothing of it is archived)" if kind == RESTORE_JOB else ""))
    return create_job(db, kind, actor, element)


def _subtree(element_id: uuid.UUID):
    return select(ElementAncestor.element_id).where(ElementAncestor.ancestor_id == element_id)


def archived_elements(db: Session, storages: StorageSet,
                      element_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Which of the elements hold archived files (for the badge)."""
    names = _storage_names(storages, "archive")
    if not element_ids or not names:
        return set()
    found = set(db.scalars(
        select(ElementAncestor.ancestor_id).distinct()
        .join(StoredFile, StoredFile.element_id == ElementAncestor.element_id)
        .where(ElementAncestor.ancestor_id.in_(element_ids), StoredFile.storage.in_(names))))
    found.update(db.scalars(
        select(ElementAncestor.ancestor_id).distinct()
        .where(ElementAncestor.ancestor_id.in_(element_ids),
               select(RunFile.id).where(RunFile.dataset_id == ElementAncestor.element_id,
                                        RunFile.storage.in_(names)).exists())))
    return found


def _move_files(context: JobContext, source_role: str, target_role: str) -> None:
    db, job, storages = context.db, context.job, context.storages
    target = _target(storages, target_role)
    sources = _storage_names(storages, source_role)
    rows = db.execute(
        select(StoredFile.element_id, StoredFile.size_bytes)
        .join(ElementAncestor, ElementAncestor.element_id == StoredFile.element_id)
        .where(ElementAncestor.ancestor_id == job.element_id, StoredFile.storage.in_(sources))
        .order_by(StoredFile.element_id)).all()
    in_runs = (RunFile.dataset_id.in_(_subtree(job.element_id)), RunFile.storage.in_(sources))
    run_files = select(RunFile.id).where(*in_runs)
    run_bytes = db.scalar(select(func.coalesce(func.sum(RunFile.size_bytes), 0))
                          .where(*in_runs)) or 0
    total = (sum(size for _, size in rows) + run_bytes) or 1
    done = 0
    for element_id, size in rows:
        stored = db.get(StoredFile, element_id)
        if stored is None or stored.storage not in sources:
            continue  # deleted or moved meanwhile
        _move_one(context, stored, target)
        done += size
        context.checkpoint(done / total, f"{done:,} of {total:,} bytes moved")
        _remove_trash(context)
    # Run files, in pages (a run may hold hundreds of thousands); each moved file leaves the
    # selection, so the next page starts after the last id seen.
    after: uuid.UUID | None = None
    while True:
        page = run_files if after is None else run_files.where(RunFile.id > after)
        ids = [row.id for row in db.execute(page.order_by(RunFile.id).limit(500))]
        if not ids:
            break
        after = ids[-1]
        for file_id in ids:
            run_file = db.get(RunFile, file_id)
            if run_file is None or run_file.storage not in sources:
                continue  # cleaned up, deleted or moved meanwhile
            _move_one(context, run_file, target)
            done += run_file.size_bytes
            context.checkpoint(done / total, f"{done:,} of {total:,} bytes moved")
            _remove_trash(context)


def _move_one(context: JobContext, stored: StoredFile | RunFile, target: Storage) -> None:
    """Copy verified, then switch the record and queue the old bytes in one transaction (the
    caller's checkpoint commits it)."""
    source = context.storages.get(stored.storage)
    copy_verified(source, stored.key, target, stored.key, sha256=stored.sha256,
                  size_bytes=stored.size_bytes, progress=lambda n: context.heartbeat())
    context.db.add(StorageTrash(storage=stored.storage, key=stored.key))
    stored.storage = target.name


def _remove_trash(context: JobContext) -> None:
    from cryovault.storage.cleanup import empty_trash

    empty_trash(context.env.sessions, context.storages)


def _run_archive(context: JobContext) -> None:
    _move_files(context, "primary", "archive")


def _run_restore(context: JobContext) -> None:
    _move_files(context, "archive", "primary")


register_handler(ARCHIVE_JOB, _run_archive)
register_handler(RESTORE_JOB, _run_restore)

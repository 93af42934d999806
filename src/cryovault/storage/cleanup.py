"""The cleanup pass (SPEC OPS-3): what a crash, a cancelled upload or a deletion left behind.

- bytes queued in the trash by deletions are removed from their storages;
- staged writes (`tmp/`) and upload parts nobody has touched for a while are removed;
- resumable uploads older than the expiry are cancelled;
- bytes under `files/` or `derived/` that no registered file owns are removed.

Everything is removed only after it has been left alone for `grace`, so a transfer in
progress is never touched.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from cryovault.db.files import StorageTrash, StoredFile, Upload
from cryovault.settings import Settings
from cryovault.storage.keys import DERIVED_PREFIX, FILES_PREFIX, TMP_PREFIX, element_id_of
from cryovault.storage.registry import StorageSet
from cryovault.storage.uploads import expired_uploads, part_path

log = logging.getLogger(__name__)
DEFAULT_GRACE = timedelta(hours=1)


@dataclass
class CleanupReport:
    trash_removed: int = 0
    staged_removed: int = 0
    uploads_expired: int = 0
    orphans_removed: int = 0
    bytes_freed: int = 0


def empty_trash(sessions: sessionmaker[Session], storages: StorageSet,
                report: CleanupReport | None = None) -> CleanupReport:
    report = report or CleanupReport()
    with sessions() as db:
        entries = db.scalars(select(StorageTrash).order_by(StorageTrash.id)).all()
        for entry in entries:
            storage = storages.get(entry.storage)
            size = storage.size(entry.key) or 0
            storage.delete(entry.key)
            element_id = element_id_of(entry.key)
            if element_id is not None:
                storage.delete_prefix(f"{DERIVED_PREFIX}/{element_id.hex[:2]}/{element_id}")
            db.execute(delete(StorageTrash).where(StorageTrash.id == entry.id))
            db.commit()
            report.trash_removed += 1
            report.bytes_freed += size
    return report


def run_cleanup(sessions: sessionmaker[Session], settings: Settings, storages: StorageSet,
                grace: timedelta = DEFAULT_GRACE) -> CleanupReport:
    report = empty_trash(sessions, storages)
    cutoff = datetime.now(UTC) - grace
    with sessions() as db:
        for upload in expired_uploads(db, settings):
            part_path(settings, upload.id).unlink(missing_ok=True)
            db.delete(upload)
            report.uploads_expired += 1
        db.commit()
        live_uploads = {str(u) for u in db.scalars(select(Upload.id))}
    if settings.uploads_dir.exists():
        for part in settings.uploads_dir.glob("*.part"):
            stat = part.stat()
            if part.stem not in live_uploads and _older(stat.st_mtime, cutoff):
                part.unlink(missing_ok=True)
                report.staged_removed += 1
                report.bytes_freed += stat.st_size
    for storage in storages.all():
        for item in list(storage.walk(TMP_PREFIX)):
            if item.modified_at < cutoff:
                storage.delete(item.key)
                report.staged_removed += 1
                report.bytes_freed += item.size_bytes
        for prefix in (FILES_PREFIX, DERIVED_PREFIX):
            owners: dict[uuid.UUID, list] = {}
            for item in storage.walk(prefix):
                element_id = element_id_of(item.key)
                if element_id is not None and item.modified_at < cutoff:
                    owners.setdefault(element_id, []).append(item)
            registered = _registered(sessions, storage.name, list(owners))
            for element_id, items in owners.items():
                if element_id in registered:
                    continue
                for item in items:
                    storage.delete(item.key)
                    report.orphans_removed += 1
                    report.bytes_freed += item.size_bytes
                    log.info("removed unregistered %s from storage %s", item.key, storage.name)
    return report


def _registered(sessions: sessionmaker[Session], storage: str,
                element_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    found: set[uuid.UUID] = set()
    with sessions() as db:
        for start in range(0, len(element_ids), 500):
            batch = element_ids[start:start + 500]
            found.update(db.scalars(select(StoredFile.element_id).where(
                StoredFile.element_id.in_(batch), StoredFile.storage == storage)))
    return found


def _older(timestamp: float, cutoff: datetime) -> bool:
    return datetime.fromtimestamp(timestamp, UTC) < cutoff

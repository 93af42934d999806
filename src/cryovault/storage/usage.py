"""Storage usage for the storage page and the dashboard (SPEC PLT-1, PLT-3)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cryovault.db.files import StoredFile
from cryovault.storage.backends import Storage, StorageUsage
from cryovault.storage.registry import StorageSet


@dataclass(frozen=True)
class StorageReport:
    storage: Storage
    usage: StorageUsage
    registered_files: int
    registered_bytes: int
    error: str | None = None

    @property
    def used_fraction(self) -> float | None:
        usage = self.usage
        if usage.total_bytes and usage.free_bytes is not None:
            # What is not available to cryovault is "used", reserved blocks included.
            return 1 - usage.free_bytes / usage.total_bytes
        return None


def storage_reports(db: Session, storages: StorageSet) -> list[StorageReport]:
    counts = {row.storage: (row.files, row.bytes) for row in db.execute(
        select(StoredFile.storage, func.count().label("files"),
               func.coalesce(func.sum(StoredFile.size_bytes), 0).label("bytes"))
        .group_by(StoredFile.storage))}
    reports = []
    for storage in storages.all():
        files, size = counts.get(storage.name, (0, 0))
        try:
            usage, error = storage.usage(), None
        except OSError as exc:  # an unreachable store is shown as such, not as a failed page
            usage, error = StorageUsage(None, None, None), f"unreachable: {exc}"
        reports.append(StorageReport(storage, usage, int(files), int(size), error))
    return reports


def human_bytes(size: int | None) -> str:
    if size is None:
        return "—"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if value < 1000 or unit == "PB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")

"""Export of a dataset (SPEC JOB-4): its files (and its metadata as JSON) copied into the export
storage under `<folder>/<dataset name>_<launch timestamp>/`, each copy checked against the
file's SHA-256. A rerun after a crash copies only what is not there yet (a file appears at its
final key only once complete and checked)."""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.access.guard import require_access
from cryovault.access.levels import COLLABORATOR
from cryovault.db.base import utcnow
from cryovault.db.elements import ElementAncestor
from cryovault.db.files import StoredFile
from cryovault.db.jobs import Job
from cryovault.db.users import User
from cryovault.errors import Invalid
from cryovault.jobs.records import create_job, job_parameters
from cryovault.jobs.runner import JobContext, register_handler
from cryovault.metadata.export import export_metadata
from cryovault.preferences import platform_preferences
from cryovault.storage.files import files_for_download
from cryovault.storage.registry import StorageSet
from cryovault.storage.transfer import copy_verified

EXPORT_JOB = "export"
FORBIDDEN_CHARACTERS = ':*?\\<>|'
MAX_FOLDER_LENGTH = 500
_UNSAFE_NAME = re.compile(r'[\\/:*?"<>|\x00-\x1f]')


def validate_export_folder(folder: str | None) -> str:
    """The optional relative folder under the export root, normalised; refused (SPEC JOB-4)
    when it contains any of : * ? \\ < > | or tries to leave the export root."""
    folder = (folder or "").strip()
    if not folder:
        return ""
    found = sorted({ch for ch in folder if ch in FORBIDDEN_CHARACTERS})
    if found:
        raise Invalid("the folder path must not contain any of : * ? \\ < > | (it contains "
                      f"{' '.join(found)})")
    if "\x00" in folder or any(unicodedata.category(ch) == "Cc" for ch in folder):
        raise Invalid("the folder path must not contain control characters")
    if folder.startswith("/"):
        raise Invalid("the folder path must be relative to the export folder, not absolute")
    parts = [part.strip() for part in folder.split("/") if part.strip()]
    if any(part in (".", "..") for part in parts):
        raise Invalid("the folder path must stay inside the export folder ('..' is not allowed)")
    if len(folder) > MAX_FOLDER_LENGTH:
        raise Invalid(f"the folder path must not be longer than {MAX_FOLDER_LENGTH} characters")
    return "/".join(parts)


@dataclass(frozen=True)
class ExportPlan:
    job: Job
    target: str        # the folder inside the export storage
    public_path: str   # where people find it (the export public path preference)


def _export_storage(storages: StorageSet):
    for storage in storages.all():
        if storage.role == "export":
            return storage
    raise Invalid("no export storage is configured; ask an administrator to add one")


def request_export(db: Session, actor: Actor, storages: StorageSet, dataset_id: uuid.UUID, *,
                   folder: str | None = None, files: bool = True,
                   metadata: bool = True) -> ExportPlan:
    dataset, _ = require_access(db, actor, dataset_id, COLLABORATOR, "export")
    if dataset.kind != "dataset":
        raise Invalid(f"only datasets are exported; {dataset.name!r} is a {dataset.kind}")
    if not (files or metadata):
        raise Invalid("choose what to export: the files, the metadata or both")
    _export_storage(storages)
    folder = validate_export_folder(folder)
    stamp = utcnow().strftime("%Y%m%d-%H%M%S")
    name = _UNSAFE_NAME.sub("_", dataset.name).strip(" .") or "dataset"
    target = "/".join(part for part in (folder, f"{name}_{stamp}") if part)
    job = create_job(db, EXPORT_JOB, actor, dataset, {
        "target": target, "files": files, "metadata": metadata})
    public = platform_preferences(db).export_public_path.rstrip("/")
    return ExportPlan(job, target, f"{public}/{target}" if public else target)


def _run_export(context: JobContext) -> None:
    db, job, storages = context.db, context.job, context.storages
    parameters = job_parameters(job)
    target_root = parameters["target"]
    export = _export_storage(storages)
    user = db.get(User, job.user_id) if job.user_id else None
    if user is None or job.element_id is None:
        raise Invalid("the user who asked for this export no longer exists")
    actor = Actor.of(user)
    if parameters.get("metadata", True):
        document = export_metadata(db, actor, job.element_id, "json")
        staged = export.stage()
        try:
            staged.write(document.content)
            staged.commit(f"{target_root}/{document.filename}")
        except BaseException:
            staged.abort()
            raise
    if not parameters.get("files", True):
        return
    entries = files_for_download(db, actor, [job.element_id]) if _has_files(db, job) else []
    total = sum(e.size_bytes for e in entries) or 1
    done = 0
    for entry in entries:
        # Paths inside the export keep the dataset's own layout, below its export folder.
        relative = entry.path.split("/", 1)[1] if "/" in entry.path else entry.path
        key = f"{target_root}/{relative}"
        if export.size(key) != entry.size_bytes:  # not yet exported (a rerun skips the rest)
            copy_verified(storages.get(entry.storage), entry.key, export, key,
                          sha256=entry.sha256, size_bytes=entry.size_bytes,
                          progress=lambda n: context.heartbeat())
        done += entry.size_bytes
        context.checkpoint(done / total, f"{done:,} of {total:,} bytes exported")


def _has_files(db: Session, job: Job) -> bool:
    return db.scalar(select(StoredFile.element_id)
                     .join(ElementAncestor, ElementAncestor.element_id == StoredFile.element_id)
                     .where(ElementAncestor.ancestor_id == job.element_id).limit(1)) is not None


register_handler(EXPORT_JOB, _run_export)

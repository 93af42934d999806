"""Export of a dataset (SPEC JOB-4, SPA-6, ET-4): its files (and its metadata as JSON) copied
into the export storage under `<folder>/<dataset name>_<launch timestamp>/`, each copy checked
against the file's SHA-256. A rerun after a crash copies only what is not there yet (a file
appears at its final key only once complete and checked).

An EPU or Tomo run exports its run files: raw files (what the instrument wrote) keep their
paths relative to the session folder; processed files (downscaled copies for now) go under
`processed/`. Its metadata JSON carries the run's items (micrographs or tilt series) with their
metadata, and each item also gets its own document (`micrographs/<name>.json`,
`tilt_series/<name>.json`), which the live export (live_export.py) writes as items arrive.
"""

from __future__ import annotations

import json
import re
import unicodedata
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.access.guard import require_access
from cryovault.access.levels import COLLABORATOR
from cryovault.db.base import utcnow
from cryovault.db.elements import Element, ElementAncestor
from cryovault.db.files import StoredFile
from cryovault.db.jobs import Job
from cryovault.db.runs import (
    ITEM_COMPLETED,
    ITEM_FAILED,
    ITEM_IN_PROGRESS,
    Micrograph,
    RunFile,
    RunSession,
    Tilt,
    TiltSeries,
)
from cryovault.db.users import User
from cryovault.errors import Invalid
from cryovault.jobs.records import create_job, job_parameters
from cryovault.jobs.runner import JobContext, register_handler
from cryovault.lifecycle.run_files import (
    FilterSchedule,
    ItemFilter,
    RunFileSelection,
    export_path,
    is_run,
    item_model,
    iter_items,
    iter_run_files,
    selected_totals,
    selection_for_classes,
)
from cryovault.metadata.export import export_metadata
from cryovault.preferences import platform_preferences
from cryovault.storage.backends import Storage
from cryovault.storage.checksums import ChecksumMismatch
from cryovault.storage.files import files_for_download
from cryovault.storage.registry import StorageSet
from cryovault.storage.transfer import copy_verified

EXPORT_JOB = "export"
FORBIDDEN_CHARACTERS = ':*?\\<>|'
MAX_FOLDER_LENGTH = 500
_UNSAFE_NAME = re.compile(r'[\\/:*?"<>|\x00-\x1f]')
ITEM_FOLDERS = {"epu_run": "micrographs", "tomo_run": "tilt_series"}


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


@dataclass(frozen=True)
class ExportChoice:
    """What an export takes: files (for runs: raw and/or processed ones), metadata JSON, and
    for runs which items (ItemFilter)."""

    files: bool = True
    metadata: bool = True
    raw: bool = True
    processed: bool = True
    item_filter: ItemFilter | None = None

    def parameters(self) -> dict:
        values: dict = {"files": self.files, "metadata": self.metadata, "raw": self.raw,
                        "processed": self.processed}
        if self.item_filter is not None:
            values.update(FilterSchedule(((None, self.item_filter),)).as_parameters())
        return values


def export_storage(storages: StorageSet) -> Storage:
    for storage in storages.all():
        if storage.role == "export":
            return storage
    raise Invalid("no export storage is configured; ask an administrator to add one")


def export_dataset_for(db: Session, actor: Actor, storages: StorageSet, dataset_id: uuid.UUID,
                       choice: ExportChoice) -> Element:
    """The dataset an actor may export with this choice (collaborators), or Invalid."""
    dataset, _ = require_access(db, actor, dataset_id, COLLABORATOR, "export")
    if dataset.kind != "dataset":
        raise Invalid(f"only datasets are exported; {dataset.name!r} is a {dataset.kind}")
    if not (choice.files or choice.metadata):
        raise Invalid("choose what to export: the files, the metadata or both")
    if is_run(dataset) and choice.files and not (choice.raw or choice.processed):
        raise Invalid("choose which files to export: raw (the instrument's files), processed, "
                      "or both")
    if not is_run(dataset) and choice.item_filter not in (None, ItemFilter()):
        raise Invalid("filters choose items of EPU and Tomo runs; "
                      f"{dataset.name!r} is a {dataset.dataset_type or 'free'} dataset")
    export_storage(storages)
    return dataset


def export_target(db: Session, dataset: Element, folder: str | None) -> tuple[str, str]:
    """`<folder>/<dataset name>_<timestamp>` in the export storage, and its public path."""
    folder = validate_export_folder(folder)
    stamp = utcnow().strftime("%Y%m%d-%H%M%S")
    name = _UNSAFE_NAME.sub("_", dataset.name).strip(" .") or "dataset"
    target = "/".join(part for part in (folder, f"{name}_{stamp}") if part)
    public = platform_preferences(db).export_public_path.rstrip("/")
    return target, f"{public}/{target}" if public else target


def request_export(db: Session, actor: Actor, storages: StorageSet, dataset_id: uuid.UUID, *,
                   folder: str | None = None, files: bool = True, metadata: bool = True,
                   raw: bool = True, processed: bool = True,
                   item_filter: dict | None = None) -> ExportPlan:
    choice = ExportChoice(files, metadata, raw, processed,
                          ItemFilter.parse(item_filter) if item_filter is not None else None)
    dataset = export_dataset_for(db, actor, storages, dataset_id, choice)
    target, public_path = export_target(db, dataset, folder)
    job = create_job(db, EXPORT_JOB, actor, dataset, {"target": target, **choice.parameters()})
    return ExportPlan(job, target, public_path)


# --- what a run export writes ------------------------------------------------------------------


@dataclass
class ExportTally:
    """What an export pass did, for progress messages."""

    files: int = 0
    size_bytes: int = 0
    copied: int = 0
    items: int = 0
    flagged: set[str] = field(default_factory=set)  # relative paths
    # Repeated passes (live export) count each file and item once; a file rewritten by the
    # instrument (a new version under the same path) is copied again even at the same size.
    exported: dict[str, str] = field(default_factory=dict)  # export key -> SHA-256
    documented: set[uuid.UUID] = field(default_factory=set)

    def message(self, done: str = "exported") -> str:
        text = f"{self.files:,} files ({self.size_bytes:,} bytes) {done}"
        if self.items:
            text += f", {self.items:,} item documents"
        if self.flagged:
            shown = sorted(self.flagged)
            names = ", ".join(shown[:3]) + (" …" if len(shown) > 3 else "")
            text += (f"; {len(self.flagged):,} skipped because their bytes failed the integrity "
                     f"check ({names})")
        return text


def job_actor(db: Session, job: Job) -> Actor:
    user = db.get(User, job.user_id) if job.user_id else None
    if user is None or job.element_id is None:
        raise Invalid("the user who asked for this export no longer exists")
    return Actor.of(user)


def write_object(storage: Storage, key: str, content: bytes, *,
                 only_if_changed: bool = False) -> bool:
    """Write bytes at a key (atomically: staged, then moved); False when `only_if_changed`
    and the same bytes are already there."""
    if (only_if_changed and storage.size(key) == len(content)
            and b"".join(storage.read(key)) == content):
        return False
    staged = storage.stage()
    try:
        staged.write(content)
        staged.commit(key)
    except BaseException:
        staged.abort()
        raise
    return True


def export_run_files(context: JobContext, export: Storage, target: str, dataset: Element,
                     selection: RunFileSelection, schedule: FilterSchedule, tally: ExportTally,
                     *, changed_since: datetime | None = None, skip_unlinked: bool = False,
                     progress: Callable[[], None] | None = None) -> None:
    """Copy a run's selected files whose item passes the filter (checked copies; what is
    already there with its size is skipped, so reruns and repeated passes copy only what is
    missing). With `skip_unlinked`, a file of an item not linked to it yet is left for the
    next pass, which then knows whether its item passes the filter."""
    db, storages = context.db, context.storages
    for batch in iter_run_files(db, dataset, selection, changed_since=changed_since):
        for row in batch:
            run_file = row.file
            if skip_unlinked and row.awaiting_item:
                continue
            if row.filterable and not schedule.admits(row.item_created_at, row.item_status):
                continue
            if run_file.integrity != "ok":
                tally.flagged.add(run_file.relative_path)
                continue
            key = f"{target}/{export_path(run_file)}"
            known = tally.exported.get(key)
            if known == run_file.sha256:
                continue  # exported by an earlier pass of this job
            if known is not None or export.size(key) != run_file.size_bytes:
                try:
                    copy_verified(storages.get(run_file.storage), run_file.key, export, key,
                                  sha256=run_file.sha256, size_bytes=run_file.size_bytes,
                                  progress=lambda n: context.heartbeat())
                except (FileNotFoundError, ChecksumMismatch):
                    if not _still_registered(db, run_file.id):
                        continue  # cleaned up or deleted while the export ran
                    raise
                tally.copied += 1
            tally.exported[key] = run_file.sha256
            tally.files += 1
            tally.size_bytes += run_file.size_bytes
            if progress is not None:
                progress()


def _still_registered(db: Session, file_id: uuid.UUID) -> bool:
    return db.scalar(select(RunFile.id).where(RunFile.id == file_id)) is not None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _files_by_item(db: Session, item_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[RunFile]]:
    grouped: dict[uuid.UUID, list[RunFile]] = defaultdict(list)
    for run_file in db.scalars(select(RunFile).where(RunFile.item_id.in_(item_ids))
                               .order_by(RunFile.relative_path)
                               .execution_options(populate_existing=True)):
        grouped[run_file.item_id].append(run_file)  # type: ignore[index]
    return grouped


def _tilts_by_series(db: Session, series_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[Tilt]]:
    grouped: dict[uuid.UUID, list[Tilt]] = defaultdict(list)
    for tilt in db.scalars(select(Tilt).where(Tilt.tilt_series_id.in_(series_ids))
                           .order_by(Tilt.tilt_angle_deg, Tilt.movie_name)
                           .execution_options(populate_existing=True)):
        grouped[tilt.tilt_series_id].append(tilt)
    return grouped


def item_document(item: Micrograph | TiltSeries, files: list[RunFile],
                  tilts: list[Tilt] | None = None) -> dict:
    """An item of a run as exported: its state, metadata and files (paths inside the
    export)."""
    document: dict = {
        "id": str(item.id), "name": item.name,
        "kind": "tilt_series" if isinstance(item, TiltSeries) else "micrograph",
        "status": item.status, "problem": item.problem, "acquired_at": _iso(item.acquired_at),
        "metadata": json.loads(item.metadata_json or "{}"),
        "files": [{"path": export_path(f), "role": f.role, "size_bytes": f.size_bytes,
                   "sha256": f.sha256} for f in files],
    }
    if isinstance(item, Micrograph):
        document["grid_square_id"] = item.grid_square_id
        document["foil_hole_id"] = item.foil_hole_id
    if tilts is not None:
        document["tilts"] = [{"movie_name": t.movie_name, "z_value": t.z_value,
                              "tilt_angle_deg": t.tilt_angle_deg,
                              "acquired_at": _iso(t.acquired_at),
                              "metadata": json.loads(t.metadata_json or "{}")} for t in tilts]
    return document


def iter_item_documents(db: Session, dataset: Element, schedule: FilterSchedule, *,
                        changed_since: datetime | None = None):
    """(item, document) for each item that passes the filter, in acquisition order."""
    for batch in iter_items(db, dataset, changed_since=changed_since):
        chosen = [item for item in batch if schedule.admits(item.created_at, item.status)]
        if not chosen:
            continue
        ids = [item.id for item in chosen]
        files = _files_by_item(db, ids)
        tilts = _tilts_by_series(db, ids) if dataset.dataset_type == "tomo_run" else None
        for item in chosen:
            yield item, item_document(item, files.get(item.id, []),
                                      tilts.get(item.id, []) if tilts is not None else None)


def item_document_key(target: str, dataset: Element, name: str) -> str:
    safe = _UNSAFE_NAME.sub("_", name).strip(" .") or "item"
    return f"{target}/{ITEM_FOLDERS[dataset.dataset_type or 'epu_run']}/{safe}.json"


def export_item_documents(context: JobContext, export: Storage, target: str, dataset: Element,
                          schedule: FilterSchedule, tally: ExportTally, *,
                          changed_since: datetime | None = None) -> None:
    """Write each item's JSON document; a document already there with the same content is
    left alone (an item whose metadata or files changed gets its document rewritten)."""
    for item, document in iter_item_documents(context.db, dataset, schedule,
                                              changed_since=changed_since):
        content = json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8")
        write_object(export, item_document_key(target, dataset, item.name), content,
                     only_if_changed=True)
        if item.id not in tally.documented:
            tally.documented.add(item.id)
            tally.items += 1
        context.heartbeat()


def _counts(db: Session, dataset: Element) -> dict[str, int]:
    model = item_model(dataset.dataset_type)
    counts = dict.fromkeys((ITEM_COMPLETED, ITEM_IN_PROGRESS, ITEM_FAILED), 0)
    for status, count in db.execute(select(model.status, func.count())
                                    .where(model.dataset_id == dataset.id)
                                    .group_by(model.status)):
        counts[status] = count
    return counts


def write_dataset_document(db: Session, actor: Actor, export: Storage, target: str,
                           dataset: Element, schedule: FilterSchedule | None) -> str:
    """The dataset's metadata JSON (MD-4's document); for a run it also carries the sessions,
    the counts of items by status and every item that passes the filter (streamed, so that a
    50,000-micrograph run does not sit in memory). Returns its key."""
    document = export_metadata(db, actor, dataset.id, "json")
    key = f"{target}/{document.filename}"
    if not is_run(dataset) or schedule is None:
        write_object(export, key, document.content)
        return key
    placeholder = f"@items-{uuid.uuid4().hex}@"
    items_key = ITEM_FOLDERS[dataset.dataset_type or "epu_run"]
    base = json.loads(document.content)
    base["run"] = {
        "dataset_type": dataset.dataset_type,
        "sessions": [{"name": s.name, "metadata": json.loads(s.metadata_json or "{}")}
                     for s in db.scalars(select(RunSession)
                                         .where(RunSession.dataset_id == dataset.id)
                                         .order_by(RunSession.name))],
        "counts": _counts(db, dataset),
        "filter": schedule.current.as_dict(),
        items_key: placeholder,
    }
    head, tail = json.dumps(base, ensure_ascii=False, indent=2).split(f'"{placeholder}"')
    staged = export.stage()
    try:
        staged.write((head + "[").encode("utf-8"))
        first = True
        for _, item in iter_item_documents(db, dataset, schedule):
            text = json.dumps(item, ensure_ascii=False)
            staged.write((("\n" if first else ",\n") + text).encode("utf-8"))
            first = False
        staged.write(("]" + tail).encode("utf-8"))
        staged.commit(key)
    except BaseException:
        staged.abort()
        raise
    return key


# --- the job -------------------------------------------------------------------------------------


def _run_export(context: JobContext) -> None:
    db, job, storages = context.db, context.job, context.storages
    parameters = job_parameters(job)
    target_root = parameters["target"]
    export = export_storage(storages)
    actor = job_actor(db, job)
    dataset = db.get(Element, job.element_id)
    if dataset is None:
        raise Invalid("the dataset no longer exists")
    run = is_run(dataset)
    schedule = FilterSchedule.from_parameters(parameters)
    if parameters.get("metadata", True):
        write_dataset_document(db, actor, export, target_root, dataset,
                               schedule if run else None)
    if not parameters.get("files", True):
        if run and parameters.get("metadata", True):
            export_item_documents(context, export, target_root, dataset, schedule,
                                  ExportTally())
        return
    entries = files_for_download(db, actor, [job.element_id]) if _has_files(db, job) else []
    selection = (selection_for_classes(parameters.get("raw", True),
                                       parameters.get("processed", True)) if run else None)
    run_total = (selected_totals(db, dataset, selection, schedule.current).size_bytes
                 if selection is not None else 0)
    total = (sum(e.size_bytes for e in entries) + run_total) or 1
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
    if selection is None:
        return
    tally = ExportTally()

    def report() -> None:
        context.checkpoint(min(1.0, (done + tally.size_bytes) / total),
                           f"{done + tally.size_bytes:,} of {total:,} bytes exported")

    export_run_files(context, export, target_root, dataset, selection, schedule, tally,
                     progress=report)
    if parameters.get("metadata", True):
        export_item_documents(context, export, target_root, dataset, schedule, tally)
    done += tally.size_bytes
    context.checkpoint(1.0, f"{done:,} of {total:,} bytes exported; " + tally.message())


def _has_files(db: Session, job: Job) -> bool:
    return db.scalar(select(StoredFile.element_id)
                     .join(ElementAncestor, ElementAncestor.element_id == StoredFile.element_id)
                     .where(ElementAncestor.ancestor_id == job.element_id).limit(1)) is not None


register_handler(EXPORT_JOB, _run_export)

"""Live export of a run in progress (SPEC JOB-5): an export (export.py) that keeps going.

It exports what the run holds, then polls every `POLL_SECONDS` and exports each new item's
files and metadata document as they arrive, until the run's dataset is marked completed (a last
pass, then the job completes) or the job is cancelled (its owner, an administrator, or the
Health tab's "Stop all live export jobs"). At most one live export per run.

"Update live export" changes the item filter for items still to come: the job's parameters keep
the history of filters (`filters`: [start, filter] pairs) and each item follows the filter in
force when it was registered. The handler re-reads the parameters at every pass.

Restarted after a crash, it starts over with a full pass that skips whatever is already in the
export folder with its size, as export does.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.access.guard import require_access
from cryovault.access.levels import COLLABORATOR, VIEWER
from cryovault.db.base import utcnow
from cryovault.db.elements import Element
from cryovault.db.jobs import Job
from cryovault.errors import Conflict, Invalid, NotFound
from cryovault.jobs.records import PENDING, create_job, job_parameters
from cryovault.jobs.runner import JobContext, register_handler
from cryovault.lifecycle.export import (
    ExportChoice,
    ExportPlan,
    ExportTally,
    export_dataset_for,
    export_item_documents,
    export_run_files,
    export_storage,
    export_target,
    job_actor,
    write_dataset_document,
)
from cryovault.lifecycle.run_files import (
    FilterSchedule,
    ItemFilter,
    is_run,
    run_file_totals,
    selection_for_classes,
)
from cryovault.storage.registry import StorageSet

LIVE_EXPORT_JOB = "live_export"
POLL_SECONDS = 3.0
# A pass looks at what changed since shortly before the previous pass began, so that a file
# whose registration committed late (its row carries the time it was made) is not missed.
CHANGE_MARGIN = timedelta(seconds=30)


@dataclass(frozen=True)
class LiveExportView:
    job: Job
    target: str
    public_path: str
    item_filter: ItemFilter
    files: bool
    metadata: bool
    raw: bool
    processed: bool

    @classmethod
    def of(cls, job: Job) -> LiveExportView:
        parameters = job_parameters(job)
        return cls(job, parameters.get("target", ""), parameters.get("public_path", ""),
                   FilterSchedule.from_parameters(parameters).current,
                   parameters.get("files", True), parameters.get("metadata", True),
                   parameters.get("raw", True), parameters.get("processed", True))


def running_live_export(db: Session, dataset_id: uuid.UUID) -> Job | None:
    """The live export of a run that is waiting or running (at most one)."""
    return db.scalar(select(Job).where(Job.element_id == dataset_id,
                                       Job.kind == LIVE_EXPORT_JOB, Job.status.in_(PENDING))
                     .order_by(Job.created_at).limit(1))


def _pending_count(db: Session, dataset_id: uuid.UUID) -> int:
    return db.scalar(select(func.count()).select_from(Job).where(
        Job.element_id == dataset_id, Job.kind == LIVE_EXPORT_JOB,
        Job.status.in_(PENDING))) or 0


def request_live_export(db: Session, actor: Actor, storages: StorageSet, dataset_id: uuid.UUID,
                        *, folder: str | None = None, files: bool = True, metadata: bool = True,
                        raw: bool = True, processed: bool = True,
                        item_filter: dict | None = None) -> ExportPlan:
    """Register the live export of an EPU or Tomo run (collaborators); 409 while one runs."""
    choice = ExportChoice(files, metadata, raw, processed, ItemFilter.parse(item_filter))
    dataset = export_dataset_for(db, actor, storages, dataset_id, choice)
    if not is_run(dataset):
        raise Invalid("a live export follows an EPU or Tomo run as its data arrives; "
                      f"{dataset.name!r} is a {dataset.dataset_type or 'free'} dataset: use "
                      "Export instead")
    # PostgreSQL: requests for the same run queue on its row. SQLite: the job row is written
    # before counting, and writers take turns, so the second one counts two.
    db.execute(select(Element.id).where(Element.id == dataset.id).with_for_update())
    if running_live_export(db, dataset.id) is not None:
        raise _already(dataset)
    target, public_path = export_target(db, dataset, folder)
    job = create_job(db, LIVE_EXPORT_JOB, actor, dataset,
                     {"target": target, "public_path": public_path, **choice.parameters()})
    db.flush()
    if _pending_count(db, dataset.id) > 1:
        raise _already(dataset)
    return ExportPlan(job, target, public_path)


def _already(dataset: Element) -> Conflict:
    return Conflict(f"run {dataset.name!r} already has a live export; update or stop that one "
                    "first (one live export per run)")


def live_export_of(db: Session, actor: Actor, dataset_id: uuid.UUID) -> LiveExportView | None:
    """The live export under way for a run (viewers may see that one runs)."""
    dataset, _ = require_access(db, actor, dataset_id, VIEWER, "open")
    job = running_live_export(db, dataset.id)
    return LiveExportView.of(job) if job is not None else None


def update_live_export(db: Session, actor: Actor, dataset_id: uuid.UUID,
                       item_filter: dict | None) -> LiveExportView:
    """"Update live export": a new filter for the items still to come (collaborators)."""
    dataset, _ = require_access(db, actor, dataset_id, COLLABORATOR, "update the live export of")
    new_filter = ItemFilter.parse(item_filter)
    job = running_live_export(db, dataset.id)
    if job is None or job.cancel_requested:
        raise NotFound(f"no live export is running for {dataset.name!r}; start one first")
    parameters = job_parameters(job)
    schedule = FilterSchedule.from_parameters(parameters)
    if new_filter != schedule.current:
        parameters.update(schedule.changed(new_filter).as_parameters())
        db.execute(update(Job).where(Job.id == job.id)
                   .values(parameters=json.dumps(parameters, sort_keys=True))
                   .execution_options(synchronize_session=False))
        db.flush()
        db.refresh(job)
    return LiveExportView.of(job)


def _schedule(db: Session, job: Job) -> FilterSchedule:
    """The filters as they are now in the database (a PATCH may have changed them)."""
    text = db.scalar(select(Job.parameters).where(Job.id == job.id))
    schedule = FilterSchedule.from_parameters(json.loads(text or "{}"))
    return dataclasses.replace(schedule, read_at=utcnow())


def _run_live_export(context: JobContext) -> None:
    db, job = context.db, context.job
    parameters = job_parameters(job)
    target = parameters["target"]
    export = export_storage(context.storages)
    actor = job_actor(db, job)
    dataset = db.get(Element, job.element_id)
    if dataset is None or not is_run(dataset):
        raise Invalid("the run no longer exists; the live export stopped")
    with_metadata = parameters.get("metadata", True)
    selection = (selection_for_classes(parameters.get("raw", True),
                                       parameters.get("processed", True))
                 if parameters.get("files", True) else None)
    if with_metadata:
        write_dataset_document(db, actor, export, target, dataset, _schedule(db, job))
    tally = ExportTally()
    since = None
    while True:
        state = db.execute(select(Element.status, Element.deleting)
                           .where(Element.id == dataset.id)).first()
        if state is None or state.deleting:
            raise Invalid("the run was deleted; the live export stopped")
        finished = state.status == "completed"  # read before the pass: it is then the last
        started = utcnow()
        schedule = _schedule(db, job)
        if selection is not None:
            export_run_files(context, export, target, dataset, selection, schedule, tally,
                             changed_since=since, skip_unlinked=not finished,
                             progress=context.heartbeat)
        if with_metadata:
            export_item_documents(context, export, target, dataset, schedule, tally,
                                  changed_since=since)
        since = started - CHANGE_MARGIN
        if finished:
            if with_metadata:
                write_dataset_document(db, actor, export, target, dataset, schedule)
            context.checkpoint(1.0, f"run completed; {tally.message()}")
            return
        available = (run_file_totals(db, dataset.id, selection).files
                     if selection is not None else 0)
        context.checkpoint(min(1.0, tally.files / available) if available else 0.0,
                           f"{tally.message()}; waiting for new data")
        db.commit()  # no transaction stays open while waiting
        time.sleep(POLL_SECONDS)


register_handler(LIVE_EXPORT_JOB, _run_live_export, long_running=True)

"""The data lifecycle as jobs: archive and restore (SPEC JOB-3), export (JOB-4), live export
(JOB-5), cleanup and its size calculation (JOB-6)."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.lifecycle import archive, cleanup_rules, export, live_export, sizes
from cryovault.web.api.schemas import DeletionOut, Strict, parse_id
from cryovault.web.background import run_job_and_tidy
from cryovault.web.context import current_actor, get_db

router = APIRouter(tags=["lifecycle"])


def _accepted(request: Request, background: BackgroundTasks, job_id: uuid.UUID,
              **extra: str) -> JSONResponse:
    background.add_task(run_job_and_tidy, request.app, job_id)
    return JSONResponse({"job_id": str(job_id), **extra}, status_code=202,
                        background=background)


def _start(kind: str, element_id: str, request: Request, background: BackgroundTasks,
           actor: Actor, db: Session) -> JSONResponse:
    job = archive.request_move(db, actor, request.app.state.storages, parse_id(element_id), kind)
    db.commit()
    return _accepted(request, background, job.id)


@router.post("/elements/{element_id}/archive", status_code=202, response_model=DeletionOut,
             summary="Move the element's files to the archive storage (a job)")
def archive_element(element_id: str, request: Request, background: BackgroundTasks,
                    actor: Actor = Depends(current_actor),
                    db: Session = Depends(get_db, scope="function")):
    return _start(archive.ARCHIVE_JOB, element_id, request, background, actor, db)


@router.post("/elements/{element_id}/restore", status_code=202, response_model=DeletionOut,
             summary="Bring the element's archived files back to the primary storage (a job)")
def restore_element(element_id: str, request: Request, background: BackgroundTasks,
                    actor: Actor = Depends(current_actor),
                    db: Session = Depends(get_db, scope="function")):
    return _start(archive.RESTORE_JOB, element_id, request, background, actor, db)


# --- export and live export -------------------------------------------------------------------


class ExportIn(Strict):
    folder: str | None = Field(default=None, max_length=10_000,
                               description="optional folder inside the export folder")
    files: bool = True
    metadata: bool = True
    raw: bool = Field(default=True, description="runs: the instrument's files")
    processed: bool = Field(default=True,
                            description="runs: files cryovault made (downscaled copies …)")
    filter: dict[str, Any] | None = Field(
        default=None, description='runs: which items, e.g. {"status": "completed"} '
                                  '(status: "all" | "completed")')


class ExportOut(BaseModel):
    job_id: str
    target: str
    public_path: str


@router.post("/elements/{element_id}/export", status_code=202, response_model=ExportOut,
             summary="Copy a dataset's files and metadata to the export storage (a job)")
def export_dataset(element_id: str, body: ExportIn, request: Request,
                   background: BackgroundTasks, actor: Actor = Depends(current_actor),
                   db: Session = Depends(get_db, scope="function")):
    plan = export.request_export(db, actor, request.app.state.storages, parse_id(element_id),
                                 folder=body.folder, files=body.files, metadata=body.metadata,
                                 raw=body.raw, processed=body.processed, item_filter=body.filter)
    db.commit()
    return _accepted(request, background, plan.job.id, target=plan.target,
                     public_path=plan.public_path)


class LiveExportPatch(Strict):
    filter: dict[str, Any] = Field(description='e.g. {"status": "completed"}')


class LiveExportOut(BaseModel):
    job_id: uuid.UUID
    status: str
    progress: float
    message: str
    target: str
    public_path: str
    filter: dict[str, str]
    files: bool
    metadata: bool
    raw: bool
    processed: bool
    started_at: datetime | None

    @classmethod
    def of(cls, view: live_export.LiveExportView) -> LiveExportOut:
        job = view.job
        return cls(job_id=job.id, status=job.status, progress=job.progress, message=job.message,
                   target=view.target, public_path=view.public_path,
                   filter=view.item_filter.as_dict(), files=view.files, metadata=view.metadata,
                   raw=view.raw, processed=view.processed, started_at=job.started_at)


class LiveExportState(BaseModel):
    live_export: LiveExportOut | None


def run_in_own_thread(app: FastAPI, job_id: uuid.UUID) -> None:
    """A live export runs as long as its run goes on: it gets a thread of its own rather than
    one of the request pool's."""
    threading.Thread(target=run_job_and_tidy, args=(app, job_id), daemon=True,
                     name=f"cryovault-live-export-{job_id}").start()


@router.post("/elements/{element_id}/live-export", status_code=202, response_model=ExportOut,
             summary="Export a run as its data arrives, until it completes (a job)")
def start_live_export(element_id: str, body: ExportIn, request: Request,
                      actor: Actor = Depends(current_actor),
                      db: Session = Depends(get_db, scope="function")):
    plan = live_export.request_live_export(
        db, actor, request.app.state.storages, parse_id(element_id), folder=body.folder,
        files=body.files, metadata=body.metadata, raw=body.raw, processed=body.processed,
        item_filter=body.filter)
    db.commit()
    run_in_own_thread(request.app, plan.job.id)
    return JSONResponse({"job_id": str(plan.job.id), "target": plan.target,
                         "public_path": plan.public_path}, status_code=202)


@router.get("/elements/{element_id}/live-export", response_model=LiveExportState,
            summary="The live export under way for a run, if any")
def get_live_export(element_id: str, actor: Actor = Depends(current_actor),
                    db: Session = Depends(get_db, scope="function")):
    view = live_export.live_export_of(db, actor, parse_id(element_id))
    return LiveExportState(live_export=LiveExportOut.of(view) if view else None)


@router.patch("/elements/{element_id}/live-export", response_model=LiveExportOut,
              summary="Update live export: a new filter for the items still to come")
def update_live_export(element_id: str, body: LiveExportPatch,
                       actor: Actor = Depends(current_actor),
                       db: Session = Depends(get_db, scope="function")):
    return LiveExportOut.of(live_export.update_live_export(db, actor, parse_id(element_id),
                                                           body.filter))


# --- cleanup --------------------------------------------------------------------------------


class CleanupRuleOut(BaseModel):
    name: str
    label: str
    description: str


class RuleSizeOut(BaseModel):
    files: int
    size_bytes: int


class PendingJobOut(BaseModel):
    id: uuid.UUID
    status: str
    progress: float


class CleanupOut(BaseModel):
    rules: list[CleanupRuleOut]
    sizes: dict[str, RuleSizeOut] | None = Field(
        description="per rule, what it would remove; null until calculated (or after a "
                    "cleanup made the figures out of date)")
    total_size_bytes: int | None
    sizes_computed_at: datetime | None
    sizes_job: PendingJobOut | None
    cleanup_job: PendingJobOut | None

    @classmethod
    def of(cls, overview: sizes.CleanupOverview) -> CleanupOut:
        computed = overview.sizes

        def pending(job: sizes.PendingJob | None) -> PendingJobOut | None:
            return PendingJobOut(id=job.id, status=job.status,
                                 progress=job.progress) if job else None

        return cls(
            rules=[CleanupRuleOut(name=r.name, label=r.label, description=r.description)
                   for r in overview.rules],
            sizes={name: RuleSizeOut(files=s.files, size_bytes=s.size_bytes)
                   for name, s in computed.sizes.items()} if computed else None,
            total_size_bytes=computed.total_bytes if computed else None,
            sizes_computed_at=computed.computed_at if computed else None,
            sizes_job=pending(overview.sizes_job), cleanup_job=pending(overview.cleanup_job))


class CleanupIn(Strict):
    rules: list[str] = Field(max_length=20, description="names of the rules to apply")


@router.get("/elements/{element_id}/cleanup", response_model=CleanupOut,
            summary="The cleanup rules of a run, with the latest calculated sizes")
def cleanup_rules_of(element_id: str, actor: Actor = Depends(current_actor),
                     db: Session = Depends(get_db, scope="function")):
    return CleanupOut.of(sizes.cleanup_overview(db, actor, parse_id(element_id)))


@router.post("/elements/{element_id}/cleanup/sizes", status_code=202, response_model=DeletionOut,
             summary="Calculate how much each cleanup rule would remove (a job)")
def calculate_cleanup_sizes(element_id: str, request: Request, background: BackgroundTasks,
                            actor: Actor = Depends(current_actor),
                            db: Session = Depends(get_db, scope="function")):
    job = sizes.request_size_calculation(db, actor, parse_id(element_id))
    db.commit()
    return _accepted(request, background, job.id)


@router.post("/elements/{element_id}/cleanup", status_code=202, response_model=DeletionOut,
             summary="Remove the files the chosen cleanup rules select (a job; owners)")
def clean_up(element_id: str, body: CleanupIn, request: Request, background: BackgroundTasks,
             actor: Actor = Depends(current_actor),
             db: Session = Depends(get_db, scope="function")):
    job = cleanup_rules.request_cleanup(db, actor, parse_id(element_id), body.rules)
    db.commit()
    return _accepted(request, background, job.id)

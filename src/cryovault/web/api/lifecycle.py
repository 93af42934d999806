"""Archive and restore (SPEC JOB-3) and export (JOB-4): jobs on an element's files."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.lifecycle import archive, export
from cryovault.web.api.schemas import DeletionOut, Strict, parse_id
from cryovault.web.background import run_job_and_tidy
from cryovault.web.context import current_actor, get_db

router = APIRouter(tags=["lifecycle"])


def _start(kind: str, element_id: str, request: Request, background: BackgroundTasks,
           actor: Actor, db: Session) -> JSONResponse:
    job = archive.request_move(db, actor, request.app.state.storages, parse_id(element_id), kind)
    db.commit()
    background.add_task(run_job_and_tidy, request.app, job.id)
    return JSONResponse({"job_id": str(job.id)}, status_code=202, background=background)


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


class ExportIn(Strict):
    folder: str | None = Field(default=None, max_length=10_000,
                               description="optional folder inside the export folder")
    files: bool = True
    metadata: bool = True


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
                                 folder=body.folder, files=body.files, metadata=body.metadata)
    db.commit()
    background.add_task(run_job_and_tidy, request.app, plan.job.id)
    return JSONResponse({"job_id": str(plan.job.id), "target": plan.target,
                         "public_path": plan.public_path}, status_code=202,
                        background=background)

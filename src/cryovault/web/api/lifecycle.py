"""Archive and restore (SPEC JOB-3): jobs on an element's files."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.lifecycle import archive
from cryovault.web.api.schemas import DeletionOut, parse_id
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

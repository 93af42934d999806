"""Portal forms that change elements: create, rename, details, delete (SPEC WS-6, WS-7).

Each answers 204 with `HX-Refresh` on success; a broken rule comes back as a 4xx message that
htmx shows in the form's error slot (see web/errors.py)."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Depends, Form, Request, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy.orm import Session

from cryovault.lifecycle import archive, export
from cryovault.web.api.schemas import parse_id
from cryovault.web.background import run_job_and_tidy
from cryovault.web.context import Caller, get_db
from cryovault.web.ui.common import page_caller
from cryovault.workspace import deletion
from cryovault.workspace import elements as service

router = APIRouter(include_in_schema=False)


def _refresh() -> Response:
    return Response(status_code=204, headers={"HX-Refresh": "true"})


@router.post("/ui/elements")
def create(
    kind: str = Form(...),
    name: str = Form(""),
    parent_id: str = Form(""),
    workflow_type: str = Form(""),
    dataset_type: str = Form(""),
    description: str = Form(""),
    caller: Caller = Depends(page_caller),
    db: Session = Depends(get_db, scope="function"),
):
    service.create_element(
        db, caller.actor, kind=kind, name=name,
        parent_id=parse_id(parent_id) if parent_id else None,
        workflow_type=(workflow_type or None) if kind == "workflow" else None,
        dataset_type=(dataset_type or None) if kind == "dataset" else None,
        description=description,
    )
    return _refresh()


@router.post("/ui/elements/{element_id}/rename")
def rename(element_id: str, name: str = Form(""), caller: Caller = Depends(page_caller),
           db: Session = Depends(get_db, scope="function")):
    service.update_element(db, caller.actor, parse_id(element_id), name=name)
    return _refresh()


@router.post("/ui/elements/{element_id}/details")
def details(element_id: str, description: str = Form(""), status: str = Form(""),
            caller: Caller = Depends(page_caller), db: Session = Depends(get_db, scope="function")):
    service.update_element(db, caller.actor, parse_id(element_id), description=description,
                           status=status or None)
    return _refresh()


@router.post("/ui/elements/delete")
def delete_many(request: Request, background: BackgroundTasks,
                ids: list[str] = Form(default=[]),
                caller: Caller = Depends(page_caller),
                db: Session = Depends(get_db, scope="function")):
    """Delete the selected elements: all of them, or none when one may not be deleted."""
    ids = [parse_id(value) for value in ids]
    if not ids:
        return PlainTextResponse("select at least one element", status_code=422)
    jobs = [deletion.request_deletion(db, caller.actor, element_id) for element_id in ids]
    db.commit()
    for job in jobs:
        background.add_task(run_job_and_tidy, request.app, job.id)
    response = _refresh()
    response.background = background
    return response


@router.post("/ui/elements/{element_id}/archive")
def archive_element(element_id: str, request: Request, background: BackgroundTasks,
                    caller: Caller = Depends(page_caller),
                    db: Session = Depends(get_db, scope="function")):
    """Start archiving an element's files (JOB-3); the page shows the job."""
    return _start_move(archive.ARCHIVE_JOB, element_id, request, background, caller, db)


@router.post("/ui/elements/{element_id}/restore")
def restore_element(element_id: str, request: Request, background: BackgroundTasks,
                    caller: Caller = Depends(page_caller),
                    db: Session = Depends(get_db, scope="function")):
    return _start_move(archive.RESTORE_JOB, element_id, request, background, caller, db)


def _start_move(kind: str, element_id: str, request: Request, background: BackgroundTasks,
                caller: Caller, db: Session) -> Response:
    job = archive.request_move(db, caller.actor, request.app.state.storages,
                               parse_id(element_id), kind)
    db.commit()
    background.add_task(run_job_and_tidy, request.app, job.id)
    response = _refresh()
    response.background = background
    return response


@router.post("/ui/elements/{element_id}/export")
def export_dataset(element_id: str, request: Request, background: BackgroundTasks,
                   folder: str = Form(default="", max_length=10_000),
                   files: bool = Form(default=False), metadata: bool = Form(default=False),
                   caller: Caller = Depends(page_caller),
                   db: Session = Depends(get_db, scope="function")):
    """Start an export (JOB-4) and go to the jobs monitor to watch it."""
    plan = export.request_export(db, caller.actor, request.app.state.storages,
                                 parse_id(element_id), folder=folder, files=files,
                                 metadata=metadata)
    db.commit()
    background.add_task(run_job_and_tidy, request.app, plan.job.id)
    return Response(status_code=204, headers={"HX-Redirect": "/jobs"}, background=background)

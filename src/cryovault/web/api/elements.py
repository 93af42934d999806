"""Elements of the hierarchy: create, list, get, edit, delete, path (SPEC WS-1 … WS-6)."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.storage import files
from cryovault.web.api.schemas import (
    DeletionOut,
    ElementIn,
    ElementOut,
    ElementPage,
    ElementPatch,
    PathEntryOut,
    parse_id,
)
from cryovault.web.background import run_job_and_tidy
from cryovault.web.context import current_actor, get_db
from cryovault.workspace import deletion
from cryovault.workspace import elements as service

router = APIRouter(tags=["elements"])


@router.post("/elements", response_model=ElementOut, status_code=201)
def create_element(body: ElementIn, request: Request, actor: Actor = Depends(current_actor),
                   db: Session = Depends(get_db, scope="function")):
    if body.kind == "file" and body.workflow_type is None and body.dataset_type is None:
        # A file always has bytes and a checksum: here, empty ones.
        file = files.create_empty_file(db, actor, request.app.state.storages,
                                       parent_id=body.parent_id, name=body.name,
                                       description=body.description)
        return ElementOut.of(file.element)
    view = service.create_element(
        db, actor, kind=body.kind, name=body.name, parent_id=body.parent_id,
        description=body.description, workflow_type=body.workflow_type,
        dataset_type=body.dataset_type,
    )
    return ElementOut.of(view)


@router.get("/elements", response_model=ElementPage)
def list_elements(
    parent_id: str | None = Query(default=None, description="omit for the root"),
    sort: str | None = Query(default=None, description="name | date | position"),
    order: str = Query(default="asc", description="asc | desc"),
    limit: int = Query(default=service.DEFAULT_PAGE),
    cursor: str | None = Query(default=None, max_length=2000),
    actor: Actor = Depends(current_actor),
    db: Session = Depends(get_db, scope="function"),
):
    parent = parse_id(parent_id) if parent_id else None
    page = service.list_children(db, actor, parent, sort=sort, order=order, limit=limit,
                                 cursor=cursor)
    return ElementPage(items=[ElementOut.of(v) for v in page.items], next_cursor=page.next_cursor)


@router.get("/elements/{element_id}", response_model=ElementOut)
def get_element(element_id: str, actor: Actor = Depends(current_actor),
                db: Session = Depends(get_db, scope="function")):
    return ElementOut.of(service.get_element(db, actor, parse_id(element_id)))


@router.patch("/elements/{element_id}", response_model=ElementOut)
def update_element(element_id: str, body: ElementPatch, actor: Actor = Depends(current_actor),
                   db: Session = Depends(get_db, scope="function")):
    view = service.update_element(
        db, actor, parse_id(element_id), name=body.name, description=body.description,
        status=body.status, workflow_type=body.workflow_type, dataset_type=body.dataset_type,
    )
    return ElementOut.of(view)


@router.delete("/elements/{element_id}", status_code=202, response_model=DeletionOut)
def delete_element(element_id: str, request: Request, background: BackgroundTasks,
                   actor: Actor = Depends(current_actor),
                   db: Session = Depends(get_db, scope="function")):
    job = deletion.request_deletion(db, actor, parse_id(element_id))
    db.commit()
    background.add_task(run_job_and_tidy, request.app, job.id)
    return JSONResponse({"job_id": str(job.id)}, status_code=202, background=background)


@router.get("/elements/{element_id}/path", response_model=list[PathEntryOut])
def element_path(element_id: str, actor: Actor = Depends(current_actor),
                 db: Session = Depends(get_db, scope="function")):
    return [PathEntryOut.of(e) for e in service.element_path(db, actor, parse_id(element_id))]

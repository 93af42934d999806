"""Search (SPEC PLT-2): `GET /api/v1/search` (stable contract) and the reindex job."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.search import jobs as search_jobs
from cryovault.search import service
from cryovault.web.api.content_schemas import SearchHitOut, SearchOut
from cryovault.web.api.schemas import DeletionOut
from cryovault.web.background import run_job_and_tidy
from cryovault.web.context import current_actor, get_db

router = APIRouter(tags=["search"])


@router.get("/search", response_model=SearchOut)
def search(q: str = Query(max_length=service.MAX_QUERY),
           in_: str | None = Query(default=None, alias="in",
                                   description="name,metadata,notes (default: all three)"),
           kinds: str | None = Query(default=None, description="folder,workflow,… (default: all)"),
           limit: int = Query(default=20), offset: int = Query(default=0),
           actor: Actor = Depends(current_actor),
           db: Session = Depends(get_db, scope="function")):
    page = service.search(db, actor, q, fields=service.parse_fields(in_),
                          kinds=service.parse_kinds(kinds), limit=limit, offset=offset)
    return SearchOut(items=[SearchHitOut.of_hit(h) for h in page.items], total=page.total,
                     total_exact=page.total_exact)


@router.post("/search/reindex", status_code=202, response_model=DeletionOut)
def reindex(request: Request, background: BackgroundTasks, actor: Actor = Depends(current_actor),
            db: Session = Depends(get_db, scope="function")):
    job = search_jobs.request_reindex(db, actor)
    db.commit()
    background.add_task(run_job_and_tidy, request.app, job.id)
    return JSONResponse({"job_id": str(job.id)}, status_code=202, background=background)

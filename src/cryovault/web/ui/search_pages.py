"""Search (PLT-2) and Samples (WS-9) pages of the portal."""

from __future__ import annotations

import re

from fastapi import APIRouter, BackgroundTasks, Depends, Form, Query, Request, Response
from fastapi.responses import HTMLResponse
from markupsafe import Markup, escape
from sqlalchemy.orm import Session

from cryovault.errors import Invalid
from cryovault.search import jobs as search_jobs
from cryovault.search import service as search_service
from cryovault.search.terms import PREFIX_MIN_LENGTH, words
from cryovault.web.api.schemas import parse_id
from cryovault.web.background import run_job_and_tidy
from cryovault.web.context import Caller, get_db
from cryovault.web.ui.common import page_caller, page_context, templates
from cryovault.workspace import samples
from cryovault.workspace.rules import KINDS

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 20
_WORD = re.compile(r"[^\W_]+")


def highlight(text: str, wanted: list[str]) -> Markup:
    """The snippet, escaped, with the words the search looked for in <mark>."""
    out = []
    last = 0
    for match in _WORD.finditer(text):
        normal = words(match.group())
        hit = normal and any(normal[0] == w or (len(w) >= PREFIX_MIN_LENGTH
                                                and normal[0].startswith(w)) for w in wanted)
        if hit:
            out.append(escape(text[last:match.start()]))
            out.append(Markup("<mark>") + escape(match.group()) + Markup("</mark>"))
            last = match.end()
    out.append(escape(text[last:]))
    return Markup("").join(out)


templates.env.filters["highlight"] = highlight


@router.get("/search", response_class=HTMLResponse)
def search_page(request: Request, q: str = Query("", max_length=search_service.MAX_QUERY),
                in_: list[str] = Query(default=[], alias="in"),
                kind: list[str] = Query(default=[]),
                page: int = Query(1, ge=1, le=500),
                caller: Caller = Depends(page_caller),
                db: Session = Depends(get_db, scope="function")):
    fields = tuple(f for f in search_service.FIELDS if f in in_) or search_service.FIELDS
    kinds = tuple(k for k in KINDS if k in kind) or None
    result = None
    error = None
    if q.strip():
        try:
            result = search_service.search(db, caller.actor, q, fields=fields, kinds=kinds,
                                           limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        except Invalid as exc:
            error = exc.message
    pages = 0 if result is None else (result.total + PAGE_SIZE - 1) // PAGE_SIZE
    return templates.TemplateResponse(request, "search.html", page_context(
        request, caller, q=q, fields=fields, all_fields=search_service.FIELDS, kinds=kinds or (),
        all_kinds=KINDS, result=result, error=error, page=page, pages=pages,
        can_reindex=bool(caller.actor.roles & {"workflow-admin", "customer-admin"})))


@router.post("/ui/search/reindex")
def reindex(request: Request, background: BackgroundTasks,
            caller: Caller = Depends(page_caller),
            db: Session = Depends(get_db, scope="function")):
    job = search_jobs.request_reindex(db, caller.actor)
    db.commit()
    background.add_task(run_job_and_tidy, request.app, job.id)
    return Response("The reindex job is running; see Jobs.", status_code=200,
                    background=background)


@router.get("/samples", response_class=HTMLResponse)
def samples_page(request: Request, q: str = Query("", max_length=255),
                 caller: Caller = Depends(page_caller),
                 db: Session = Depends(get_db, scope="function")):
    items = samples.list_samples(db, caller.actor, q, limit=500)
    return templates.TemplateResponse(request, "samples.html", page_context(
        request, caller, items=items, q=q))


@router.post("/ui/samples")
def create_sample(name: str = Form(""), description: str = Form(""),
                  caller: Caller = Depends(page_caller),
                  db: Session = Depends(get_db, scope="function")):
    view = samples.create_sample(db, caller.actor, name=name, description=description)
    return Response(status_code=204, headers={"HX-Redirect": f"/samples/{view.id}"})


@router.get("/samples/{sample_id}", response_class=HTMLResponse)
def sample_page(request: Request, sample_id: str, caller: Caller = Depends(page_caller),
                db: Session = Depends(get_db, scope="function")):
    detail = samples.get_sample(db, caller.actor, parse_id(sample_id, "sample"))
    return templates.TemplateResponse(request, "sample.html", page_context(
        request, caller, detail=detail, current=detail.view))

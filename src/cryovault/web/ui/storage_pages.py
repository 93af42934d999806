"""The storage page (PLT-3): each storage with its usage, refreshed every five minutes."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from cryovault.db.base import utcnow
from cryovault.storage.usage import storage_reports
from cryovault.web.context import Caller, get_db
from cryovault.web.ui.common import page_caller, page_context, templates

router = APIRouter(include_in_schema=False)

ROLE_LABELS = {"primary": "Primary (hot)", "archive": "Archive (cold)", "export": "Export"}


@router.get("/storage", response_class=HTMLResponse)
def storage_page(request: Request, caller: Caller = Depends(page_caller)):
    return templates.TemplateResponse(request, "storage.html", page_context(request, caller))


@router.get("/ui/storage/usage", response_class=HTMLResponse)
def storage_usage(request: Request, compact: bool = Query(False),
                  caller: Caller = Depends(page_caller),
                  db: Session = Depends(get_db, scope="function")):
    reports = storage_reports(db, request.app.state.storages)
    return templates.TemplateResponse(request, "partials/storage_usage.html", page_context(
        request, caller, reports=reports, compact=compact, refreshed_at=utcnow(),
        ROLE_LABELS=ROLE_LABELS))

"""The file page (SPEC WS-11): the viewer for the file's type, its details and downloads."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from cryovault.access.levels import COLLABORATOR
from cryovault.errors import Conflict, Invalid
from cryovault.storage import files, previews
from cryovault.web.api.schemas import parse_id
from cryovault.web.context import Caller, get_db
from cryovault.web.ui.common import page_caller, page_context, templates
from cryovault.workspace import elements

router = APIRouter(include_in_schema=False)


@router.get("/files/{file_id}", response_class=HTMLResponse)
def file_page(request: Request, file_id: str, caller: Caller = Depends(page_caller),
              db: Session = Depends(get_db, scope="function")):
    actor = caller.actor
    file = files.get_file(db, actor, parse_id(file_id, "file"))
    crumbs = elements.element_path(db, actor, file.id)
    kind, document, problem = "download", None, None
    try:
        files.refuse_flagged(file)
        source = previews.local_file(db, actor, request.app.state.settings,
                                     request.app.state.storages, file.id)
        kind = previews.kind_of(source)
        if kind == "image":
            previews.image_info(source)  # a damaged header is explained here, at once
        if kind in ("table", "json", "text"):
            document = previews.document_view(db, source, kind)
    except (Conflict, Invalid) as exc:
        problem = exc.message
        file = files.get_file(db, actor, file.id)  # the flag may just have been set
    return templates.TemplateResponse(request, "viewer.html", page_context(
        request, caller, file=file, el=file.element.element, crumbs=crumbs, kind=kind,
        document=document, problem=problem, COLLABORATOR=COLLABORATOR))

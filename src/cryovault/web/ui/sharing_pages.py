"""The sharing tab of the data panel (SPEC AC-1 … AC-4): editable by owners, read-only else."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from cryovault.access import sharing as service
from cryovault.access.users import search_users
from cryovault.errors import Invalid
from cryovault.web.api.schemas import parse_id
from cryovault.web.context import Caller, get_db
from cryovault.web.ui.common import page_caller, templates

router = APIRouter(include_in_schema=False)


def _render(request: Request, element_id: uuid.UUID, sharing: service.Sharing):
    return templates.TemplateResponse(request, "partials/sharing.html",
                                      {"sharing": sharing, "element_id": element_id})


def _replace(db: Session, caller: Caller, element_id: uuid.UUID, *, privacy: str | None = None,
             everybody: str | None = "", grants: dict[str, str] | None = None):
    current = service.get_sharing(db, caller.actor, element_id)
    if grants is None:
        grants = {g.username: g.level for g in current.grants}
    if privacy is None:
        privacy = current.privacy
    if everybody == "":
        everybody = current.everybody
    return service.set_sharing(db, caller.actor, element_id, privacy,
                               everybody if privacy == "public" else None,
                               list(grants.items()))


@router.get("/ui/elements/{element_id}/sharing", response_class=HTMLResponse)
def sharing_tab(request: Request, element_id: str, caller: Caller = Depends(page_caller),
                db: Session = Depends(get_db, scope="function")):
    eid = parse_id(element_id)
    return _render(request, eid, service.get_sharing(db, caller.actor, eid))


@router.post("/ui/elements/{element_id}/sharing/privacy", response_class=HTMLResponse)
def set_privacy(request: Request, element_id: str, privacy: str = Form(...),
                everybody: str = Form("viewer"), caller: Caller = Depends(page_caller),
                db: Session = Depends(get_db, scope="function")):
    eid = parse_id(element_id)
    result = _replace(db, caller, eid, privacy=privacy, everybody=everybody or "viewer")
    return _render(request, eid, result)


@router.post("/ui/elements/{element_id}/sharing/grants", response_class=HTMLResponse)
def add_or_change(request: Request, element_id: str, username: str = Form(""),
                  level: str = Form("viewer"), caller: Caller = Depends(page_caller),
                  db: Session = Depends(get_db, scope="function")):
    eid = parse_id(element_id)
    username = username.strip()
    if not username:
        raise Invalid("type the username of the person to share with")
    grants = {g.username.lower(): g.level
              for g in service.get_sharing(db, caller.actor, eid).grants}
    grants[username.lower()] = level
    return _render(request, eid, _replace(db, caller, eid, grants=grants))


@router.post("/ui/elements/{element_id}/sharing/remove", response_class=HTMLResponse)
def remove(request: Request, element_id: str, username: str = Form(...),
           caller: Caller = Depends(page_caller), db: Session = Depends(get_db, scope="function")):
    eid = parse_id(element_id)
    grants = {g.username: g.level for g in service.get_sharing(db, caller.actor, eid).grants
              if g.username.lower() != username.lower()}
    return _render(request, eid, _replace(db, caller, eid, grants=grants))


@router.get("/ui/users", response_class=HTMLResponse)
def user_options(request: Request, q: str = Query("", max_length=150),
                 username: str = Query("", max_length=150),
                 caller: Caller = Depends(page_caller),
                 db: Session = Depends(get_db, scope="function")):
    """Auto-completion: `q`, or `username` as the sharing form's input sends it."""
    query = (q or username).strip()
    users = search_users(db, query, 10) if query else []
    return templates.TemplateResponse(request, "partials/user_options.html", {"users": users})

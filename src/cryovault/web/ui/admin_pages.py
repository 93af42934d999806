"""Administration pages (SPEC ADM-3, ADM-4): the user panel, one user's roles and licence seats,
and the License page. Forms answer 204 with `HX-Refresh` (or `HX-Redirect`) on success and a
refused request with its message; the rights are checked by the services."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from cryovault.access import administration as admin
from cryovault.access import licences
from cryovault.access.config import AccessConfig
from cryovault.access.passwords import PASSWORD_RULE
from cryovault.access.roles import (
    ASSIGN_CUSTOMER_ADMIN,
    ASSIGN_ROLES,
    CUSTOMER_ADMIN,
    EDIT_USERS,
    MANAGE_LICENSES,
    VIEW_LICENSES,
    VIEW_USERS,
    may,
)
from cryovault.errors import DomainError
from cryovault.web.api.schemas import parse_id
from cryovault.web.context import Caller, access_config, get_db
from cryovault.web.ui.common import page_caller, page_context, templates

router = APIRouter(include_in_schema=False)


def _refresh() -> Response:
    return Response(status_code=204, headers={"HX-Refresh": "true"})


def _rights(caller: Caller) -> dict[str, bool]:
    roles = caller.actor.roles
    return {"view_users": may(roles, VIEW_USERS), "edit_users": may(roles, EDIT_USERS),
            "assign_roles": may(roles, ASSIGN_ROLES),
            "assign_customer_admin": may(roles, ASSIGN_CUSTOMER_ADMIN),
            "view_licenses": may(roles, VIEW_LICENSES),
            "manage_licenses": may(roles, MANAGE_LICENSES)}


@router.get("/admin")
def admin_home(caller: Caller = Depends(page_caller)):
    return RedirectResponse("/admin/users", status_code=303)


@router.get("/admin/users", response_class=HTMLResponse)
def users_page(request: Request, q: str = Query("", max_length=150),
               caller: Caller = Depends(page_caller),
               config: AccessConfig = Depends(access_config),
               db: Session = Depends(get_db, scope="function")):
    users = admin.list_users(db, caller.actor, q)
    summary = admin.summary(db, caller.actor, config)
    return templates.TemplateResponse(request, "admin_users.html", page_context(
        request, caller, users=users, summary=summary, q=q, can=_rights(caller),
        directory_configured=config.directory is not None, password_rule=PASSWORD_RULE))


@router.get("/ui/admin/directory", response_class=HTMLResponse)
def directory_suggestions(request: Request, q: str = Query("", max_length=1000),
                          caller: Caller = Depends(page_caller),
                          config: AccessConfig = Depends(access_config),
                          db: Session = Depends(get_db, scope="function")):
    """Auto-completion of the "add from the directory" field: the matches as a list, or the
    reason there are none (a message, not an error, so that typing goes on)."""
    candidates, message = [], None
    if q.strip():
        try:
            candidates = admin.search_directory(db, caller.actor, config, q, 10)
        except DomainError as exc:
            message = exc.message
    return templates.TemplateResponse(request, "partials/directory_suggestions.html",
                                      page_context(request, caller, candidates=candidates,
                                                   message=message, q=q))


@router.post("/ui/admin/users")
def create_user(request: Request, source: str = Form("local"), username: str = Form(""),
                email: str = Form(""), first_name: str = Form(""), last_name: str = Form(""),
                password: str = Form(""), password_confirmation: str = Form(""),
                caller: Caller = Depends(page_caller),
                config: AccessConfig = Depends(access_config),
                db: Session = Depends(get_db, scope="function")):
    if source == "directory":
        created = admin.add_directory_user(db, caller.actor, config, username)
    else:
        created = admin.add_local_user(
            db, caller.actor, config, username=username, password=password,
            password_confirmation=password_confirmation, email=email or None,
            first_name=first_name, last_name=last_name)
    return Response(status_code=204, headers={"HX-Redirect": f"/admin/users/{created.user.id}"})


@router.get("/admin/users/{user_id}", response_class=HTMLResponse)
def user_page(request: Request, user_id: str, caller: Caller = Depends(page_caller),
              config: AccessConfig = Depends(access_config),
              db: Session = Depends(get_db, scope="function")):
    item = admin.get_admin_user(db, caller.actor, parse_id(user_id, "user"))
    status = licences.license_status(db, config.licensing)
    assignable = [f for f in status.features
                  if f.feature not in item.licences and f.seats > 0]
    rights = _rights(caller)
    roles_offered = [r for r in item.missing_roles
                     if r != CUSTOMER_ADMIN or rights["assign_customer_admin"]]
    return templates.TemplateResponse(request, "admin_user.html", page_context(
        request, caller, item=item, can=rights, roles_offered=roles_offered,
        assignable=assignable, licensing=status, password_rule=PASSWORD_RULE))


@router.post("/ui/admin/users/{user_id}")
def edit_user(user_id: str, email: str = Form(""), first_name: str = Form(""),
              last_name: str = Form(""), password: str = Form(""),
              password_confirmation: str = Form(""), caller: Caller = Depends(page_caller),
              config: AccessConfig = Depends(access_config),
              db: Session = Depends(get_db, scope="function")):
    change_password = bool(password or password_confirmation)
    admin.update_user(db, caller.actor, config, parse_id(user_id, "user"), email=email,
                      first_name=first_name, last_name=last_name,
                      password=password if change_password else None,
                      password_confirmation=password_confirmation if change_password else None)
    return _refresh()


@router.post("/ui/admin/users/{user_id}/active")
def set_active(user_id: str, active: bool = Form(...), caller: Caller = Depends(page_caller),
               config: AccessConfig = Depends(access_config),
               db: Session = Depends(get_db, scope="function")):
    admin.update_user(db, caller.actor, config, parse_id(user_id, "user"), is_active=active)
    return _refresh()


@router.post("/ui/admin/users/{user_id}/roles")
def add_role(user_id: str, role: str = Form(""), caller: Caller = Depends(page_caller),
             db: Session = Depends(get_db, scope="function")):
    admin.assign_role(db, caller.actor, parse_id(user_id, "user"), role)
    return _refresh()


@router.post("/ui/admin/users/{user_id}/roles/{role}/remove")
def remove_role(user_id: str, role: str, caller: Caller = Depends(page_caller),
                db: Session = Depends(get_db, scope="function")):
    admin.unassign_role(db, caller.actor, parse_id(user_id, "user"), role)
    return _refresh()


@router.post("/ui/admin/users/{user_id}/licenses")
def add_seat(user_id: str, feature: str = Form(""), caller: Caller = Depends(page_caller),
             config: AccessConfig = Depends(access_config),
             db: Session = Depends(get_db, scope="function")):
    admin.assign_licence(db, caller.actor, config, parse_id(user_id, "user"), feature)
    return _refresh()


@router.post("/ui/admin/users/{user_id}/licenses/{feature}/remove")
def remove_seat(user_id: str, feature: str, caller: Caller = Depends(page_caller),
                db: Session = Depends(get_db, scope="function")):
    admin.unassign_licence(db, caller.actor, parse_id(user_id, "user"), feature)
    return _refresh()


@router.get("/admin/licenses", response_class=HTMLResponse)
def licenses_page(request: Request, caller: Caller = Depends(page_caller),
                  config: AccessConfig = Depends(access_config),
                  db: Session = Depends(get_db, scope="function")):
    status = licences.view_status(db, caller.actor, config.licensing)
    documents = {}
    for state in status.licenses:
        try:
            documents[state.row.id] = json.dumps(json.loads(state.row.document_json), indent=2,
                                                 ensure_ascii=False)
        except json.JSONDecodeError:
            documents[state.row.id] = state.row.document_json
    return templates.TemplateResponse(request, "admin_licenses.html", page_context(
        request, caller, status=status, documents=documents, can=_rights(caller)))


@router.post("/ui/admin/licenses")
def install_license(key: str = Form(""), caller: Caller = Depends(page_caller),
                    config: AccessConfig = Depends(access_config),
                    db: Session = Depends(get_db, scope="function")):
    licences.install_license(db, caller.actor, config.licensing, key)
    return _refresh()

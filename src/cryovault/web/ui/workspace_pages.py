"""The workspace (SPEC WS-5): explorer tree, breadcrumb, central area, data panel."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from cryovault.access.levels import COLLABORATOR, OWNER
from cryovault.lifecycle.archive import archived_elements
from cryovault.preferences import platform_preferences
from cryovault.web.api.schemas import parse_id
from cryovault.web.context import Caller, get_db
from cryovault.web.ui.common import page_caller, page_context, templates
from cryovault.workspace import elements as service
from cryovault.workspace.options import create_options
from cryovault.workspace.recent import record_visit
from cryovault.workspace.rules import STATUSES
from cryovault.workspace.templates import MANAGED_DATASET_TYPES
from cryovault.workspace.views import ElementView

router = APIRouter(include_in_schema=False)

VIEWS = ("list", "cards")
TREE_KINDS = ("folder", "workflow", "step", "dataset")
PAGE_SIZE = 100


def can_upload_into(current: ElementView) -> bool:
    """Offer uploads where files may go (WS-10): steps and hand-filled datasets."""
    el = current.element
    return (not current.is_card and not el.deleting and current.level >= COLLABORATOR
            and (el.kind == "step" or (el.kind == "dataset"
                                       and el.dataset_type not in MANAGED_DATASET_TYPES)))


def _step_statuses(db: Session, caller: Caller, items: list[ElementView]) -> dict:
    """The statuses of each listed workflow's steps, for its card (WS-3)."""
    workflow_ids = [v.id for v in items if v.element.kind == "workflow" and not v.is_card]
    return service.child_statuses(db, caller.actor, workflow_ids) if workflow_ids else {}


@router.get("/", include_in_schema=False)
def root():
    return RedirectResponse("/workspace", status_code=303)


@router.get("/workspace", response_class=HTMLResponse)
@router.get("/workspace/{element_id}", response_class=HTMLResponse)
def workspace(
    request: Request,
    element_id: str | None = None,
    view: str = Query("list"),
    sort: str | None = Query(None),
    order: str = Query("asc"),
    cursor: str | None = Query(None, max_length=2000),
    caller: Caller = Depends(page_caller),
    db: Session = Depends(get_db, scope="function"),
):
    actor = caller.actor
    current = None
    path = []
    if element_id is not None:
        current = service.get_element(db, actor, parse_id(element_id))
        path = service.element_path(db, actor, current.id)
        if not current.is_card:
            record_visit(db, actor, current.element)
    view = view if view in VIEWS else "list"
    page = service.list_children(db, actor, current.id if current else None, sort=sort or None,
                                 order=order, limit=PAGE_SIZE, cursor=cursor)
    options = None
    if current is None or (not current.is_card and current.level >= COLLABORATOR):
        options = create_options(db, current.element if current else None)
    context = page_context(
        request, caller, current=current, crumbs=path, items=page.items,
        can_upload=current is not None and can_upload_into(current),
        export_public_path=platform_preferences(db).export_public_path,
        archived=archived_elements(db, request.app.state.storages,
                                   [v.id for v in page.items if not v.is_card]
                                   + ([current.id] if current and not current.is_card else [])),
        next_cursor=page.next_cursor, view=view, sort=sort or "", order=order,
        options=options, step_statuses=_step_statuses(db, caller, page.items),
        statuses=STATUSES, OWNER=OWNER, COLLABORATOR=COLLABORATOR,
    )
    if request.headers.get("hx-request") and request.headers.get("hx-target") == "central":
        return templates.TemplateResponse(request, "partials/central.html", context)
    return templates.TemplateResponse(request, "workspace.html", context)


@router.get("/ui/tree", response_class=HTMLResponse)
def tree(
    request: Request,
    parent: str | None = Query(None),
    sort: str = Query("name"),
    order: str = Query("asc"),
    cursor: str | None = Query(None, max_length=2000),
    caller: Caller = Depends(page_caller),
    db: Session = Depends(get_db, scope="function"),
):
    """One level of the explorer tree; deeper levels load when a node is unfolded."""
    parent_id = parse_id(parent) if parent else None
    sort = sort if sort in ("name", "date") else "name"
    # Files are listed in the central area, not in the tree.
    page = service.list_children(db, caller.actor, parent_id, sort=sort, order=order,
                                 limit=PAGE_SIZE, cursor=cursor, kinds=TREE_KINDS)
    return templates.TemplateResponse(request, "partials/tree.html", {
        "items": page.items, "next_cursor": page.next_cursor, "parent": parent or "",
        "sort": sort, "order": order,
    })


@router.get("/ui/elements/{element_id}/panel", response_class=HTMLResponse)
def data_panel(request: Request, element_id: str, caller: Caller = Depends(page_caller),
               db: Session = Depends(get_db, scope="function")):
    current = service.get_element(db, caller.actor, parse_id(element_id))
    return templates.TemplateResponse(request, "partials/panel.html", page_context(
        request, caller, current=current, statuses=STATUSES, COLLABORATOR=COLLABORATOR))


"""Element services (SPEC WS-1 … WS-4, WS-6): create, read, list, path and update.

Every function takes the acting user and goes through `access` for its permission check.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, literal, select, tuple_, update
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.access.guard import require_access
from cryovault.access.levels import CARD, COLLABORATOR, OWNER
from cryovault.access.sharing import create_own_acl
from cryovault.access.visibility import access_expr, level_expr, visible_clause
from cryovault.db.base import new_id, utcnow
from cryovault.db.elements import Element, ElementAncestor
from cryovault.db.users import User
from cryovault.errors import Conflict, Invalid
from cryovault.preferences import max_folder_depth
from cryovault.search import index as search_index
from cryovault.workspace.rules import (
    KINDS_WITH_STATUS,
    check_containment,
    validate_description,
    validate_kind,
    validate_name,
    validate_status,
)
from cryovault.workspace.templates import (
    DATASET_TYPES,
    MANAGED_DATASET_TYPES,
    allowed_dataset_types,
    get_template,
)
from cryovault.workspace.views import ElementView, Page, PathEntry

SORTS = ("name", "date", "position")
ORDERS = ("asc", "desc")
DEFAULT_PAGE = 100
MAX_PAGE = 1000


def _children_of(parent_id: uuid.UUID | None):
    return Element.parent_id == parent_id if parent_id else Element.parent_id.is_(None)


def _insert_element(
    db: Session,
    actor: Actor,
    parent: Element | None,
    kind: str,
    name: str,
    *,
    description: str = "",
    workflow_type: str | None = None,
    dataset_type: str | None = None,
    position: int | None = None,
) -> Element:
    parent_id = parent.id if parent else None
    if position is None:
        last = db.scalar(select(func.max(Element.position)).where(_children_of(parent_id)))
        position = 0 if last is None else last + 1
    now = utcnow()
    element = Element(
        id=new_id(),
        kind=kind,
        name=name,
        name_key=name.casefold()[:255],
        parent_id=parent_id,
        description=description,
        status="not_started" if kind in KINDS_WITH_STATUS else None,
        workflow_type=workflow_type,
        dataset_type=dataset_type,
        position=position,
        depth=parent.depth + 1 if parent else 0,
        creator_id=actor.user_id,
        # A new element refers to its parent's permission set (AC-3); a root one gets its own.
        acl_id=parent.acl_id if parent else new_id(),
        created_at=now,
        updated_at=now,
    )
    db.add(element)
    db.flush()
    if parent is None:
        create_own_acl(db, element, actor.user_id)
    search_index.add_element(db, element)
    db.execute(
        insert(ElementAncestor).values(element_id=element.id, ancestor_id=element.id, depth=0)
    )
    if parent is not None:
        db.execute(
            insert(ElementAncestor).from_select(
                ["element_id", "ancestor_id", "depth"],
                select(
                    literal(element.id, type_=ElementAncestor.element_id.type),
                    ElementAncestor.ancestor_id,
                    ElementAncestor.depth + 1,
                ).where(ElementAncestor.element_id == parent.id),
            )
        )
    return element


def create_element(
    db: Session,
    actor: Actor,
    *,
    kind: str,
    name: str,
    parent_id: uuid.UUID | None = None,
    description: str = "",
    workflow_type: str | None = None,
    dataset_type: str | None = None,
) -> ElementView:
    validate_kind(kind)
    name = validate_name(name)
    description = validate_description(description or "")
    parent = None
    parent_level = OWNER  # a root element gets its own set with the actor as owner
    if parent_id is not None:
        parent, parent_level = require_access(db, actor, parent_id, COLLABORATOR,
                                              "create elements in")
    check_containment(parent.kind if parent else None, kind)

    if kind != "workflow" and workflow_type is not None:
        raise Invalid("only a workflow has a workflow_type")
    if kind != "dataset" and dataset_type is not None:
        raise Invalid("only a dataset has a dataset_type")

    if kind == "folder":
        depth = parent.depth + 1 if parent else 0
        limit = max_folder_depth(db)
        if depth > limit:
            raise Invalid(
                f"folders can be nested at most {limit + 1} levels deep (maximum folder depth "
                f"preference is {limit}); create a workflow here instead"
            )
    elif kind == "workflow":
        template = get_template("free" if workflow_type is None else workflow_type)
        workflow_type = template.type
    elif kind == "step":
        assert parent is not None
        template = get_template(parent.workflow_type or "free")
        if not template.user_steps:
            raise Invalid(
                f"a {template.label} workflow has the fixed steps "
                f"{', '.join(s.name for s in template.steps)}; only free workflows take new steps"
            )
    elif kind == "dataset":
        assert parent is not None
        dataset_type = "free" if dataset_type is None else dataset_type
        if dataset_type not in DATASET_TYPES:
            raise Invalid(
                f"unknown dataset type {dataset_type!r}: choose one of {', '.join(DATASET_TYPES)}"
            )
        workflow = db.get(Element, parent.parent_id)
        assert workflow is not None
        allowed = allowed_dataset_types(workflow.workflow_type or "free", parent.name)
        if dataset_type not in allowed:
            raise Invalid(
                f"step {parent.name!r} of this workflow accepts datasets of type "
                f"{', '.join(allowed)}, not {dataset_type}"
            )
    elif kind == "file" and parent is not None and parent.dataset_type in MANAGED_DATASET_TYPES:
        raise Invalid(
            f"dataset {parent.name!r} is a {parent.dataset_type} filled by the platform; "
            "files cannot be added to it by hand"
        )

    element = _insert_element(
        db, actor, parent, kind, name, description=description,
        workflow_type=workflow_type, dataset_type=dataset_type,
    )
    if kind == "workflow":
        for index, step in enumerate(get_template(workflow_type or "free").steps):
            _insert_element(db, actor, element, "step", step.name, position=index)
    db.flush()
    # The new element uses its parent's permission set, so the actor's level is the parent's.
    return ElementView(element, parent_level, actor.username)


def _creator_name(db: Session, element: Element) -> str | None:
    if element.creator_id is None:
        return None
    return db.scalar(select(User.username).where(User.id == element.creator_id))


def get_element(db: Session, actor: Actor, element_id: uuid.UUID) -> ElementView:
    """An element the actor can see (cards included); a deleting one answers 409."""
    element, level = require_access(db, actor, element_id, CARD, "open")
    return ElementView(element, level, _creator_name(db, element))


def _encode_cursor(value: Any, element_id: uuid.UUID) -> str:
    if isinstance(value, datetime):
        value = value.isoformat()
    raw = json.dumps([value, str(element_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: str) -> tuple[Any, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, element_id = json.loads(raw)
        if sort == "date":
            value = datetime.fromisoformat(value)
            if value.tzinfo is None:
                raise ValueError
        elif sort == "position":
            if not isinstance(value, int) or not -(2**31) <= value < 2**31:
                raise ValueError
        elif not isinstance(value, str) or "\x00" in value:
            raise ValueError
        else:
            value.encode("utf-8")  # lone surrogates cannot be compared by the database
        return value, uuid.UUID(element_id)
    except (ValueError, TypeError, OverflowError, UnicodeError, binascii.Error,
            json.JSONDecodeError):
        raise Invalid("the cursor is not valid; start again from the first page") from None


def list_children(
    db: Session,
    actor: Actor,
    parent_id: uuid.UUID | None,
    *,
    sort: str | None = None,
    order: str = "asc",
    limit: int = DEFAULT_PAGE,
    cursor: str | None = None,
    kinds: tuple[str, ...] | None = None,
) -> Page:
    """One page of the children the actor may see, in one query (keyset pagination);
    `kinds` narrows it to some kinds of element."""
    parent = None
    if parent_id is not None:
        parent, _ = require_access(db, actor, parent_id, CARD, "open")
    if not sort:
        sort = "position" if parent is not None and parent.kind == "workflow" else "name"
    if sort not in SORTS:
        raise Invalid(f"sort must be one of {', '.join(SORTS)}")
    if order not in ORDERS:
        raise Invalid("order must be asc or desc")
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit must be between 1 and {MAX_PAGE}")

    key = {"name": Element.name_key, "date": Element.created_at, "position": Element.position}[sort]
    access = access_expr(actor).label("access")
    stmt = (
        select(Element, access, User.username)
        .outerjoin(User, User.id == Element.creator_id)
        .where(_children_of(parent_id), visible_clause(actor))
    )
    if kinds is not None:
        stmt = stmt.where(Element.kind.in_(kinds))
    elif parent_id is None:
        stmt = stmt.where(Element.kind != "sample")  # samples have their own page (WS-9)
    if cursor:
        value, after_id = _decode_cursor(cursor, sort)
        boundary = tuple_(key, Element.id)
        stmt = stmt.where(boundary > tuple_(value, after_id) if order == "asc"
                          else boundary < tuple_(value, after_id))
    if order == "asc":
        stmt = stmt.order_by(key.asc(), Element.id.asc())
    else:
        stmt = stmt.order_by(key.desc(), Element.id.desc())
    rows = db.execute(stmt.limit(limit + 1)).all()
    items = [ElementView(el, level, creator) for el, level, creator in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1].element
        sort_value = {"name": last.name_key, "date": last.created_at,
                      "position": last.position}[sort]
        next_cursor = _encode_cursor(sort_value, last.id)
    return Page(items, next_cursor)


def element_path(db: Session, actor: Actor, element_id: uuid.UUID) -> list[PathEntry]:
    """The breadcrumb from the root down to the element (ancestors are cards at least)."""
    require_access(db, actor, element_id, CARD, "open")
    rows = db.execute(
        select(Element.id, Element.kind, Element.name)
        .join(ElementAncestor, ElementAncestor.ancestor_id == Element.id)
        .where(ElementAncestor.element_id == element_id)
        .order_by(ElementAncestor.depth.desc())
    ).all()
    return [PathEntry(*row) for row in rows]


def update_element(
    db: Session,
    actor: Actor,
    element_id: uuid.UUID,
    *,
    name: str | None = None,
    description: str | None = None,
    status: str | None = None,
    workflow_type: str | None = None,
    dataset_type: str | None = None,
) -> ElementView:
    """Rename, describe or set the status of an element (collaborators and owners)."""
    element, _ = require_access(db, actor, element_id, COLLABORATOR, "edit")
    if workflow_type is not None and workflow_type != element.workflow_type:
        raise Invalid("the type of a workflow is chosen when it is created and can never change")
    if dataset_type is not None and dataset_type != element.dataset_type:
        raise Invalid("the type of a dataset is chosen when it is created and can never change")
    values: dict[str, Any] = {}
    if name is not None:
        if element.kind == "step" and element.parent_id is not None:
            workflow = db.get(Element, element.parent_id)
            if workflow is not None and get_template(workflow.workflow_type or "free").steps:
                raise Invalid("the steps of a template workflow keep their template names")
        values["name"] = validate_name(name)
        values["name_key"] = values["name"].casefold()[:255]
    if description is not None:
        values["description"] = validate_description(description)
    if status is not None:
        values["status"] = validate_status(element.kind, status)
    if values:
        values["updated_at"] = utcnow()
        # Guarded on the deletion flag in the same statement: a rename racing a delete either
        # lands before the delete was requested or is refused.
        result = db.execute(
            update(Element)
            .where(Element.id == element_id, Element.deleting.is_(False))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            raise Conflict(f"{element.kind} {element.name!r} is being deleted")
        if "name" in values or "description" in values:
            search_index.reindex_element(db, element_id)
        db.flush()
        db.refresh(element)
    return get_element(db, actor, element_id)


def child_statuses(
    db: Session, actor: Actor, parent_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[tuple[str, str | None]]]:
    """Name and status of the steps of each workflow, in template order (for workflow cards)."""
    rows = db.execute(
        select(Element.parent_id, Element.name, Element.status)
        .where(Element.parent_id.in_(parent_ids), Element.kind == "step",
               level_expr(actor).is_not(None))
        .order_by(Element.parent_id, Element.position)
    ).all()
    result: dict[uuid.UUID, list[tuple[str, str | None]]] = {}
    for parent_id, name, status in rows:
        result.setdefault(parent_id, []).append((name, status))
    return result

"""Visibility and permission levels of elements, computed in SQL (SPEC AC-1 … AC-5).

A user's level on an element is the highest grant of the element's permission set to the user or
to Everybody. An element the user has no level on is still shown as a bare *card* when a
permission set that does grant the user something is defined strictly below it (AC-4), so that
the path down to the shared part can be unfolded. Workflow admins see everything as owners.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, literal, or_, select
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.access.levels import CARD, OWNER
from cryovault.db.elements import Acl, AclGrant, Element, ElementAncestor


def _grant_applies(actor: Actor) -> ColumnElement[bool]:
    return or_(AclGrant.user_id == actor.user_id, AclGrant.user_id.is_(None))


def level_expr(actor: Actor, element: Any = Element) -> ColumnElement[Any]:
    """The actor's grant level on `element` (NULL when none), as a correlated subquery."""
    if actor.is_workflow_admin:
        return literal(OWNER)
    return (
        select(func.max(AclGrant.level))
        .where(AclGrant.acl_id == element.acl_id, _grant_applies(actor))
        .correlate(element)
        .scalar_subquery()
    )


def card_ancestor_ids(actor: Actor) -> Select[tuple[uuid.UUID]]:
    """Ids of elements strictly above the defining element of a set that grants the actor."""
    return (
        select(ElementAncestor.ancestor_id)
        .join(Acl, Acl.element_id == ElementAncestor.element_id)
        .join(AclGrant, AclGrant.acl_id == Acl.id)
        .where(ElementAncestor.depth > 0, _grant_applies(actor))
    )


def access_expr(actor: Actor, element: Any = Element) -> ColumnElement[Any]:
    """The actor's access to `element`: a level, CARD (0), or NULL when it is invisible."""
    if actor.is_workflow_admin:
        return literal(OWNER)
    level = level_expr(actor, element)
    return case(
        (level.is_not(None), level),
        (element.id.in_(card_ancestor_ids(actor)), literal(CARD)),
        else_=None,
    )


def visible_clause(actor: Actor, element: Any = Element) -> ColumnElement[bool]:
    if actor.is_workflow_admin:
        return literal(True)
    return or_(
        level_expr(actor, element).is_not(None),
        element.id.in_(card_ancestor_ids(actor)),
    )


def readable_acl_ids(actor: Actor) -> Select[tuple[uuid.UUID]]:
    """The permission sets that grant the actor at least viewer: an element is readable (has a
    level, not just a card) exactly when its `acl_id` is one of them. The set form of
    `level_expr(...) IS NOT NULL`, for queries that filter many rows (search)."""
    return select(AclGrant.acl_id).where(_grant_applies(actor))


def readable_clause(actor: Actor, acl_id: Any) -> ColumnElement[bool]:
    """`acl_id` (a column holding an element's permission set) grants the actor a level."""
    if actor.is_workflow_admin:
        return literal(True)
    return acl_id.in_(readable_acl_ids(actor))


def access_level(db: Session, actor: Actor, element_id: uuid.UUID) -> int | None:
    """The actor's access to one element: a level, CARD, or None when it is invisible."""
    if actor.is_workflow_admin:
        return OWNER
    level = db.scalar(
        select(func.max(AclGrant.level))
        .join(Element, Element.acl_id == AclGrant.acl_id)
        .where(Element.id == element_id, _grant_applies(actor))
    )
    if level is not None:
        return level
    if db.get_bind().dialect.name == "sqlite":
        # `:id IN (uncorrelated set)`: built from the actor's few grants outwards. SQLite, without
        # statistics, runs the join below from ancestor_id and walks every descendant of a large
        # subtree (tens of ms under a 20,000-file dataset).
        target = literal(element_id, type_=ElementAncestor.ancestor_id.type)
        card = db.scalar(select(literal(1)).where(target.in_(card_ancestor_ids(actor))))
    else:
        # PostgreSQL's planner picks the cheap side of this join from its statistics; the IN
        # form would build the actor's whole card set for every check.
        card = db.scalar(
            select(literal(1))
            .select_from(ElementAncestor)
            .join(Acl, Acl.element_id == ElementAncestor.element_id)
            .join(AclGrant, AclGrant.acl_id == Acl.id)
            .where(ElementAncestor.ancestor_id == element_id, ElementAncestor.depth > 0,
                   _grant_applies(actor))
            .limit(1)
        )
    return CARD if card else None

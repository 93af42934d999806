"""Permission sets: creation with a new root element, inheritance by reference, and the
sharing panel's read and replace (SPEC AC-1 … AC-4)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.access.guard import require_access
from cryovault.access.levels import (
    EVERYBODY_LEVELS,
    OWNER,
    VIEWER,
    level_name,
    parse_grant_level,
)
from cryovault.access.users import users_by_username
from cryovault.access.visibility import access_level
from cryovault.db.base import utcnow
from cryovault.db.elements import Acl, AclGrant, Element, ElementAncestor
from cryovault.db.users import User
from cryovault.errors import Invalid
from cryovault.search import index as search_index


@dataclass(frozen=True)
class Grant:
    username: str
    level: str
    user_id: uuid.UUID | None = None
    display_name: str = ""


@dataclass(frozen=True)
class Sharing:
    privacy: str
    everybody: str | None
    inherited: bool
    inherited_from_id: uuid.UUID | None
    inherited_from_name: str | None
    grants: list[Grant]
    can_edit: bool


def create_own_acl(db: Session, element: Element, owner_id: uuid.UUID) -> Acl:
    """A private permission set with `owner_id` as its owner, defined on `element`.

    The element must already carry the new set's id in `acl_id` and be flushed."""
    acl = Acl(id=element.acl_id, element_id=element.id)
    db.add(acl)
    db.flush()
    db.add(AclGrant(acl_id=acl.id, user_id=owner_id, level=OWNER))
    return acl


def get_sharing(db: Session, actor: Actor, element_id: uuid.UUID) -> Sharing:
    element, level = require_access(db, actor, element_id, VIEWER, "see the sharing of")
    return _read_sharing(db, element, can_edit=level >= OWNER)


def _read_sharing(db: Session, element: Element, can_edit: bool) -> Sharing:
    acl = db.get(Acl, element.acl_id)
    assert acl is not None
    rows = db.execute(
        select(AclGrant.level, User)
        .outerjoin(User, User.id == AclGrant.user_id)
        .where(AclGrant.acl_id == acl.id)
    ).all()
    everybody = None
    grants: list[Grant] = []
    for grant_level, user in rows:
        if user is None:
            everybody = level_name(grant_level)
        else:
            name = f"{user.first_name} {user.last_name}".strip()
            grants.append(Grant(user.username, level_name(grant_level), user.id, name))
    grants.sort(key=lambda g: (-parse_grant_level(g.level), g.username.lower()))
    inherited = acl.element_id != element.id
    source = db.get(Element, acl.element_id) if inherited else None
    return Sharing(
        privacy="public" if everybody else "private",
        everybody=everybody,
        inherited=inherited,
        inherited_from_id=source.id if source else None,
        inherited_from_name=source.name if source else None,
        grants=grants,
        can_edit=can_edit,
    )


def set_sharing(
    db: Session,
    actor: Actor,
    element_id: uuid.UUID,
    privacy: str,
    everybody: str | None,
    grants: list[tuple[str, str]],
) -> Sharing:
    """Replace the element's grants; the element stops inheriting from its parent (AC-3)."""
    element, _ = require_access(db, actor, element_id, OWNER, "change the sharing of")
    if privacy not in ("private", "public"):
        raise Invalid("privacy must be 'private' or 'public'")
    if privacy == "private" and everybody is not None:
        raise Invalid("a private element cannot be shared with Everybody; make it public first")
    if privacy == "public":
        everybody = everybody or "viewer"
        if everybody not in EVERYBODY_LEVELS:
            raise Invalid("Everybody can be viewer or collaborator, not " + repr(everybody))
    levels: dict[str, int] = {}
    for username, level in grants:
        key = username.lower()
        if key in levels:
            raise Invalid(f"user {username!r} is listed twice; give each user one level")
        levels[key] = parse_grant_level(level)
    users = users_by_username(db, levels)
    unknown = sorted(set(levels) - set(users))
    if unknown:
        raise Invalid("no such user: " + ", ".join(unknown))
    if OWNER not in levels.values():
        raise Invalid(f"{element.kind} {element.name!r} must keep at least one owner")

    acl = db.get(Acl, element.acl_id)
    assert acl is not None
    if acl.element_id != element.id:
        # Break inheritance: a new set for this element and everything below it that still
        # referred to the inherited set.
        old_acl_id = acl.id
        acl = Acl(element_id=element.id)
        db.add(acl)
        db.flush()
        subtree = select(ElementAncestor.element_id).where(
            ElementAncestor.ancestor_id == element.id
        )
        db.execute(
            update(Element)
            .where(Element.acl_id == old_acl_id, Element.id.in_(subtree))
            .values(acl_id=acl.id)
            .execution_options(synchronize_session=False)
        )
        db.expire(element)
    else:
        db.query(AclGrant).filter(AclGrant.acl_id == acl.id).delete(synchronize_session=False)
    for key, level in levels.items():
        db.add(AclGrant(acl_id=acl.id, user_id=users[key].id, level=level))
    if everybody:
        db.add(AclGrant(acl_id=acl.id, user_id=None, level=EVERYBODY_LEVELS[everybody]))
    db.execute(update(Element).where(Element.id == element_id).values(updated_at=utcnow()))
    db.flush()
    search_index.refresh_acl(db, acl.id)  # who may find its elements (SPEC AC-5, PLT-2)
    db.refresh(element)
    # The actor may have handed ownership to others: report what they may do now.
    return _read_sharing(db, element, can_edit=(access_level(db, actor, element.id) or 0) >= OWNER)

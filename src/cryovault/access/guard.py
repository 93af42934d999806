"""The one gate every element operation passes: existence, visibility, level, deletion state."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.access.levels import CARD, level_name
from cryovault.access.visibility import access_level
from cryovault.db.elements import Element
from cryovault.errors import Conflict, Forbidden, NotFound


def not_found(element_id: object) -> NotFound:
    return NotFound(f"no element with id {element_id} (or you have no access to it)")


def require_access(
    db: Session, actor: Actor, element_id: uuid.UUID, minimum: int, action: str
) -> tuple[Element, int]:
    """Load an element the actor may act on, or raise.

    Invisible elements answer NotFound, so that existence is never revealed; a visible element
    being deleted answers Conflict; too low a level answers Forbidden naming the level needed.
    """
    element = db.get(Element, element_id)
    if element is None:
        raise not_found(element_id)
    level = access_level(db, actor, element_id)
    if level is None:
        raise not_found(element_id)
    if element.deleting:
        raise Conflict(f"{element.kind} {element.name!r} is being deleted")
    if level < minimum:
        if level == CARD:
            raise Forbidden(
                f"{element.kind} {element.name!r} is only shown to you as a path to something "
                f"shared with you; you cannot {action} it"
            )
        raise Forbidden(
            f"you are {level_name(level)} of {element.kind} {element.name!r}; "
            f"to {action} it you must be {level_name(minimum)}"
        )
    return element, level

"""Recently used folders and workflows of a user (the dashboard, SPEC PLT-1)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.access.visibility import access_expr, visible_clause
from cryovault.db.base import utcnow
from cryovault.db.elements import Element, RecentVisit
from cryovault.db.users import User
from cryovault.workspace.views import ElementView

TRACKED_KINDS = ("folder", "workflow")


def record_visit(db: Session, actor: Actor, element: Element) -> None:
    if element.kind not in TRACKED_KINDS:
        return
    visit = db.get(RecentVisit, (actor.user_id, element.id))
    if visit is None:
        db.add(RecentVisit(user_id=actor.user_id, element_id=element.id, visited_at=utcnow()))
    else:
        visit.visited_at = utcnow()
    db.flush()


def recent_elements(db: Session, actor: Actor, limit: int = 8) -> list[ElementView]:
    """The actor's last visited folders and workflows that they can still see, newest first."""
    rows = db.execute(
        select(Element, access_expr(actor), User.username)
        .join(RecentVisit, RecentVisit.element_id == Element.id)
        .outerjoin(User, User.id == Element.creator_id)
        .where(RecentVisit.user_id == actor.user_id, Element.deleting.is_(False),
               visible_clause(actor))
        .order_by(RecentVisit.visited_at.desc())
        .limit(limit)
    ).all()
    return [ElementView(el, level, creator) for el, level, creator in rows]


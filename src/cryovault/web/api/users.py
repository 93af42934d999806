"""Users as others see them: auto-completion for the sharing panel."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.access.users import search_users
from cryovault.web.api.schemas import UserBrief
from cryovault.web.context import current_actor, get_db

router = APIRouter(tags=["users"])


@router.get("/users", response_model=list[UserBrief])
def find_users(q: str = Query(default="", max_length=150),
               limit: int = Query(default=20, ge=1, le=100),
               actor: Actor = Depends(current_actor),
               db: Session = Depends(get_db, scope="function")):
    return [UserBrief(username=u.username, email=u.email,
                      display_name=f"{u.first_name} {u.last_name}".strip() or u.username)
            for u in search_users(db, q, limit)]

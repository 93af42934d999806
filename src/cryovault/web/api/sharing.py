"""The sharing panel of an element (SPEC AC-1 … AC-4)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from cryovault.access import sharing as service
from cryovault.access.actor import Actor
from cryovault.web.api.schemas import SharingIn, SharingOut, parse_id
from cryovault.web.context import current_actor, get_db

router = APIRouter(tags=["sharing"])


@router.get("/elements/{element_id}/sharing", response_model=SharingOut)
def get_sharing(element_id: str, actor: Actor = Depends(current_actor),
                db: Session = Depends(get_db, scope="function")):
    return SharingOut.of(service.get_sharing(db, actor, parse_id(element_id)))


@router.put("/elements/{element_id}/sharing", response_model=SharingOut)
def put_sharing(element_id: str, body: SharingIn, actor: Actor = Depends(current_actor),
                db: Session = Depends(get_db, scope="function")):
    result = service.set_sharing(
        db, actor, parse_id(element_id), body.privacy, body.everybody,
        [(g.username, g.level) for g in body.grants],
    )
    return SharingOut.of(result)

"""Samples (SPEC WS-9): register, list, open with what refers to them, link to elements."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.web.api.content_schemas import (
    MetadataOut,
    ReferenceOut,
    SampleIn,
    SampleLinkIn,
    SampleList,
    SampleOut,
)
from cryovault.web.api.schemas import ElementOut, parse_id
from cryovault.web.context import current_actor, get_db
from cryovault.workspace import samples
from cryovault.workspace.views import ElementView

router = APIRouter(tags=["samples"])


@router.get("/samples", response_model=SampleList)
def list_samples(q: str = Query(default="", max_length=255),
                 limit: int = Query(default=200),
                 actor: Actor = Depends(current_actor),
                 db: Session = Depends(get_db, scope="function")):
    return SampleList(items=[ElementOut.of(v) for v in samples.list_samples(db, actor, q,
                                                                           limit)])


@router.post("/samples", response_model=ElementOut, status_code=201)
def create_sample(body: SampleIn, actor: Actor = Depends(current_actor),
                  db: Session = Depends(get_db, scope="function")):
    fields = [samples.SampleField(f.name, f.type, f.value, f.quantity, f.unit)
              for f in body.metadata]
    view = samples.create_sample(db, actor, name=body.name, description=body.description,
                                 fields=fields)
    return ElementOut.of(view)


@router.get("/samples/{sample_id}", response_model=SampleOut)
def get_sample(sample_id: str, actor: Actor = Depends(current_actor),
               db: Session = Depends(get_db, scope="function")):
    detail = samples.get_sample(db, actor, parse_id(sample_id, "sample"))
    return SampleOut(
        sample=ElementOut.of(detail.view), metadata=MetadataOut.of(detail.metadata),
        referred_by=[ElementOut.of(ElementView(r.element, 1, None)) for r in detail.referrers],
    )


@router.post("/elements/{element_id}/samples", response_model=ReferenceOut, status_code=201)
def link_sample(element_id: str, body: SampleLinkIn, actor: Actor = Depends(current_actor),
                db: Session = Depends(get_db, scope="function")):
    return ReferenceOut.of(samples.link_sample(db, actor, parse_id(element_id), body.sample_id))

"""Samples (SPEC WS-9): registered with typed metadata, linked to workflows and datasets.

A sample is an element of kind "sample" at the root: it is private to its creator until shared,
carries metadata and notes like any element, and is found by search. Workflows, datasets (any
element) link to it with a reference; the sample's page lists what refers to it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.access.guard import require_access
from cryovault.access.levels import VIEWER
from cryovault.access.visibility import level_expr, readable_clause
from cryovault.db.elements import Element
from cryovault.db.users import User
from cryovault.errors import Invalid
from cryovault.metadata import service as metadata
from cryovault.workspace import elements, references
from cryovault.workspace.views import ElementView

SAMPLE = "sample"
MAX_LIST = 1000


@dataclass(frozen=True)
class SampleField:
    """One typed metadata value given when the sample is registered."""

    name: str
    value_type: str
    value: object
    quantity: str | None = None
    unit: str | None = None


@dataclass(frozen=True)
class SampleDetail:
    view: ElementView
    metadata: metadata.MetadataListing
    referrers: list[references.Referrer]


def create_sample(db: Session, actor: Actor, *, name: str, description: str = "",
                  fields: list[SampleField] | None = None) -> ElementView:
    view = elements.create_element(db, actor, kind=SAMPLE, name=name, description=description)
    for f in fields or []:
        metadata.add_entry(db, actor, view.id, name=f.name, value_type=f.value_type,
                           value=f.value, quantity=f.quantity, unit=f.unit, group="Sample")
    return view


def _require_sample(db: Session, actor: Actor, sample_id: uuid.UUID) -> ElementView:
    view = elements.get_element(db, actor, sample_id)
    if view.element.kind != SAMPLE:
        raise Invalid(f"{view.element.kind} {view.element.name!r} is not a sample")
    return view


def list_samples(db: Session, actor: Actor, text: str = "", limit: int = 200) -> list[ElementView]:
    """Samples the actor may read, by name; `text` keeps those whose name contains it."""
    if not 1 <= limit <= MAX_LIST:
        raise Invalid(f"limit must be between 1 and {MAX_LIST}")
    stmt = (
        select(Element, level_expr(actor).label("level"), User.username)
        .outerjoin(User, User.id == Element.creator_id)
        .where(Element.kind == SAMPLE, Element.parent_id.is_(None),
               Element.deleting.is_(False), readable_clause(actor, Element.acl_id))
        .order_by(Element.name_key, Element.id)
        .limit(limit)
    )
    text = (text or "").strip().casefold()
    if text:
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(Element.name_key.like(f"%{escaped}%", escape="\\"))
    return [ElementView(element, level, creator) for element, level, creator in db.execute(stmt)]


def get_sample(db: Session, actor: Actor, sample_id: uuid.UUID) -> SampleDetail:
    view = _require_sample(db, actor, sample_id)
    require_access(db, actor, sample_id, VIEWER, "open")
    return SampleDetail(view, metadata.list_metadata(db, actor, sample_id),
                        references.referrers(db, actor, sample_id))


def link_sample(db: Session, actor: Actor, element_id: uuid.UUID,
                sample_id: uuid.UUID) -> references.ReferenceView:
    """Record that an element (a workflow, a dataset …) was made from the sample."""
    _require_sample(db, actor, sample_id)
    return references.add_reference(db, actor, element_id, target_id=sample_id)

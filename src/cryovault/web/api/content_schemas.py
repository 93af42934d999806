"""Pydantic bodies of the metadata, notes, references, samples and search endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from cryovault.metadata.quantities import Quantity
from cryovault.metadata.service import EntryView, MetadataListing
from cryovault.search.service import SearchHit
from cryovault.web.api.schemas import ElementOut, PathEntryOut, Strict
from cryovault.workspace.notes import NoteView
from cryovault.workspace.references import ReferenceView

ValueType = Literal["string", "boolean", "date", "double", "integer"]
Value = bool | int | float | str


class MetadataEntryIn(Strict):
    name: str = Field(max_length=1000)
    type: ValueType
    value: Value | None = Field(default=None)
    quantity: str | None = Field(default=None, max_length=100)
    unit: str | None = Field(default=None, max_length=200)
    group: str | None = Field(default=None, max_length=200)


class MetadataEntryPatch(Strict):
    """Fields left out keep their value; `unit` alone converts the value (same physical value)."""

    name: str | None = Field(default=None, max_length=1000)
    type: ValueType | None = None
    value: Value | None = Field(default=None)
    quantity: str | None = Field(default=None, max_length=100)
    unit: str | None = Field(default=None, max_length=200)
    group: str | None = Field(default=None, max_length=200)


class MetadataEntryOut(BaseModel):
    id: uuid.UUID
    group: str
    name: str
    type: str
    value: Value
    unit: str | None
    unit_symbol: str | None
    quantity: str | None
    base_value: float | None
    base_unit: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, view: EntryView) -> MetadataEntryOut:
        e = view.entry
        return cls(id=e.id, group=e.group_name, name=e.name, type=e.value_type,
                   value=view.value, unit=e.unit, unit_symbol=view.unit_symbol or None,
                   quantity=e.quantity, base_value=e.base_value, base_unit=view.base_unit,
                   created_at=e.created_at, updated_at=e.updated_at)


class GeneralFieldOut(BaseModel):
    name: str
    value: str


class MetadataGroupOut(BaseModel):
    name: str
    entries: list[MetadataEntryOut]


class MetadataOut(BaseModel):
    element_id: uuid.UUID
    general: list[GeneralFieldOut]
    groups: list[MetadataGroupOut]

    @classmethod
    def of(cls, listing: MetadataListing) -> MetadataOut:
        return cls(
            element_id=listing.element.id,
            general=[GeneralFieldOut(name=f.label, value=f.value) for f in listing.general],
            groups=[MetadataGroupOut(name=g, entries=[MetadataEntryOut.of(v) for v in views])
                    for g, views in listing.groups.items()],
        )


class MetadataNameOut(BaseModel):
    name: str
    type: str


class MetadataNames(BaseModel):
    items: list[MetadataNameOut]


class UnitOut(BaseModel):
    name: str
    symbol: str


class QuantityOut(BaseModel):
    name: str
    base_unit: str
    units: list[UnitOut]

    @classmethod
    def of(cls, quantity: Quantity) -> QuantityOut:
        return cls(name=quantity.name, base_unit=quantity.base_unit,
                   units=[UnitOut(name=u.name, symbol=u.symbol) for u in quantity.units])


class QuantityList(BaseModel):
    items: list[QuantityOut]


class NoteIn(Strict):
    body: str = Field(max_length=200_000)


class NoteOut(BaseModel):
    id: uuid.UUID
    body: str
    html: str
    author: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, view: NoteView) -> NoteOut:
        return cls(id=view.id, body=view.note.body, html=str(view.html), author=view.author,
                   created_at=view.created_at, updated_at=view.updated_at)


class NoteList(BaseModel):
    items: list[NoteOut]


class ReferenceIn(Strict):
    target_id: uuid.UUID | None = None
    url: str | None = Field(default=None, max_length=10_000)
    label: str | None = Field(default=None, max_length=1000)


class ReferenceTargetOut(BaseModel):
    id: uuid.UUID | None
    kind: str | None
    name: str


class ReferenceOut(BaseModel):
    id: uuid.UUID
    target: ReferenceTargetOut | None
    url: str | None
    label: str
    title: str
    created_at: datetime

    @classmethod
    def of(cls, view: ReferenceView) -> ReferenceOut:
        target = None
        if view.reference.target_id is not None:
            target = ReferenceTargetOut(id=view.target_id, kind=view.target_kind,
                                        name=view.target_name or "Private entity")
        return cls(id=view.id, target=target, url=view.reference.url,
                   label=view.reference.label, title=view.title,
                   created_at=view.created_at)


class ReferenceList(BaseModel):
    items: list[ReferenceOut]


class SampleFieldIn(Strict):
    name: str = Field(max_length=1000)
    type: ValueType
    value: Value = Field()
    quantity: str | None = Field(default=None, max_length=100)
    unit: str | None = Field(default=None, max_length=200)


class SampleIn(Strict):
    name: str = Field(max_length=10_000)
    description: str = Field(default="", max_length=100_000)
    metadata: list[SampleFieldIn] = Field(default_factory=list, max_length=500)


class SampleList(BaseModel):
    items: list[ElementOut]


class SampleLinkIn(Strict):
    sample_id: uuid.UUID


class SampleOut(BaseModel):
    sample: ElementOut
    metadata: MetadataOut
    referred_by: list[ElementOut]


class SearchHitOut(ElementOut):
    path: list[PathEntryOut]
    matched_in: str | None
    snippet: str

    @classmethod
    def of_hit(cls, hit: SearchHit) -> SearchHitOut:
        base = ElementOut.of(hit.view).model_dump()
        return cls(**base, path=[PathEntryOut.of(p) for p in hit.path],
                   matched_in=hit.matched_in, snippet=hit.snippet)


class SearchOut(BaseModel):
    items: list[SearchHitOut]
    total: int
    total_exact: bool = True  # false: at least `total` matches (counted up to 10,000)

"""Typed metadata of elements (SPEC MD-2, MD-3): grouped entries with an optional physical unit.

A number is kept as entered (`number_value` in `unit`) and also normalised to the SI base unit of
its quantity (`base_value`), so that filters and sorting compare physical values whatever unit
each entry was written in.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from cryovault.db.base import Base, UTCDateTime, new_id, utcnow


class MetadataEntry(Base):
    __tablename__ = "metadata_entries"
    __table_args__ = (
        UniqueConstraint("element_id", "name_key", name="uq_metadata_entries_element_name"),
        Index("ix_metadata_entries_name_key", "name_key"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    element_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("elements.id", ondelete="CASCADE")
    )
    # "Core", "Instrument", "Acquisition" … written by the ingest; "Custom" by users.
    group_name: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    name_key: Mapped[str] = mapped_column(String(255))
    # "string" | "boolean" | "date" | "double" | "integer"
    value_type: Mapped[str] = mapped_column(String(16))
    # The value in its canonical text form (booleans "true"/"false", dates ISO 8601).
    text_value: Mapped[str] = mapped_column(Text)
    # Numbers as entered, in `unit`.
    number_value: Mapped[float | None] = mapped_column(Float)
    quantity: Mapped[str | None] = mapped_column(String(64))
    unit: Mapped[str | None] = mapped_column(String(128))
    # Numbers with a unit, in the SI base unit of the quantity; numbers without one, as entered.
    base_value: Mapped[float | None] = mapped_column(Float)
    creator_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

"""Notes and references carried by any element (SPEC WS-8)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from cryovault.db.base import Base, UTCDateTime, new_id, utcnow


class Note(Base):
    """A markdown note; rendered without raw HTML (see workspace/notes.py)."""

    __tablename__ = "notes"
    __table_args__ = (Index("ix_notes_element_created", "element_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    element_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("elements.id", ondelete="CASCADE")
    )
    author_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL")
    )
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ElementReference(Base):
    """A link from an element to another element (e.g. its sample) or to an external resource
    (a URL or a path); exactly one of `target_id` and `url` is set."""

    __tablename__ = "element_references"
    __table_args__ = (Index("ix_element_references_source", "source_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    source_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("elements.id", ondelete="CASCADE")
    )
    target_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("elements.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str | None] = mapped_column(String(2048))
    label: Mapped[str] = mapped_column(String(255), default="")
    creator_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

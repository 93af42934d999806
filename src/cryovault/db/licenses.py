"""Installed licence keys and the seats users hold (SPEC ADM-4)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from cryovault.db.base import Base, UTCDateTime, utcnow


class InstalledLicense(Base):
    """A licence key as pasted by an administrator; its signed document is kept verbatim so
    that it can be verified again and shown ("Show licence file")."""

    __tablename__ = "licenses"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)  # the document's license_id
    key_text: Mapped[str] = mapped_column(Text)
    document_json: Mapped[str] = mapped_column(Text)
    platform_id: Mapped[str] = mapped_column(String(64))
    customer: Mapped[str] = mapped_column(String(255), default="")
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    installed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    installed_by: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL"))


class UserLicense(Base):
    """One seat of a licensed feature held by a user."""

    __tablename__ = "user_licenses"

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    feature: Mapped[str] = mapped_column(String(40), primary_key=True, index=True)
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

"""The bytes behind File elements: where they are stored, their size and checksum; uploads."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from cryovault.db.base import Base, UTCDateTime, new_id, utcnow


class StoredFile(Base):
    """One registered file: its storage, key inside it, size and SHA-256 recorded at write time."""

    __tablename__ = "stored_files"

    element_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("elements.id", ondelete="CASCADE"), primary_key=True
    )
    storage: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(1024), unique=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    media_type: Mapped[str] = mapped_column(String(100), default="application/octet-stream")
    # "ok" | "mismatch" (bytes differ from the recorded checksum) | "missing" (bytes gone)
    integrity: Mapped[str] = mapped_column(String(16), default="ok")
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Upload(Base):
    """A resumable upload in progress: bytes are staged until `offset_bytes == size_bytes`."""

    __tablename__ = "uploads"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    parent_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("elements.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    offset_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    expected_sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StorageTrash(Base):
    """Bytes whose File elements are gone, waiting to be removed from their storage.

    Deleting elements and queueing their bytes here happen in one transaction; the bytes are
    removed afterwards, so a crash in between leaves a queue entry, never a lost reference."""

    __tablename__ = "storage_trash"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    storage: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(1024))
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

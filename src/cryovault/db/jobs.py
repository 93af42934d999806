"""Jobs: every long action (deletion, archive, export, processing …) is a row here."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from cryovault.db.base import Base, UTCDateTime, new_id, utcnow


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="waiting", index=True)
    # No foreign key: the job outlives the element it deleted.
    element_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    element_name: Mapped[str] = mapped_column(String(255), default="")
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    # What the job was asked to do (export path, options …), as JSON.
    parameters: Mapped[str] = mapped_column(Text, default="{}")
    # Who runs it ("host:pid:thread") and when it last said so; a stale heartbeat means the
    # worker died and the job may be claimed again (attempts counts the claims).
    worker: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # Removed from its owner's list of finished jobs (JOB-2); kept for the record.
    dismissed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

"""Acquisition runs (SPEC SPA-1, SPA-2, SPA-8, ET-1): the items an EPU or Tomo run holds.

A run is a dataset element (EPU run, Tomo run). Its items live in their own tables keyed to the
dataset — not as generic elements — so that counting, filtering and paging a 50,000-micrograph
run stays one indexed query:

- `run_files`: every file the instrument wrote, by its path relative to the session folder,
  with its bytes in a storage (size, SHA-256, integrity as for File elements);
- `micrographs` (one per EPU data acquisition), `tilt_series` and `tilts` (one per position and
  tilt), with their metadata as JSON text;
- `atlases`, `grid_squares`, `foil_holes`: the EPU session's map for the Discovery viewer.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from cryovault.db.base import Base, UTCDateTime, new_id, utcnow

ITEM_IN_PROGRESS, ITEM_COMPLETED, ITEM_FAILED = "in_progress", "completed", "failed"


def _dataset_fk() -> ForeignKey:
    return ForeignKey("elements.id", ondelete="CASCADE")


class RunFile(Base):
    """One file of a run, registered once per (dataset, relative path)."""

    __tablename__ = "run_files"
    __table_args__ = (
        UniqueConstraint("dataset_id", "relative_path", name="uq_run_files_dataset_path"),
        Index("ix_run_files_item", "item_id"),
        Index("ix_run_files_dataset_created", "dataset_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    dataset_id: Mapped[uuid.UUID] = mapped_column(Uuid, _dataset_fk())
    session: Mapped[str] = mapped_column(String(255))
    relative_path: Mapped[str] = mapped_column(String(1024))
    # session | atlas | atlas_image | grid_square_image | movie | integrated | mdoc | downscaled …
    role: Mapped[str] = mapped_column(String(32))
    item_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    storage: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(1024), unique=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    media_type: Mapped[str] = mapped_column(String(100), default="application/octet-stream")
    integrity: Mapped[str] = mapped_column(String(16), default="ok")
    source_size: Mapped[int] = mapped_column(BigInteger)
    source_mtime: Mapped[float] = mapped_column(Float)
    problem: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Micrograph(Base):
    """One EPU data acquisition: its metadata, files and state."""

    __tablename__ = "micrographs"
    __table_args__ = (
        UniqueConstraint("dataset_id", "name", name="uq_micrographs_dataset_name"),
        Index("ix_micrographs_dataset_order", "dataset_id", "created_at", "id"),
        Index("ix_micrographs_dataset_status", "dataset_id", "status", "created_at", "id"),
        Index("ix_micrographs_dataset_square", "dataset_id", "grid_square_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    dataset_id: Mapped[uuid.UUID] = mapped_column(Uuid, _dataset_fk())
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=ITEM_IN_PROGRESS)
    problem: Mapped[str | None] = mapped_column(Text)
    acquired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    grid_square_id: Mapped[str | None] = mapped_column(String(32))
    foil_hole_id: Mapped[str | None] = mapped_column(String(32))
    metadata_json: Mapped[str] = mapped_column(Text, default="{}")
    has_xml: Mapped[bool] = mapped_column(Boolean, default=False)
    has_movie: Mapped[bool] = mapped_column(Boolean, default=False)
    expected_frames: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TiltSeries(Base):
    """One tomography position: its .mdoc metadata and tilts."""

    __tablename__ = "tilt_series"
    __table_args__ = (
        UniqueConstraint("dataset_id", "name", name="uq_tilt_series_dataset_name"),
        Index("ix_tilt_series_dataset_order", "dataset_id", "created_at", "id"),
        Index("ix_tilt_series_dataset_status", "dataset_id", "status", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    dataset_id: Mapped[uuid.UUID] = mapped_column(Uuid, _dataset_fk())
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=ITEM_IN_PROGRESS)
    problem: Mapped[str | None] = mapped_column(Text)
    acquired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    metadata_json: Mapped[str] = mapped_column(Text, default="{}")
    has_mdoc: Mapped[bool] = mapped_column(Boolean, default=False)
    tilt_count: Mapped[int] = mapped_column(Integer, default=0)
    movie_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Tilt(Base):
    """One tilt of a series: from the .mdoc section and/or its movie."""

    __tablename__ = "tilts"
    __table_args__ = (
        UniqueConstraint("tilt_series_id", "movie_name", name="uq_tilts_series_movie"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    tilt_series_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tilt_series.id", ondelete="CASCADE"), index=True)
    movie_name: Mapped[str] = mapped_column(String(255))
    z_value: Mapped[int | None] = mapped_column(Integer)
    tilt_angle_deg: Mapped[float | None] = mapped_column(Float)
    acquired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    metadata_json: Mapped[str] = mapped_column(Text, default="{}")
    movie_file_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)


class Atlas(Base):
    __tablename__ = "atlases"
    __table_args__ = (UniqueConstraint("dataset_id", "name", name="uq_atlases_dataset_name"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    dataset_id: Mapped[uuid.UUID] = mapped_column(Uuid, _dataset_fk(), index=True)
    name: Mapped[str] = mapped_column(String(255))
    acquired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cassette_slot: Mapped[int | None] = mapped_column(Integer)
    pixel_size_angstrom: Mapped[float | None] = mapped_column(Float)
    width_px: Mapped[int | None] = mapped_column(Integer)
    height_px: Mapped[int | None] = mapped_column(Integer)
    image_file_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    metadata_json: Mapped[str] = mapped_column(Text, default="{}")
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class GridSquare(Base):
    __tablename__ = "grid_squares"
    __table_args__ = (
        UniqueConstraint("dataset_id", "epu_id", name="uq_grid_squares_dataset_epu_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    dataset_id: Mapped[uuid.UUID] = mapped_column(Uuid, _dataset_fk(), index=True)
    epu_id: Mapped[str] = mapped_column(String(32))
    # as EPU states it on the atlas (e.g. "Completed"); "imaged" once images arrive
    state: Mapped[str | None] = mapped_column(String(32))
    atlas_x_px: Mapped[float | None] = mapped_column(Float)
    atlas_y_px: Mapped[float | None] = mapped_column(Float)
    acquired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pixel_size_angstrom: Mapped[float | None] = mapped_column(Float)
    width_px: Mapped[int | None] = mapped_column(Integer)
    height_px: Mapped[int | None] = mapped_column(Integer)
    image_file_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    metadata_json: Mapped[str] = mapped_column(Text, default="{}")


class FoilHole(Base):
    __tablename__ = "foil_holes"
    __table_args__ = (
        UniqueConstraint("grid_square_id", "epu_id", name="uq_foil_holes_square_epu_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    grid_square_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("grid_squares.id", ondelete="CASCADE"), index=True)
    epu_id: Mapped[str] = mapped_column(String(32))
    x_px: Mapped[float | None] = mapped_column(Float)
    y_px: Mapped[float | None] = mapped_column(Float)
    diameter_px: Mapped[float | None] = mapped_column(Float)
    selected: Mapped[bool | None] = mapped_column(Boolean)
    image_file_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)


class RunSession(Base):
    """The instrument's session that fills a run (EpuSession.dm; a tomography folder)."""

    __tablename__ = "run_sessions"
    __table_args__ = (UniqueConstraint("dataset_id", "name", name="uq_run_sessions_dataset_name"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    dataset_id: Mapped[uuid.UUID] = mapped_column(Uuid, _dataset_fk(), index=True)
    name: Mapped[str] = mapped_column(String(255))
    # False when the session file says the instrument saves no movies (EPU without fractions)
    movies_expected: Mapped[bool] = mapped_column(Boolean, default=True)
    metadata_json: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RunFileTombstone(Base):
    """A run file whose bytes a cleanup removed (JOB-6): a watcher sending it again after a
    restart gets "already registered", so cleaned data does not come back."""

    __tablename__ = "run_file_tombstones"
    __table_args__ = (
        UniqueConstraint("dataset_id", "relative_path", name="uq_run_file_tombstones_path"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)  # the removed file's id
    dataset_id: Mapped[uuid.UUID] = mapped_column(Uuid, _dataset_fk())
    relative_path: Mapped[str] = mapped_column(String(1024))
    session: Mapped[str] = mapped_column(String(255))
    source_size: Mapped[int] = mapped_column(BigInteger)
    source_mtime: Mapped[float] = mapped_column(Float)
    removed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

"""Bodies of the acquisition-run endpoints (EPU and Tomo runs)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from cryovault.db.runs import Micrograph, RunFile, Tilt, TiltSeries
from cryovault.ingest.batch_registry import BatchOutcome
from cryovault.ingest.interpret import ItemRef
from cryovault.ingest.registry import IngestResult


class ItemRefOut(BaseModel):
    kind: str
    id: uuid.UUID
    name: str
    status: str | None

    @classmethod
    def of(cls, ref: ItemRef) -> ItemRefOut:
        return cls(kind=ref.kind, id=ref.id, name=ref.name, status=ref.status)


class IngestOut(BaseModel):
    status: str = Field(description="registered | already_registered")
    file_id: uuid.UUID
    item: ItemRefOut | None
    problem: str | None = Field(description="why the file's content could not be used; "
                                            "its bytes are kept")

    @classmethod
    def of(cls, result: IngestResult) -> IngestOut:
        return cls(status=result.status, file_id=result.file_id,
                   item=ItemRefOut.of(result.item) if result.item else None,
                   problem=result.problem)


class IngestBatchFileOut(BaseModel):
    path: str
    status: str = Field(description="registered | already_registered | conflict | refused")
    file_id: uuid.UUID | None
    item: ItemRefOut | None
    problem: str | None = Field(description="registered, but the content could not be used; "
                                            "its bytes are kept")
    detail: str | None = Field(description="why the file is a conflict or was refused; it is "
                                           "not registered")

    @classmethod
    def of(cls, outcome: BatchOutcome) -> IngestBatchFileOut:
        return cls(path=outcome.relative_path, status=outcome.status, file_id=outcome.file_id,
                   item=ItemRefOut.of(outcome.item) if outcome.item else None,
                   problem=outcome.problem, detail=outcome.detail)


class IngestBatchOut(BaseModel):
    results: list[IngestBatchFileOut] = Field(description="one per file, in the request's order")


class RunFileOut(BaseModel):
    id: uuid.UUID
    path: str
    role: str
    session: str
    item_id: uuid.UUID | None
    size_bytes: int
    sha256: str
    media_type: str
    integrity: str
    source_size: int
    source_mtime: float
    problem: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: RunFile) -> RunFileOut:
        return cls(id=row.id, path=row.relative_path, role=row.role, session=row.session,
                   item_id=row.item_id, size_bytes=row.size_bytes, sha256=row.sha256,
                   media_type=row.media_type, integrity=row.integrity,
                   source_size=row.source_size, source_mtime=row.source_mtime,
                   problem=row.problem, created_at=row.created_at)


class RunFilePage(BaseModel):
    items: list[RunFileOut]
    next_cursor: str | None


class Counts(BaseModel):
    completed: int
    in_progress: int
    failed: int


class MicrographOut(BaseModel):
    id: uuid.UUID
    name: str
    status: str
    problem: str | None
    acquired_at: datetime | None
    grid_square_id: str | None
    foil_hole_id: str | None
    metadata: dict

    @classmethod
    def of(cls, row: Micrograph) -> MicrographOut:
        return cls(id=row.id, name=row.name, status=row.status, problem=row.problem,
                   acquired_at=row.acquired_at, grid_square_id=row.grid_square_id,
                   foil_hole_id=row.foil_hole_id, metadata=json.loads(row.metadata_json or "{}"))


class MicrographPage(BaseModel):
    items: list[MicrographOut]
    total: int
    counts: Counts
    next_cursor: str | None


class MicrographDetail(MicrographOut):
    files: list[RunFileOut]


class TiltOut(BaseModel):
    id: uuid.UUID
    movie_name: str
    z_value: int | None
    tilt_angle_deg: float | None
    acquired_at: datetime | None
    has_movie: bool
    metadata: dict

    @classmethod
    def of(cls, row: Tilt) -> TiltOut:
        return cls(id=row.id, movie_name=row.movie_name, z_value=row.z_value,
                   tilt_angle_deg=row.tilt_angle_deg, acquired_at=row.acquired_at,
                   has_movie=row.movie_file_id is not None,
                   metadata=json.loads(row.metadata_json or "{}"))


class TiltSeriesOut(BaseModel):
    id: uuid.UUID
    name: str
    status: str
    problem: str | None
    acquired_at: datetime | None
    tilt_count: int
    movie_count: int
    metadata: dict

    @classmethod
    def of(cls, row: TiltSeries) -> TiltSeriesOut:
        return cls(id=row.id, name=row.name, status=row.status, problem=row.problem,
                   acquired_at=row.acquired_at, tilt_count=row.tilt_count,
                   movie_count=row.movie_count, metadata=json.loads(row.metadata_json or "{}"))


class TiltSeriesPage(BaseModel):
    items: list[TiltSeriesOut]
    total: int
    counts: Counts
    next_cursor: str | None


class TiltSeriesDetail(TiltSeriesOut):
    tilts: list[TiltOut]
    files: list[RunFileOut]

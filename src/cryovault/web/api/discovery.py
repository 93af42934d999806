"""The Discovery viewer's API (SPEC SPA-8) and the images of run files: atlases, grid squares
with their markers, deleting atlas data; Deep Zoom previews, tiles and thumbnails of a run's
images (downscaled copies, integrated images, EPU's JPEGs)."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.errors import NotFound
from cryovault.ingest import discovery as service
from cryovault.ingest import run_views
from cryovault.storage.cleanup import empty_trash
from cryovault.web.api.schemas import parse_id
from cryovault.web.context import current_actor, get_db

router = APIRouter(tags=["discovery"])
# A run file's bytes never change (a rewritten file is a new file): its images can be cached.
CACHED = {"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"}


class RunRefOut(BaseModel):
    id: uuid.UUID
    name: str


class AtlasSummaryOut(BaseModel):
    id: uuid.UUID = Field(description="the atlas to open (GET /api/v1/atlases/{id})")
    name: str
    acquired_at: datetime | None
    created_at: datetime
    cassette_slot: int | None
    runs: list[RunRefOut] = Field(description="the EPU runs that use this atlas")
    atlas_ids: list[uuid.UUID] = Field(description="each run's record of this atlas")
    deleted: bool = Field(description="its data (images, tiles) was deleted")
    grid_square_count: int

    @classmethod
    def of(cls, summary: service.AtlasSummary) -> AtlasSummaryOut:
        return cls(id=summary.id, name=summary.name, acquired_at=summary.acquired_at,
                   created_at=summary.created_at, cassette_slot=summary.cassette_slot,
                   runs=[RunRefOut(id=r.id, name=r.name) for r in summary.runs],
                   atlas_ids=summary.atlas_ids, deleted=summary.deleted,
                   grid_square_count=summary.grid_square_count)


class AtlasTableOut(BaseModel):
    element: RunRefOut
    workflow: RunRefOut | None
    items: list[AtlasSummaryOut]


class ViewImageOut(BaseModel):
    file_id: uuid.UUID
    width_px: int = Field(description="of the displayed image")
    height_px: int
    bin: int = Field(description="original pixels per displayed pixel; marker positions are "
                                 "in original pixels")
    pixel_size_angstrom: float | None = Field(description="of the displayed image")

    @classmethod
    def of(cls, image: service.ViewImage | None) -> ViewImageOut | None:
        if image is None:
            return None
        return cls(file_id=image.file_id, width_px=image.width_px, height_px=image.height_px,
                   bin=image.bin, pixel_size_angstrom=image.pixel_size_angstrom)


class SquareMarkerOut(BaseModel):
    id: uuid.UUID
    epu_id: str
    dataset_id: uuid.UUID
    x_px: float
    y_px: float
    state: str = Field(description="completed | in_progress | not_imaged")
    epu_state: str | None
    micrograph_count: int
    has_image: bool


class AtlasOut(BaseModel):
    id: uuid.UUID
    dataset_id: uuid.UUID
    name: str
    acquired_at: datetime | None
    created_at: datetime
    cassette_slot: int | None
    pixel_size_angstrom: float | None = Field(description="of the original atlas image")
    deleted: bool
    runs: list[RunRefOut]
    image: ViewImageOut | None
    grid_squares: list[SquareMarkerOut]
    counts: dict[str, int] = Field(description="grid squares by marker state")
    can_delete: bool


class HoleOut(BaseModel):
    id: uuid.UUID
    epu_id: str
    x_px: float | None
    y_px: float | None
    diameter_px: float | None
    selected: bool | None
    micrograph_count: int


class AcquisitionOut(BaseModel):
    id: uuid.UUID = Field(description="the micrograph")
    name: str
    status: str
    problem: str | None
    foil_hole_id: str | None
    acquired_at: datetime | None
    x_px: float | None = Field(description="on the grid-square image (at its foil hole); null "
                                           "when the hole's position is unknown")
    y_px: float | None


class GridSquareOut(BaseModel):
    id: uuid.UUID
    epu_id: str
    dataset_id: uuid.UUID
    dataset_name: str
    state: str
    epu_state: str | None
    atlas_id: uuid.UUID | None
    acquired_at: datetime | None
    pixel_size_angstrom: float | None = Field(description="of the original grid-square image")
    image: ViewImageOut | None
    foil_holes: list[HoleOut]
    acquisitions: list[AcquisitionOut]
    counts: dict[str, int] = Field(description="acquisitions by status")


class AtlasDeletionOut(BaseModel):
    atlas_ids: list[uuid.UUID]
    files_removed: int
    bytes_freed: int


class RunFilePreviewOut(BaseModel):
    width: int
    height: int
    tile_size: int
    max_level: int
    pixel_size_angstrom: float | None = Field(description="from the image's header, if any")
    preview_url: str
    tile_url: str


def _table(table: service.AtlasTable) -> AtlasTableOut:
    workflow = table.workflow
    return AtlasTableOut(
        element=RunRefOut(id=table.element.id, name=table.element.name),
        workflow=RunRefOut(id=workflow.id, name=workflow.name) if workflow else None,
        items=[AtlasSummaryOut.of(s) for s in table.atlases])


@router.get("/datasets/{dataset_id}/atlases", response_model=AtlasTableOut,
            summary="Atlases of the EPU runs of this run's workflow that you can see")
def dataset_atlases(dataset_id: str, sort: str = Query("date"), order: str = Query("desc"),
                    actor: Actor = Depends(current_actor),
                    db: Session = Depends(get_db, scope="function")):
    return _table(service.list_atlases(db, actor, parse_id(dataset_id, "dataset"), sort=sort,
                                       order=order))


@router.get("/workflows/{workflow_id}/atlases", response_model=AtlasTableOut,
            summary="Atlases of the EPU runs of a workflow that you can see")
def workflow_atlases(workflow_id: str, sort: str = Query("date"), order: str = Query("desc"),
                     actor: Actor = Depends(current_actor),
                     db: Session = Depends(get_db, scope="function")):
    return _table(service.list_atlases(db, actor, parse_id(workflow_id, "workflow"), sort=sort,
                                       order=order))


@router.get("/atlases/{atlas_id}", response_model=AtlasOut,
            summary="An atlas with a marker per grid square")
def get_atlas(atlas_id: str, request: Request, actor: Actor = Depends(current_actor),
              db: Session = Depends(get_db, scope="function")):
    detail = service.get_atlas(db, actor, request.app.state.storages, parse_id(atlas_id, "atlas"))
    atlas, summary = detail.atlas, detail.summary
    return AtlasOut(
        id=atlas.id, dataset_id=atlas.dataset_id, name=summary.name,
        acquired_at=summary.acquired_at, created_at=summary.created_at,
        cassette_slot=summary.cassette_slot, pixel_size_angstrom=detail.pixel_size_angstrom,
        deleted=atlas.deleted, runs=[RunRefOut(id=r.id, name=r.name) for r in summary.runs],
        image=ViewImageOut.of(detail.image),
        grid_squares=[SquareMarkerOut(**vars(m)) for m in detail.squares],
        counts=detail.counts, can_delete=detail.can_delete)


@router.get("/grid-squares/{square_id}", response_model=GridSquareOut,
            summary="A grid square with its foil holes and acquisitions")
def get_grid_square(square_id: str, request: Request, actor: Actor = Depends(current_actor),
                    db: Session = Depends(get_db, scope="function")):
    detail = service.get_grid_square(db, actor, request.app.state.storages,
                                     parse_id(square_id, "grid square"))
    square = detail.square
    return GridSquareOut(
        id=square.id, epu_id=square.epu_id, dataset_id=square.dataset_id,
        dataset_name=detail.dataset.name, state=detail.state, epu_state=square.state,
        atlas_id=detail.atlas_id, acquired_at=square.acquired_at,
        pixel_size_angstrom=detail.pixel_size_angstrom, image=ViewImageOut.of(detail.image),
        foil_holes=[HoleOut(**vars(h)) for h in detail.holes],
        acquisitions=[AcquisitionOut(**vars(a)) for a in detail.acquisitions],
        counts=detail.counts)


@router.delete("/atlases/{atlas_id}/data", response_model=AtlasDeletionOut,
               summary="Delete an atlas's images and tiles (grid squares and micrographs stay)")
def delete_atlas_data(atlas_id: str, request: Request, tasks: BackgroundTasks,
                      actor: Actor = Depends(current_actor),
                      db: Session = Depends(get_db, scope="function")):
    result = service.delete_atlas_data(db, actor, request.app.state.settings,
                                       parse_id(atlas_id, "atlas"))
    # get_db commits before the response; the trash is emptied after it.
    tasks.add_task(empty_trash, request.app.state.sessions, request.app.state.storages)
    return AtlasDeletionOut(atlas_ids=result.atlas_ids, files_removed=result.files_removed,
                            bytes_freed=result.bytes_freed)


def _source(request: Request, db: Session, actor: Actor, file_id: str
            ) -> run_views.RunFileSource:
    return run_views.open_run_file_source(db, actor, request.app.state.settings,
                                          request.app.state.storages, parse_id(file_id, "file"))


@router.get("/run-files/{file_id}/preview", response_model=RunFilePreviewOut,
            summary="Prepare a run file's image for the Deep Zoom viewer (once, then cached)")
def run_file_preview(file_id: str, request: Request, actor: Actor = Depends(current_actor),
                     db: Session = Depends(get_db, scope="function")):
    source = _source(request, db, actor, file_id)
    meta = run_views.run_file_preview(db, source).meta
    base = f"/api/v1/run-files/{source.file.id}"
    return RunFilePreviewOut(width=meta.width, height=meta.height, tile_size=meta.tile_size,
                             max_level=meta.max_level,
                             pixel_size_angstrom=meta.pixel_size_angstrom,
                             preview_url=f"{base}/preview.png",
                             tile_url=f"{base}/tiles/{{level}}/{{col}}_{{row}}.png")


@router.get("/run-files/{file_id}/preview.png",
            summary="A run file's image, downscaled (longest side 1024)")
def run_file_preview_png(file_id: str, request: Request, actor: Actor = Depends(current_actor),
                         db: Session = Depends(get_db, scope="function")):
    built = run_views.run_file_preview(db, _source(request, db, actor, file_id))
    return FileResponse(built.preview_png, media_type="image/png", headers=CACHED)


@router.get("/run-files/{file_id}/thumbnail", summary="A run file's image for cards and lists")
def run_file_thumbnail(file_id: str, request: Request, actor: Actor = Depends(current_actor),
                       db: Session = Depends(get_db, scope="function")):
    built = run_views.run_file_preview(db, _source(request, db, actor, file_id))
    return FileResponse(built.thumb_png, media_type="image/png", headers=CACHED)


@router.get("/run-files/{file_id}/tiles/{level}/{tile}.png",
            summary="A Deep Zoom tile of a run file's image (level, column_row)")
def run_file_tile(file_id: str, level: int, tile: str, request: Request,
                  actor: Actor = Depends(current_actor),
                  db: Session = Depends(get_db, scope="function")):
    col_text, _, row_text = tile.partition("_")
    if not (col_text.isdigit() and row_text.isdigit()):
        raise NotFound(f"no tile {tile!r}: tiles are named <column>_<row>")
    data = run_views.run_file_tile(db, _source(request, db, actor, file_id), level,
                                   int(col_text), int(row_text))
    return Response(data, media_type="image/png", headers=CACHED)

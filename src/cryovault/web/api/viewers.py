"""What the file viewers load (SPEC WS-11): image info, previews, tiles; tables and text."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.errors import NotFound
from cryovault.storage import previews as service
from cryovault.web.api.schemas import parse_id
from cryovault.web.context import current_actor, get_db

router = APIRouter(tags=["viewers"])
# Derived images never change for given bytes (a new upload is a new file): cache them.
CACHED = {"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"}
MAX_SLICE = 1_000_000


class ImageInfoOut(BaseModel):
    format: str
    width: int
    height: int
    n_slices: int
    slice_kind: str
    dtype: str
    pixel_size_angstrom: float | None
    n_frames: int | None
    details: list[tuple[str, str]]


class PreviewOut(BaseModel):
    """One slice's view: the Deep Zoom pyramid and the automatic contrast window."""

    slice: int
    width: int
    height: int
    tile_size: int
    max_level: int
    lo: float
    hi: float
    histogram: list[int]
    pixel_size_angstrom: float | None
    preview_url: str
    tile_url: str


def _source(request: Request, db: Session, actor: Actor, file_id: str) -> service.LocalFile:
    return service.local_file(db, actor, request.app.state.settings,
                              request.app.state.storages, parse_id(file_id, "file"))


def _slice(value: int) -> int:
    if not 0 <= value <= MAX_SLICE:
        raise NotFound(f"no slice {value}")
    return value


@router.get("/files/{file_id}/image", response_model=ImageInfoOut,
            summary="What the image viewer shows: sizes, slices, pixel size, header details")
def image_info(file_id: str, request: Request, actor: Actor = Depends(current_actor),
               db: Session = Depends(get_db, scope="function")):
    info = service.image_info(_source(request, db, actor, file_id))
    data = asdict(info)
    data["details"] = [tuple(pair) for pair in info.details]
    return ImageInfoOut(**data)


@router.get("/files/{file_id}/preview", response_model=PreviewOut,
            summary="Prepare one slice for viewing (computed once, then cached)")
def preview(file_id: str, request: Request, slice: int = Query(0),
            actor: Actor = Depends(current_actor),
            db: Session = Depends(get_db, scope="function")):
    source = _source(request, db, actor, file_id)
    built = service.image_preview(db, source, _slice(slice))
    meta = built.meta
    base = f"/api/v1/files/{source.file.id}"
    return PreviewOut(slice=slice, width=meta.width, height=meta.height,
                      tile_size=meta.tile_size, max_level=meta.max_level, lo=meta.lo, hi=meta.hi,
                      histogram=list(meta.histogram),
                      pixel_size_angstrom=meta.pixel_size_angstrom,
                      preview_url=f"{base}/preview.png?slice={slice}",
                      tile_url=f"{base}/tiles/{slice}/{{level}}/{{col}}_{{row}}.png")


@router.get("/files/{file_id}/preview.png", summary="A slice, downscaled (longest side 1024)")
def preview_png(file_id: str, request: Request, slice: int = Query(0),
                actor: Actor = Depends(current_actor),
                db: Session = Depends(get_db, scope="function")):
    built = service.image_preview(db, _source(request, db, actor, file_id), _slice(slice))
    return FileResponse(built.preview_png, media_type="image/png", headers=CACHED)


@router.get("/files/{file_id}/thumbnail", summary="A small image for cards and lists")
def thumbnail(file_id: str, request: Request, actor: Actor = Depends(current_actor),
              db: Session = Depends(get_db, scope="function")):
    source = _source(request, db, actor, file_id)
    info = service.image_info(source)
    # A volume is best recognised by its middle section; anything else by its first.
    middle = info.n_slices // 2 if info.slice_kind == "volume" else 0
    built = service.image_preview(db, source, middle)
    return FileResponse(built.thumb_png, media_type="image/png", headers=CACHED)


@router.get("/files/{file_id}/tiles/{slice_index}/{level}/{tile}.png",
            summary="A Deep Zoom tile of a slice (level, column_row)")
def tile(file_id: str, slice_index: int, level: int, tile: str, request: Request,
         actor: Actor = Depends(current_actor),
         db: Session = Depends(get_db, scope="function")):
    col_text, _, row_text = tile.partition("_")
    if not (col_text.isdigit() and row_text.isdigit()):
        raise NotFound(f"no tile {tile!r}: tiles are named <column>_<row>")
    data = service.image_tile(db, _source(request, db, actor, file_id), _slice(slice_index),
                              level, int(col_text), int(row_text))
    return Response(data, media_type="image/png", headers=CACHED)

"""What the run pages show (SPEC SPA-2, ET-1, SPA-8): pages of micrographs and tilt series
with their thumbnails, what changed since the page was drawn, one micrograph with its
neighbours, files and images, and viewable images of run files.

A page costs three indexed queries whatever the size of the run (counts by status, one page of
items, their thumbnails), so a 50,000-micrograph run opens as fast as a small one. The live
view asks only for items after the last one it shows and for the items it shows that may still
change (compared by a stamp of their last update).

Images of run files (downscaled copies, integrated images) are shown through the same Deep
Zoom previews as File elements (`cryovault.formats.previews`); their pyramids and thumbnails
are kept in the data directory's cache (`cache/run-files/<id>`), never beside the run's bytes,
so the storage's orphan cleanup does not see them.
"""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import literal, select, tuple_
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.db.elements import Element
from cryovault.db.runs import Atlas, GridSquare, Micrograph, RunFile, TiltSeries
from cryovault.errors import Conflict, Invalid, NotFound
from cryovault.formats import previews as pyramid
from cryovault.formats.images import SliceOutOfRange, UnreadableImage, probe_image
from cryovault.ingest import items
from cryovault.ingest.epu_items import ATLAS_BIN, GRID_SQUARE_BIN, MICROGRAPH_BIN
from cryovault.settings import Settings
from cryovault.storage.checksums import sha256_of_file
from cryovault.storage.previews import local_copy
from cryovault.storage.registry import StorageSet

# The bin factors of the downscaled copies: a displayed pixel of a copy covers `bin` pixels
# of the original (atlas 1, grid square 2, micrograph 4).
MICROGRAPH_COPY_BIN, GRID_SQUARE_COPY_BIN, ATLAS_COPY_BIN = (MICROGRAPH_BIN, GRID_SQUARE_BIN,
                                                             ATLAS_BIN)
THUMBNAIL_ROLES = ("downscaled", "acquisition_jpg")
MAX_WATCHED = 500
CHECKED_MARKER = "checked.sha256"


@dataclass(frozen=True)
class ItemCard:
    """One micrograph or tilt series as the run view lists it."""

    id: uuid.UUID
    name: str
    status: str
    problem: str | None
    acquired_at: datetime | None
    metadata: dict[str, object]
    thumbnail_file_id: uuid.UUID | None
    stamp: str  # changes whenever the item is updated: what the live view compares
    tilt_count: int | None = None  # tilt series only
    movie_count: int | None = None


@dataclass(frozen=True)
class CardPage:
    items: list[ItemCard]
    total: int  # items matching the status filter
    counts: dict[str, int]  # every item of the run, by status
    next_cursor: str | None  # more items follow: the next page starts here
    end_cursor: str  # the position after the last item ("" when the run has none yet)


@dataclass(frozen=True)
class ImageRef:
    """An image of a run file the viewer can open, and its scale: a displayed pixel covers
    `original_width_px / displayed width` pixels of the original image (of
    `pixel_size_angstrom` each), or `bin` when the original's width is unknown."""

    file_id: uuid.UUID
    label: str
    bin: int | None  # None: EPU's own JPEG, whose scale only the widths tell
    original_width_px: int | None
    pixel_size_angstrom: float | None  # of the original image


@dataclass(frozen=True)
class MicrographView:
    dataset: Element
    micrograph: Micrograph
    metadata: dict[str, object]
    files: list[RunFile]
    images: list[ImageRef]  # best first: the downscaled copy, the integrated image, EPU's JPEG
    previous_id: uuid.UUID | None
    next_id: uuid.UUID | None
    grid_square: GridSquare | None
    atlas_id: uuid.UUID | None


def stamp_of(updated_at: datetime | None) -> str:
    return str(int(updated_at.timestamp() * 1_000_000)) if updated_at else "0"


def item_metadata(row: Micrograph | TiltSeries) -> dict[str, object]:
    try:
        values = json.loads(row.metadata_json or "{}")
    except ValueError:
        return {}
    return values if isinstance(values, dict) else {}


def _thumbnails(db: Session, item_ids: list[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """The thumbnail file of each item: its downscaled copy, else EPU's JPEG."""
    if not item_ids:
        return {}
    best: dict[uuid.UUID, tuple[int, uuid.UUID]] = {}
    rows = db.execute(select(RunFile.item_id, RunFile.id, RunFile.role)
                      .where(RunFile.item_id.in_(item_ids), RunFile.role.in_(THUMBNAIL_ROLES),
                             RunFile.integrity == "ok"))
    for item_id, file_id, role in rows:
        rank = THUMBNAIL_ROLES.index(role)
        if item_id not in best or rank < best[item_id][0]:
            best[item_id] = (rank, file_id)
    return {item_id: file_id for item_id, (_, file_id) in best.items()}


def _card(row: Micrograph | TiltSeries, thumbnail: uuid.UUID | None) -> ItemCard:
    series = isinstance(row, TiltSeries)
    return ItemCard(
        id=row.id, name=row.name, status=row.status, problem=row.problem,
        acquired_at=row.acquired_at, metadata=item_metadata(row), thumbnail_file_id=thumbnail,
        stamp=stamp_of(row.updated_at), tilt_count=row.tilt_count if series else None,
        movie_count=row.movie_count if series else None)


def _cards(db: Session, rows: list) -> list[ItemCard]:
    thumbs = _thumbnails(db, [row.id for row in rows])
    return [_card(row, thumbs.get(row.id)) for row in rows]


def _card_page(db: Session, page: items.ItemPage, cursor: str | None) -> CardPage:
    rows = page.items
    end = items.encode_cursor(rows[-1].created_at, rows[-1].id) if rows else (cursor or "")
    return CardPage(_cards(db, rows), page.total, page.counts, page.next_cursor, end)


def micrograph_cards(db: Session, actor: Actor, dataset_id: uuid.UUID, *,
                     status: str | None = None, limit: int = 60,
                     cursor: str | None = None) -> CardPage:
    """A page of an EPU run's micrographs in acquisition order, with thumbnails and counts."""
    page = items.list_micrographs(db, actor, dataset_id, status=status, limit=limit,
                                  cursor=cursor)
    return _card_page(db, page, cursor)


def tilt_series_cards(db: Session, actor: Actor, dataset_id: uuid.UUID, *,
                      status: str | None = None, limit: int = 60,
                      cursor: str | None = None) -> CardPage:
    page = items.list_tilt_series(db, actor, dataset_id, status=status, limit=limit,
                                  cursor=cursor)
    return _card_page(db, page, cursor)


def parse_watched(text: str | None) -> dict[uuid.UUID, str]:
    """`id.stamp,id.stamp,…` (what the live view sends) as a dict; Invalid when malformed."""
    watched: dict[uuid.UUID, str] = {}
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        item_id, _, stamp = part.partition(".")
        try:
            watched[uuid.UUID(item_id)] = stamp
        except ValueError:
            raise Invalid(f"watch: {part[:60]!r} is not <item id>.<stamp>") from None
        if len(watched) > MAX_WATCHED:
            raise Invalid(f"watch at most {MAX_WATCHED} items at once")
    return watched


def changed_cards(db: Session, actor: Actor, dataset_id: uuid.UUID, dataset_type: str,
                  watched: dict[uuid.UUID, str]) -> list[ItemCard]:
    """The watched items that changed since the page drew them (their stamp differs)."""
    items.run_dataset(db, actor, dataset_id, dataset_type)
    if not watched:
        return []
    model = Micrograph if dataset_type == "epu_run" else TiltSeries
    # By primary key alone: with the run's id in the query SQLite would scan the run's index.
    rows = db.scalars(select(model).where(model.id.in_(list(watched)))).all()
    changed = [row for row in rows if row.dataset_id == dataset_id
               and stamp_of(row.updated_at) != watched.get(row.id)]
    changed.sort(key=lambda row: (row.created_at, row.id))
    return _cards(db, changed)


def _neighbour(db: Session, row: Micrograph, after: bool) -> uuid.UUID | None:
    # A row-value comparison: one range of the (dataset, created_at, id) index on SQLite and
    # PostgreSQL (an OR of the two conditions makes SQLite scan the run).
    position = tuple_(Micrograph.created_at, Micrograph.id)
    here = tuple_(literal(row.created_at, Micrograph.created_at.type),
                  literal(row.id, Micrograph.id.type))
    if after:
        where, order = position > here, (Micrograph.created_at, Micrograph.id)
    else:
        where, order = position < here, (Micrograph.created_at.desc(), Micrograph.id.desc())
    return db.scalar(select(Micrograph.id).where(Micrograph.dataset_id == row.dataset_id, where)
                     .order_by(*order).limit(1))


def _positive(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and value > 0 else None


def micrograph_images(files: list[RunFile], metadata: dict[str, object]) -> list[ImageRef]:
    pixel = _positive(metadata.get("pixel_size_angstrom"))
    width = _positive(metadata.get("width_px"))
    original_width = int(width) if width else None
    labels = {"downscaled": (f"Downscaled (bin {MICROGRAPH_COPY_BIN})", MICROGRAPH_COPY_BIN),
              "integrated": ("Integrated image (full size)", 1),
              "acquisition_jpg": ("EPU JPEG", None)}
    order = list(labels)
    shown = sorted((row for row in files if row.role in labels and row.integrity == "ok"),
                   key=lambda row: order.index(row.role))
    return [ImageRef(row.id, labels[row.role][0], labels[row.role][1], original_width, pixel)
            for row in shown]


def micrograph_view(db: Session, actor: Actor, dataset_id: uuid.UUID,
                    micrograph_id: uuid.UUID) -> MicrographView:
    micrograph, files = items.get_micrograph(db, actor, dataset_id, micrograph_id)
    dataset = db.get(Element, dataset_id)
    assert dataset is not None  # get_micrograph checked it
    metadata = item_metadata(micrograph)
    square = None
    if micrograph.grid_square_id:
        square = db.scalar(select(GridSquare).where(
            GridSquare.dataset_id == dataset_id, GridSquare.epu_id == micrograph.grid_square_id))
    atlas_id = db.scalar(select(Atlas.id).where(Atlas.dataset_id == dataset_id)
                         .order_by(Atlas.deleted, Atlas.created_at).limit(1))
    return MicrographView(dataset, micrograph, metadata, files,
                          micrograph_images(files, metadata), _neighbour(db, micrograph, False),
                          _neighbour(db, micrograph, True), square, atlas_id)


# --- images of run files ------------------------------------------------------------------


@dataclass(frozen=True)
class RunFileSource:
    """A run file readable on this host, and where its previews are cached."""

    file: RunFile
    path: Path
    cache_dir: Path


def preview_cache_dir(settings: Settings, file_id: uuid.UUID) -> Path:
    return settings.data_dir.resolve() / "cache" / "run-files" / file_id.hex[:2] / str(file_id)


def drop_preview_caches(settings: Settings, file_ids: list[uuid.UUID]) -> None:
    """Remove the cached previews of run files that are gone (best effort)."""
    for file_id in file_ids:
        shutil.rmtree(preview_cache_dir(settings, file_id), ignore_errors=True)


def open_run_file_source(db: Session, actor: Actor, settings: Settings, storages: StorageSet,
                         file_id: uuid.UUID) -> RunFileSource:
    view, storage = items.open_run_file(db, actor, storages, file_id)
    row = view.file
    cache_dir = preview_cache_dir(settings, row.id)
    return RunFileSource(row, local_copy(storage, row.key, row.size_bytes, cache_dir),
                         cache_dir)


def _check_once(db: Session, source: RunFileSource) -> None:
    """Compare the bytes with the recorded SHA-256 before they are first shown."""
    marker = source.cache_dir / CHECKED_MARKER
    try:
        if marker.read_text() == source.file.sha256:
            return
    except OSError:
        pass
    if sha256_of_file(source.path) != source.file.sha256:
        source.file.integrity = "mismatch"
        db.commit()  # the flag must stay although this request fails
        raise Conflict(f"{source.file.relative_path}: its bytes do not match the checksum "
                       "recorded at registration; ask an administrator to check the storage")
    source.cache_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(source.file.sha256)


def run_file_preview(db: Session, source: RunFileSource) -> pyramid.PreviewSet:
    """The Deep Zoom preview of a run file's image (built once, then from the cache)."""
    cached = pyramid.load_preview(source.cache_dir, 0)
    if cached is not None and (source.cache_dir / CHECKED_MARKER).is_file():
        return cached
    _check_once(db, source)
    try:
        info = probe_image(source.path, None)
        return pyramid.build_preview(source.path, source.cache_dir, 0, info)
    except UnreadableImage as exc:
        raise Invalid(str(exc)) from None
    except SliceOutOfRange as exc:
        raise NotFound(exc.message) from None


def run_file_tile(db: Session, source: RunFileSource, level: int, col: int, row: int) -> bytes:
    for attempt in range(2):
        try:
            return pyramid.tile_png(source.cache_dir, 0, level, col, row)
        except pyramid.TileOutOfRange as exc:
            raise NotFound(exc.message) from None
        except pyramid.PreviewNotBuilt as exc:
            if attempt:
                raise Conflict(exc.message) from None
            run_file_preview(db, source)
    raise AssertionError("unreachable")

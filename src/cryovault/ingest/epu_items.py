"""EPU run items from the session's files (SPEC SPA-1, SPA-8).

Each registered file updates the tables of its run, whatever order the files come in: an
acquisition's movie may arrive before its XML (the micrograph is created at the first file and
completed when its metadata and, if the session saves movies, its movie are there); a grid
square's foil-hole targets may arrive before its image.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cryovault.db.base import utcnow
from cryovault.db.runs import (
    ITEM_COMPLETED,
    ITEM_FAILED,
    ITEM_IN_PROGRESS,
    Atlas,
    FoilHole,
    GridSquare,
    Micrograph,
    RunFile,
    RunSession,
)
from cryovault.formats.images import UnreadableImage
from cryovault.ingest.downscale import record_downscaled, stage_downscaled, store_downscaled
from cryovault.ingest.epu.layout import EpuPath
from cryovault.ingest.epu.parsers import (
    parse_atlas,
    parse_epu_session,
    parse_grid_square_metadata,
    parse_image_xml,
)
from cryovault.ingest.errors import IngestFormatError
from cryovault.ingest.interpret import (
    MAX_PARSED_BYTES,
    ItemRef,
    Prepared,
    RunLookups,
    dumps,
    epu_where,
    merged,
    read_small,
)
from cryovault.ingest.rows import ensure_rows, get_or_create
from cryovault.storage.registry import StorageSet

MICROGRAPH_BIN, GRID_SQUARE_BIN, ATLAS_BIN = 4, 2, 1
Result = tuple[ItemRef | None, str | None]
# Kinds whose bytes are parsed, and the images downscaled (by their bin factor).
_PARSERS = {
    "session": lambda data, path: parse_epu_session(data, source=path),
    "atlas": lambda data, path: parse_atlas(data, source=path),
    "grid_square_metadata": lambda data, path: parse_grid_square_metadata(data, source=path),
    "atlas_image_xml": lambda data, path: parse_image_xml(data, _stem(path), source=path),
    "grid_square_xml": lambda data, path: parse_image_xml(data, _stem(path), source=path),
    "acquisition_xml": lambda data, path: parse_image_xml(data, _stem(path), source=path),
}
_DOWNSCALED = {"integrated": MICROGRAPH_BIN, "grid_square_image": GRID_SQUARE_BIN,
               "atlas_image": ATLAS_BIN}
_SQUARE_KINDS = frozenset({"grid_square_xml", "grid_square_image", "grid_square_metadata",
                           "foil_hole_xml", "foil_hole_image"})
_ACQUISITION_KINDS = frozenset({"acquisition_xml", "acquisition_jpg", "integrated", "movie"})


@dataclass
class _Context:
    """A file of a batch: what was read from its bytes before the transaction, and the rows
    read once for the whole batch (both None for a file registered on its own)."""

    prepared: Prepared | None
    lookups: RunLookups | None


def interpret_epu_file(db: Session, storages: StorageSet, run_file: RunFile,
                       prepared: Prepared | None = None,
                       lookups: RunLookups | None = None) -> Result:
    where = epu_where(run_file.relative_path)
    handler = _HANDLERS.get(where.kind)
    if handler is None:
        return None, None
    return handler(db, storages, run_file, where, _Context(prepared, lookups))


def prepare_epu_file(storages: StorageSet, dataset_id: uuid.UUID, relative_path: str,
                     content: bytes | memoryview, storage_name: str, key: str) -> Prepared:
    """Parse the file's metadata or make its downscaled copy (not committed: see
    `interpret.prepare`), without the database."""
    kind = epu_where(relative_path).kind
    parser = _PARSERS.get(kind)
    if parser is not None:
        try:
            if len(content) > MAX_PARSED_BYTES:
                raise ValueError(f"{relative_path} is {len(content):,} bytes, larger than a "
                                 "metadata file can be")
            return Prepared(record=parser(bytes(content), relative_path))
        except (IngestFormatError, ValueError) as exc:
            return Prepared(error=exc)
    factor = _DOWNSCALED.get(kind)
    if factor is not None:
        try:
            copy, staged = stage_downscaled(storages, storage_name, key, dataset_id,
                                            relative_path, factor)
            return Prepared(copy=copy, staged=staged)
        except UnreadableImage as exc:
            return Prepared(unreadable=str(exc))
    return Prepared()


def prefetch_epu_rows(db: Session, dataset_id: uuid.UUID, files: list[tuple[str, str]],
                      lookups: RunLookups) -> None:
    """The micrographs, grid squares and foil holes the files will update, read — and those
    missing created — with one statement or two per table (see `ensure_rows`)."""
    acquisitions: dict[str, dict] = {}
    squares: dict[str, dict] = {}
    holes: dict[str, set[str]] = {}
    now = utcnow()
    for relative_path, _ in files:
        where = epu_where(relative_path)
        if where.kind in _ACQUISITION_KINDS and where.acquisition \
                and where.acquisition not in acquisitions:
            # Created in the order their first files came, a microsecond apart: the run's
            # micrographs are listed in that order (created_at, id).
            created = now + timedelta(microseconds=len(acquisitions))
            acquisitions[where.acquisition] = {
                "grid_square_id": where.grid_square_id, "foil_hole_id": where.foil_hole_id,
                "status": ITEM_IN_PROGRESS, "metadata_json": "{}", "created_at": created,
                "updated_at": created}
        elif where.kind in _SQUARE_KINDS:
            squares.setdefault(where.grid_square_id or "", {"metadata_json": "{}"})
            if where.kind.startswith("foil_hole"):
                holes.setdefault(where.grid_square_id or "", set()).add(where.foil_hole_id or "")
    if acquisitions:
        lookups.micrographs.update(ensure_rows(db, Micrograph, ("dataset_id", dataset_id),
                                               "name", acquisitions))
    if squares:
        lookups.squares.update(ensure_rows(db, GridSquare, ("dataset_id", dataset_id),
                                           "epu_id", squares))
    for square_epu_id, hole_ids in sorted(holes.items()):
        square = lookups.squares[square_epu_id]
        found = ensure_rows(db, FoilHole, ("grid_square_id", square.id), "epu_id",
                            dict.fromkeys(hole_ids, {}))
        lookups.holes.update({(square.id, epu_id): hole for epu_id, hole in found.items()})


def movies_expected(db: Session, dataset_id: uuid.UUID,
                    lookups: RunLookups | None = None) -> bool:
    """False only once a session file says EPU saves no movies (no dose-fractions output)."""
    if lookups is not None and lookups.movies_expected is not None:
        return lookups.movies_expected
    flags = db.scalars(select(RunSession.movies_expected)
                       .where(RunSession.dataset_id == dataset_id)).all()
    expected = not flags or any(flags)
    if lookups is not None:
        lookups.movies_expected = expected
    return expected


def micrograph_status(micrograph: Micrograph, movies: bool) -> str:
    if micrograph.status == ITEM_FAILED:
        return ITEM_FAILED
    if micrograph.has_xml and (micrograph.has_movie or not movies):
        return ITEM_COMPLETED
    return ITEM_IN_PROGRESS


def _parsed(storages: StorageSet, run_file: RunFile, ctx: _Context):
    """The file's parsed record (read before the transaction in a batch, now otherwise);
    raises IngestFormatError or ValueError."""
    if ctx.prepared is not None and (ctx.prepared.record is not None
                                     or ctx.prepared.error is not None):
        return ctx.prepared.parsed()
    kind = epu_where(run_file.relative_path).kind
    return _PARSERS[kind](read_small(storages, run_file), run_file.relative_path)


def _downscaled(db: Session, storages: StorageSet, run_file: RunFile, factor: int,
                ctx: _Context) -> tuple[RunFile | None, str | None]:
    """The image's downscaled copy: the one a batch made before its transaction (unless the
    run already has one), else made now."""
    prepared, lookups = ctx.prepared, ctx.lookups
    if prepared is None or lookups is None or (prepared.copy is None
                                               and prepared.unreadable is None):
        return store_downscaled(db, storages, run_file, factor)
    if prepared.unreadable is not None:
        return None, prepared.unreadable
    copy = prepared.copy
    assert copy is not None
    existing = lookups.files.get(copy.path)
    if existing is not None:  # the caller deletes the unused copy's bytes
        return existing, None
    row = record_downscaled(db, run_file, copy)
    lookups.files[copy.path] = row
    return row, None


def _micrograph(db: Session, run_file: RunFile, where: EpuPath, ctx: _Context) -> Micrograph:
    if ctx.lookups is not None and where.acquisition in ctx.lookups.micrographs:
        return ctx.lookups.micrographs[where.acquisition]
    return get_or_create(db, Micrograph, {"dataset_id": run_file.dataset_id,
                                          "name": where.acquisition},
                         grid_square_id=where.grid_square_id, foil_hole_id=where.foil_hole_id,
                         status=ITEM_IN_PROGRESS, metadata_json="{}")


def _ref(micrograph: Micrograph) -> ItemRef:
    return ItemRef("micrograph", micrograph.id, micrograph.name, micrograph.status)


def _settle(db: Session, micrograph: Micrograph, ctx: _Context) -> None:
    movies = movies_expected(db, micrograph.dataset_id, ctx.lookups)
    status = micrograph_status(micrograph, movies)
    if status != micrograph.status:  # no write for what did not change
        micrograph.status = status
    micrograph.updated_at = utcnow()


def _acquisition_xml(db: Session, storages: StorageSet, run_file: RunFile,
                     where: EpuPath, ctx: _Context) -> Result:
    micrograph = _micrograph(db, run_file, where, ctx)
    try:
        record = _parsed(storages, run_file, ctx)
    except (IngestFormatError, ValueError) as exc:
        micrograph.status, micrograph.problem = ITEM_FAILED, _reason(run_file, exc)
        micrograph.updated_at = utcnow()
        return _ref(micrograph), micrograph.problem
    values = record.metadata()
    values.update(grid_square_id=where.grid_square_id, foil_hole_id=where.foil_hole_id)
    micrograph.metadata_json = merged(micrograph.metadata_json, values)
    micrograph.acquired_at = record.acquired_at
    micrograph.expected_frames = record.number_of_fractions
    micrograph.has_xml = True
    _settle(db, micrograph, ctx)
    return _ref(micrograph), None


def _acquisition_file(db: Session, storages: StorageSet, run_file: RunFile,
                      where: EpuPath, ctx: _Context) -> Result:
    micrograph = _micrograph(db, run_file, where, ctx)
    problem = None
    if where.kind == "movie":
        micrograph.has_movie = True
    elif where.kind == "integrated":
        run_file.item_id = micrograph.id
        _, problem = _downscaled(db, storages, run_file, MICROGRAPH_BIN, ctx)
    _settle(db, micrograph, ctx)
    return _ref(micrograph), problem


def _grid_square(db: Session, dataset_id: uuid.UUID, epu_id: str, ctx: _Context) -> GridSquare:
    if ctx.lookups is not None and epu_id in ctx.lookups.squares:
        return ctx.lookups.squares[epu_id]
    return get_or_create(db, GridSquare, {"dataset_id": dataset_id, "epu_id": epu_id},
                         metadata_json="{}")


def _square_ref(square: GridSquare) -> ItemRef:
    return ItemRef("grid_square", square.id, f"GridSquare_{square.epu_id}", square.state)


def _grid_square_xml(db: Session, storages: StorageSet, run_file: RunFile,
                     where: EpuPath, ctx: _Context) -> Result:
    square = _grid_square(db, run_file.dataset_id, where.grid_square_id or "", ctx)
    try:
        record = _parsed(storages, run_file, ctx)
    except (IngestFormatError, ValueError) as exc:
        return _square_ref(square), _reason(run_file, exc)
    square.metadata_json = merged(square.metadata_json, record.metadata())
    square.acquired_at = record.acquired_at
    square.pixel_size_angstrom = record.pixel_size_angstrom
    square.width_px, square.height_px = record.width_px, record.height_px
    return _square_ref(square), None


def _grid_square_image(db: Session, storages: StorageSet, run_file: RunFile,
                       where: EpuPath, ctx: _Context) -> Result:
    square = _grid_square(db, run_file.dataset_id, where.grid_square_id or "", ctx)
    run_file.item_id = square.id
    copy, problem = _downscaled(db, storages, run_file, GRID_SQUARE_BIN, ctx)
    if copy is not None:
        square.image_file_id = copy.id
    return _square_ref(square), problem


def _grid_square_metadata(db: Session, storages: StorageSet, run_file: RunFile,
                          where: EpuPath, ctx: _Context) -> Result:
    square = _grid_square(db, run_file.dataset_id, where.grid_square_id or "", ctx)
    try:
        targets = _parsed(storages, run_file, ctx)
    except (IngestFormatError, ValueError) as exc:
        return _square_ref(square), _reason(run_file, exc)
    if targets.state:
        square.state = targets.state
    known = {hole.epu_id: hole for hole in db.scalars(
        select(FoilHole).where(FoilHole.grid_square_id == square.id))}
    for target in targets.foil_holes:
        hole = known.get(target.foil_hole_id)
        if hole is None:
            hole = FoilHole(grid_square_id=square.id, epu_id=target.foil_hole_id)
            db.add(hole)
            known[target.foil_hole_id] = hole
            if ctx.lookups is not None:
                ctx.lookups.holes[(square.id, target.foil_hole_id)] = hole
        hole.x_px, hole.y_px = target.x_px, target.y_px
        hole.diameter_px, hole.selected = target.diameter_px, target.selected
    return _square_ref(square), None


def _foil_hole_image(db: Session, storages: StorageSet, run_file: RunFile,
                     where: EpuPath, ctx: _Context) -> Result:
    square = _grid_square(db, run_file.dataset_id, where.grid_square_id or "", ctx)
    epu_id = where.foil_hole_id or ""
    hole = ctx.lookups.holes.get((square.id, epu_id)) if ctx.lookups is not None else None
    if hole is None:
        hole = get_or_create(db, FoilHole, {"grid_square_id": square.id, "epu_id": epu_id})
    run_file.item_id = hole.id
    if where.kind == "foil_hole_image":
        hole.image_file_id = run_file.id
    return ItemRef("foil_hole", hole.id, f"FoilHole_{hole.epu_id}", None), None


def _session(db: Session, storages: StorageSet, run_file: RunFile, where: EpuPath,
             ctx: _Context) -> Result:
    session = get_or_create(db, RunSession, {"dataset_id": run_file.dataset_id,
                                             "name": run_file.session}, metadata_json="{}")
    try:
        record = _parsed(storages, run_file, ctx)
    except (IngestFormatError, ValueError) as exc:
        return ItemRef("session", session.id, session.name, None), _reason(run_file, exc)
    before = session.movies_expected
    session.movies_expected = record.dose_fractions_format is not None
    session.metadata_json = dumps({
        "epu_session": record.name, "epu_version": record.epu_version,
        "started_at": record.started_at.isoformat() if record.started_at else None,
        "atlas_path": record.atlas_path, "image_file_format": record.image_file_format,
        "dose_fractions_format": record.dose_fractions_format})
    session.updated_at = utcnow()
    if before != session.movies_expected:
        if ctx.lookups is not None:
            ctx.lookups.movies_expected = None  # read again with this session's answer
        _resettle_all(db, run_file.dataset_id, ctx)
    return ItemRef("session", session.id, session.name, None), None


def _resettle_all(db: Session, dataset_id: uuid.UUID, ctx: _Context) -> None:
    movies = movies_expected(db, dataset_id, ctx.lookups)
    complete = (Micrograph.has_xml & Micrograph.has_movie) if movies else Micrograph.has_xml
    base = update(Micrograph).where(Micrograph.dataset_id == dataset_id,
                                    Micrograph.status != ITEM_FAILED)
    db.execute(base.where(complete).values(status=ITEM_COMPLETED)
               .execution_options(synchronize_session="fetch"))
    db.execute(base.where(~complete).values(status=ITEM_IN_PROGRESS)
               .execution_options(synchronize_session="fetch"))


def atlas_name(cassette_slot: int | None) -> str:
    """An atlas is named after the autoloader slot its grid was in (EPU's Sample<N> folder)."""
    return f"Sample{cassette_slot}" if cassette_slot is not None else "Atlas"


def _atlas(db: Session, run_file: RunFile, where: EpuPath) -> Atlas:
    return get_or_create(db, Atlas, {"dataset_id": run_file.dataset_id,
                                     "name": atlas_name(where.cassette_slot)},
                         cassette_slot=where.cassette_slot, metadata_json="{}")


def _atlas_file(db: Session, storages: StorageSet, run_file: RunFile, where: EpuPath,
                ctx: _Context) -> Result:
    atlas = _atlas(db, run_file, where)
    run_file.item_id = atlas.id
    ref = ItemRef("atlas", atlas.id, atlas.name, None)
    if where.kind == "atlas_image":
        copy, problem = _downscaled(db, storages, run_file, ATLAS_BIN, ctx)
        if copy is not None:
            atlas.image_file_id = copy.id
        return ref, problem
    if where.kind == "atlas_image_xml":
        try:
            record = _parsed(storages, run_file, ctx)
        except (IngestFormatError, ValueError) as exc:
            return ref, _reason(run_file, exc)
        if record.pixel_size_angstrom:
            atlas.pixel_size_angstrom = record.pixel_size_angstrom
        atlas.width_px = record.width_px or atlas.width_px
        atlas.height_px = record.height_px or atlas.height_px
        atlas.metadata_json = merged(atlas.metadata_json, {"image": record.metadata()})
        return ref, None
    try:
        record = _parsed(storages, run_file, ctx)
    except (IngestFormatError, ValueError) as exc:
        return ref, _reason(run_file, exc)
    atlas.acquired_at = record.acquired_at
    atlas.pixel_size_angstrom = record.pixel_size_angstrom or atlas.pixel_size_angstrom
    atlas.width_px = record.width_px or atlas.width_px
    atlas.height_px = record.height_px or atlas.height_px
    atlas.metadata_json = merged(atlas.metadata_json, {"atlas_name": record.name,
                                                       "grid_squares": len(record.grid_squares)})
    squares = {square.epu_id: square for square in db.scalars(
        select(GridSquare).where(GridSquare.dataset_id == run_file.dataset_id))}
    for entry in record.grid_squares:
        square = squares.get(entry.grid_square_id)
        if square is None:
            square = GridSquare(dataset_id=run_file.dataset_id, epu_id=entry.grid_square_id,
                                metadata_json="{}")
            db.add(square)
            squares[entry.grid_square_id] = square
            if ctx.lookups is not None:
                ctx.lookups.squares[entry.grid_square_id] = square
        square.atlas_x_px, square.atlas_y_px = entry.x_px, entry.y_px
        if entry.state:  # Atlas.dm rarely states it; the square's .dm does
            square.state = entry.state
    return ref, None


def _stem(relative_path: str) -> str:
    return relative_path.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def _reason(run_file: RunFile, exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return f"{run_file.relative_path}: {message}"


_HANDLERS = {
    "session": _session,
    "atlas": _atlas_file,
    "atlas_image": _atlas_file,
    "atlas_image_xml": _atlas_file,
    "grid_square_metadata": _grid_square_metadata,
    "grid_square_xml": _grid_square_xml,
    "grid_square_image": _grid_square_image,
    "foil_hole_xml": _foil_hole_image,
    "foil_hole_image": _foil_hole_image,
    "acquisition_xml": _acquisition_xml,
    "acquisition_jpg": _acquisition_file,
    "integrated": _acquisition_file,
    "movie": _acquisition_file,
}

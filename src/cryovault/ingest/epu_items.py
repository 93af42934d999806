"""EPU run items from the session's files (SPEC SPA-1, SPA-8).

Each registered file updates the tables of its run, whatever order the files come in: an
acquisition's movie may arrive before its XML (the micrograph is created at the first file and
completed when its metadata and, if the session saves movies, its movie are there); a grid
square's foil-hole targets may arrive before its image.
"""

from __future__ import annotations

import uuid

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
from cryovault.ingest.downscale import store_downscaled
from cryovault.ingest.epu.layout import EpuPath, classify_epu_path
from cryovault.ingest.epu.parsers import (
    parse_atlas,
    parse_epu_session,
    parse_grid_square_metadata,
    parse_image_xml,
)
from cryovault.ingest.errors import IngestFormatError
from cryovault.ingest.interpret import ItemRef, dumps, merged, read_small
from cryovault.ingest.rows import get_or_create
from cryovault.storage.registry import StorageSet

MICROGRAPH_BIN, GRID_SQUARE_BIN, ATLAS_BIN = 4, 2, 1
Result = tuple[ItemRef | None, str | None]


def interpret_epu_file(db: Session, storages: StorageSet, run_file: RunFile) -> Result:
    where = classify_epu_path(run_file.relative_path)
    handler = _HANDLERS.get(where.kind)
    if handler is None:
        return None, None
    return handler(db, storages, run_file, where)


def movies_expected(db: Session, dataset_id: uuid.UUID) -> bool:
    """False only once a session file says EPU saves no movies (no dose-fractions output)."""
    flags = db.scalars(select(RunSession.movies_expected)
                       .where(RunSession.dataset_id == dataset_id)).all()
    return not flags or any(flags)


def micrograph_status(micrograph: Micrograph, movies: bool) -> str:
    if micrograph.status == ITEM_FAILED:
        return ITEM_FAILED
    if micrograph.has_xml and (micrograph.has_movie or not movies):
        return ITEM_COMPLETED
    return ITEM_IN_PROGRESS


def _micrograph(db: Session, run_file: RunFile, where: EpuPath) -> Micrograph:
    return get_or_create(db, Micrograph, {"dataset_id": run_file.dataset_id,
                                          "name": where.acquisition},
                         grid_square_id=where.grid_square_id, foil_hole_id=where.foil_hole_id,
                         status=ITEM_IN_PROGRESS, metadata_json="{}")


def _ref(micrograph: Micrograph) -> ItemRef:
    return ItemRef("micrograph", micrograph.id, micrograph.name, micrograph.status)


def _settle(db: Session, micrograph: Micrograph) -> None:
    micrograph.status = micrograph_status(micrograph, movies_expected(db, micrograph.dataset_id))
    micrograph.updated_at = utcnow()


def _acquisition_xml(db: Session, storages: StorageSet, run_file: RunFile,
                     where: EpuPath) -> Result:
    micrograph = _micrograph(db, run_file, where)
    try:
        record = parse_image_xml(read_small(storages, run_file), _base_name(run_file),
                                 source=run_file.relative_path)
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
    _settle(db, micrograph)
    return _ref(micrograph), None


def _acquisition_file(db: Session, storages: StorageSet, run_file: RunFile,
                      where: EpuPath) -> Result:
    micrograph = _micrograph(db, run_file, where)
    problem = None
    if where.kind == "movie":
        micrograph.has_movie = True
    elif where.kind == "integrated":
        run_file.item_id = micrograph.id
        _, problem = store_downscaled(db, storages, run_file, MICROGRAPH_BIN)
    _settle(db, micrograph)
    return _ref(micrograph), problem


def _grid_square(db: Session, dataset_id: uuid.UUID, epu_id: str) -> GridSquare:
    return get_or_create(db, GridSquare, {"dataset_id": dataset_id, "epu_id": epu_id},
                         metadata_json="{}")


def _square_ref(square: GridSquare) -> ItemRef:
    return ItemRef("grid_square", square.id, f"GridSquare_{square.epu_id}", square.state)


def _grid_square_xml(db: Session, storages: StorageSet, run_file: RunFile,
                     where: EpuPath) -> Result:
    square = _grid_square(db, run_file.dataset_id, where.grid_square_id or "")
    try:
        record = parse_image_xml(read_small(storages, run_file), _base_name(run_file),
                                 source=run_file.relative_path)
    except (IngestFormatError, ValueError) as exc:
        return _square_ref(square), _reason(run_file, exc)
    square.metadata_json = merged(square.metadata_json, record.metadata())
    square.acquired_at = record.acquired_at
    square.pixel_size_angstrom = record.pixel_size_angstrom
    square.width_px, square.height_px = record.width_px, record.height_px
    return _square_ref(square), None


def _grid_square_image(db: Session, storages: StorageSet, run_file: RunFile,
                       where: EpuPath) -> Result:
    square = _grid_square(db, run_file.dataset_id, where.grid_square_id or "")
    run_file.item_id = square.id
    copy, problem = store_downscaled(db, storages, run_file, GRID_SQUARE_BIN)
    if copy is not None:
        square.image_file_id = copy.id
    return _square_ref(square), problem


def _grid_square_metadata(db: Session, storages: StorageSet, run_file: RunFile,
                          where: EpuPath) -> Result:
    square = _grid_square(db, run_file.dataset_id, where.grid_square_id or "")
    try:
        targets = parse_grid_square_metadata(read_small(storages, run_file),
                                             source=run_file.relative_path)
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
        hole.x_px, hole.y_px = target.x_px, target.y_px
        hole.diameter_px, hole.selected = target.diameter_px, target.selected
    return _square_ref(square), None


def _foil_hole_image(db: Session, storages: StorageSet, run_file: RunFile,
                     where: EpuPath) -> Result:
    square = _grid_square(db, run_file.dataset_id, where.grid_square_id or "")
    hole = get_or_create(db, FoilHole, {"grid_square_id": square.id,
                                        "epu_id": where.foil_hole_id or ""})
    run_file.item_id = hole.id
    if where.kind == "foil_hole_image":
        hole.image_file_id = run_file.id
    return ItemRef("foil_hole", hole.id, f"FoilHole_{hole.epu_id}", None), None


def _session(db: Session, storages: StorageSet, run_file: RunFile, where: EpuPath) -> Result:
    session = get_or_create(db, RunSession, {"dataset_id": run_file.dataset_id,
                                             "name": run_file.session}, metadata_json="{}")
    try:
        record = parse_epu_session(read_small(storages, run_file), source=run_file.relative_path)
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
        _resettle_all(db, run_file.dataset_id)
    return ItemRef("session", session.id, session.name, None), None


def _resettle_all(db: Session, dataset_id: uuid.UUID) -> None:
    movies = movies_expected(db, dataset_id)
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


def _atlas_file(db: Session, storages: StorageSet, run_file: RunFile, where: EpuPath) -> Result:
    atlas = _atlas(db, run_file, where)
    run_file.item_id = atlas.id
    ref = ItemRef("atlas", atlas.id, atlas.name, None)
    if where.kind == "atlas_image":
        copy, problem = store_downscaled(db, storages, run_file, ATLAS_BIN)
        if copy is not None:
            atlas.image_file_id = copy.id
        return ref, problem
    if where.kind == "atlas_image_xml":
        try:
            record = parse_image_xml(read_small(storages, run_file), _base_name(run_file),
                                 source=run_file.relative_path)
        except (IngestFormatError, ValueError) as exc:
            return ref, _reason(run_file, exc)
        if record.pixel_size_angstrom:
            atlas.pixel_size_angstrom = record.pixel_size_angstrom
        atlas.width_px = record.width_px or atlas.width_px
        atlas.height_px = record.height_px or atlas.height_px
        atlas.metadata_json = merged(atlas.metadata_json, {"image": record.metadata()})
        return ref, None
    try:
        record = parse_atlas(read_small(storages, run_file), source=run_file.relative_path)
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
        square.atlas_x_px, square.atlas_y_px = entry.x_px, entry.y_px
        if entry.state:  # Atlas.dm rarely states it; the square's .dm does
            square.state = entry.state
    return ref, None


def _base_name(run_file: RunFile) -> str:
    return run_file.relative_path.rsplit("/", 1)[-1].rsplit(".", 1)[0]


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

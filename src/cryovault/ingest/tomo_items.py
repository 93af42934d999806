"""Tomo run items from the acquisition's files (SPEC ET-1): a tilt series per position.

A tilt series is created by its first file (a tilt movie or the .mdoc). The .mdoc lists the
tilts (angle, dose, time, movie name); it may be rewritten as the series goes on, and each
version replaces the tilts' metadata. A series is completed when its .mdoc is there and every
tilt it lists has its movie.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from cryovault.db.base import utcnow
from cryovault.db.runs import (
    ITEM_COMPLETED,
    ITEM_FAILED,
    ITEM_IN_PROGRESS,
    RunFile,
    Tilt,
    TiltSeries,
)
from cryovault.ingest.errors import IngestFormatError
from cryovault.ingest.interpret import ItemRef, dumps, merged, read_small
from cryovault.ingest.rows import get_or_create
from cryovault.ingest.tomo.layout import TomoPath, classify_tomo_path
from cryovault.ingest.tomo.parsers import parse_tilt_series_mdoc
from cryovault.storage.registry import StorageSet

Result = tuple[ItemRef | None, str | None]


def series_name(where: TomoPath, relative_path: str) -> str:
    if where.position:
        return where.position
    name = PurePosixPath(relative_path).name
    for suffix in (".mrc.mdoc", ".st.mdoc", ".tif.mdoc", ".mdoc"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def interpret_tomo_file(db: Session, storages: StorageSet, run_file: RunFile) -> Result:
    where = classify_tomo_path(run_file.relative_path)
    if where.kind not in ("mdoc", "tilt_movie"):
        return None, None
    movie_name = PurePosixPath(run_file.relative_path).name
    series = _listed_in_mdoc(db, run_file, movie_name) if where.kind == "tilt_movie" else None
    if series is None:
        series = get_or_create(db, TiltSeries,
                               {"dataset_id": run_file.dataset_id,
                                "name": series_name(where, run_file.relative_path)},
                               status=ITEM_IN_PROGRESS, metadata_json="{}")
    run_file.item_id = series.id
    problem = None
    if where.kind == "mdoc":
        problem = _read_mdoc(db, storages, run_file, series)
    else:
        tilt = get_or_create(db, Tilt, {"tilt_series_id": series.id, "movie_name": movie_name},
                             metadata_json="{}")
        tilt.movie_file_id = run_file.id
    _settle(db, series)
    return ItemRef("tilt_series", series.id, series.name, series.status), problem


def _listed_in_mdoc(db: Session, run_file: RunFile, movie_name: str) -> TiltSeries | None:
    """The series whose .mdoc names this movie (names of movies do not always start with the
    .mdoc's name: facilities add fields to them)."""
    return db.scalar(select(TiltSeries).join(Tilt, Tilt.tilt_series_id == TiltSeries.id)
                     .where(TiltSeries.dataset_id == run_file.dataset_id,
                            TiltSeries.has_mdoc.is_(True), Tilt.movie_name == movie_name)
                     .limit(1))


def _adopt_tilts(db: Session, series: TiltSeries, movie_names: set[str]) -> None:
    """Movies registered before the .mdoc under a series guessed from their names move to the
    series the .mdoc says; guessed series left empty go."""
    strays = db.scalars(select(Tilt).join(TiltSeries, Tilt.tilt_series_id == TiltSeries.id)
                        .where(TiltSeries.dataset_id == series.dataset_id,
                               TiltSeries.id != series.id, TiltSeries.has_mdoc.is_(False),
                               Tilt.movie_name.in_(movie_names))).all()
    if not strays:
        return
    emptied = {tilt.tilt_series_id for tilt in strays}
    for tilt in strays:
        db.execute(delete(Tilt).where(Tilt.tilt_series_id == series.id,
                                      Tilt.movie_name == tilt.movie_name, Tilt.id != tilt.id))
        tilt.tilt_series_id = series.id
        if tilt.movie_file_id is not None:
            db.execute(update(RunFile).where(RunFile.id == tilt.movie_file_id)
                       .values(item_id=series.id))
    db.flush()
    for series_id in emptied:
        left = db.scalar(select(func.count()).select_from(Tilt)
                         .where(Tilt.tilt_series_id == series_id))
        if not left:
            db.execute(update(RunFile).where(RunFile.item_id == series_id)
                       .values(item_id=series.id))
            db.execute(delete(TiltSeries).where(TiltSeries.id == series_id))


def _read_mdoc(db: Session, storages: StorageSet, run_file: RunFile,
               series: TiltSeries) -> str | None:
    try:
        record = parse_tilt_series_mdoc(read_small(storages, run_file), series.name)
    except (IngestFormatError, ValueError) as exc:
        series.status = ITEM_FAILED
        series.problem = f"{run_file.relative_path}: {getattr(exc, 'message', None) or exc}"
        return series.problem
    series.problem = None
    if series.status == ITEM_FAILED:
        series.status = ITEM_IN_PROGRESS  # a corrected .mdoc replaces a broken one
    series.metadata_json = merged(series.metadata_json, record.metadata())
    series.has_mdoc = True
    _adopt_tilts(db, series, {entry.sub_frame_path for entry in record.tilts
                              if entry.sub_frame_path})
    tilts = {tilt.movie_name: tilt for tilt in db.scalars(
        select(Tilt).where(Tilt.tilt_series_id == series.id))}
    for entry in record.tilts:
        movie_name = entry.sub_frame_path or f"ZValue_{entry.z_value}"
        tilt = tilts.get(movie_name)
        if tilt is None:
            tilt = Tilt(tilt_series_id=series.id, movie_name=movie_name)
            db.add(tilt)
            tilts[movie_name] = tilt
        tilt.z_value, tilt.tilt_angle_deg = entry.z_value, entry.tilt_angle_deg
        tilt.acquired_at = entry.acquired_at
        tilt.metadata_json = dumps(entry.metadata())
    times = [entry.acquired_at for entry in record.tilts if entry.acquired_at is not None]
    series.acquired_at = min(times) if times else series.acquired_at
    series.tilt_count = len(record.tilts)
    db.flush()
    return None


def _settle(db: Session, series: TiltSeries) -> None:
    db.flush()
    series.movie_count = db.scalar(select(func.count()).select_from(Tilt).where(
        Tilt.tilt_series_id == series.id, Tilt.movie_file_id.is_not(None))) or 0
    if series.status != ITEM_FAILED:
        waiting = db.scalar(select(func.count()).select_from(Tilt).where(
            Tilt.tilt_series_id == series.id, Tilt.movie_file_id.is_(None),
            ~Tilt.movie_name.startswith("ZValue_"))) or 0
        series.status = ITEM_COMPLETED if series.has_mdoc and waiting == 0 else ITEM_IN_PROGRESS
    series.updated_at = utcnow()

"""Reading a run's items (SPEC SPA-2, ET-1): pages of micrographs and tilt series with their
counts, one item with its files, the registered files, and a run file's bytes."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, literal, select, tuple_
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.access.guard import require_access
from cryovault.access.levels import VIEWER
from cryovault.db.elements import Element
from cryovault.db.runs import (
    ITEM_COMPLETED,
    ITEM_FAILED,
    ITEM_IN_PROGRESS,
    Micrograph,
    RunFile,
    Tilt,
    TiltSeries,
)
from cryovault.errors import Conflict, Invalid, NotFound
from cryovault.storage.backends import Storage
from cryovault.storage.registry import StorageSet

ITEM_STATUSES = (ITEM_COMPLETED, ITEM_IN_PROGRESS, ITEM_FAILED)
MAX_PAGE = 500


@dataclass(frozen=True)
class ItemPage:
    items: list  # Micrograph | TiltSeries rows
    total: int  # items matching the status filter
    counts: dict[str, int]  # every item of the run, by status
    next_cursor: str | None


@dataclass(frozen=True)
class RunFileView:
    file: RunFile
    dataset: Element


def run_dataset(db: Session, actor: Actor, dataset_id: uuid.UUID, dataset_type: str) -> Element:
    dataset, _ = require_access(db, actor, dataset_id, VIEWER, "open")
    if dataset.kind != "dataset" or dataset.dataset_type != dataset_type:
        label = {"epu_run": "an EPU run", "tomo_run": "a Tomo run"}[dataset_type]
        raise Invalid(f"{dataset.kind} {dataset.name!r} is not {label}")
    return dataset


def encode_cursor(created_at: datetime, item_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(item_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, item_id = json.loads(raw)
        when = datetime.fromisoformat(created)
        if when.tzinfo is None:
            raise ValueError
        return when, uuid.UUID(item_id)
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError):
        raise Invalid("the cursor is not valid; start again from the first page") from None


def _after(model, created: datetime, after: uuid.UUID):
    """Rows after the cursor, as one row-value comparison so that the database walks the
    (dataset, created_at, id) index from there instead of scanning the run."""
    return tuple_(model.created_at, model.id) > tuple_(
        literal(created, model.created_at.type), literal(after, model.id.type))


def _page(db: Session, model, dataset_id: uuid.UUID, status: str | None, limit: int,
          cursor: str | None) -> ItemPage:
    if status is not None and status not in ITEM_STATUSES:
        raise Invalid(f"unknown status {status!r}: choose one of {', '.join(ITEM_STATUSES)}")
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit must be between 1 and {MAX_PAGE}")
    counts = dict.fromkeys(ITEM_STATUSES, 0)
    for item_status, count in db.execute(
            select(model.status, func.count()).where(model.dataset_id == dataset_id)
            .group_by(model.status)):
        counts[item_status] = count
    total = counts.get(status, 0) if status else sum(counts.values())
    query = select(model).where(model.dataset_id == dataset_id)
    if status:
        query = query.where(model.status == status)
    if cursor:
        created, after = decode_cursor(cursor)
        query = query.where(_after(model, created, after))
    rows = db.scalars(query.order_by(model.created_at, model.id).limit(limit + 1)).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id)
    return ItemPage(list(rows), total, counts, next_cursor)


def list_micrographs(db: Session, actor: Actor, dataset_id: uuid.UUID, *,
                     status: str | None = None, limit: int = 100,
                     cursor: str | None = None) -> ItemPage:
    run_dataset(db, actor, dataset_id, "epu_run")
    return _page(db, Micrograph, dataset_id, status, limit, cursor)


def list_tilt_series(db: Session, actor: Actor, dataset_id: uuid.UUID, *,
                     status: str | None = None, limit: int = 100,
                     cursor: str | None = None) -> ItemPage:
    run_dataset(db, actor, dataset_id, "tomo_run")
    return _page(db, TiltSeries, dataset_id, status, limit, cursor)


def get_micrograph(db: Session, actor: Actor, dataset_id: uuid.UUID,
                   micrograph_id: uuid.UUID) -> tuple[Micrograph, list[RunFile]]:
    run_dataset(db, actor, dataset_id, "epu_run")
    micrograph = db.get(Micrograph, micrograph_id)
    if micrograph is None or micrograph.dataset_id != dataset_id:
        raise NotFound("no such micrograph in this run")
    return micrograph, item_files(db, micrograph.id)


def get_tilt_series(db: Session, actor: Actor, dataset_id: uuid.UUID,
                    series_id: uuid.UUID) -> tuple[TiltSeries, list[Tilt], list[RunFile]]:
    run_dataset(db, actor, dataset_id, "tomo_run")
    series = db.get(TiltSeries, series_id)
    if series is None or series.dataset_id != dataset_id:
        raise NotFound("no such tilt series in this run")
    tilts = db.scalars(select(Tilt).where(Tilt.tilt_series_id == series.id)
                       .order_by(Tilt.tilt_angle_deg, Tilt.movie_name)).all()
    return series, list(tilts), item_files(db, series.id)


def item_files(db: Session, item_id: uuid.UUID) -> list[RunFile]:
    return list(db.scalars(select(RunFile).where(RunFile.item_id == item_id)
                           .order_by(RunFile.relative_path)))


def list_run_files(db: Session, actor: Actor, dataset_id: uuid.UUID, *,
                   session: str | None = None, limit: int = 500,
                   cursor: str | None = None) -> tuple[list[RunFile], str | None]:
    dataset, _ = require_access(db, actor, dataset_id, VIEWER, "open")
    if dataset.kind != "dataset" or dataset.dataset_type not in ("epu_run", "tomo_run"):
        raise Invalid(f"{dataset.kind} {dataset.name!r} is not an EPU or Tomo run")
    if not 1 <= limit <= 5000:
        raise Invalid("limit must be between 1 and 5000")
    query = select(RunFile).where(RunFile.dataset_id == dataset_id, RunFile.role != "downscaled")
    if session:
        query = query.where(RunFile.session == session)
    if cursor:
        created, after = decode_cursor(cursor)
        query = query.where(_after(RunFile, created, after))
    rows = list(db.scalars(query.order_by(RunFile.created_at, RunFile.id).limit(limit + 1)))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id)
    return rows, next_cursor


def get_run_file(db: Session, actor: Actor, file_id: uuid.UUID) -> RunFileView:
    run_file = db.get(RunFile, file_id)
    if run_file is None:
        raise NotFound("no such file")
    try:
        dataset, _ = require_access(db, actor, run_file.dataset_id, VIEWER, "open")
    except NotFound:
        raise NotFound("no such file") from None
    return RunFileView(run_file, dataset)


def open_run_file(db: Session, actor: Actor, storages: StorageSet,
                  file_id: uuid.UUID) -> tuple[RunFileView, Storage]:
    view = get_run_file(db, actor, file_id)
    if view.file.integrity != "ok":
        raise Conflict(f"{view.file.relative_path}: its bytes are {view.file.integrity}; "
                       "ask an administrator to check the storage")
    storage = storages.get(view.file.storage)
    size = storage.size(view.file.key)
    if size != view.file.size_bytes:
        view.file.integrity = "missing" if size is None else "mismatch"
        db.commit()
        raise Conflict(f"{view.file.relative_path}: its bytes are {view.file.integrity}; "
                       "ask an administrator to check the storage")
    return view, storage

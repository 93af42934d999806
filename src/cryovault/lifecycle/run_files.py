"""The files of an acquisition run, chosen by what they are (SPEC JOB-3 … JOB-6, SPA-3, SPA-6,
ET-5): export, archive and cleanup all select a run's files the same way.

A run file's `role` says what it is. Raw files are what the instrument wrote (session, atlas,
grid squares, acquisitions' XML, integrated images, movies, .mdoc …); processed files are what
cryovault made from them: the downscaled copies kept for viewing (SPA-8) and, once the pipelines
write them, motion-corrected sums, CTF diagnostics, aligned stacks and reconstructions.

Items (micrographs, tilt series) may be filtered; for now by status (`ItemFilter`), as a mapping
so that the dataviz filters of SPA-5/ET-3 can join it. Files that belong to no filtered item
(the session, atlas, grid squares, foil holes) always pass.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, or_, select, true
from sqlalchemy.orm import Session

from cryovault.db.base import utcnow
from cryovault.db.elements import Element
from cryovault.db.runs import ITEM_COMPLETED, Micrograph, RunFile, TiltSeries
from cryovault.errors import Invalid

RUN_DATASET_TYPES = ("epu_run", "tomo_run")
DOWNSCALED_ROLE = "downscaled"
# Roles the processing pipelines give their outputs (SPA-4, ET-2).
PIPELINE_ROLES = frozenset({"motion_corrected", "ctf_diagnostic", "aligned_stack",
                            "reconstruction"})
PROCESSED_ROLES = PIPELINE_ROLES | {DOWNSCALED_ROLE}
# Roles of files that always belong to an item (micrograph, tilt series) once registered.
ITEM_FILE_ROLES = frozenset({"acquisition_xml", "acquisition_jpg", "integrated", "movie",
                             "mdoc", "tilt_movie"})
RESERVED_PREFIX = ".cryovault/"  # where cryovault's own files of a run live (ingest/downscale)
PROCESSED_EXPORT_FOLDER = "processed"
BATCH_FILES = 500

STATUS_FILTERS = ("all", "completed")


def is_run(element: Element) -> bool:
    return element.kind == "dataset" and element.dataset_type in RUN_DATASET_TYPES


def item_model(dataset_type: str | None) -> type[Micrograph] | type[TiltSeries]:
    """The table of a run's filterable items: micrographs (EPU) or tilt series (Tomo)."""
    return TiltSeries if dataset_type == "tomo_run" else Micrograph


def file_class(role: str) -> str:
    """'processed' for what cryovault made, 'raw' for what the instrument wrote."""
    return "processed" if role in PROCESSED_ROLES else "raw"


def export_path(run_file: RunFile) -> str:
    """Where a run file goes inside an export folder: raw files keep their path relative to the
    session folder; cryovault's own files (under `.cryovault/`) go under `processed/`."""
    path = run_file.relative_path
    if path.startswith(RESERVED_PREFIX):
        return f"{PROCESSED_EXPORT_FOLDER}/{path[len(RESERVED_PREFIX):]}"
    return path


@dataclass(frozen=True)
class RunFileSelection:
    """Which roles: only `roles` (None: any) and never `exclude_roles`."""

    roles: frozenset[str] | None = None
    exclude_roles: frozenset[str] = frozenset()

    def clause(self) -> ColumnElement[bool]:
        parts: list[ColumnElement[bool]] = []
        if self.roles is not None:
            parts.append(RunFile.role.in_(sorted(self.roles)))
        if self.exclude_roles:
            parts.append(RunFile.role.not_in(sorted(self.exclude_roles)))
        return and_(true(), *parts)

    def admits(self, role: str) -> bool:
        return (self.roles is None or role in self.roles) and role not in self.exclude_roles


def selection_for_classes(raw: bool, processed: bool) -> RunFileSelection | None:
    """The files of an export that asked for raw and/or processed files (None: neither)."""
    if raw and processed:
        return RunFileSelection()
    if raw:
        return RunFileSelection(exclude_roles=PROCESSED_ROLES)
    if processed:
        return RunFileSelection(roles=PROCESSED_ROLES)
    return None


@dataclass(frozen=True)
class ItemFilter:
    """Which items of a run (micrographs, tilt series) an export takes. `status`: "all" or
    "completed" (only completed items; in-progress ones join once they complete)."""

    status: str = "all"

    @classmethod
    def parse(cls, value: object) -> ItemFilter:
        if value is None:
            return cls()
        if not isinstance(value, dict):
            raise Invalid('the filter must be an object such as {"status": "completed"}')
        unknown = sorted(set(value) - {"status"})
        if unknown:
            raise Invalid(f"unknown filter field {unknown[0]!r}: the filter takes 'status' "
                          f"({' or '.join(repr(s) for s in STATUS_FILTERS)})")
        status = value.get("status", "all")
        if status not in STATUS_FILTERS:
            raise Invalid(f"unknown status filter {status!r}: choose "
                          f"{' or '.join(repr(s) for s in STATUS_FILTERS)}")
        return cls(status=status)

    def as_dict(self) -> dict[str, str]:
        return {"status": self.status}

    def admits(self, status: str | None) -> bool:
        return self.status == "all" or status == ITEM_COMPLETED


@dataclass(frozen=True)
class FilterSchedule:
    """The filters a (live) export applied over time: each applies to the items registered
    from its start on ("Update live export" changes the filter for items still to come)."""

    changes: tuple[tuple[datetime | None, ItemFilter], ...] = ((None, ItemFilter()),)
    # When the schedule was read: an item registered after it may fall under a change made
    # after that too, so it waits for the next pass, which reads the schedule again.
    read_at: datetime | None = None

    @classmethod
    def from_parameters(cls, parameters: dict) -> FilterSchedule:
        history = parameters.get("filters")
        if history:
            return cls(tuple((datetime.fromisoformat(start) if start else None,
                              ItemFilter.parse(value)) for start, value in history))
        return cls(((None, ItemFilter.parse(parameters.get("filter"))),))

    @property
    def current(self) -> ItemFilter:
        return self.changes[-1][1]

    def changed(self, new: ItemFilter, at: datetime | None = None) -> FilterSchedule:
        return FilterSchedule((*self.changes, (at or utcnow(), new)))

    def as_parameters(self) -> dict:
        return {"filter": self.current.as_dict(),
                "filters": [[start.isoformat() if start else None, f.as_dict()]
                            for start, f in self.changes]}

    def for_item(self, created_at: datetime | None) -> ItemFilter:
        chosen = self.changes[0][1]
        for start, item_filter in self.changes:
            if start is None or created_at is None or created_at >= start:
                chosen = item_filter
        return chosen

    def admits(self, created_at: datetime | None, status: str | None) -> bool:
        if self.read_at is not None and created_at is not None and created_at > self.read_at:
            return False
        return self.for_item(created_at).admits(status)


@dataclass(frozen=True)
class FileTotals:
    files: int
    size_bytes: int


def run_file_totals(db: Session, dataset_id: uuid.UUID,
                    selection: RunFileSelection) -> FileTotals:
    files, size = db.execute(
        select(func.count(), func.coalesce(func.sum(RunFile.size_bytes), 0))
        .where(RunFile.dataset_id == dataset_id, selection.clause())).one()
    return FileTotals(int(files), int(size))


def totals_by_role(db: Session, dataset_id: uuid.UUID) -> dict[str, FileTotals]:
    """Count and bytes of a run's files per role: one grouped query."""
    rows = db.execute(
        select(RunFile.role, func.count(), func.coalesce(func.sum(RunFile.size_bytes), 0))
        .where(RunFile.dataset_id == dataset_id).group_by(RunFile.role))
    return {role: FileTotals(int(files), int(size)) for role, files, size in rows}


@dataclass(frozen=True)
class RunFileRow:
    """A run file with the state of the item it belongs to (None: no filterable item)."""

    file: RunFile
    item_status: str | None
    item_created_at: datetime | None
    filterable: bool

    @property
    def awaiting_item(self) -> bool:
        """A file of an item whose link to it is not there yet (seen while it registers)."""
        return self.file.item_id is None and self.file.role in ITEM_FILE_ROLES


def iter_run_files(db: Session, dataset: Element, selection: RunFileSelection, *,
                   changed_since: datetime | None = None,
                   batch: int = BATCH_FILES) -> Iterator[list[RunFileRow]]:
    """A run's selected files in batches (keyset on the id), each with its item's status.
    With `changed_since`, only files registered since then or whose item changed since: two
    indexed lookups (new files by registration time, then the files of changed items), so a
    live export's frequent passes over a large run stay cheap."""
    model = item_model(dataset.dataset_type)
    query = (select(RunFile, model.status, model.created_at, model.id)
             .outerjoin(model, and_(model.id == RunFile.item_id,
                                    model.dataset_id == RunFile.dataset_id))
             .where(RunFile.dataset_id == dataset.id, selection.clause()))
    if changed_since is None:
        yield from _file_batches(db, query, batch)
        return
    yield from _file_batches(db, query.where(RunFile.created_at >= changed_since), batch)
    changed_items = select(model.id).where(model.dataset_id == dataset.id,
                                           model.updated_at >= changed_since)
    yield from _file_batches(db, query.where(RunFile.item_id.in_(changed_items),
                                             RunFile.created_at < changed_since), batch)


def _file_batches(db: Session, query, batch: int) -> Iterator[list[RunFileRow]]:
    after: uuid.UUID | None = None
    while True:
        page = query if after is None else query.where(RunFile.id > after)
        rows = db.execute(page.order_by(RunFile.id).limit(batch)
                          .execution_options(populate_existing=True)).all()
        if not rows:
            return
        yield [RunFileRow(row[0], row[1], row[2], row[3] is not None) for row in rows]
        after = rows[-1][0].id
        if len(rows) < batch:
            return


def iter_items(db: Session, dataset: Element, *, changed_since: datetime | None = None,
               batch: int = BATCH_FILES) -> Iterator[list[Micrograph | TiltSeries]]:
    """A run's items in acquisition order (keyset on created_at, id), in batches, as the
    database has them now (a long-lived job session must not see earlier states)."""
    model = item_model(dataset.dataset_type)
    query = select(model).where(model.dataset_id == dataset.id)
    if changed_since is not None:
        query = query.where(model.updated_at >= changed_since)
    last: tuple[datetime, uuid.UUID] | None = None
    while True:
        page = query
        if last is not None:
            page = page.where(or_(model.created_at > last[0],
                                  and_(model.created_at == last[0], model.id > last[1])))
        rows = list(db.scalars(page.order_by(model.created_at, model.id).limit(batch)
                               .execution_options(populate_existing=True)))
        if not rows:
            return
        yield rows
        last = (rows[-1].created_at, rows[-1].id)
        if len(rows) < batch:
            return


def selected_totals(db: Session, dataset: Element, selection: RunFileSelection,
                    item_filter: ItemFilter) -> FileTotals:
    """Files and bytes an export with this selection and filter takes from a run."""
    model = item_model(dataset.dataset_type)
    query = (select(func.count(), func.coalesce(func.sum(RunFile.size_bytes), 0))
             .select_from(RunFile)
             .outerjoin(model, and_(model.id == RunFile.item_id,
                                    model.dataset_id == RunFile.dataset_id))
             .where(RunFile.dataset_id == dataset.id, selection.clause()))
    if item_filter.status == "completed":
        query = query.where(or_(model.id.is_(None), model.status == ITEM_COMPLETED))
    files, size = db.execute(query).one()
    return FileTotals(int(files), int(size))

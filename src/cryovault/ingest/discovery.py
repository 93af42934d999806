"""The Discovery viewer's data (SPEC SPA-8): atlases, grid squares on them, foil holes and
acquisitions on a grid square, and deleting an atlas's data.

Atlases are collected across the EPU runs of a workflow that the user can read (or of the one
run when it is in no workflow). The same atlas registered by several runs (two EPU sessions on
one grid) is one entry: atlases are the same when their name (the autoloader sample, e.g.
"Sample7") and acquisition time are.

Marker states of a grid square, from EPU's state when a file gave one, else from what arrived:

- ``completed`` (terminated): EPU says Completed/Finished/Done/Terminated; or the square was
  visited (its image or micrographs arrived) and EPU has moved on — it is not the square with
  the run's latest activity, or the run is no longer in progress;
- ``in_progress``: EPU says InProgress/Acquiring/Started/Running; or the square was visited and
  holds the run's latest activity while the run is in progress;
- ``not_imaged``: nothing arrived for it (EPU's Defined/Selected/Queued squares, or no state).

Acquisitions are placed on the grid-square image at their foil hole (EPU does not record the
exposure's own position there); several acquisitions of one hole are spread on a circle of
0.3 × the hole's diameter around its centre.
"""

from __future__ import annotations

import math
import struct
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.access.guard import require_access
from cryovault.access.levels import COLLABORATOR, VIEWER
from cryovault.access.visibility import access_level, readable_clause
from cryovault.db.base import utcnow
from cryovault.db.elements import Element, ElementAncestor
from cryovault.db.files import StorageTrash
from cryovault.db.runs import Atlas, FoilHole, GridSquare, Micrograph, RunFile
from cryovault.errors import Invalid, NotFound
from cryovault.ingest.run_views import (
    ATLAS_COPY_BIN,
    GRID_SQUARE_COPY_BIN,
    drop_preview_caches,
)
from cryovault.settings import Settings
from cryovault.storage.registry import StorageSet

MARKER_COMPLETED, MARKER_IN_PROGRESS, MARKER_NOT_IMAGED = "completed", "in_progress", "not_imaged"
EPU_TERMINATED_STATES = frozenset({"completed", "finished", "done", "terminated"})
EPU_ACTIVE_STATES = frozenset({"inprogress", "in_progress", "acquiring", "started", "running"})
RUN_FINISHED_STATUSES = frozenset({"completed", "suspended"})
DOWNSCALED_PREFIX = ".cryovault/downscaled/"
SORTS = ("date", "name", "slot")


# --- records ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRef:
    id: uuid.UUID
    name: str


@dataclass(frozen=True)
class AtlasSummary:
    """One atlas of the table; `id` is the atlas row to open (in the run asked about when the
    atlas is used by it), `atlas_ids` every run's row of this atlas."""

    id: uuid.UUID
    name: str
    acquired_at: datetime | None
    created_at: datetime
    cassette_slot: int | None
    runs: list[RunRef]
    atlas_ids: list[uuid.UUID]
    deleted: bool
    grid_square_count: int


@dataclass(frozen=True)
class AtlasTable:
    element: Element  # the run or workflow the table was asked for
    workflow: Element | None
    atlases: list[AtlasSummary]


@dataclass(frozen=True)
class ViewImage:
    """The image the viewer shows (a run file) and how to place things on it: positions are
    given in pixels of the original image, `bin` original pixels per displayed pixel."""

    file_id: uuid.UUID
    width_px: int  # of the displayed image
    height_px: int
    bin: int
    pixel_size_angstrom: float | None  # of the displayed image


@dataclass(frozen=True)
class SquareMarker:
    id: uuid.UUID
    epu_id: str
    dataset_id: uuid.UUID
    x_px: float  # centre on the atlas, original atlas pixels
    y_px: float
    state: str  # completed | in_progress | not_imaged
    epu_state: str | None
    micrograph_count: int
    has_image: bool


@dataclass(frozen=True)
class AtlasDetail:
    atlas: Atlas
    summary: AtlasSummary
    image: ViewImage | None
    pixel_size_angstrom: float | None  # of the original atlas image
    squares: list[SquareMarker]
    counts: dict[str, int]  # squares by marker state
    can_delete: bool


@dataclass(frozen=True)
class HoleMarker:
    id: uuid.UUID
    epu_id: str
    x_px: float | None  # centre on the grid-square image, original pixels
    y_px: float | None
    diameter_px: float | None
    selected: bool | None
    micrograph_count: int


@dataclass(frozen=True)
class AcquisitionMarker:
    id: uuid.UUID  # the micrograph
    name: str
    status: str
    problem: str | None
    foil_hole_id: str | None  # EPU id
    acquired_at: datetime | None
    x_px: float | None  # None: its foil hole has no position on this square's image
    y_px: float | None


@dataclass(frozen=True)
class GridSquareDetail:
    square: GridSquare
    dataset: Element
    state: str
    atlas_id: uuid.UUID | None
    image: ViewImage | None
    pixel_size_angstrom: float | None  # of the original grid-square image
    holes: list[HoleMarker]
    acquisitions: list[AcquisitionMarker]
    counts: dict[str, int] = field(default_factory=dict)  # acquisitions by status


@dataclass(frozen=True)
class AtlasDeletion:
    atlas_ids: list[uuid.UUID]
    files_removed: int
    bytes_freed: int


# --- helpers ------------------------------------------------------------------------------


def square_marker_state(epu_state: str | None, visited: bool, latest: bool,
                        run_active: bool) -> str:
    """The marker state of a grid square (see the module's docstring)."""
    state = (epu_state or "").strip().lower()
    if state in EPU_TERMINATED_STATES:
        return MARKER_COMPLETED
    if state in EPU_ACTIVE_STATES:
        return MARKER_IN_PROGRESS
    if not visited:
        return MARKER_NOT_IMAGED
    return MARKER_IN_PROGRESS if latest and run_active else MARKER_COMPLETED


def _not_found(what: str) -> NotFound:
    return NotFound(f"no such {what} (or you have no access to it)")


def _readable_run(db: Session, actor: Actor, dataset_id: uuid.UUID, what: str,
                  minimum: int = VIEWER, action: str = "open") -> Element:
    """The run a Discovery item belongs to; items of runs one cannot see do not exist."""
    try:
        dataset, _ = require_access(db, actor, dataset_id, minimum, action)
    except NotFound:
        raise _not_found(what) from None
    return dataset


def _workflow_of(db: Session, element: Element) -> Element | None:
    if element.kind == "workflow":
        return element
    return db.scalar(select(Element).join(ElementAncestor,
                                          ElementAncestor.ancestor_id == Element.id)
                     .where(ElementAncestor.element_id == element.id,
                            Element.kind == "workflow"))


def _scope_runs(db: Session, actor: Actor, element: Element) -> tuple[Element | None,
                                                                      list[Element]]:
    """The EPU runs Discovery gathers for an element: those of its workflow the actor can
    read, or the run alone when it is in no workflow."""
    workflow = _workflow_of(db, element)
    if workflow is None:
        return None, [element] if element.dataset_type == "epu_run" else []
    runs = db.scalars(
        select(Element).join(ElementAncestor, ElementAncestor.element_id == Element.id)
        .where(ElementAncestor.ancestor_id == workflow.id, Element.kind == "dataset",
               Element.dataset_type == "epu_run", Element.deleting.is_(False),
               readable_clause(actor, Element.acl_id))
        .order_by(Element.created_at, Element.id)).all()
    return workflow, list(runs)


def _discovery_element(db: Session, actor: Actor, element_id: uuid.UUID) -> Element:
    element, _ = require_access(db, actor, element_id, VIEWER, "open")
    if not (element.kind == "workflow"
            or (element.kind == "dataset" and element.dataset_type == "epu_run")):
        raise Invalid(f"{element.kind} {element.name!r} has no atlases: Discovery opens from an "
                      "EPU run or from a workflow")
    return element


def _group_key(atlas: Atlas) -> tuple:
    if atlas.acquired_at is None:  # not parsed yet: never merged with another run's atlas
        return (atlas.name, atlas.id)
    return (atlas.name, atlas.acquired_at)


def _square_counts(db: Session, dataset_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    if not dataset_ids:
        return {}
    return dict(db.execute(
        select(GridSquare.dataset_id, func.count()).where(
            GridSquare.dataset_id.in_(dataset_ids), GridSquare.atlas_x_px.is_not(None))
        .group_by(GridSquare.dataset_id)).all())


def _summaries(db: Session, runs: list[Element], prefer: uuid.UUID | None) -> list[AtlasSummary]:
    by_id = {run.id: run for run in runs}
    rows = db.scalars(select(Atlas).where(Atlas.dataset_id.in_(list(by_id)))
                      .order_by(Atlas.created_at, Atlas.id)).all() if by_id else []
    groups: dict[tuple, list[Atlas]] = defaultdict(list)
    for atlas in rows:
        groups[_group_key(atlas)].append(atlas)
    square_counts = _square_counts(db, list(by_id))
    summaries = []
    for members in groups.values():
        first = next((a for a in members if a.dataset_id == prefer), members[0])
        runs_of = [RunRef(a.dataset_id, by_id[a.dataset_id].name) for a in members]
        summaries.append(AtlasSummary(
            id=first.id, name=first.name,
            acquired_at=next((a.acquired_at for a in members if a.acquired_at), None),
            created_at=min(a.created_at for a in members),
            cassette_slot=next((a.cassette_slot for a in members
                                if a.cassette_slot is not None), None),
            runs=runs_of, atlas_ids=[a.id for a in members],
            deleted=all(a.deleted for a in members),
            grid_square_count=max(square_counts.get(a.dataset_id, 0) for a in members)))
    return summaries


def _sorted(summaries: list[AtlasSummary], sort: str, order: str) -> list[AtlasSummary]:
    if sort not in SORTS:
        raise Invalid(f"unknown sort {sort!r}: choose one of {', '.join(SORTS)}")
    if order not in ("asc", "desc"):
        raise Invalid("order must be asc or desc")
    if sort == "name":
        def key(s: AtlasSummary):
            return (s.name.lower(), s.created_at)
    elif sort == "slot":
        def key(s: AtlasSummary):
            return (s.cassette_slot if s.cassette_slot is not None else 1 << 30, s.created_at)
    else:
        def key(s: AtlasSummary):
            return (s.acquired_at or s.created_at, s.name)
    return sorted(summaries, key=key, reverse=order == "desc")


def png_size(storages: StorageSet, run_file: RunFile) -> tuple[int, int] | None:
    """(width, height) from a PNG's header, without reading the image."""
    head = b"".join(storages.get(run_file.storage).read(run_file.key, 0, 24))
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def _view_image(db: Session, storages: StorageSet, file_id: uuid.UUID | None, bin_factor: int,
                pixel_size_angstrom: float | None) -> ViewImage | None:
    if file_id is None:
        return None
    row = db.get(RunFile, file_id)
    if row is None or row.integrity != "ok":
        return None
    size = png_size(storages, row) if row.media_type == "image/png" else None
    if size is None:
        return None
    return ViewImage(row.id, size[0], size[1], bin_factor,
                     pixel_size_angstrom * bin_factor if pixel_size_angstrom else None)


# --- services -----------------------------------------------------------------------------


def list_atlases(db: Session, actor: Actor, element_id: uuid.UUID, *, sort: str = "date",
                 order: str = "desc") -> AtlasTable:
    """The atlases of an EPU run's workflow (or of a workflow) the actor can see."""
    element = _discovery_element(db, actor, element_id)
    workflow, runs = _scope_runs(db, actor, element)
    prefer = element.id if element.kind == "dataset" else None
    return AtlasTable(element, workflow, _sorted(_summaries(db, runs, prefer), sort, order))


def _atlas_group(db: Session, actor: Actor, atlas_id: uuid.UUID
                 ) -> tuple[Atlas, Element, AtlasSummary, list[Element]]:
    atlas = db.get(Atlas, atlas_id)
    if atlas is None:
        raise _not_found("atlas")
    dataset = _readable_run(db, actor, atlas.dataset_id, "atlas")
    _, runs = _scope_runs(db, actor, dataset)
    if dataset.id not in {run.id for run in runs}:
        runs.append(dataset)
    summary = next(s for s in _summaries(db, runs, dataset.id) if atlas.id in s.atlas_ids)
    group_runs = [run for run in runs if run.id in {r.id for r in summary.runs}]
    return atlas, dataset, summary, group_runs


def _activity(db: Session, dataset_ids: list[uuid.UUID]
              ) -> tuple[dict[tuple[uuid.UUID, str], int], dict[tuple[uuid.UUID, str], datetime]]:
    counts: dict[tuple[uuid.UUID, str], int] = {}
    latest: dict[tuple[uuid.UUID, str], datetime] = {}
    rows = db.execute(
        select(Micrograph.dataset_id, Micrograph.grid_square_id, func.count(),
               func.max(Micrograph.created_at))
        .where(Micrograph.dataset_id.in_(dataset_ids), Micrograph.grid_square_id.is_not(None))
        .group_by(Micrograph.dataset_id, Micrograph.grid_square_id))
    for dataset_id, square_epu_id, count, last in rows:
        counts[(dataset_id, square_epu_id)] = count
        latest[(dataset_id, square_epu_id)] = last
    return counts, latest


def _square_states(db: Session, squares: list[GridSquare], runs: dict[uuid.UUID, Element]
                   ) -> dict[uuid.UUID, tuple[str, int]]:
    """Marker state and micrograph count of each square."""
    counts, latest = _activity(db, list(runs))
    last_active: dict[uuid.UUID, tuple[datetime, uuid.UUID]] = {}
    for square in squares:
        moments = [m for m in (latest.get((square.dataset_id, square.epu_id)),
                               square.acquired_at if square.image_file_id else None) if m]
        if moments:
            moment = (max(moments), square.id)
            if square.dataset_id not in last_active or moment > last_active[square.dataset_id]:
                last_active[square.dataset_id] = moment
    states = {}
    for square in squares:
        count = counts.get((square.dataset_id, square.epu_id), 0)
        visited = count > 0 or square.image_file_id is not None
        is_latest = last_active.get(square.dataset_id, (None, None))[1] == square.id
        run = runs.get(square.dataset_id)
        active = run is not None and (run.status or "") not in RUN_FINISHED_STATUSES
        states[square.id] = (square_marker_state(square.state, visited, is_latest, active), count)
    return states


def _can_delete(db: Session, actor: Actor, runs: list[Element]) -> bool:
    return all((access_level(db, actor, run.id) or 0) >= COLLABORATOR for run in runs)


def get_atlas(db: Session, actor: Actor, storages: StorageSet,
              atlas_id: uuid.UUID) -> AtlasDetail:
    """An atlas with a marker per grid square (squares of every run using it, merged by
    EPU id: the run's square with the most micrographs stands for it)."""
    atlas, dataset, summary, group_runs = _atlas_group(db, actor, atlas_id)
    runs = {run.id: run for run in group_runs}
    squares = db.scalars(select(GridSquare).where(
        GridSquare.dataset_id.in_(list(runs)), GridSquare.atlas_x_px.is_not(None),
        GridSquare.atlas_y_px.is_not(None)).order_by(GridSquare.epu_id)).all()
    states = _square_states(db, list(squares), runs)
    chosen: dict[str, GridSquare] = {}
    for square in squares:
        best = chosen.get(square.epu_id)
        rank = (states[square.id][1], square.image_file_id is not None,
                square.dataset_id == dataset.id)
        if best is None or rank > (states[best.id][1], best.image_file_id is not None,
                                   best.dataset_id == dataset.id):
            chosen[square.epu_id] = square
    markers = [SquareMarker(s.id, s.epu_id, s.dataset_id, float(s.atlas_x_px or 0),
                            float(s.atlas_y_px or 0), states[s.id][0], s.state,
                            states[s.id][1], s.image_file_id is not None)
               for s in chosen.values()]
    counts = dict.fromkeys((MARKER_COMPLETED, MARKER_IN_PROGRESS, MARKER_NOT_IMAGED), 0)
    for marker in markers:
        counts[marker.state] += 1
    image = None
    pixel = atlas.pixel_size_angstrom
    if not atlas.deleted:
        # The atlas of the run asked about, else another run's copy of the same atlas.
        members = [atlas] + [db.get(Atlas, i) for i in summary.atlas_ids if i != atlas.id]
        for member in members:
            if member is not None and not member.deleted and member.image_file_id:
                image = _view_image(db, storages, member.image_file_id, ATLAS_COPY_BIN,
                                    member.pixel_size_angstrom or pixel)
                pixel = pixel or member.pixel_size_angstrom
                if image is not None:
                    break
    return AtlasDetail(atlas, summary, image, pixel, markers, counts,
                       _can_delete(db, actor, group_runs))


def _acquisition_positions(holes: dict[str, FoilHole], acquisitions: list[Micrograph]
                           ) -> list[AcquisitionMarker]:
    per_hole: dict[str | None, list[Micrograph]] = defaultdict(list)
    for micrograph in acquisitions:
        per_hole[micrograph.foil_hole_id].append(micrograph)
    markers = []
    for hole_id, group in per_hole.items():
        hole = holes.get(hole_id or "")
        for index, micrograph in enumerate(group):
            x = y = None
            if hole is not None and hole.x_px is not None and hole.y_px is not None:
                radius = 0.3 * (hole.diameter_px or 0) if len(group) > 1 else 0.0
                angle = 2 * math.pi * index / len(group) - math.pi / 2
                x, y = hole.x_px + radius * math.cos(angle), hole.y_px + radius * math.sin(angle)
            markers.append(AcquisitionMarker(
                micrograph.id, micrograph.name, micrograph.status, micrograph.problem,
                micrograph.foil_hole_id, micrograph.acquired_at, x, y))
    markers.sort(key=lambda m: (m.acquired_at is None, m.acquired_at or datetime.min, m.name))
    return markers


def get_grid_square(db: Session, actor: Actor, storages: StorageSet,
                    square_id: uuid.UUID) -> GridSquareDetail:
    """A grid square with its foil holes and acquisitions (micrographs) placed on its image."""
    square = db.get(GridSquare, square_id)
    if square is None:
        raise _not_found("grid square")
    dataset = _readable_run(db, actor, square.dataset_id, "grid square")
    holes = db.scalars(select(FoilHole).where(FoilHole.grid_square_id == square.id)
                       .order_by(FoilHole.epu_id)).all()
    acquisitions = db.scalars(select(Micrograph).where(
        Micrograph.dataset_id == square.dataset_id,
        Micrograph.grid_square_id == square.epu_id)).all()
    per_hole: dict[str, int] = defaultdict(int)
    counts: dict[str, int] = defaultdict(int)
    for micrograph in acquisitions:
        per_hole[micrograph.foil_hole_id or ""] += 1
        counts[micrograph.status] += 1
    hole_markers = [HoleMarker(h.id, h.epu_id, h.x_px, h.y_px, h.diameter_px, h.selected,
                               per_hole.get(h.epu_id, 0)) for h in holes]
    by_epu = {h.epu_id: h for h in holes}
    state = _square_states(db, [square], {dataset.id: dataset})[square.id][0]
    atlas_id = db.scalar(select(Atlas.id).where(Atlas.dataset_id == dataset.id)
                         .order_by(Atlas.deleted, Atlas.created_at).limit(1))
    image = _view_image(db, storages, square.image_file_id, GRID_SQUARE_COPY_BIN,
                        square.pixel_size_angstrom)
    return GridSquareDetail(square, dataset, state, atlas_id, image, square.pixel_size_angstrom,
                            hole_markers, _acquisition_positions(by_epu, list(acquisitions)),
                            dict(counts))


def _atlas_files(db: Session, atlas: Atlas) -> list[RunFile]:
    """Every file of an atlas: those interpreted as it, the other files of its folder (tiles,
    their XML) and the downscaled copies of all of them."""
    own = db.scalars(select(RunFile).where(RunFile.item_id == atlas.id)).all()
    folders = {str(PurePosixPath(f.relative_path).parent) for f in own
               if f.role != "downscaled" and "/" in f.relative_path}
    conditions = [RunFile.item_id == atlas.id]
    for folder in sorted(folders):
        conditions.append(RunFile.relative_path.startswith(folder + "/", autoescape=True))
        conditions.append(RunFile.relative_path.startswith(
            f"{DOWNSCALED_PREFIX}{folder}/", autoescape=True))
    return list(db.scalars(select(RunFile).where(RunFile.dataset_id == atlas.dataset_id,
                                                 or_(*conditions))))


def delete_atlas_data(db: Session, actor: Actor, settings: Settings,
                      atlas_id: uuid.UUID) -> AtlasDeletion:
    """Remove an atlas's files (in every run that uses the atlas; the actor must be a
    collaborator of each) and mark it deleted. Grid squares keep their images, micrographs
    stay. The bytes are queued in the storage trash in the same transaction; the caller
    commits and then empties the trash."""
    atlas, _, summary, group_runs = _atlas_group(db, actor, atlas_id)
    for run in group_runs:
        require_access(db, actor, run.id, COLLABORATOR, "delete atlas data of")
    removed, freed, file_ids = 0, 0, []
    now = utcnow()
    for member_id in summary.atlas_ids:
        member = db.get(Atlas, member_id)
        if member is None:
            continue
        for row in _atlas_files(db, member):
            db.add(StorageTrash(storage=row.storage, key=row.key, queued_at=now))
            removed += 1
            freed += row.size_bytes
            file_ids.append(row.id)
            db.delete(row)
        member.deleted = True
        member.image_file_id = None
    db.flush()
    drop_preview_caches(settings, file_ids)
    return AtlasDeletion(list(summary.atlas_ids), removed, freed)

"""What a simulated EPU session will acquire: the grid, its squares, holes and exposures.

Geometry (all consistent, so that positions declared in one file match what the images of the
others show):

- The grid is a 200-mesh copper grid (square pitch 125 µm, openings 90 µm) with Quantifoil
  R2/2 foil (2 µm holes every 4 µm), seen by an atlas of 1024 × 1024 px at 1.95 µm/px. Stage
  X/Y are zero at the atlas centre and grow with the image axes: stage = (pixel − centre) ×
  pixel size, in the atlas as in every other image; images are not rotated against the stage
  (ReferenceTransformation = pixel size × identity).
- A grid-square image is 512 × 512 px at 250 nm/px, centred on its square: its holes sit at
  `PixelCenter` in that image; a foil-hole image is 512 × 512 px at 11.7 nm/px centred on its
  hole; exposures are taken by image/beam shift at `ShiftInPixels` (foil-hole image pixels)
  from the hole centre, one per data-acquisition area of the session's template.
- Each hole gets the next target defocus of the template's list (EPU iterates the list per
  hole); the true defocus adds a small focusing error and astigmatism (ground truth).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

ATLAS_EDGE_PX = 1024
ATLAS_PIXEL_M = 1.953125e-06
SQUARE_PITCH_M = 125e-06
SQUARE_OPENING_M = 90e-06
GRID_VISIBLE_RADIUS_M = 0.93e-03
ATLAS_TILES = 2  # the atlas is stitched from 2 × 2 tiles

GRID_SQUARE_EDGE_PX = 512
GRID_SQUARE_PIXEL_M = 250e-09
HOLE_DIAMETER_M = 2.0e-06
HOLE_PITCH_M = 4.0e-06

FOIL_HOLE_EDGE_PX = 512
FOIL_HOLE_PIXEL_M = 11.71875e-09
AREA_RADIUS_M = 0.55e-06  # exposures sit on a ring of this radius inside the hole

DATA_PIXEL_ANGSTROM = 1.1
DATA_DOSE_E_PER_ANGSTROM2 = 40.0
DATA_EXPOSURE_TIME_S = 2.5
DEFOCUS_LIST_M = (-1.0e-06, -1.3e-06, -1.6e-06, -1.9e-06, -2.2e-06)
STAGE_Z_M = 8.57e-05


class SimulationRequestError(ValueError):
    """The request cannot be simulated (e.g. more squares than the grid has); the message
    says what to ask for instead."""


@dataclass(frozen=True)
class EpuOptions:
    """The simulator's knobs (the `cryovault simulate epu` options)."""

    squares: int = 2
    holes: int = 5
    acquisitions_per_hole: int = 2
    rate_per_s: float = 0.5
    movie_format: str = "tiff"  # "tiff" | "eer"
    frames: int = 8
    size_px: int = 512
    seed: int = 0
    movies_root: str | None = None
    out_of_order: bool = False
    write_movies: bool = True
    name: str = "sim-1"
    eer_frames_per_fraction: int = 10


@dataclass(frozen=True)
class AtlasSquare:
    """A grid square as the atlas sees it."""

    grid_square_id: int
    center_x_px: float
    center_y_px: float
    size_px: float
    condition: str  # "good" | "thick" (dark, thick ice) | "broken" (no foil: bright)
    ice_transmission: float  # brightness of its foil in the images, 0..1

    @property
    def stage_x_m(self) -> float:
        return (self.center_x_px - ATLAS_EDGE_PX / 2) * ATLAS_PIXEL_M

    @property
    def stage_y_m(self) -> float:
        return (self.center_y_px - ATLAS_EDGE_PX / 2) * ATLAS_PIXEL_M

    @property
    def tile_index(self) -> int:
        tile_px = ATLAS_EDGE_PX / ATLAS_TILES
        column = min(int(self.center_x_px // tile_px), ATLAS_TILES - 1)
        row = min(int(self.center_y_px // tile_px), ATLAS_TILES - 1)
        return row * ATLAS_TILES + column


@dataclass(frozen=True)
class FoilHole:
    """A target location (hole) of a grid square, in that square's image pixels."""

    foil_hole_id: int
    x_px: float
    y_px: float
    diameter_px: float
    stage_x_m: float
    stage_y_m: float
    near_grid_bar: bool
    ice_transmission: float


@dataclass(frozen=True)
class AcquisitionArea:
    """One data-acquisition area of the session's target template."""

    area_id: int
    setting_id: int
    shift_x_px: float  # from the hole centre, in foil-hole image pixels
    shift_y_px: float


@dataclass
class Acquisition:
    """One exposure, filled in as it is taken."""

    name: str
    grid_square_id: int
    foil_hole_id: int
    area: AcquisitionArea
    acquired_at: datetime
    target_defocus_m: float
    defocus_u_angstrom: float
    defocus_v_angstrom: float
    astigmatism_angle_deg: float
    stage_x_m: float
    stage_y_m: float
    image_shift: tuple[float, float]
    particle_acquisition_id: int
    movie_before_xml: bool = False


@dataclass
class SquareVisit:
    """A square the session images: its holes, the ones it exposes and what it took."""

    square: AtlasSquare
    holes: list[FoilHole]
    chosen: list[FoilHole]
    image_name: str | None = None
    foil_hole_images: dict[int, str] = field(default_factory=dict)
    acquisitions: list[Acquisition] = field(default_factory=list)
    state: str = "Defined"


class IdSource:
    """EPU's object ids: 7-digit integers, increasing."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._next = int(rng.integers(4_000_000, 9_000_000))

    def take(self, step: int = 1) -> int:
        value = self._next
        self._next += step
        return value


def atlas_squares(rng: np.random.Generator, ids: IdSource) -> list[AtlasSquare]:
    """The squares of the grid inside the visible disc, about 160, some broken or thick."""
    pitch_px = SQUARE_PITCH_M / ATLAS_PIXEL_M
    size_px = SQUARE_OPENING_M / ATLAS_PIXEL_M
    radius_px = GRID_VISIBLE_RADIUS_M / ATLAS_PIXEL_M
    centre = ATLAS_EDGE_PX / 2
    offset = rng.uniform(-pitch_px / 2, pitch_px / 2, size=2)
    count = int(radius_px // pitch_px) + 1
    squares: list[AtlasSquare] = []
    for row in range(-count, count + 1):
        for column in range(-count, count + 1):
            x = centre + offset[0] + column * pitch_px
            y = centre + offset[1] + row * pitch_px
            if math.hypot(x - centre, y - centre) + size_px * 0.71 > radius_px:
                continue
            roll = rng.random()
            if roll < 0.08:
                condition, transmission = "broken", 0.97
            elif roll < 0.2:
                condition, transmission = "thick", float(rng.uniform(0.15, 0.3))
            else:
                condition, transmission = "good", float(rng.uniform(0.55, 0.8))
            squares.append(AtlasSquare(ids.take(3), float(x), float(y), float(size_px),
                                       condition, transmission))
    return squares


def square_holes(square: AtlasSquare, rng: np.random.Generator,
                 ids: IdSource) -> list[FoilHole]:
    """The holes of the foil over one square's opening, in its grid-square image."""
    pitch_px = HOLE_PITCH_M / GRID_SQUARE_PIXEL_M
    diameter_px = HOLE_DIAMETER_M / GRID_SQUARE_PIXEL_M
    half_opening_px = SQUARE_OPENING_M / GRID_SQUARE_PIXEL_M / 2
    centre = GRID_SQUARE_EDGE_PX / 2
    phase = rng.uniform(0, pitch_px, size=2)
    holes: list[FoilHole] = []
    count = int(half_opening_px // pitch_px) + 2
    for row in range(-count, count + 1):
        for column in range(-count, count + 1):
            x = centre + phase[0] + column * pitch_px
            y = centre + phase[1] + row * pitch_px
            margin = half_opening_px - diameter_px / 2 - max(abs(x - centre), abs(y - centre))
            if margin < 0:
                continue
            transmission = float(np.clip(square.ice_transmission
                                         + rng.normal(0, 0.05), 0.05, 0.98))
            holes.append(FoilHole(
                ids.take(), float(x), float(y), float(diameter_px),
                square.stage_x_m + (x - centre) * GRID_SQUARE_PIXEL_M,
                square.stage_y_m + (y - centre) * GRID_SQUARE_PIXEL_M,
                bool(margin < pitch_px), transmission))
    return holes


def acquisition_areas(count: int, ids: IdSource) -> list[AcquisitionArea]:
    """`count` exposure areas on a ring inside the hole (the target template)."""
    areas = []
    radius_px = AREA_RADIUS_M / FOIL_HOLE_PIXEL_M
    for index in range(count):
        angle = 2 * math.pi * index / count + 0.3
        area_id = ids.take(2)
        areas.append(AcquisitionArea(area_id, area_id + 2, radius_px * math.cos(angle),
                                     radius_px * math.sin(angle)))
    return areas


def choose_squares(squares: list[AtlasSquare], count: int,
                   rng: np.random.Generator) -> list[AtlasSquare]:
    """`count` good squares, nearest the centre first as an operator would pick them."""
    good = [s for s in squares if s.condition == "good"]
    if count > len(good):
        raise SimulationRequestError(f"the simulated grid has {len(good)} good squares; ask "
                                     f"for at most {len(good)} with --squares")
    centre = ATLAS_EDGE_PX / 2
    weights = np.array([1.0 / (1.0 + math.hypot(s.center_x_px - centre,
                                                s.center_y_px - centre)) for s in good])
    picked = rng.choice(len(good), size=count, replace=False, p=weights / weights.sum())
    return [good[i] for i in picked]


def choose_holes(holes: list[FoilHole], count: int,
                 rng: np.random.Generator) -> list[FoilHole]:
    """`count` holes away from the grid bars, in the order EPU would visit them (rows)."""
    inner = [h for h in holes if not h.near_grid_bar] or holes
    if count > len(inner):
        raise SimulationRequestError(f"a square has only {len(inner)} usable holes; ask for "
                                     f"at most {len(inner)} with --holes")
    picked = sorted(rng.choice(len(inner), size=count, replace=False))
    return sorted((inner[i] for i in picked), key=lambda h: (round(h.y_px), h.x_px))


def true_defocus(target_m: float, rng: np.random.Generator) -> tuple[float, float, float]:
    """(U, V, angle): the target as underfocus in Å with a focusing error and astigmatism."""
    mean = -target_m * 1e10 + rng.normal(0, 250.0)
    astigmatism = rng.uniform(150.0, 700.0)
    angle = float(rng.uniform(-90.0, 90.0))
    return float(mean + astigmatism / 2), float(mean - astigmatism / 2), angle

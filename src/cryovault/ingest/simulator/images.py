"""Synthetic overview images that agree with the positions the metadata files declare.

- Atlas: the grid disc with its copper bars (dark) and square openings at the centres and sizes
  the Atlas.dm lists; thick-ice squares are dark, broken squares (no foil) bright.
- Grid square: the square's opening with the foil's holes at the `PixelCenter`s of its
  Metadata/GridSquare_<id>.dm, bars around it.
- Foil hole: the hole (bright ice) centred, the carbon around and the neighbouring holes.
Micrographs and movies come from `cryovault.science.simulate`; `preview_jpeg_bytes` makes the
8-bit previews EPU writes beside every image.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from cryovault.ingest.simulator.epu_plan import (
    ATLAS_EDGE_PX,
    ATLAS_PIXEL_M,
    FOIL_HOLE_EDGE_PX,
    FOIL_HOLE_PIXEL_M,
    GRID_SQUARE_EDGE_PX,
    GRID_SQUARE_PIXEL_M,
    GRID_VISIBLE_RADIUS_M,
    HOLE_DIAMETER_M,
    HOLE_PITCH_M,
    SQUARE_OPENING_M,
    SQUARE_PITCH_M,
    AtlasSquare,
    FoilHole,
)

CARBON_TRANSMISSION = 0.35
BAR_TRANSMISSION = 0.03


def _soft_box(coordinate: np.ndarray, half_width: float, edge: float = 1.5) -> np.ndarray:
    """1 inside |c| < half_width, 0 outside, with a smooth edge of a few pixels."""
    return np.clip((half_width - np.abs(coordinate)) / edge + 0.5, 0.0, 1.0)


def _soft_disc(distance: np.ndarray, radius: float, edge: float = 1.0) -> np.ndarray:
    return np.clip((radius - distance) / edge + 0.5, 0.0, 1.0)


def render_atlas(squares: list[AtlasSquare], rng: np.random.Generator) -> np.ndarray:
    """The atlas (float, 0..1 transmission) with counting noise."""
    edge = ATLAS_EDGE_PX
    yy, xx = np.mgrid[0:edge, 0:edge].astype(np.float32)
    image = np.full((edge, edge), BAR_TRANSMISSION, dtype=np.float32)
    half = SQUARE_OPENING_M / ATLAS_PIXEL_M / 2
    pitch = SQUARE_PITCH_M / ATLAS_PIXEL_M
    for square in squares:
        x0 = int(max(square.center_x_px - pitch / 2, 0))
        x1 = int(min(square.center_x_px + pitch / 2 + 1, edge))
        y0 = int(max(square.center_y_px - pitch / 2, 0))
        y1 = int(min(square.center_y_px + pitch / 2 + 1, edge))
        mask = (_soft_box(xx[y0:y1, x0:x1] - square.center_x_px, half)
                * _soft_box(yy[y0:y1, x0:x1] - square.center_y_px, half))
        # the foil over the opening, a little uneven (ice gradient)
        gradient = 1 + 0.08 * (xx[y0:y1, x0:x1] - square.center_x_px) / half
        level = square.ice_transmission * (gradient if square.condition != "broken" else 1)
        image[y0:y1, x0:x1] = np.maximum(image[y0:y1, x0:x1], mask * level)
    radius = GRID_VISIBLE_RADIUS_M / ATLAS_PIXEL_M
    rim = _soft_disc(np.hypot(xx - edge / 2, yy - edge / 2), radius + 0.4 * pitch, 3.0)
    image *= rim
    return _counted(image, 200.0, rng)


def render_grid_square(holes: list[FoilHole], rng: np.random.Generator) -> np.ndarray:
    """A grid-square image: bars, the foil over the opening and its holes."""
    edge = GRID_SQUARE_EDGE_PX
    centre = edge / 2
    yy, xx = np.mgrid[0:edge, 0:edge].astype(np.float32)
    half = SQUARE_OPENING_M / GRID_SQUARE_PIXEL_M / 2
    opening = _soft_box(xx - centre, half, 2.0) * _soft_box(yy - centre, half, 2.0)
    image = BAR_TRANSMISSION + (CARBON_TRANSMISSION - BAR_TRANSMISSION) * opening
    radius = HOLE_DIAMETER_M / GRID_SQUARE_PIXEL_M / 2
    reach = int(radius + 3)
    for hole in holes:
        cx, cy = int(round(hole.x_px)), int(round(hole.y_px))
        y0, y1 = max(cy - reach, 0), min(cy + reach + 1, edge)
        x0, x1 = max(cx - reach, 0), min(cx + reach + 1, edge)
        disc = _soft_disc(np.hypot(xx[y0:y1, x0:x1] - hole.x_px, yy[y0:y1, x0:x1] - hole.y_px),
                          radius)
        patch = image[y0:y1, x0:x1]
        image[y0:y1, x0:x1] = patch + disc * (hole.ice_transmission - patch)
    return _counted(image.astype(np.float32), 300.0, rng)


def render_foil_hole(hole: FoilHole, found_offset_px: tuple[float, float],
                     rng: np.random.Generator) -> np.ndarray:
    """A foil-hole image centred (up to `found_offset_px`) on the hole, with its neighbours."""
    edge = FOIL_HOLE_EDGE_PX
    yy, xx = np.mgrid[0:edge, 0:edge].astype(np.float32)
    centre_x = edge / 2 + found_offset_px[0]
    centre_y = edge / 2 + found_offset_px[1]
    pitch = HOLE_PITCH_M / FOIL_HOLE_PIXEL_M
    radius = HOLE_DIAMETER_M / FOIL_HOLE_PIXEL_M / 2
    image = np.full((edge, edge), CARBON_TRANSMISSION, dtype=np.float32)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            distance = np.hypot(xx - centre_x - dx * pitch, yy - centre_y - dy * pitch)
            level = hole.ice_transmission if dx == dy == 0 else float(
                np.clip(hole.ice_transmission + rng.normal(0, 0.05), 0.05, 0.98))
            disc = _soft_disc(distance, radius, 3.0)
            image += disc * (level - image)
    # a little texture in the ice (contamination, thickness variation)
    image *= 1 + 0.03 * np.sin(xx / 37.0 + rng.uniform(0, 6)) * np.cos(yy / 53.0)
    return _counted(image, 150.0, rng)


def _counted(transmission: np.ndarray, counts: float, rng: np.random.Generator) -> np.ndarray:
    return rng.poisson(np.clip(transmission, 0, None) * counts).astype(np.float32)


def to_uint8(image: np.ndarray, max_edge: int = 512) -> np.ndarray:
    """An 8-bit preview: binned down to at most `max_edge`, 0.5–99.5 % percentiles stretched."""
    data = np.asarray(image, dtype=np.float32)
    factor = max(1, int(np.ceil(max(data.shape) / max_edge)))
    if factor > 1:
        ny, nx = (data.shape[0] // factor) * factor, (data.shape[1] // factor) * factor
        data = data[:ny, :nx].reshape(ny // factor, factor, nx // factor, factor).mean((1, 3))
    low, high = np.percentile(data, [0.5, 99.5])
    scaled = (data - low) / max(float(high - low), 1e-6)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def preview_jpeg_bytes(image: np.ndarray, max_edge: int = 512) -> bytes:
    """JPEG bytes of `to_uint8(image)` (8-bit grey, as EPU's previews)."""
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image, max_edge)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_mrc(path: Path, image: np.ndarray, pixel_size_angstrom: float) -> None:
    """An MRC file (mode 2, float32) of one image with its pixel size in the header."""
    import mrcfile

    path.parent.mkdir(parents=True, exist_ok=True)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.asarray(image, dtype=np.float32))
        mrc.voxel_size = pixel_size_angstrom

"""The specimen of a simulated tilt-series position and its tilt images, rendered with the
tilt-series simulator of `cryovault.science.tomo.simulate` (one phantom model in the code base).

The specimen is a slab of ice filled with that simulator's phantom blobs (`make_blobs`), plus
10 nm gold beads on both surfaces: a few strong, small Gaussian blobs kept in a separate
`Blobs` whose weight is the bead's volume (Å³), so that its projection is the path length
through gold (Å). Coordinates are in Å about the slab's centre: x along image columns, y along
rows, z along the beam at zero tilt.

Geometry is `cryovault.science.tomo.geometry`'s forward model (DESIGN.md "Conventions of
geometry"): a point (x, y, z) seen at tilt θ projects to (u, v) = (x cos θ + z sin θ, y), is
rotated by the tilt-axis angle φ counterclockwise about the image centre ((n − 1) / 2) and moved
by the tilt's shift [x, y] px (the tracking error the alignment must find).

The image of a tilt: the projected phase of blobs and gold (`render_projection`) through the
CTF with the defocus gradient across the tilted specimen (handedness +1) and the slab's
transmission (`tilt_intensity`), times the gold's absorption; frames of the movie move that image
along a drift trajectory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cryovault.science.ctf_model import CtfParameters
from cryovault.science.tomo.geometry import forward_matrix, image_centre, project_points
from cryovault.science.tomo.simulate import (
    Blobs,
    TiltSeriesSpec,
    make_blobs,
    render_projection,
    tilt_intensity,
)

BEAD_RADIUS_ANGSTROM = 50.0  # 10 nm gold, ±10 %
GOLD_MEAN_FREE_PATH_ANGSTROM = 60.0  # absorption (energy-filtered) of gold
GOLD_PHASE_PER_ANGSTROM = 0.02  # radians per Å of gold path
HANDEDNESS = 1  # defocus gradient of a correctly handed series (science.tomo.simulate)


@dataclass(frozen=True)
class TomoSpecimen:
    """The specimen of one tilt-series position: slab thickness (Å), the phantom blobs and the
    gold beads (centres Å; weight = volume Å³)."""

    thickness_angstrom: float
    blobs: Blobs
    beads: Blobs


def make_specimen(size_px: int, pixel_size_angstrom: float, angles_deg: list[float],
                  rng: np.random.Generator, *, beads: int = 10) -> TomoSpecimen:
    """A slab 1200–2400 Å thick filled with the science simulator's blobs (over the area any
    tilt in `angles_deg` sees) and `beads` gold beads alternating between the two surfaces,
    within 80 % of the field so that they stay in view at high tilt."""
    thickness = float(rng.uniform(1200.0, 2400.0))
    spec = TiltSeriesSpec(shape=(size_px, size_px), pixel_size_angstrom=pixel_size_angstrom,
                          tilt_angles_degrees=tuple(angles_deg), thickness_nm=thickness / 10.0)
    blobs = make_blobs(spec, rng)
    half = 0.4 * size_px * pixel_size_angstrom
    surface = np.where(np.arange(beads) % 2 == 1, 1.0, -1.0)
    xy = rng.uniform(-half, half, (beads, 2))
    radius = rng.uniform(0.9, 1.1, beads) * BEAD_RADIUS_ANGSTROM
    centres = np.column_stack([xy, surface * (thickness / 2 - radius)])
    # a Gaussian with a uniform sphere's second moment per axis (R² / 5) and its volume
    sigma = radius / math.sqrt(5.0)
    volume = 4.0 / 3.0 * math.pi * radius**3
    return TomoSpecimen(thickness, blobs, Blobs(centres, sigma, volume))


def bead_positions_px(specimen: TomoSpecimen, tilt_deg: float, axis_deg: float, size_px: int,
                      pixel_size_angstrom: float, shift_px: tuple[float, float]
                      ) -> list[tuple[float, float]]:
    """Where each gold bead's centre lands in the tilt image (pixels [x, y], array coordinates:
    the first pixel's centre is (0, 0))."""
    uv = project_points(specimen.beads.centres / pixel_size_angstrom, tilt_deg)
    r = (uv @ forward_matrix(axis_deg).T + np.asarray(shift_px, dtype=float)
         + image_centre((size_px, size_px)))
    return [(float(x), float(y)) for x, y in r]


def tilt_image(specimen: TomoSpecimen, tilt_deg: float, axis_deg: float, size_px: int,
               pixel_size_angstrom: float, shift_px: tuple[float, float], ctf: CtfParameters,
               rng: np.random.Generator) -> np.ndarray:
    """Expected intensity (relative to the unattenuated beam, ≥ 0, float32) of one tilt, with
    `ctf` the defocus at the image centre."""
    shape = (size_px, size_px)
    shift = np.asarray(shift_px, dtype=float)
    phase = _projection(specimen.blobs, shape, pixel_size_angstrom, tilt_deg, axis_deg, shift)
    gold = np.maximum(_projection(specimen.beads, shape, pixel_size_angstrom, tilt_deg,
                                  axis_deg, shift), 0.0)
    phase += GOLD_PHASE_PER_ANGSTROM * gold
    image = tilt_intensity(phase, pixel_size_angstrom, ctf, axis_deg, tilt_deg,
                           specimen.thickness_angstrom / 10.0, rng, handedness=HANDEDNESS)
    image *= np.exp(-gold / GOLD_MEAN_FREE_PATH_ANGSTROM)
    return np.maximum(image, 0.0).astype(np.float32)


def _projection(blobs: Blobs, shape: tuple[int, int], pixel_size_angstrom: float,
                tilt_deg: float, axis_deg: float, shift: np.ndarray) -> np.ndarray:
    """`render_projection` of the blobs that land in the image. The phantom spans the area the
    highest tilt sees, several times the field; `render_projection` splats each blob's centre
    bilinearly and drops those outside the grid, so passing only the others gives the same
    image, faster (and zeros when none is in view)."""
    ny, nx = shape
    uv = project_points(blobs.centres, tilt_deg) / pixel_size_angstrom
    m = forward_matrix(axis_deg)
    c = image_centre(shape) + shift
    # written out: a (N, 2) @ (2, 2) product is many times slower for N ~ 10⁵
    x = m[0, 0] * uv[:, 0] + m[0, 1] * uv[:, 1] + c[0]
    y = m[1, 0] * uv[:, 0] + m[1, 1] * uv[:, 1] + c[1]
    keep = (x > -1) & (x < nx) & (y > -1) & (y < ny)
    if not keep.any():
        return np.zeros(shape, dtype=np.float32)
    visible = Blobs(blobs.centres[keep], blobs.sigma[keep], blobs.weight[keep])
    return render_projection(visible, shape, pixel_size_angstrom, tilt_deg, axis_deg, 1.0, shift)


def movie_frames(image: np.ndarray, drift_px: np.ndarray, counts_per_pixel: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Frames (uint16) of `image` displaced by each frame's drift [x, y], with Poisson noise
    at `counts_per_pixel` per frame for a transmission of 1."""
    frames = np.empty((len(drift_px), *image.shape), dtype=np.uint16)
    for index, (dx, dy) in enumerate(drift_px):
        moved = ndimage.shift(image, (dy, dx), order=1, mode="nearest")
        frames[index] = rng.poisson(np.clip(moved, 0, None) * counts_per_pixel)
    return frames

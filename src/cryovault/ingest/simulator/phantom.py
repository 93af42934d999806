"""A 3D phantom for tilt series: a slab of ice with gold beads and protein blobs.

Coordinates are in Å about the volume centre: x along image columns, y along rows, z along the
beam at zero tilt. Projection follows DESIGN.md "Conventions of geometry": with tilt-axis angle
φ = 0 a point (x, y, z) seen at tilt θ lands at (x cos θ + z sin θ, y); for other φ that picture
is rotated by φ counterclockwise about the image centre (the axis direction is (−sin φ, cos φ)),
and a per-tilt shift [x, y] px is added on top (the tracking error the alignment must find).

The image of a tilt: projected phase (protein and gold) through the CTF at the tilt's defocus,
times the transmission of the ice slab (path length t / cos θ) and of the gold, in counts at the
tilt's dose; frames of the movie move that image along a drift trajectory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

ICE_MEAN_FREE_PATH_ANGSTROM = 3500.0  # inelastic (energy-filtered) mean free path, 300 kV
GOLD_MEAN_FREE_PATH_ANGSTROM = 60.0
PROTEIN_MEAN_FREE_PATH_ANGSTROM = 1500.0  # amplitude contrast of protein over ice (filtered)
PROTEIN_PHASE_PER_ANGSTROM = 0.0012  # radians per Å of protein path (contrast over ice)
GOLD_PHASE_PER_ANGSTROM = 0.02


@dataclass(frozen=True)
class Sphere:
    """A bead or a blob: centre (Å) and radius (Å)."""

    x: float
    y: float
    z: float
    radius: float


@dataclass(frozen=True)
class Phantom:
    """The specimen of one tilt-series position."""

    thickness_angstrom: float
    beads: tuple[Sphere, ...]
    blobs: tuple[Sphere, ...]


def make_phantom(field_angstrom: float, rng: np.random.Generator, *, beads: int = 10,
                 blobs: int = 40) -> Phantom:
    """A slab 1200–2400 Å thick; 10 nm gold beads on both surfaces, protein blobs inside.
    Objects stay within 80 % of the field so that they remain in view at high tilt."""
    thickness = float(rng.uniform(1200.0, 2400.0))
    half = 0.4 * field_angstrom
    bead_list = []
    for index in range(beads):
        surface = 1 if index % 2 else -1
        bead_list.append(Sphere(float(rng.uniform(-half, half)), float(rng.uniform(-half, half)),
                                surface * (thickness / 2 - 50.0), 50.0))
    blob_list = []
    for _ in range(blobs):
        radius = float(rng.uniform(60.0, 140.0))
        blob_list.append(Sphere(float(rng.uniform(-half, half)), float(rng.uniform(-half, half)),
                                float(rng.uniform(-thickness / 2 + radius,
                                                  thickness / 2 - radius)), radius))
    return Phantom(thickness, tuple(bead_list), tuple(blob_list))


def project_point(x: float, y: float, z: float, tilt_deg: float, axis_deg: float
                  ) -> tuple[float, float]:
    """Projected position (Å, about the image centre) of a specimen point."""
    theta = math.radians(tilt_deg)
    u, v = x * math.cos(theta) + z * math.sin(theta), y
    phi = math.radians(axis_deg)
    return u * math.cos(phi) - v * math.sin(phi), u * math.sin(phi) + v * math.cos(phi)


def bead_positions_px(phantom: Phantom, tilt_deg: float, axis_deg: float, size_px: int,
                      pixel_size_angstrom: float, shift_px: tuple[float, float]
                      ) -> list[tuple[float, float]]:
    """Where each gold bead's centre lands in the tilt image (pixels, [x, y])."""
    centre = (size_px - 1) / 2
    positions = []
    for bead in phantom.beads:
        u, v = project_point(bead.x, bead.y, bead.z, tilt_deg, axis_deg)
        positions.append((centre + u / pixel_size_angstrom + shift_px[0],
                          centre + v / pixel_size_angstrom + shift_px[1]))
    return positions


def _chords(spheres: tuple[Sphere, ...], tilt_deg: float, axis_deg: float, size_px: int,
            pixel_size_angstrom: float, shift_px: tuple[float, float]) -> np.ndarray:
    """Path length (Å) through the spheres along the beam, per pixel."""
    out = np.zeros((size_px, size_px), dtype=np.float32)
    centre = (size_px - 1) / 2
    for sphere in spheres:
        u, v = project_point(sphere.x, sphere.y, sphere.z, tilt_deg, axis_deg)
        cx = centre + u / pixel_size_angstrom + shift_px[0]
        cy = centre + v / pixel_size_angstrom + shift_px[1]
        radius_px = sphere.radius / pixel_size_angstrom
        x0, x1 = max(int(cx - radius_px - 1), 0), min(int(cx + radius_px + 2), size_px)
        y0, y1 = max(int(cy - radius_px - 1), 0), min(int(cy + radius_px + 2), size_px)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        r2 = ((xx - cx) ** 2 + (yy - cy) ** 2) * pixel_size_angstrom ** 2
        out[y0:y1, x0:x1] += 2 * np.sqrt(np.clip(sphere.radius ** 2 - r2, 0, None))
    return out


def tilt_image(phantom: Phantom, tilt_deg: float, axis_deg: float, size_px: int,
               pixel_size_angstrom: float, shift_px: tuple[float, float],
               defocus_u_angstrom: float, defocus_v_angstrom: float,
               astigmatism_angle_deg: float, voltage_kv: float) -> np.ndarray:
    """Expected intensity (relative to the unattenuated beam) of one tilt, float32."""
    from cryovault.science.ctf import CtfParameters
    from cryovault.science.simulate import ctf_image

    protein = _chords(phantom.blobs, tilt_deg, axis_deg, size_px, pixel_size_angstrom, shift_px)
    gold = _chords(phantom.beads, tilt_deg, axis_deg, size_px, pixel_size_angstrom, shift_px)
    phase = (PROTEIN_PHASE_PER_ANGSTROM * protein + GOLD_PHASE_PER_ANGSTROM * gold)
    phase = (phase - phase.mean()).astype(np.float32)
    ctf = CtfParameters(defocus_u_angstrom, defocus_v_angstrom, astigmatism_angle_deg,
                        voltage_kv=voltage_kv, b_factor_angstrom2=200.0)
    image = ctf_image(phase, pixel_size_angstrom, ctf)
    path = phantom.thickness_angstrom / max(math.cos(math.radians(tilt_deg)), 0.05)
    transmission = np.exp(-path / ICE_MEAN_FREE_PATH_ANGSTROM
                          - gold / GOLD_MEAN_FREE_PATH_ANGSTROM
                          - protein / PROTEIN_MEAN_FREE_PATH_ANGSTROM)
    return (image * transmission).astype(np.float32)


def movie_frames(image: np.ndarray, drift_px: np.ndarray, counts_per_pixel: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Frames (uint16) of `image` displaced by each frame's drift [x, y], with Poisson noise
    at `counts_per_pixel` per frame for a transmission of 1."""
    frames = np.empty((len(drift_px), *image.shape), dtype=np.uint16)
    for index, (dx, dy) in enumerate(drift_px):
        moved = ndimage.shift(image, (dy, dx), order=1, mode="nearest")
        frames[index] = rng.poisson(np.clip(moved, 0, None) * counts_per_pixel)
    return frames

"""Tomogram positioning: the X and Y tilt of the specimen's slab (IMOD tomopitch-like).

A coarse reconstruction (few SIRT iterations on a small binned copy, thick enough to hold any
plausible slab) is made with the current alignment. The specimen's contrast is measured as the
local variance of the band-passed volume; in each of a grid of columns the middle of the slab is
halfway between the outermost half-height crossings of the contrast's z profile, and a plane
z = a x + b y + c is fitted to these (two rounds of outlier rejection). The slope across the
tilt axis gives a Y tilt, the slope along it the X tilt (reported; good to a few degrees).

The Y tilt — the tilt angles are off by it (true tilt = stage angle + Y tilt), so it is added to
the angles from then on — is taken from the transmission instead when that measures it to better
than 0.5° (`transmission_offset`: with an energy filter the slab transmits most where it faces
the beam), which it does on any specimen thick enough to matter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cryovault.science.tomo.geometry import TiltAlignment
from cryovault.science.tomo.sirt import sirt
from cryovault.science.tomo.stackops import warp_image

#: the coarse reconstruction works on images of at most this many pixels across
POSITIONING_SIZE = 256
#: and is this many times as thick as it is wide, at least, and at least this thick (Å)
THICKNESS_FRACTION = 0.6
MIN_THICKNESS_ANGSTROM = 4000.0


@dataclass(frozen=True)
class Positioning:
    """X and Y tilt of the slab in degrees, and the slab's centre height z (pixels at bin 1,
    positive towards +z of geometry.py)."""

    x_tilt_degrees: float
    y_tilt_degrees: float
    z_centre_px: float


def coarse_volume(binned: np.ndarray, alignment: TiltAlignment, binning: int,
                  pixel_size_angstrom: float, iterations: int = 3) -> np.ndarray:
    """A small SIRT reconstruction (nz, ny, nx) of the kept tilts with `alignment`."""
    xf = alignment.xf()
    aligned = np.stack([warp_image(binned[i], xf[i], binning=binning)
                        for i in range(len(alignment))])
    nx = binned.shape[-1]
    nz = max(THICKNESS_FRACTION * nx, MIN_THICKNESS_ANGSTROM / (pixel_size_angstrom * binning))
    nz = int(min(nz, 2 * nx)) // 2 * 2
    return sirt(aligned, alignment.angles_degrees, nz, iterations)


def contrast_volume(volume: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Local variance of the band-passed volume (specimen contrast per voxel)."""
    v = volume.astype(np.float32)
    band = ndimage.gaussian_filter(v, sigma * 0.5) - ndimage.gaussian_filter(v, sigma * 3)
    return ndimage.gaussian_filter(band * band, sigma)


def slab_mid_height(profile: np.ndarray) -> tuple[float, float] | None:
    """(z, weight) of the middle of the slab in a column's contrast profile (index units,
    centre-relative): halfway between the outermost crossings of half the profile's height
    above its floor, which follow the slab's surfaces rather than where the specimen happens
    to be dense."""
    floor = float(np.percentile(profile, 10))
    height = float(profile.max()) - floor
    if height <= 0:
        return None
    above = np.nonzero(profile - floor >= 0.5 * height)[0]
    if len(above) < 2:
        return None
    top, bottom = int(above[0]), int(above[-1])
    return (top + bottom) / 2.0 - (len(profile) - 1) / 2.0, height


def slab_plane(contrast: np.ndarray, tiles: int = 8) -> tuple[float, float, float, float]:
    """(a, b, c, weight): the plane z = a x + b y + c (voxels, centre-relative) through the
    slab's mid-surface, from the slab's extent in `tiles` × `tiles` columns."""
    nz, ny, nx = contrast.shape
    # ignore the borders, where few tilts overlap
    y_edges = np.linspace(ny * 0.1, ny * 0.9, tiles + 1).astype(int)
    x_edges = np.linspace(nx * 0.1, nx * 0.9, tiles + 1).astype(int)
    rows = []
    for y0, y1 in zip(y_edges[:-1], y_edges[1:], strict=True):
        for x0, x1 in zip(x_edges[:-1], x_edges[1:], strict=True):
            column = contrast[:, y0:y1, x0:x1].reshape(nz, -1)
            profile = ndimage.gaussian_filter1d(np.median(column, axis=1), 2.0)
            mid = slab_mid_height(profile)
            if mid is None:
                continue
            rows.append(((x0 + x1 - 1) / 2.0 - (nx - 1) / 2.0,
                         (y0 + y1 - 1) / 2.0 - (ny - 1) / 2.0, mid[0], 1.0))
    if len(rows) < 3:
        return 0.0, 0.0, 0.0, 0.0
    data = np.array(rows)
    keep = np.ones(len(data), dtype=bool)
    coef = np.zeros(3)
    for _ in range(3):
        design = np.stack([data[keep, 0], data[keep, 1], np.ones(keep.sum())], axis=1)
        coef, *_ = np.linalg.lstsq(design, data[keep, 2], rcond=None)
        resid = data[:, 2] - (data[:, 0] * coef[0] + data[:, 1] * coef[1] + coef[2])
        scale = 1.4826 * float(np.median(np.abs(resid[keep]))) + 1e-6
        keep = np.abs(resid) <= 3 * scale
        if keep.sum() < 3:
            break
    return float(coef[0]), float(coef[1]), float(coef[2]), float(keep.sum())


def transmission_offset(angles_degrees: np.ndarray, means: np.ndarray
                        ) -> tuple[float, float] | None:
    """The Y tilt β (degrees) from the tilts' mean intensities: with an energy filter the
    transmission of a slab is exp(−t / (λ cos(θ + β))), largest where the slab faces the beam,
    so log I = a − b / cos(θ + β) is fitted (b > 0). Returns (β, its standard error), or None
    when the intensities carry no usable thickness signal."""
    from scipy.optimize import least_squares

    angles = np.radians(np.asarray(angles_degrees, dtype=float))
    ok = np.asarray(means) > 0
    if ok.sum() < 5 or np.ptp(angles[ok]) < math.radians(40):
        return None
    log_i = np.log(np.asarray(means, dtype=float)[ok])
    th = angles[ok]

    def residual(p: np.ndarray) -> np.ndarray:
        return p[0] - p[1] / np.cos(th + p[2]) - log_i

    start = np.array([float(log_i.max()) + 0.3, 0.3, 0.0])
    fit = least_squares(residual, start, bounds=([-np.inf, 0.0, -0.35], [np.inf, 20.0, 0.35]))
    dof = max(1, len(th) - 3)
    sigma2 = float((fit.fun**2).sum()) / dof
    try:
        cov = np.linalg.inv(fit.jac.T @ fit.jac) * sigma2
    except np.linalg.LinAlgError:
        return None
    err = math.degrees(math.sqrt(max(cov[2, 2], 0.0)))
    if fit.x[1] < 0.02 or not math.isfinite(err):
        return None
    return math.degrees(float(fit.x[2])), err


def position_tomogram(binned: np.ndarray, alignment: TiltAlignment, binning: int,
                      pixel_size_angstrom: float) -> Positioning:
    """X/Y tilt of the slab seen through `alignment` (angles as given there). The Y tilt comes
    from the transmission when it is measured to better than 0.5°, else from the slab's plane
    in the coarse reconstruction, like the X tilt."""
    volume = coarse_volume(binned, alignment, binning, pixel_size_angstrom)
    a, b, c, _ = slab_plane(contrast_volume(volume))
    # A slab whose true tilts are stage + β, reconstructed with the stage angles, appears
    # rotated in the x-z plane by −β: its mid-surface has slope tan(−β) along x.
    y_tilt = -math.degrees(math.atan(a))
    from_intensity = transmission_offset(alignment.angles_degrees,
                                         binned.mean(axis=(1, 2), dtype=np.float64))
    if from_intensity is not None and from_intensity[1] < 0.5:
        y_tilt = from_intensity[0]
    return Positioning(x_tilt_degrees=math.degrees(math.atan(b)), y_tilt_degrees=y_tilt,
                       z_centre_px=c * binning)

"""Coarse alignment of a tilt series by cross-correlation of neighbouring tilts (IMOD
tiltxcorr-like), from the tilt nearest 0° outward.

Each raw image is rotated so that the tilt axis is vertical (geometry.py) and tapered; tilt i is
compared with its neighbour j one step closer to 0°, after stretching i across the axis by
cos θ_j / cos θ_i (a feature of the specimen's mid-plane at x appears at x cos θ). The
correlation is band-pass filtered (off the lowest frequencies, which carry the ramp of the slab's
thickness, and off the noise-dominated high ones) and its peak, located to sub-pixel precision
with a parabola through 3 × 3 points, gives the shift of i relative to j; shifts accumulate
outward. The result is a TiltAlignment whose per-tilt shifts s_i are good to a few pixels (the
random walk of the errors is removed later by patch tracking).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from cryovault.science.fourier import fft_workers
from cryovault.science.threads import run_parallel
from cryovault.science.tomo.geometry import TiltAlignment, rotation_matrix
from cryovault.science.tomo.stackops import taper_edges, warp_image

#: band of the correlation in cycles per binned pixel
LOW_CUTOFF = 0.01
HIGH_CUTOFF = 0.25


def rotate_to_axis(image: np.ndarray, axis_degrees: float) -> np.ndarray:
    """The binned raw image rotated so that the tilt axis is vertical (no shift)."""
    return warp_image(image, np.array([*rotation_matrix(-axis_degrees).ravel(), 0.0, 0.0]))


def stretch_across_axis(image: np.ndarray, factor: float) -> np.ndarray:
    """The axis-vertical image stretched by `factor` along x about its centre."""
    if abs(factor - 1.0) < 1e-6:
        return image
    cx = (image.shape[1] - 1) / 2.0
    return ndimage.affine_transform(image, np.array([1.0, 1.0 / factor]),
                                    offset=(0.0, cx - cx / factor), order=1,
                                    cval=float(image.mean()))


def bandpass(shape: tuple[int, int], low: float = LOW_CUTOFF,
             high: float = HIGH_CUTOFF) -> np.ndarray:
    """Gaussian-edged band-pass on the rfft2 grid of `shape` (cycles per pixel)."""
    ky = sfft.fftfreq(shape[0])[:, None]
    kx = sfft.rfftfreq(shape[1])[None, :]
    g2 = kx * kx + ky * ky
    return ((1.0 - np.exp(-g2 / (2 * low * low))) * np.exp(-g2 / (2 * high * high))
            ).astype(np.float32)


def peak_subpixel(corr: np.ndarray, max_shift: float) -> tuple[np.ndarray, float]:
    """[x, y] of the highest peak of an fftshifted correlation within `max_shift` of the centre
    (parabolic interpolation), and its height."""
    ny, nx = corr.shape
    cy, cx = ny // 2, nx // 2
    yy, xx = np.ogrid[0:ny, 0:nx]
    masked = np.where((yy - cy) ** 2 + (xx - cx) ** 2 <= max_shift**2, corr, -np.inf)
    iy, ix = np.unravel_index(int(np.argmax(masked)), corr.shape)
    iy = min(max(iy, 1), ny - 2)
    ix = min(max(ix, 1), nx - 2)

    def vertex(m: float, c: float, p: float) -> float:
        den = m - 2 * c + p
        return 0.0 if den >= 0 else float(np.clip(0.5 * (m - p) / den, -0.5, 0.5))

    dx = vertex(corr[iy, ix - 1], corr[iy, ix], corr[iy, ix + 1])
    dy = vertex(corr[iy - 1, ix], corr[iy, ix], corr[iy + 1, ix])
    return np.array([ix - cx + dx, iy - cy + dy]), float(corr[iy, ix])


def correlate(moving: np.ndarray, reference: np.ndarray, band: np.ndarray,
              max_shift: float) -> tuple[np.ndarray, float]:
    """The shift [x, y] that moves `reference`'s content onto `moving`'s (peak of their
    band-passed, normalised cross-correlation) and the correlation coefficient at the peak."""
    workers = fft_workers()
    fm = sfft.rfft2(moving, workers=workers) * band
    fr = sfft.rfft2(reference, workers=workers) * band
    norm = math.sqrt(float(np.sum(np.abs(fm) ** 2)) * float(np.sum(np.abs(fr) ** 2)))
    corr = sfft.irfft2(fm * np.conj(fr), s=moving.shape, workers=workers)
    corr = np.fft.fftshift(corr) * (moving.size / max(norm, 1e-30)) * 1.0
    shift, height = peak_subpixel(corr, max_shift)
    return shift, height


def pair_align(binned: np.ndarray, angles_degrees: np.ndarray, axis_degrees: float,
               binning: int, *, max_shift_fraction: float = 0.2,
               workers: int = 2) -> tuple[TiltAlignment, np.ndarray]:
    """Coarse alignment of a binned stack (kept tilts, any order) by neighbour correlation.

    Returns the TiltAlignment (shifts at bin 1) and each tilt's correlation with its neighbour
    (1.0 for the reference tilt nearest 0°)."""
    angles = np.asarray(angles_degrees, dtype=float)
    n = len(angles)
    edge = max(4, binned.shape[-1] // 16)
    rotated = run_parallel(
        lambda a, b: [taper_edges(rotate_to_axis(binned[i], axis_degrees), edge)
                      for i in range(a, b)], n, workers)
    views = [v for chunk in rotated for v in chunk]
    order = np.argsort(angles, kind="stable")
    ref_pos = int(np.argmin(np.abs(angles[order])))
    band = bandpass(binned.shape[-2:])
    max_shift = max_shift_fraction * min(binned.shape[-2:])
    # e[i]: shift of tilt i's content in the axis-vertical frame (binned px); e[ref] = 0
    e = np.zeros((n, 2))
    scores = np.ones(n)

    def step(i: int, j: int) -> tuple[np.ndarray, float]:
        k = math.cos(math.radians(angles[j])) / math.cos(math.radians(angles[i]))
        shift, score = correlate(stretch_across_axis(views[i], k), views[j], band, max_shift)
        return np.array([shift[0] / k, shift[1]]), score

    sides = [list(order[ref_pos + 1:]), list(order[:ref_pos][::-1])]
    ref = int(order[ref_pos])

    def walk(side: int) -> list[tuple[int, np.ndarray, float]]:
        out = []
        previous = ref
        for i in sides[side]:
            rel, score = step(int(i), previous)
            out.append((int(i), rel, score))
            previous = int(i)
        return out

    results = run_parallel(lambda a, b: [walk(s) for s in range(a, b)], 2, min(workers, 2))
    for side_result in (r for chunk in results for r in chunk):
        previous = ref
        for i, rel, score in side_result:
            k = math.cos(math.radians(angles[previous])) / math.cos(math.radians(angles[i]))
            # stretched content of i sits at k (x_i + e_i,x); that of previous at x_j + e_j,x
            e[i, 0] = rel[0] + e[previous, 0] / k
            e[i, 1] = rel[1] + e[previous, 1]
            scores[i] = score
            previous = i
    rot = rotation_matrix(axis_degrees)
    shifts = (e * binning) @ rot.T
    return TiltAlignment(angles, axis_degrees, shifts), scores

"""Sampling patches of a tilt in the aligned frame and measuring their displacement by
cross-correlation (the building blocks of marker-free patch tracking, patch_tracking.py).

All coordinates here are in pixels of the working (possibly binned) stack, relative to the
image centre (geometry.image_centre), in the aligned frame of geometry.py: tilt axis along +y.
A patch of P × P samples centred on aligned position (cu, cv) holds the raw image at the aligned
positions (cu + j · step, cv + i) for the offsets i, j ∈ [−P/2, P/2): `step` < 1 along x
stretches a tilt whose specimen is foreshortened by cos θ to the geometry of a less tilted one.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from cryovault.science.fourier import fft_workers
from cryovault.science.tomo.geometry import TiltAlignment, image_centre


def patch_offsets(size: int) -> np.ndarray:
    """The P sample offsets −P/2 … P/2 − 1 of a patch along one axis (the centre is index P/2)."""
    return np.arange(size, dtype=np.float64) - size // 2


def raw_positions(aligned: np.ndarray, matrix: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Raw centre-relative [x, y] of aligned positions (..., 2): r = M a + s."""
    return aligned @ matrix.T + shift


def footprint_inside(centres: np.ndarray, steps: np.ndarray, size: int, matrix: np.ndarray,
                     shift: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Whether the whole footprint of each patch (K centres, K x-steps) lies inside the raw
    image of `shape` (ny, nx) under the forward transform r = M a + s (working pixels)."""
    half = size / 2.0
    corners = np.array([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]]) * half
    pts = centres[:, None, :] + corners[None, :, :] * np.stack(
        [steps, np.ones_like(steps)], axis=1)[:, None, :]
    raw = raw_positions(pts, matrix, shift) + image_centre(shape)
    ny, nx = shape
    ok = (raw[..., 0] >= 0) & (raw[..., 0] <= nx - 1) & (raw[..., 1] >= 0) & (raw[..., 1] <= ny - 1)
    return ok.all(axis=1)


def sample_patches(image: np.ndarray, centres: np.ndarray, steps: np.ndarray, size: int,
                   matrix: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """(K, P, P) float32 patches of a raw `image` at aligned `centres` (K, 2), each sampled with
    its x step (K,) and unit y step, through r = M a + s (bilinear interpolation)."""
    image = np.asarray(image, dtype=np.float32)
    offsets = patch_offsets(size)
    steps = np.asarray(steps, dtype=float)
    # aligned (x, y) of sample (row i, col j) of patch k: (cx + o_j step_k, cy + o_i)
    ax = centres[:, 0, None, None] + offsets[None, None, :] * steps[:, None, None]
    ay = centres[:, 1, None, None] + offsets[None, :, None]
    ax, ay = np.broadcast_arrays(ax, ay)
    c = image_centre(image.shape)
    rx = matrix[0, 0] * ax + matrix[0, 1] * ay + (shift[0] + c[0])
    ry = matrix[1, 0] * ax + matrix[1, 1] * ay + (shift[1] + c[1])
    out = ndimage.map_coordinates(image, [ry.ravel(), rx.ravel()], order=1, mode="nearest",
                                  prefilter=False)
    return out.reshape(len(centres), size, size).astype(np.float32, copy=False)


def _signed(index: np.ndarray, n: int) -> np.ndarray:
    """Circular-correlation indices 0 … n − 1 as signed shifts −n/2 … n/2."""
    return np.where(index > n // 2, index - n, index)


class PatchCorrelator:
    """Normalised, band-pass filtered cross-correlation of P × P patches.

    The patches are mean-subtracted and tapered (cosine ramps over P / 8 at the borders); the
    band pass keeps spatial frequencies between `highpass` and `lowpass` (cycles per working
    pixel, Gaussian roll-offs). `displacement` returns where the content of each reference patch
    lies in the matching target patch (in samples) and the correlation coefficient at the peak.
    """

    def __init__(self, size: int, lowpass: float = 0.18, highpass: float = 0.02,
                 max_shift_fraction: float = 0.25) -> None:
        self.size = size
        ramp = np.ones(size)
        w = max(2, size // 8)
        t = 0.5 - 0.5 * np.cos(np.pi * (np.arange(w) + 0.5) / w)
        ramp[:w], ramp[size - w:] = t, t[::-1]
        self.window = (ramp[:, None] * ramp[None, :]).astype(np.float32)
        fy = sfft.fftfreq(size)[:, None]
        fx = sfft.rfftfreq(size)[None, :]
        f2 = fx**2 + fy**2
        band = np.exp(-f2 / (2 * lowpass**2)) * (1.0 - np.exp(-f2 / (2 * highpass**2)))
        self.filter = band.astype(np.float32)
        # rfft half-plane weights for Parseval sums (columns other than 0 and Nyquist count twice)
        cols = np.full(size // 2 + 1, 2.0)
        cols[0] = 1.0
        if size % 2 == 0:
            cols[-1] = 1.0
        self.parseval = (cols[None, :] * np.ones((size, 1))).astype(np.float32)
        self.max_shift = max(1, int(size * max_shift_fraction))
        dy = np.minimum(np.arange(size), size - np.arange(size))
        self.search = (dy[:, None] <= self.max_shift) & (dy[None, :] <= self.max_shift)

    def spectra(self, patches: np.ndarray) -> np.ndarray:
        """Filtered rfft2 spectra of tapered, mean-subtracted patches (K, P, P//2+1)."""
        p = patches - patches.mean(axis=(1, 2), keepdims=True)
        p = p * self.window
        return sfft.rfft2(p, axes=(1, 2), workers=fft_workers()) * self.filter

    def maps(self, reference: np.ndarray, target: np.ndarray, smear: float = 0.0
             ) -> np.ndarray:
        """Correlation maps (K, P, P) of each reference patch with its target patch, normalised
        so that the value at a shift is the correlation coefficient there; index [dy, dx]
        (circular: see `_signed`) holds the target content displaced by (dx, dy) samples.
        `smear` > 0 convolves the maps along x with a box of that many samples (see
        `displacement`)."""
        fr, ft = self.spectra(reference), self.spectra(target)
        cross = ft * np.conj(fr)
        er = (np.abs(fr) ** 2 * self.parseval).sum(axis=(1, 2))
        et = (np.abs(ft) ** 2 * self.parseval).sum(axis=(1, 2))
        if smear > 0:
            box = np.sinc(smear * sfft.rfftfreq(self.size)).astype(np.float32)
            cross = cross * box[None, None, :]
        cc = sfft.irfft2(cross, s=(self.size, self.size), axes=(1, 2), workers=fft_workers())
        norm = np.sqrt(np.maximum(er * et, 1e-30)) / (self.size * self.size)
        return cc / norm[:, None, None]

    def displacement(self, reference: np.ndarray, target: np.ndarray, smear: float = 0.0
                     ) -> tuple[np.ndarray, np.ndarray]:
        """([dx, dy] (K, 2) in samples, correlation coefficient (K,)) of the content of each
        reference patch found in its target patch (sub-sample peak by parabolic fits).

        `smear` (samples) is the spread along x of the content's displacements when the
        specimen is thick: content at different depths moves by different amounts between two
        tilts, so a patch's correlation is a ridge along x whose highest point falls at the
        depth of the patch's strongest feature, a different one from tilt to tilt. Convolving
        the maps with a box of the ridge's length puts the peak at the ridge's middle (the
        slab's mid-depth) instead, consistently from tilt to tilt."""
        cc = self.maps(reference, target, smear)
        masked = np.where(self.search[None], cc, -np.inf)
        k = len(cc)
        flat = masked.reshape(k, -1).argmax(axis=1)
        iy, ix = np.divmod(flat, self.size)
        rows = np.arange(k)
        n = self.size
        c0 = cc[rows, iy, ix]
        sub = np.zeros((k, 2))
        for axis, (a, b) in enumerate(((cc[rows, iy, (ix - 1) % n], cc[rows, iy, (ix + 1) % n]),
                                       (cc[rows, (iy - 1) % n, ix], cc[rows, (iy + 1) % n, ix]))):
            denom = a - 2 * c0 + b
            with np.errstate(divide="ignore", invalid="ignore"):
                d = np.where(denom < 0, 0.5 * (a - b) / denom, 0.0)
            sub[:, axis] = np.clip(d, -0.5, 0.5)
        shift = np.stack([_signed(ix, n) + sub[:, 0], _signed(iy, n) + sub[:, 1]], axis=1)
        return shift, c0


def measure_offsets(reference_image: np.ndarray, reference_forward: tuple[np.ndarray, np.ndarray],
                    reference_centres: np.ndarray, image: np.ndarray,
                    forward: tuple[np.ndarray, np.ndarray], centres: np.ndarray, step: float,
                    correlator: PatchCorrelator, recentre: int = 0, smear: float = 0.0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the content of the reference patches (unit steps, centred on `reference_centres`
    in the aligned frame of the reference tilt) lies in `image`, relative to `centres` (aligned
    frame of that tilt, sampled with x step `step`): (offsets (K, 2) in aligned working px,
    correlation coefficients (K,), usable (K,) bool). Forwards are (M, s) in working pixels.

    `smear`: see PatchCorrelator.displacement. Windowed correlation pulls the peak towards zero
    shift; `recentre` > 0 re-samples the target at the estimate (up to that many times) to
    remove that pull. Patches whose footprint leaves either image, or whose first peak lies at
    the edge of the search range, are unusable.
    """
    size = correlator.size
    k = len(centres)
    ones = np.ones(k)
    steps = np.full(k, step)
    usable = (footprint_inside(reference_centres, ones, size, *reference_forward,
                               reference_image.shape)
              & footprint_inside(centres, steps, size, *forward, image.shape))
    offsets = np.zeros((k, 2))
    cc = np.zeros(k)
    idx = np.nonzero(usable)[0]
    if len(idx) == 0:
        return offsets, cc, usable
    ref = sample_patches(reference_image, reference_centres[idx], ones[idx], size,
                         *reference_forward)
    scale = np.array([step, 1.0])
    found = centres[idx].astype(float)
    for attempt in range(1 + recentre):
        tgt = sample_patches(image, found, steps[idx], size, *forward)
        shift, cc_idx = correlator.displacement(ref, tgt, smear)
        if attempt == 0:
            ok = np.abs(shift).max(axis=1) < correlator.max_shift - 0.5
            shift[~ok] = 0.0
            usable[idx[~ok]] = False
        found += shift * scale
        if attempt == 0 and recentre:
            inside = footprint_inside(found, steps[idx], size, *forward, image.shape)
            found[~inside] = centres[idx][~inside]
            usable[idx[~inside]] = False
        if np.abs(shift).max(initial=0.0) < 0.02:
            break
    offsets[idx] = found - centres[idx]
    cc[idx] = cc_idx
    return offsets, cc, usable


def depth_extent(reference_image: np.ndarray, reference_forward: tuple[np.ndarray, np.ndarray],
                 reference_angle: float, image: np.ndarray,
                 forward: tuple[np.ndarray, np.ndarray], angle: float,
                 correlator: PatchCorrelator) -> float | None:
    """The specimen's extent along z (working px) seen from the parallax between two tilts
    (angles in radians, forwards (M, s) in working px), or None when it cannot be measured.

    Patches on a grid of points at z = 0 are correlated (the target stretched along x by
    cos θ / cos θ_ref as in tracking); content at depth z then lies at x offset z κ with
    κ = cos θ_ref (tan θ − tan θ_ref), so the correlation maps averaged over the patches are a
    ridge along x: a box of length T κ (T the slab's thickness) convolved with the content's
    autocorrelation, whose width the profile across the ridge (along y) gives. T follows from
    the difference of the two profiles' variances, that of a box being (T κ)² / 12."""
    size = correlator.size
    kappa = math.cos(reference_angle) * (math.tan(angle) - math.tan(reference_angle))
    step = math.cos(angle) / math.cos(reference_angle)
    ny, nx = reference_image.shape
    ticks = np.arange(-(max(nx, ny) // size), max(nx, ny) // size + 1) * (size / 2.0)
    gx, gy = np.meshgrid(ticks, ticks)
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
    target = grid * np.array([step, 1.0])
    ones = np.ones(len(grid))
    inside = (footprint_inside(grid, ones, size, *reference_forward, reference_image.shape)
              & footprint_inside(target, ones * step, size, *forward, image.shape))
    if inside.sum() < 2 or abs(kappa) < 1e-3:
        return None
    ref = sample_patches(reference_image, grid[inside], ones[inside], size, *reference_forward)
    tgt = sample_patches(image, target[inside], ones[inside] * step, size, *forward)
    mean = sfft.fftshift(correlator.maps(ref, tgt).mean(axis=0))
    half = size // 2
    iy, ix = np.unravel_index(int(np.argmax(mean)), mean.shape)
    reach = correlator.max_shift
    offsets = np.arange(-reach, reach + 1)

    def variance(profile: np.ndarray) -> float:
        profile = np.clip(profile - np.median(mean), 0.0, None)
        total = profile.sum()
        if total <= 0:
            return math.nan
        centre = (profile * offsets).sum() / total
        return float((profile * (offsets - centre) ** 2).sum() / total)

    along_x = mean[iy, np.clip(half + offsets + (ix - half), 0, size - 1)]
    along_y = mean[np.clip(half + offsets + (iy - half), 0, size - 1), ix]
    extra = variance(along_x) - variance(along_y)
    if not math.isfinite(extra):
        return None
    return math.sqrt(12.0 * max(extra, 0.0)) / abs(kappa)


def _forward(alignment: TiltAlignment, index: int, binning: int
             ) -> tuple[np.ndarray, np.ndarray]:
    m, s = alignment.forward(index)
    return m, s / binning


def slab_thickness(stack: np.ndarray, alignment: TiltAlignment, binning: int,
                   lowpass: float) -> float:
    """The slab's thickness (working px) from the parallax (`depth_extent`) between the central
    tilt of `stack` (the tilts binned by `binning`) and the tilts about 6° and 9° away on either
    side, seen through `alignment` (bin 1): the median of the measurements, 0 when none.
    `lowpass` (cycles per working px) is that of the tracking correlation."""
    angles = alignment.angles_degrees
    centre = int(np.argmin(np.abs(angles)))
    size = max(64, int(min(stack.shape[1:]) // 8) // 2 * 2)
    correlator = PatchCorrelator(size, lowpass=lowpass, highpass=lowpass / 9.0)
    found = []
    for offset in (-9.0, -6.0, 6.0, 9.0):
        i = int(np.argmin(np.abs(angles - angles[centre] - offset)))
        if abs(angles[i] - angles[centre] - offset) > 2.0:
            continue
        extent = depth_extent(stack[centre], _forward(alignment, centre, binning),
                              math.radians(angles[centre]), stack[i],
                              _forward(alignment, i, binning), math.radians(angles[i]),
                              correlator)
        if extent is not None:
            found.append(extent)
    return float(np.median(found)) if found else 0.0

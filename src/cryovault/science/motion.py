"""Beam-induced motion correction: global and patch alignment, aligned and dose-weighted sums.

Conventions (docs/architecture.md, "science/"):

- `shifts_px[f] = [x, y]` is the shift APPLIED to frame f (in the movie's pixels, x = column,
  y = row) to align it onto frame 0: aligned_f(x) = frame_f(x − shift_f). So `shifts_px[0]` is
  [0, 0], and content that drifted by +d in frame f gets the shift −d (as MotionCor2's table).
- Patch trajectories are the same shifts for the neighbourhood of each patch centre: the global
  shift plus the smoothed local residual.
- Drift (Å): total = the path length Σ |shift_f − shift_{f−1}| over all frames; a step f−1 → f
  counts as early when the cumulative exposure at the end of frame f is at most 4 e⁻/Å²
  (RELION's rlnAccumMotionEarly; frames 1-4 at 1 e⁻/Å²/frame), otherwise as late.

Method:
1. every frame is Fourier transformed once (scipy.fft, real-to-complex, float32); the spectra
   are kept, cropped copies up to the alignment frequency limit (where a B-factor of
   `b_factor_angstrom2` has fallen to 10 %) are used for alignment, after removing each
   frame's mean and tapering its edges (the edges stay on the detector while the content
   moves, and would pull the correlation peak);
2. global alignment: each frame is cross-correlated with the sum of all the other frames as
   currently aligned (its own noise excluded), filtered by exp(−B g²/4) and divided by the
   frames' rotationally averaged power (so that the strong low-resolution contrast does not make
   the peak broad); the peak of the
   correlation is located to sub-pixel precision by a parabola through its 3 × 3 neighbourhood
   in each axis; shifts are updated and the process repeated until the largest update is below
   `tolerance_px` (the parabola's bias vanishes as the residual shifts go to zero);
3. patches: the aligned, cropped frames are cut into a grid of patches (Tukey-tapered, clear
   of the content wrapped around the edges by the Fourier shift), each aligned in the same
   way; each patch's residual trajectory is smoothed in time by a Whittaker smoother (second
   differences, `patch_smoothing`) and referred to frame 0; then, frame by frame, a polynomial
   in (x, y) (cubic with ≥ 4 × 4 patches, quadratic with 3 × 3: MotionCor2's idea of a smooth
   deformation) is fitted through the patches and evaluated at their centres;
4. sums: Σ_f F_f · exp(−2πi g·s_f) for the aligned sum, and Σ_f q_f F_f · exp(−2πi g·s_f) ·
   √(n / Σ q_f²) for the dose-weighted one, with Grant & Grigorieff's (2015) exposure filter
   q_f(g) = exp(−N_f / 2N_e(g)), N_e(g) = 0.245 g^−1.665 + 2.81 e⁻/Å² (× 0.8 at 200 kV) and N_f
   the cumulative exposure at the middle of frame f. The normalisation keeps the noise power of
   the plain sum. Both sums are corrected for the global trajectory; `--bin` crops them in
   Fourier space (a binned pixel holds the counts of B × B pixels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import scipy.fft as sfft
from scipy import sparse
from scipy.signal.windows import tukey
from scipy.sparse.linalg import spsolve

from cryovault.science.ctf import fft_workers
from cryovault.science.errors import ScienceInputError

EARLY_EXPOSURE_E_PER_A2 = 4.0
#: alignment uses frequencies up to where exp(−B g²/4) has fallen to 1/CROP_ATTENUATION
CROP_ATTENUATION = 10.0


class FrameSource(Protocol):
    """Frames that can be read one at a time (a numpy array qualifies)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> np.ndarray: ...


@dataclass(frozen=True)
class MotionSettings:
    """Alignment settings. `patches` is (columns, rows); (1, 1) turns patch alignment off."""

    patches: tuple[int, int] = (5, 5)
    b_factor_angstrom2: float = 150.0
    patch_b_factor_angstrom2: float = 150.0
    max_iterations: int = 12
    tolerance_px: float = 0.01
    patch_smoothing: float = 50.0
    max_shift_angstrom: float = 200.0
    binning: int = 1
    voltage_kv: float = 300.0
    pre_exposure_e_per_angstrom2: float = 0.0


@dataclass
class PatchTrajectory:
    """The shifts applied to the neighbourhood of `centre_px` ([x, y], movie pixels)."""

    centre_px: tuple[float, float]
    size_px: tuple[float, float]  # width, height of the patch
    shifts_px: np.ndarray  # (n, 2)


@dataclass
class MotionResult:
    """Outcome of `align_movie`; `to_json` gives the public keys of `cryovault motion --json`."""

    pixel_size_angstrom: float
    dose_per_frame_e_per_angstrom2: float
    shifts_px: np.ndarray  # (n, 2) [x, y]
    patches: list[PatchTrajectory]
    total_drift_angstrom: float
    early_drift_angstrom: float
    late_drift_angstrom: float
    aligned_sum: np.ndarray = field(repr=False)
    dose_weighted_sum: np.ndarray = field(repr=False)
    output_pixel_size_angstrom: float = 0.0
    iterations: int = 0
    output: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        def r(v: float) -> float:
            return round(float(v), 4)

        return {
            "pixel_size_angstrom": r(self.pixel_size_angstrom),
            "shifts_px": [[r(x), r(y)] for x, y in self.shifts_px],
            "patch_shifts_px": [
                {"centre": [r(p.centre_px[0]), r(p.centre_px[1])],
                 "shifts": [[r(x), r(y)] for x, y in p.shifts_px]}
                for p in self.patches
            ],
            "total_drift_angstrom": r(self.total_drift_angstrom),
            "early_drift_angstrom": r(self.early_drift_angstrom),
            "late_drift_angstrom": r(self.late_drift_angstrom),
            "output": dict(self.output),
        }


def critical_exposure(g_per_angstrom: np.ndarray, voltage_kv: float = 300.0) -> np.ndarray:
    """N_e(g) = 0.245 g^−1.665 + 2.81 e⁻/Å² (Grant & Grigorieff 2015, 300 kV; × 0.8 at 200 kV,
    interpolated linearly in between)."""
    g = np.maximum(np.asarray(g_per_angstrom, dtype=np.float64), 1e-6)
    scale = 1.0 if voltage_kv >= 300 else max(0.8, 0.8 + 0.2 * (voltage_kv - 200) / 100)
    return (0.245 * g ** -1.665 + 2.81) * scale


def exposure_filter(g_per_angstrom: np.ndarray, exposure_e_per_angstrom2: float,
                    voltage_kv: float = 300.0) -> np.ndarray:
    """q(g, N) = exp(−N / 2 N_e(g))."""
    return np.exp(-exposure_e_per_angstrom2 / (2.0 * critical_exposure(g_per_angstrom,
                                                                        voltage_kv)))


def drift_angstrom(shifts_px: np.ndarray, pixel_size_angstrom: float, dose_per_frame: float,
                   pre_exposure: float = 0.0) -> tuple[float, float, float]:
    """(total, early, late) path lengths in Å (definition in the module docstring)."""
    steps = np.linalg.norm(np.diff(shifts_px, axis=0), axis=1) * pixel_size_angstrom
    exposure_end = pre_exposure + dose_per_frame * np.arange(2, len(shifts_px) + 1)
    early = float(steps[exposure_end <= EARLY_EXPOSURE_E_PER_A2 + 1e-9].sum())
    total = float(steps.sum())
    return total, early, total - early


# --------------------------------------------------------------------------------------------
# Core: iterative alignment of a stack of spectra
# --------------------------------------------------------------------------------------------


def _ramp_axes(shape: tuple[int, int], full_shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """Frequencies (cycles per ORIGINAL pixel) of a cropped rfft2 grid of `shape`."""
    my, mx = shape
    ny, nx = full_shape
    fy = sfft.fftfreq(my) * (my / ny)
    fx = np.arange(mx // 2 + 1) / nx
    return fy, fx


def _ramp(fy: np.ndarray, fx: np.ndarray, shift_xy: np.ndarray) -> np.ndarray:
    """exp(−2πi (fx·sx + fy·sy)): multiplying a spectrum by it moves the content by +s."""
    ey = np.exp(-2j * np.pi * fy * shift_xy[1]).astype(np.complex64)
    ex = np.exp(-2j * np.pi * fx * shift_xy[0]).astype(np.complex64)
    return ey[:, None] * ex[None, :]


def _crop_spectrum(spectrum: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The low-frequency (my, mx//2+1) block of an rfft2 spectrum (my, mx even)."""
    my, mx = shape
    ny = spectrum.shape[0]
    out = np.empty((my, mx // 2 + 1), dtype=spectrum.dtype)
    out[: my // 2] = spectrum[: my // 2, : mx // 2 + 1]
    out[my // 2:] = spectrum[ny - my // 2:, : mx // 2 + 1]
    return out


def _peak_subpixel(cc: np.ndarray, max_shift: float) -> tuple[np.ndarray, float]:
    """[x, y] of the correlation maximum (wrapped to ±size/2) within `max_shift` pixels, with a
    parabola through the neighbours in each axis; and the peak height."""
    my, mx = cc.shape
    ys = np.fft.fftfreq(my) * my
    xs = np.fft.fftfreq(mx) * mx
    allowed = (np.abs(ys)[:, None] <= max_shift) & (np.abs(xs)[None, :] <= max_shift)
    masked = np.where(allowed, cc, -np.inf)
    iy, ix = np.unravel_index(int(np.argmax(masked)), cc.shape)
    c0 = cc[iy, ix]

    def vertex(cm: float, cp: float) -> float:
        denominator = cm - 2 * c0 + cp
        if denominator >= 0:
            return 0.0
        return float(np.clip(0.5 * (cm - cp) / denominator, -0.5, 0.5))

    dy = vertex(cc[(iy - 1) % my, ix], cc[(iy + 1) % my, ix])
    dx = vertex(cc[iy, (ix - 1) % mx], cc[iy, (ix + 1) % mx])
    return np.array([xs[ix] + dx, ys[iy] + dy]), float(c0)


#: half-width (pixels of the cropped grid) of the correlation window evaluated directly
WINDOW_RADIUS = 3


class _CorrelationWindow:
    """irfft2 of a half-plane cross-spectrum evaluated only at the (2r+1)² pixels around zero
    shift, as two small matrix products (exact: the same sums as the full inverse transform)."""

    def __init__(self, shape: tuple[int, int], radius: int) -> None:
        my, mx = shape
        offsets = np.arange(-radius, radius + 1)
        fy = sfft.fftfreq(my)
        fx = np.arange(mx // 2 + 1) / mx
        self.ey = np.exp(2j * np.pi * offsets[:, None] * fy[None, :]).astype(np.complex64)
        weight = np.full(mx // 2 + 1, 2.0)
        weight[0] = 1.0
        if mx % 2 == 0:
            weight[-1] = 1.0
        self.ex = (np.exp(2j * np.pi * fx[:, None] * offsets[None, :])
                   * weight[:, None]).astype(np.complex64)
        self.norm = 1.0 / (my * mx)
        self.radius = radius
        self.offsets = offsets.astype(np.float64)

    def peak(self, cross: np.ndarray) -> np.ndarray | None:
        """[x, y] of the maximum with parabolic refinement, or None when it lies on the edge
        of the window (then the full map is needed)."""
        cc = (self.ey @ cross @ self.ex).real * self.norm
        iy, ix = np.unravel_index(int(np.argmax(cc)), cc.shape)
        r = self.radius
        if iy in (0, 2 * r) or ix in (0, 2 * r):
            return None
        c0 = cc[iy, ix]

        def vertex(cm: float, cp: float) -> float:
            denominator = cm - 2 * c0 + cp
            if denominator >= 0:
                return 0.0
            return float(np.clip(0.5 * (cm - cp) / denominator, -0.5, 0.5))

        dy = vertex(cc[iy - 1, ix], cc[iy + 1, ix])
        dx = vertex(cc[iy, ix - 1], cc[iy, ix + 1])
        return np.array([self.offsets[ix] + dx, self.offsets[iy] + dy])


def _align_spectra(spectra: np.ndarray, shape: tuple[int, int], full_shape: tuple[int, int],
                   weights: np.ndarray, max_shift_px: float, tolerance_px: float,
                   max_iterations: int, workers: int,
                   initial: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Align a stack of rfft2 spectra (n, my, mx//2+1) of images of `shape` that sample a grid of
    `full_shape` original pixels. Returns (n, 2) applied shifts in original pixels (frame 0 at
    zero) and the number of iterations."""
    n = spectra.shape[0]
    fy, fx = _ramp_axes(shape, full_shape)
    scale = np.array([full_shape[1] / shape[1], full_shape[0] / shape[0]])
    shifts = np.zeros((n, 2)) if initial is None else initial.astype(np.float64).copy()
    max_shift_crop = max(2.0, float(max_shift_px / scale.max()))
    window = _CorrelationWindow(shape, WINDOW_RADIUS)
    iteration = 0
    shifted = np.empty_like(spectra)
    for iteration in range(1, max_iterations + 1):  # noqa: B007 - reported
        for f in range(n):
            np.multiply(spectra[f], _ramp(fy, fx, shifts[f]), out=shifted[f])
        total = shifted.sum(axis=0)
        updates = np.zeros((n, 2))
        for start in range(0, n, 8):
            stop = min(n, start + 8)
            block = shifted[start:stop]
            cross = block * np.conj(total[None] - block) * weights[None]
            cc = None
            for j in range(stop - start):
                peak = None
                if iteration > 1:
                    # near convergence: the correlation only in a small window around zero
                    peak = window.peak(cross[j])
                if peak is None:
                    if cc is None:
                        cc = sfft.irfft2(cross, s=shape, workers=workers)
                    peak, _ = _peak_subpixel(cc[j], max_shift_crop)
                updates[start + j] = -peak * scale
        shifts += updates
        shifts -= shifts[0].copy()
        moved = np.abs(updates - updates.mean(axis=0)).max()
        if moved < tolerance_px:
            break
    return shifts, iteration


def _bfactor_weights(shape: tuple[int, int], full_shape: tuple[int, int],
                     pixel_size: float, b_factor: float) -> np.ndarray:
    fy, fx = _ramp_axes(shape, full_shape)
    g2 = (fy[:, None] ** 2 + fx[None, :] ** 2) / pixel_size**2
    return np.exp(-b_factor * g2 / 4.0).astype(np.float32)


def _alignment_shape(full_shape: tuple[int, int], pixel_size: float,
                     b_factor: float) -> tuple[int, int]:
    """Cropped size that keeps frequencies up to where exp(−B g²/4) = 2 %."""
    g_max = math.sqrt(4.0 * math.log(CROP_ATTENUATION) / max(b_factor, 1e-3))
    fraction = min(1.0, 2.0 * g_max * pixel_size)
    out = []
    for n in full_shape:
        m = int(math.ceil(n * fraction))
        m = min(n - n % 2, sfft.next_fast_len(m + m % 2, real=True))
        m += m % 2
        out.append(min(m, n - n % 2))
    return out[0], out[1]


def _tapered_spectra(cropped: np.ndarray, shape: tuple[int, int], workers: int) -> np.ndarray:
    """Spectra of the cropped frames with their mean removed and a Tukey edge taper applied,
    so that the frame edges (fixed on the detector) do not pull the correlation peak."""
    taper = np.outer(tukey(shape[0], 0.2), tukey(shape[1], 0.2)).astype(np.float32)
    out = np.empty_like(cropped)
    for f in range(cropped.shape[0]):
        image = sfft.irfft2(cropped[f], s=shape, workers=workers)
        image -= image.mean()
        image *= taper
        out[f] = sfft.rfft2(image, workers=workers)
    out[:, 0, 0] = 0
    return out


def _whitening(spectra: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """1 / the rotationally averaged power of the frames: the strong low-frequency signal would
    otherwise make the correlation peak broad, and its position sensitive to small asymmetries."""
    my, mx = shape
    fy = sfft.fftfreq(my)[:, None]
    fx = (np.arange(mx // 2 + 1) / mx)[None, :]
    ring = np.rint(np.sqrt(fy**2 + fx**2) * max(my, mx)).astype(np.int64)
    power = np.zeros(spectra.shape[1:], dtype=np.float64)
    for spectrum in spectra:
        power += spectrum.real.astype(np.float64) ** 2 + spectrum.imag.astype(np.float64) ** 2
    counts = np.bincount(ring.ravel())
    mean = np.bincount(ring.ravel(), weights=power.ravel()) / np.maximum(counts, 1)
    radial = mean[ring]
    floor = max(float(radial.max()) * 1e-12, 1e-30)
    return (1.0 / np.maximum(radial, floor)).astype(np.float32)


def whittaker_smooth(values: np.ndarray, smoothing: float) -> np.ndarray:
    """Minimise Σ (z − y)² + λ Σ (Δ² z)² along axis 0 (penalised second differences)."""
    n = values.shape[0]
    if n < 3 or smoothing <= 0:
        return values.copy()
    d = sparse.diags([1.0, -2.0, 1.0], [0, 1, 2], shape=(n - 2, n))
    system = (sparse.identity(n) + smoothing * (d.T @ d)).tocsc()
    return np.column_stack([spsolve(system, values[:, c]) for c in range(values.shape[1])])


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def align_movie(frames: FrameSource | Sequence[np.ndarray] | np.ndarray,
                pixel_size_angstrom: float, dose_per_frame_e_per_angstrom2: float,
                settings: MotionSettings | None = None, *,
                workers: int | None = None) -> MotionResult:
    """Align `frames` (n ≥ 2 frames of equal shape, gain- and defect-corrected) and return the
    shifts, the patch trajectories, the drift and the two sums (see the module docstring)."""
    settings = settings or MotionSettings()
    workers = workers or fft_workers()
    n = len(frames)
    if n < 2:
        raise ScienceInputError(f"the movie has {n} frame(s); motion correction needs at least 2")
    px = float(pixel_size_angstrom)
    if not (math.isfinite(px) and 0.05 <= px <= 50):
        raise ScienceInputError(f"pixel size {pixel_size_angstrom!r} Å is not plausible "
                                "(0.05-50 Å)")
    dose = float(dose_per_frame_e_per_angstrom2)
    if not (math.isfinite(dose) and dose > 0):
        raise ScienceInputError(f"dose per frame {dose_per_frame_e_per_angstrom2!r} e⁻/Å² must "
                                "be > 0")
    if settings.binning < 1:
        raise ScienceInputError("binning must be a positive integer")
    first = np.asarray(frames[0])
    if first.ndim != 2:
        raise ScienceInputError(f"frames must be 2-D images, got shape {first.shape}")
    full_shape = (int(first.shape[0]), int(first.shape[1]))
    if min(full_shape) < 64:
        raise ScienceInputError(f"frames of {full_shape[1]}×{full_shape[0]} pixels are too "
                                "small to align (at least 64×64)")
    # Even sizes keep the cropping arithmetic simple: an odd last row/column is dropped.
    ny, nx = full_shape[0] - full_shape[0] % 2, full_shape[1] - full_shape[1] % 2
    align_shape = _alignment_shape((ny, nx), px, settings.b_factor_angstrom2)

    spectra = np.empty((n, ny, nx // 2 + 1), dtype=np.complex64)
    cropped = np.empty((n,) + (align_shape[0], align_shape[1] // 2 + 1), dtype=np.complex64)
    for f in range(n):
        frame = np.asarray(frames[f] if f else first)[:ny, :nx]
        if frame.shape != (ny, nx) and frame.shape != full_shape:
            raise ScienceInputError(f"frame {f} has shape {frame.shape}, frame 0 {full_shape}")
        frame = frame.astype(np.float32, copy=False)
        if not np.isfinite(frame).all():
            raise ScienceInputError(f"frame {f} contains NaN or infinite values")
        spectra[f] = sfft.rfft2(frame, workers=workers)
        cropped[f] = _crop_spectrum(spectra[f], align_shape)
    tapered = _tapered_spectra(cropped, align_shape, workers)
    weights = _bfactor_weights(align_shape, (ny, nx), px, settings.b_factor_angstrom2)
    weights = weights * _whitening(tapered, align_shape)
    max_shift_px = settings.max_shift_angstrom / px
    shifts, iterations = _align_spectra(tapered, align_shape, (ny, nx), weights, max_shift_px,
                                        settings.tolerance_px, settings.max_iterations, workers)

    patches = _align_patches(cropped, align_shape, (ny, nx), shifts, px, settings, workers)
    aligned_sum, dw_sum, out_px = _sums(spectra, shifts, (ny, nx), px, dose, settings, workers)
    total, early, late = drift_angstrom(shifts, px, dose, settings.pre_exposure_e_per_angstrom2)
    return MotionResult(px, dose, shifts, patches, total, early, late, aligned_sum, dw_sum,
                        out_px, iterations)


def _align_patches(cropped: np.ndarray, align_shape: tuple[int, int],
                   full_shape: tuple[int, int], shifts: np.ndarray, px: float,
                   settings: MotionSettings, workers: int) -> list[PatchTrajectory]:
    cols, rows = settings.patches
    if cols * rows <= 1:
        return []
    n = cropped.shape[0]
    my, mx = align_shape
    ny, nx = full_shape
    fy, fx = _ramp_axes(align_shape, full_shape)
    aligned = np.empty((n, my, mx), dtype=np.float32)
    for f in range(n):
        aligned[f] = sfft.irfft2(cropped[f] * _ramp(fy, fx, shifts[f]), s=align_shape,
                                 workers=workers)
    # the Fourier shift wraps content around the frame edges: keep the patches clear of it
    margin_y = int(math.ceil(np.abs(shifts[:, 1]).max() * my / ny)) + 1
    margin_x = int(math.ceil(np.abs(shifts[:, 0]).max() * mx / nx)) + 1
    usable_y, usable_x = my - 2 * margin_y, mx - 2 * margin_x
    ph, pw = usable_y // rows, usable_x // cols
    ph -= ph % 2
    pw -= pw % 2
    if min(ph, pw) < 16:
        raise ScienceInputError(f"{cols}×{rows} patches are too small for frames of "
                                f"{nx}×{ny} pixels at this alignment resolution")
    taper = np.outer(tukey(ph, 0.4), tukey(pw, 0.4)).astype(np.float32)
    patch_full = (round(ph * ny / my), round(pw * nx / mx))
    weights = _bfactor_weights((ph, pw), patch_full, px, settings.patch_b_factor_angstrom2)
    max_shift = max(4.0, 0.05 * settings.max_shift_angstrom / px)
    centres: list[tuple[float, float]] = []
    sizes: list[tuple[float, float]] = []
    residuals: list[np.ndarray] = []
    for r in range(rows):
        for c in range(cols):
            y0 = margin_y + r * (usable_y // rows) + ((usable_y // rows) - ph) // 2
            x0 = margin_x + c * (usable_x // cols) + ((usable_x // cols) - pw) // 2
            tiles = aligned[:, y0:y0 + ph, x0:x0 + pw]
            tiles = (tiles - tiles.mean(axis=(1, 2), keepdims=True)) * taper
            spectra = sfft.rfft2(tiles, workers=workers)
            spectra[:, 0, 0] = 0
            patch_weights = weights * _whitening(spectra, (ph, pw))
            residual, _ = _align_spectra(spectra, (ph, pw), patch_full, patch_weights, max_shift,
                                         settings.tolerance_px, settings.max_iterations,
                                         workers)
            smooth = whittaker_smooth(residual, settings.patch_smoothing)
            residuals.append(smooth - smooth[0])
            centres.append(((x0 + (pw - 1) / 2) * nx / mx, (y0 + (ph - 1) / 2) * ny / my))
            sizes.append((pw * nx / mx, ph * ny / my))
    local = _spatial_fit(np.array(centres), np.array(residuals), (ny, nx), cols, rows)
    return [PatchTrajectory((float(c[0]), float(c[1])), (float(z[0]), float(z[1])),
                            shifts + loc)
            for c, z, loc in zip(centres, sizes, local, strict=True)]


def _spatial_fit(centres: np.ndarray, residuals: np.ndarray, shape: tuple[int, int],
                 cols: int, rows: int) -> np.ndarray:
    """Per frame and axis, a least-squares polynomial in (x, y) through the patch residuals:
    cubic with ≥ 4 × 4 patches, quadratic with ≥ 3 × 3, none below (the deformation of the
    specimen is smooth on the scale of the patch grid)."""
    degree = 3 if min(cols, rows) >= 4 else 2 if min(cols, rows) >= 3 else 0
    if degree == 0:
        return residuals
    x = 2 * centres[:, 0] / shape[1] - 1
    y = 2 * centres[:, 1] / shape[0] - 1
    terms = [x**i * y**j for i in range(degree + 1) for j in range(degree + 1 - i)]
    design = np.stack(terms, axis=1)  # (P, T)
    p, n, _ = residuals.shape
    flat = residuals.reshape(p, n * 2)
    coef, *_ = np.linalg.lstsq(design, flat, rcond=None)
    return (design @ coef).reshape(p, n, 2)


def _sums(spectra: np.ndarray, shifts: np.ndarray, full_shape: tuple[int, int], px: float,
          dose: float, settings: MotionSettings,
          workers: int) -> tuple[np.ndarray, np.ndarray, float]:
    n = spectra.shape[0]
    ny, nx = full_shape
    b = settings.binning
    out_shape = ((ny // b) - (ny // b) % 2, (nx // b) - (nx // b) % 2)
    fy, fx = _ramp_axes(out_shape, full_shape)
    g = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) / px
    # q_f = exp(−N_f / 2N_e) = q_step^(f + 1/2) · q_pre: built by repeated multiplication
    inv_ne = 1.0 / critical_exposure(g, settings.voltage_kv)
    q = np.exp(-(settings.pre_exposure_e_per_angstrom2 + 0.5 * dose) * inv_ne / 2)
    q = q.astype(np.float32)
    q_step = np.exp(-dose * inv_ne / 2).astype(np.float32)
    plain = np.zeros((out_shape[0], out_shape[1] // 2 + 1), dtype=np.complex64)
    weighted = np.zeros_like(plain)
    q2 = np.zeros(plain.shape, dtype=np.float32)
    for f in range(n):
        spectrum = spectra[f] if b == 1 else _crop_spectrum(spectra[f], out_shape)
        if spectrum.shape != plain.shape:
            spectrum = _crop_spectrum(spectrum, out_shape)
        shifted = spectrum * _ramp(fy, fx, shifts[f])
        plain += shifted
        shifted *= q
        weighted += shifted
        q2 += q * q
        q *= q_step
    weighted *= np.sqrt(n / np.maximum(q2, 1e-30)).astype(np.float32)
    aligned = sfft.irfft2(plain, s=out_shape, workers=workers).astype(np.float32)
    dose_weighted = sfft.irfft2(weighted, s=out_shape, workers=workers).astype(np.float32)
    return aligned, dose_weighted, px * b


def write_sums(result: MotionResult, out: Path) -> dict[str, str]:
    """Write the aligned sum to `out` and the dose-weighted sum beside it (`<stem>_DW.mrc`),
    MRC float32 with the output pixel size; record and return the paths."""
    import mrcfile

    dw = out.with_name(f"{out.stem}_DW{out.suffix or '.mrc'}")
    for path, image in ((out, result.aligned_sum), (dw, result.dose_weighted_sum)):
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(image, dtype=np.float32))
            mrc.voxel_size = result.output_pixel_size_angstrom
    result.output = {"aligned_sum": str(out), "dose_weighted_sum": str(dw)}
    return result.output

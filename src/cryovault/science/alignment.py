"""Translational alignment of stacks of images in Fourier space: the core of motion correction.

B independent stacks of n images (the frames of a movie, or the same patch cut from every
frame) are aligned as Unblur and MotionCor2 do: each image is cross-correlated with the sum of
the other images of its stack as currently aligned (its own noise excluded), its shift is moved
to the correlation peak, located to sub-pixel precision by a parabola through the neighbours in
each axis, and this is repeated until the largest update is below a tolerance (the parabola's
bias vanishes as the updates go to zero).

The spectra carry their weights: `StackLevel.values` holds Y = X · √W, so that the cross-power
of two images carries the weight W (a B-factor filter over the rotationally averaged power,
built by motion.py).

How it is made fast (issue #8):
- a pyramid of Fourier-cropped levels: a coarse first level finds the large shifts from the full
  correlation maps (inverse FFTs of small images); finer levels only refine, so the correlation
  is needed only in a (2r + 1)² window around zero shift, evaluated exactly as two small matrix
  products (the same sums as the inverse transform restricted to those pixels);
- a level is stored rows first, (B, m, n, k) with k = mx // 2 + 1, and processed a few rows at
  a time, so that the shifted spectra, their sum and the cross-power stay in the CPU cache: one
  pass over memory per iteration;
- with Z_f = Y_f · e^(−2πi g·s_f), the sum is T = Σ_g Z_g and the cross-power with the other
  images is Z_f (T − Z_f)* = Z_f T* − |Y_f|²: the second term does not depend on the shifts and
  its window is computed once per level; the row phase factor of Z_f is applied after the
  column transform (it is constant along a row).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

from cryovault.science.fourier import frequencies, phase_factors
from cryovault.science.threads import run_parallel, single_threaded_blas

#: half-width, in pixels of a refinement level, of the correlation window evaluated directly
WINDOW_RADIUS = 2
#: bytes of spectra processed at a time (a few rows of every image of every stack)
CHUNK_BYTES = 1 << 20


@dataclass
class StackLevel:
    """Weighted spectra of B stacks of n images at one resolution: `values` (B, m, n, k),
    complex64, the rfft2 half-planes (k = mx // 2 + 1 columns) of images of `shape` = (m, mx)
    that sample a field of `full_shape` original pixels, stored rows first, then images, then
    columns."""

    values: np.ndarray
    shape: tuple[int, int]
    full_shape: tuple[int, int]

    @property
    def dims(self) -> tuple[int, int, int, int]:
        """(B, m, n, k)."""
        b, m, n, k = self.values.shape
        return b, m, n, k

    @property
    def pixel_ratio(self) -> np.ndarray:
        """Original pixels per pixel of this level, [x, y]."""
        return np.array([self.full_shape[1] / self.shape[1], self.full_shape[0] / self.shape[0]])

    def cropped(self, shape: tuple[int, int], scratch: np.ndarray | None = None) -> StackLevel:
        """The same stacks Fourier-cropped to images of `shape` (even sizes), in `scratch`
        (a flat array of the same dtype) when it is large enough."""
        b, m, n, _ = self.dims
        half, k = shape[0] // 2, shape[1] // 2 + 1
        size = b * shape[0] * n * k
        out = (scratch[:size].reshape(b, shape[0], n, k)
               if scratch is not None and scratch.size >= size
               else np.empty((b, shape[0], n, k), dtype=self.values.dtype))
        out[:, :half] = self.values[:, :half, :, :k]
        out[:, half:] = self.values[:, m - half:, :, :k]
        return StackLevel(out, shape, self.full_shape)


def _hermitian_weights(mx: int) -> np.ndarray:
    """Weight of each rfft2 column in a real inverse transform (the others are implicit)."""
    weight = np.full(mx // 2 + 1, 2.0)
    weight[0] = 1.0
    if mx % 2 == 0:
        weight[-1] = 1.0
    return weight


class _Window:
    """The inverse transform restricted to offsets −r..r in both axes: for a cross-power P
    (m, k), corr[dy, dx] = Re(ey @ P @ ex)[dy, dx] / (m mx)."""

    def __init__(self, shape: tuple[int, int], radius: int) -> None:
        m, mx = shape
        offsets = np.arange(-radius, radius + 1)
        fy = sfft.fftfreq(m)
        fx = np.arange(mx // 2 + 1) / mx
        self.ey = np.exp(2j * np.pi * offsets[:, None] * fy[None, :]).astype(np.complex64)
        self.ex = (np.exp(2j * np.pi * fx[:, None] * offsets[None, :])
                   * _hermitian_weights(mx)[:, None]).astype(np.complex64)
        self.norm = 1.0 / (m * mx)
        self.radius = radius
        self.size = 2 * radius + 1


def _chunk_rows(level: StackLevel) -> int:
    b, _, n, k = level.dims
    return max(1, CHUNK_BYTES // (b * n * k * 8))


def _self_window(level: StackLevel, window: _Window, workers: int) -> np.ndarray:
    """(B, n, q, q) window of each image's own correlation Σ |Y_f|² e^(2πi g·d)."""
    b, m, n, k = level.dims
    q = window.size
    ex_re = np.ascontiguousarray(window.ex.real)
    ex_im = np.ascontiguousarray(window.ex.imag)
    step = _chunk_rows(level)

    def band(start: int, stop: int) -> np.ndarray:
        acc = np.zeros((b, q, n * q), dtype=np.complex64)
        for r0 in range(start, stop, step):
            r1 = min(stop, r0 + step)
            c = r1 - r0
            block = level.values[:, r0:r1]
            power = (block.real**2 + block.imag**2).reshape(b, c * n, k)
            columns = np.empty((b, c * n, q), dtype=np.complex64)
            columns.real = power @ ex_re
            columns.imag = power @ ex_im
            acc += window.ey[:, r0:r1] @ columns.reshape(b, c, n * q)
        return acc

    acc = sum(run_parallel(band, m, workers))
    return acc.reshape(b, q, n, q).real.transpose(0, 2, 1, 3) * window.norm


def _windowed_correlation(level: StackLevel, shifts: np.ndarray, window: _Window,
                          own: np.ndarray, workers: int) -> np.ndarray:
    """(B, n, q, q) correlation of each image, shifted by `shifts` (B, n, 2), with the sum of
    the other shifted images of its stack, at offsets −r..r (rows: y, columns: x)."""
    b, m, n, k = level.dims
    q = window.size
    fy, fx = frequencies(level.shape, level.full_shape)
    row_phase = np.ascontiguousarray(phase_factors(fy, shifts[..., 1]).transpose(0, 2, 1))
    col_phase = phase_factors(fx, shifts[..., 0])[:, None]  # (B, 1, n, k)
    step = _chunk_rows(level)

    def band(start: int, stop: int) -> np.ndarray:
        acc = np.zeros((b, q, n * q), dtype=np.complex64)
        for r0 in range(start, stop, step):
            r1 = min(stop, r0 + step)
            c = r1 - r0
            z = level.values[:, r0:r1] * col_phase  # (B, c, n, k), shifted along x
            rows = row_phase[:, r0:r1]  # (B, c, n): the shift along y, constant along a row
            total = rows[:, :, None, :] @ z  # (B, c, 1, k): the sum of the shifted images
            z *= total.conj()
            columns = (z.reshape(b, c * n, k) @ window.ex).reshape(b, c, n, q)
            columns *= rows[..., None]
            acc += window.ey[:, r0:r1] @ columns.reshape(b, c, n * q)
        return acc

    acc = sum(run_parallel(band, m, workers))
    corr = acc.reshape(b, q, n, q).real.transpose(0, 2, 1, 3) * window.norm
    return corr - own


def _vertex(cm: np.ndarray, c0: np.ndarray, cp: np.ndarray) -> np.ndarray:
    """Offset of the vertex of the parabola through (−1, cm), (0, c0), (1, cp), in [−½, ½]."""
    denominator = cm - 2 * c0 + cp
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = np.where(denominator < 0, 0.5 * (cm - cp) / denominator, 0.0)
    return np.clip(np.nan_to_num(offset), -0.5, 0.5)


def _window_peaks(corr: np.ndarray, radius: int) -> np.ndarray:
    """[x, y] offsets (B, n, 2) of the maxima of windows (B, n, q, q): sub-pixel inside the
    window, the edge offset itself when the maximum lies on the edge (the next iteration goes
    on from there)."""
    b, n, q, _ = corr.shape
    flat = corr.reshape(b, n, q * q)
    index = flat.argmax(axis=2)
    iy, ix = np.divmod(index, q)
    iy_in = np.clip(iy, 1, q - 2)
    ix_in = np.clip(ix, 1, q - 2)
    bi, ni = np.indices((b, n))
    c0 = corr[bi, ni, iy_in, ix_in]
    dy = _vertex(corr[bi, ni, iy_in - 1, ix_in], c0, corr[bi, ni, iy_in + 1, ix_in])
    dx = _vertex(corr[bi, ni, iy_in, ix_in - 1], c0, corr[bi, ni, iy_in, ix_in + 1])
    dy = np.where((iy == 0) | (iy == q - 1), 0.0, dy)
    dx = np.where((ix == 0) | (ix == q - 1), 0.0, dx)
    return np.stack([ix - radius + dx, iy - radius + dy], axis=-1)


def _full_map_peaks(level: StackLevel, shifts: np.ndarray, max_shift: float,
                    workers: int) -> np.ndarray:
    """[x, y] (B, n, 2) of the correlation maxima within `max_shift` pixels of this level, from
    the full correlation maps (coarse levels: small images)."""
    b, m, n, k = level.dims
    my, mx = level.shape
    fy, fx = frequencies(level.shape, level.full_shape)
    y = level.values
    z = y * phase_factors(fy, shifts[..., 1]).transpose(0, 2, 1)[..., None]
    z *= phase_factors(fx, shifts[..., 0])[:, None]
    total = z.sum(axis=2, keepdims=True)
    z *= total.conj()
    z -= y.real**2 + y.imag**2
    cc = sfft.irfft2(z, s=(my, mx), axes=(1, 3), workers=workers)  # (B, my, n, mx)
    cc = cc.transpose(0, 2, 1, 3)  # (B, n, my, mx)
    ys = sfft.fftfreq(my) * my
    xs = sfft.fftfreq(mx) * mx
    allowed = (np.abs(ys)[:, None] <= max_shift) & (np.abs(xs)[None, :] <= max_shift)
    masked = np.where(allowed, cc, -np.inf).reshape(b, n, my * mx)
    iy, ix = np.divmod(masked.argmax(axis=2), mx)
    bi, ni = np.indices((b, n))
    c0 = cc[bi, ni, iy, ix]
    dy = _vertex(cc[bi, ni, (iy - 1) % my, ix], c0, cc[bi, ni, (iy + 1) % my, ix])
    dx = _vertex(cc[bi, ni, iy, (ix - 1) % mx], c0, cc[bi, ni, iy, (ix + 1) % mx])
    return np.stack([xs[ix] + dx, ys[iy] + dy], axis=-1)


def align_level(level: StackLevel, shifts: np.ndarray, *, tolerance_px: float,
                max_iterations: int, full_map: bool = False, max_shift_px: float = 0.0,
                workers: int = 1) -> tuple[np.ndarray, int]:
    """Refine `shifts` (B, n, 2), the shifts applied to each image in original pixels, on one
    level; with `full_map`, search the whole correlation map within `max_shift_px`. Returns the
    shifts (image 0 of each stack at zero) and the number of iterations."""
    shifts = np.array(shifts, dtype=np.float64)
    ratio = level.pixel_ratio
    window = None if full_map else _Window(level.shape, WINDOW_RADIUS)
    own = None if window is None else _self_window(level, window, workers)
    max_shift = min(max(2.0, max_shift_px / float(ratio.min())),
                    level.shape[0] // 2 - 1, level.shape[1] // 2 - 1)
    iteration = 0
    for iteration in range(1, max_iterations + 1):  # noqa: B007 - reported
        if window is None:
            peaks = _full_map_peaks(level, shifts, max_shift, workers)
        else:
            corr = _windowed_correlation(level, shifts, window, own, workers)
            peaks = _window_peaks(corr, window.radius)
        updates = -peaks * ratio
        shifts += updates
        shifts -= shifts[:, :1].copy()
        moved = np.abs(updates - updates.mean(axis=1, keepdims=True)).max()
        if moved < tolerance_px:
            break
    return shifts, iteration


def pyramid_shapes(finest: tuple[int, int], coarsest_px: int = 64) -> list[tuple[int, int]]:
    """Level shapes from coarse to fine: about 1/8 of the finest (not below `coarsest_px`),
    1/2, and the finest itself (even sizes)."""
    shapes: list[tuple[int, int]] = []
    for divisor in (8, 2, 1):
        shape = tuple(max(min(coarsest_px, n), n // divisor) for n in finest)
        shape = (shape[0] - shape[0] % 2, shape[1] - shape[1] % 2)
        if not shapes or (shape[0] > shapes[-1][0] and shape[1] > shapes[-1][1]):
            shapes.append(shape)  # type: ignore[arg-type]
        elif divisor == 1:
            shapes[-1] = finest
    return shapes


def align_pyramid(finest: StackLevel, initial: np.ndarray, *, tolerance_px: float,
                  max_iterations: int, max_shift_px: float, search_first: bool,
                  workers: int = 1, scratch: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Align on the levels of `pyramid_shapes` from coarse to fine. With `search_first` the
    coarsest level searches the full correlation maps (large shifts); otherwise every level
    refines from `initial` within the window. Returns shifts (B, n, 2) and the iterations
    summed over levels. `scratch` (flat, complex64) may hold the cropped levels."""
    shapes = pyramid_shapes(finest.shape)
    if not search_first:
        shapes = shapes[1:] if len(shapes) > 1 else shapes
    shifts = np.array(initial, dtype=np.float64)
    with single_threaded_blas():
        shifts, total = _descend(finest, shapes, shifts, tolerance_px, max_iterations,
                                 max_shift_px, search_first, workers, scratch)
    return shifts, total


def _descend(finest: StackLevel, shapes: list[tuple[int, int]], shifts: np.ndarray,
             tolerance_px: float, max_iterations: int, max_shift_px: float,
             search_first: bool, workers: int,
             scratch: np.ndarray | None) -> tuple[np.ndarray, int]:
    total = 0
    for i, shape in enumerate(shapes):
        level = finest if shape == finest.shape else finest.cropped(shape, scratch)
        last = i == len(shapes) - 1
        # coarse levels stop at a twentieth of their pixel: the next level's window covers it
        tolerance = tolerance_px if last else max(tolerance_px,
                                                  0.05 * float(level.pixel_ratio.max()))
        shifts, iterations = align_level(level, shifts, tolerance_px=tolerance,
                                         max_iterations=max_iterations,
                                         full_map=search_first and i == 0,
                                         max_shift_px=max_shift_px, workers=workers)
        total += iterations
    return shifts, total


def bfactor_filter(shape: tuple[int, int], full_shape: tuple[int, int], pixel_size: float,
                   b_factor: float) -> np.ndarray:
    """exp(−B g² / 4) on the rfft2 grid of a level (g in 1/Å)."""
    fy, fx = frequencies(shape, full_shape)
    g2 = (fy[:, None] ** 2 + fx[None, :] ** 2) / pixel_size**2
    return np.exp(-b_factor * g2 / 4.0)


def root_weights(spectra: np.ndarray, shape: tuple[int, int], full_shape: tuple[int, int],
                 pixel_size: float, b_factor: float) -> np.ndarray:
    """√W (B, m, k) float32 for B images' spectra (B, m, k) of one frame: W = exp(−B g²/4)
    over the rotational average of each image's power. Every frame of a movie has the same
    expected power, so the weights of frame 0 serve for all (the whitening only has to
    flatten the spectrum roughly)."""
    m, mx = shape
    fy = sfft.fftfreq(m)[:, None]
    fx = (np.arange(mx // 2 + 1) / mx)[None, :]
    ring = np.rint(np.sqrt(fy**2 + fx**2) * max(m, mx)).astype(np.int64).ravel()
    counts = np.maximum(np.bincount(ring), 1)
    bfactor = bfactor_filter(shape, full_shape, pixel_size, b_factor)
    out = np.empty(spectra.shape, dtype=np.float32)
    for i, spectrum in enumerate(spectra):
        power = (spectrum.real.astype(np.float64) ** 2 + spectrum.imag.astype(np.float64) ** 2)
        radial = (np.bincount(ring, weights=power.ravel()) / counts)[ring].reshape(power.shape)
        floor = max(float(radial.max()) * 1e-12, 1e-30)
        out[i] = np.sqrt(bfactor / np.maximum(radial, floor))
    return out


def alignment_crop(full_shape: tuple[int, int], pixel_size: float, b_factor: float,
                   attenuation: float) -> tuple[int, int]:
    """Even, FFT-friendly size of the finest level: it keeps the frequencies up to where
    exp(−B g²/4) has fallen to 1/attenuation (never more than the frame)."""
    g_max = math.sqrt(4.0 * math.log(attenuation) / max(b_factor, 1e-3))
    fraction = min(1.0, 2.0 * g_max * pixel_size)
    out = []
    for n in full_shape:
        m = int(math.ceil(n * fraction))
        m = min(n - n % 2, sfft.next_fast_len(m + m % 2, real=True))
        m += m % 2
        out.append(min(m, n - n % 2))
    return out[0], out[1]

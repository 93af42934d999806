"""From the raw shifts of the patches to smooth local trajectories.

Each patch's shifts are measured frame by frame and are noisy (a patch holds a few hundred
thousand electrons per frame). Beam-induced motion is smooth in time and in space, so:
1. each patch's residual to the global trajectory is smoothed in time by a Whittaker smoother
   (penalised second differences, `smoothing` = λ) and referred to frame 0;
2. frame by frame, a polynomial in (x, y) is fitted through the patches (cubic with ≥ 4 × 4
   patches, quadratic with 3 × 3: MotionCor2's smooth deformation) and evaluated at their
   centres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import spsolve


@dataclass
class PatchTrajectory:
    """The shifts applied to the neighbourhood of `centre_px` ([x, y], movie pixels)."""

    centre_px: tuple[float, float]
    size_px: tuple[float, float]  # width, height of the patch
    shifts_px: np.ndarray  # (n, 2)


def whittaker_smooth(values: np.ndarray, smoothing: float) -> np.ndarray:
    """Minimise Σ (z − y)² + λ Σ (Δ² z)² along axis 0 (penalised second differences)."""
    n = values.shape[0]
    if n < 3 or smoothing <= 0:
        return values.copy()
    d = sparse.diags([1.0, -2.0, 1.0], [0, 1, 2], shape=(n - 2, n))
    system = (sparse.identity(n) + smoothing * (d.T @ d)).tocsc()
    flat = values.reshape(n, -1)
    solved = spsolve(system, flat)
    return np.asarray(solved).reshape(values.shape)


def spatial_fit(centres: np.ndarray, residuals: np.ndarray, shape: tuple[int, int],
                cols: int, rows: int) -> np.ndarray:
    """Per frame and axis, a least-squares polynomial in (x, y) through the patch residuals
    (P, n, 2) at `centres` (P, 2) [x, y] on a frame of `shape`: cubic with ≥ 4 × 4 patches,
    quadratic with ≥ 3 × 3, none below (the deformation of the specimen is smooth on the scale
    of the patch grid)."""
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


def patch_trajectories(global_shifts: np.ndarray, patch_shifts: np.ndarray,
                       centres_px: np.ndarray, size_px: tuple[float, float],
                       frame_shape: tuple[int, int], cols: int, rows: int,
                       smoothing: float) -> list[PatchTrajectory]:
    """Smooth trajectories (module docstring) from the measured shifts of each patch
    (P, n, 2), all in movie pixels; `centres_px` (P, 2) [x, y]."""
    residual = patch_shifts - global_shifts[None]
    smooth = whittaker_smooth(residual.transpose(1, 0, 2), smoothing).transpose(1, 0, 2)
    smooth -= smooth[:, :1]
    local = spatial_fit(centres_px, smooth, frame_shape, cols, rows)
    return [PatchTrajectory((float(c[0]), float(c[1])), (float(size_px[0]), float(size_px[1])),
                            global_shifts + loc)
            for c, loc in zip(centres_px, local, strict=True)]

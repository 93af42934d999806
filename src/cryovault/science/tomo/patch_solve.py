"""Least-squares fit of the projection model of geometry.py to patch trajectories.

Observations are raw-image positions r_ki (bin-1 pixels, centre-relative) of trajectory k in
tilt i. The model is

    r_ki = m_i R(φ + δ_i) (x_k cos θ_i + z_k sin θ_i, y_k) + s_i

with unknowns: the global tilt-axis angle φ, per tilt a rotation δ_i, a magnification m_i and a
shift s_i, and per trajectory a 3-D point p_k = (x_k, y_k, z_k). The model has gauge freedoms,
fixed as follows: during the fit δ and m of the reference (central) tilt stay at their starting
values and the points' mean is held at 0 by three extra residuals; afterwards the rotations are
re-split so that their mean is 0 (φ absorbs it; only φ + δ_i matters) and the origin is moved so
that the new shifts are as close as possible to the starting ones (the freedom that
geometry.gauge_residual_px removes: an origin move p0 shifts tilt i by m_i R(φ + δ_i) P_i p0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import least_squares

from cryovault.science.tomo.geometry import TiltAlignment


@dataclass
class PatchObservations:
    """Tracked positions: tilt index (M,), trajectory index (M,), raw [x, y] (M, 2) at bin 1."""

    tilt: np.ndarray
    trajectory: np.ndarray
    position_px: np.ndarray


@dataclass
class PatchFit:
    """The refined alignment, the 3-D points (K, 3) [x, y, z] (bin-1 px), the model − observed
    residual (M, 2) of every observation and which observations were kept (M,) bool."""

    alignment: TiltAlignment
    points: np.ndarray
    residual_px: np.ndarray
    kept: np.ndarray


class _Model:
    """Parameter packing and the residual/Jacobian of the model for a fixed set of
    observations. Parameters: [φ, δ (free tilts), m (free tilts), s (n, 2), p (K, 3)]."""

    def __init__(self, obs: PatchObservations, start: TiltAlignment, free_rot: np.ndarray,
                 free_mag: np.ndarray, n_points: int) -> None:
        self.obs = obs
        self.start = start
        self.n = len(start)
        self.k = n_points
        self.theta = np.radians(start.angles_degrees)
        self.free_rot, self.free_mag = free_rot, free_mag  # (n,) bool: δ_i / m_i are fitted
        self.rot_index = np.cumsum(free_rot) - 1
        self.mag_index = np.cumsum(free_mag) - 1
        self.i_delta = 1
        self.i_mag = 1 + int(free_rot.sum())
        self.i_shift = self.i_mag + int(free_mag.sum())
        self.i_point = self.i_shift + 2 * self.n
        self.size = self.i_point + 3 * n_points

    def pack(self, alignment: TiltAlignment, points: np.ndarray) -> np.ndarray:
        return np.concatenate([[math.radians(alignment.axis_degrees)],
                               np.radians(alignment.rotations_degrees[self.free_rot]),
                               alignment.magnifications[self.free_mag],
                               alignment.shifts_px.ravel(), points.ravel()])

    def unpack(self, params: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray,
                                                  np.ndarray]:
        """(φ rad, δ (n,) rad, m (n,), s (n, 2), p (K, 3))."""
        delta = np.radians(self.start.rotations_degrees).copy()
        mag = self.start.magnifications.copy()
        delta[self.free_rot] = params[self.i_delta:self.i_mag]
        mag[self.free_mag] = params[self.i_mag:self.i_shift]
        shifts = params[self.i_shift:self.i_point].reshape(self.n, 2)
        points = params[self.i_point:].reshape(self.k, 3)
        return float(params[0]), delta, mag, shifts, points

    def _terms(self, params: np.ndarray):
        phi, delta, mag, shifts, points = self.unpack(params)
        t, k = self.obs.tilt, self.obs.trajectory
        c, s = np.cos(self.theta[t]), np.sin(self.theta[t])
        p = points[k]
        u = p[:, 0] * c + p[:, 2] * s
        v = p[:, 1]
        a = phi + delta[t]
        ca, sa = np.cos(a), np.sin(a)
        qx, qy = ca * u - sa * v, sa * u + ca * v
        m = mag[t]
        model = np.stack([m * qx + shifts[t, 0], m * qy + shifts[t, 1]], axis=1)
        return model, points, (c, s, ca, sa, qx, qy, m)

    def residual(self, params: np.ndarray) -> np.ndarray:
        model, points, _ = self._terms(params)
        gauge = points.mean(axis=0)
        return np.concatenate([(model - self.obs.position_px).ravel(), gauge])

    def jacobian(self, params: np.ndarray) -> sparse.csr_matrix:
        _, _, (c, s, ca, sa, qx, qy, m) = self._terms(params)
        t, k = self.obs.tilt, self.obs.trajectory
        n_obs = len(t)
        rows_x, rows_y = 2 * np.arange(n_obs), 2 * np.arange(n_obs) + 1
        entries: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

        def add(col: np.ndarray | int, dx: np.ndarray, dy: np.ndarray,
                mask: np.ndarray | None = None) -> None:
            col = np.broadcast_to(np.asarray(col), (n_obs,))
            sel = slice(None) if mask is None else mask
            entries.append((rows_x[sel], col[sel], np.broadcast_to(dx, (n_obs,))[sel]))
            entries.append((rows_y[sel], col[sel], np.broadcast_to(dy, (n_obs,))[sel]))

        add(0, -m * qy, m * qx)
        add(self.i_delta + self.rot_index[t], -m * qy, m * qx, self.free_rot[t])
        add(self.i_mag + self.mag_index[t], qx, qy, self.free_mag[t])
        entries.append((rows_x, self.i_shift + 2 * t, np.ones(n_obs)))
        entries.append((rows_y, self.i_shift + 2 * t + 1, np.ones(n_obs)))
        base = self.i_point + 3 * k
        add(base, m * c * ca, m * c * sa)
        add(base + 1, -m * sa, m * ca)
        add(base + 2, m * s * ca, m * s * sa)
        for axis in range(3):
            cols = self.i_point + 3 * np.arange(self.k) + axis
            entries.append((np.full(self.k, 2 * n_obs + axis), cols, np.full(self.k, 1 / self.k)))
        rows = np.concatenate([e[0] for e in entries])
        cols = np.concatenate([e[1] for e in entries])
        vals = np.concatenate([e[2] for e in entries])
        return sparse.csr_matrix((vals, (rows, cols)), shape=(2 * n_obs + 3, self.size))


def initial_points(obs: PatchObservations, alignment: TiltAlignment,
                   n_points: int) -> np.ndarray:
    """Per trajectory the (x, y, z) that best explains its positions under `alignment`
    (linear least squares in the aligned frame; z = 0 where only one tilt is seen)."""
    theta = np.radians(alignment.angles_degrees)
    aligned = np.empty_like(obs.position_px)
    for i in np.unique(obs.tilt):
        sel = obs.tilt == i
        m, s = alignment.forward(int(i))
        aligned[sel] = (obs.position_px[sel] - s) @ np.linalg.inv(m).T
    c, s = np.cos(theta[obs.tilt]), np.sin(theta[obs.tilt])
    k = obs.trajectory

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(k, weights=values, minlength=n_points)

    scc, scs, sss = total(c * c), total(c * s), total(s * s) + 1e-6
    scu, ssu = total(c * aligned[:, 0]), total(s * aligned[:, 0])
    det = scc * sss - scs**2
    count = np.maximum(np.bincount(k, minlength=n_points), 1)
    x = (sss * scu - scs * ssu) / det
    z = (scc * ssu - scs * scu) / det
    y = total(aligned[:, 1]) / count
    return np.stack([x, y, z], axis=1)


def _fit(model: _Model, start: TiltAlignment, points: np.ndarray,
         f_scale: float) -> np.ndarray:
    result = least_squares(model.residual, model.pack(start, points), jac=model.jacobian,
                           method="trf", tr_solver="lsmr", x_scale="jac", loss="soft_l1",
                           f_scale=f_scale, max_nfev=60, xtol=1e-10, ftol=1e-10)
    return result.x


def fit_patch_model(obs: PatchObservations, start: TiltAlignment, reference: int, *,
                    fit_rotations: bool = True, fit_magnifications: bool = True,
                    min_per_tilt: int = 4, noise_px: float = 1.0,
                    reject_sigma: float = 4.0,
                    gauge_reference: TiltAlignment | None = None) -> PatchFit:
    """Fit the model (module docstring) to `obs`, starting from `start`; `reference` is the
    tilt whose δ and m stay fixed. Tilts with fewer than `min_per_tilt` observations keep
    their starting δ and m. Observations further than `reject_sigma` robust standard deviations
    (but at least 2 `noise_px`) from the fit are dropped and the fit repeated (at most twice);
    `noise_px` (bin-1 px) is also the scale of the robust (soft L1) loss. The origin is chosen
    so that the shifts follow those of `gauge_reference` (default `start`)."""
    n_points = int(obs.trajectory.max()) + 1
    counts = np.bincount(obs.tilt, minlength=len(start))
    free = (counts >= min_per_tilt) & (np.arange(len(start)) != reference)
    free_rot = free & fit_rotations
    free_mag = free & fit_magnifications
    kept = np.ones(len(obs.tilt), dtype=bool)
    points = initial_points(obs, start, n_points)
    current = start.copy()
    for _ in range(3):
        sub = PatchObservations(obs.tilt[kept], obs.trajectory[kept], obs.position_px[kept])
        model = _Model(sub, current, free_rot, free_mag, n_points)
        params = _fit(model, current, points, f_scale=noise_px)
        phi, delta, mag, shifts, points = model.unpack(params)
        current = TiltAlignment(start.angles_degrees, math.degrees(phi), shifts,
                                np.degrees(delta), mag)
        resid = _residuals(obs, current, points)
        dist = np.hypot(resid[:, 0], resid[:, 1])
        sigma = float(np.median(dist[kept])) / 1.1774  # median of a 2-D Gaussian norm = 1.18 σ
        new_kept = dist <= max(reject_sigma * sigma, 2.0 * noise_px)
        if np.array_equal(new_kept, kept):
            break
        kept = new_kept
    aligned, origin = _fix_gauge(current, gauge_reference or start)
    points = points - origin
    return PatchFit(aligned, points, _residuals(obs, aligned, points), kept)


def _residuals(obs: PatchObservations, alignment: TiltAlignment,
               points: np.ndarray) -> np.ndarray:
    """Model − observed (M, 2) in bin-1 px."""
    every = np.ones(len(alignment), dtype=bool)
    model = _Model(obs, alignment, every, every, len(points))
    return model.residual(model.pack(alignment, points))[:-3].reshape(-1, 2)


def _fix_gauge(fit: TiltAlignment, start: TiltAlignment) -> tuple[TiltAlignment, np.ndarray]:
    """`fit` with mean rotation 0 and the origin moved to follow `start`'s shifts, and the
    origin move p0 (to subtract from the points)."""
    mean_rot = float(fit.rotations_degrees.mean())
    out = TiltAlignment(fit.angles_degrees, fit.axis_degrees + mean_rot, fit.shifts_px,
                        fit.rotations_degrees - mean_rot, fit.magnifications)
    theta = np.radians(out.angles_degrees)
    # s_i + M_i P_i p0 ≈ start s_i, with P_i p0 = (x0 cos θ + z0 sin θ, y0)
    design = np.zeros((2 * len(out), 3))
    target = (start.shifts_px - out.shifts_px).ravel()
    for i in range(len(out)):
        m, _ = out.forward(i)
        proj = np.array([[math.cos(theta[i]), 0.0, math.sin(theta[i])], [0.0, 1.0, 0.0]])
        design[2 * i:2 * i + 2] = m @ proj
    p0, *_ = np.linalg.lstsq(design, target, rcond=None)
    out.shifts_px = out.shifts_px + (design @ p0).reshape(-1, 2)
    return out, p0

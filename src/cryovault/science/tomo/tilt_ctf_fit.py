"""Fitting the CTF to the strip spectra of one tilt (tilt_spectra.py), the defocus gradient
across the tilt axis included.

Strip k is modelled with the defocus (Å, at frequency azimuth α)

    Δf_k(α) = m + a cos 2α + b sin 2α + s · e_k

with m the defocus at the tilt axis, (a, b) the astigmatism as in ctf_search.py, e_k the strip's
expected offset for handedness +1 (−d tan θ · px) and s the gradient's slope (+1 for a series
of correct handedness, −1 for an inverted one). The correlation between all strips' normalised
spectra and −E_k(g) cos 2χ (the same model as sin² χ, ctf_search.py, with the rings damped by
the defocus spread inside the strip, E_k = StripSpectra.envelope: on a steep tilt the rings
fade and then invert at high frequency) is maximised by L-BFGS with the analytic gradient
(∂χ/∂s = πλg² e_k), each strip's pixels weighted by the strip weight (and, in the weighted
rounds, by the ring contrast of ctf_search.contrast_weights).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from cryovault.science.ctf_model import amplitude_contrast_phase
from cryovault.science.ctf_search import CtfSearch
from cryovault.science.power_spectrum import radial_profile
from cryovault.science.tomo.tilt_spectra import StripSpectra, half_plane

#: bounds of the slope s (a fitted gradient beyond 3 × the geometric one is not physical)
MAX_SLOPE = 3.0


@dataclass
class StripFit:
    """Defocus at the axis m, astigmatism terms a, b (Å), slope s, correlation score."""

    mean: float
    a: float
    b: float
    slope: float
    score: float


class StripCorrelation:
    """The weighted correlation of the strips' spectra over the annulus g_low ≤ g ≤ g_high
    with the model of the module docstring, and its gradient in (m, a, b, s)."""

    def __init__(self, search: CtfSearch, strips: StripSpectra, g_low: float, g_high: float,
                 pixel_weights: np.ndarray | None = None) -> None:
        # the annulus is a contiguous range of the half plane sorted by g² (tilt_spectra),
        # whose spectra and envelopes each tilt gathers once
        plane = half_plane(strips.grid)
        lo, hi = plane.span(g_low, g_high)
        lam = search.wavelength_angstrom
        values, envelopes = strips.sorted_values(hi, lam)
        pick: slice | np.ndarray = slice(lo, hi)
        per_pixel = None
        if pixel_weights is not None:  # rings buried in noise (weight 0): no information
            inside = pixel_weights.ravel()[plane.flat[lo:hi]]
            keep = np.flatnonzero(inside > 0)
            pick = lo + keep
            per_pixel = inside[keep].astype(np.float64)
        g2_1 = plane.g2[pick]
        count = g2_1.size
        k = len(strips.offsets_angstrom)
        f32 = np.float32
        # float32 keeps χ (≤ a few hundred radians) to ~1e-5 rad and halves the time
        k1g2_1 = (math.pi * lam * g2_1).astype(f32)
        cs_1 = (0.5 * math.pi * search.cs_mm * 1e7 * lam**3 * g2_1 * g2_1).astype(f32)
        self.w = amplitude_contrast_phase(search.amplitude_contrast)
        self.k1g2 = np.tile(k1g2_1, k)
        #: the Cs term less the amplitude-contrast phase: χ + w = Σ_j p_j J_j − cs_term
        self.cs_term = np.tile(cs_1 - f32(self.w), k)
        self.offset = np.repeat(strips.offsets_angstrom, count).astype(f32)
        #: the rings' damping by each strip's defocus spread (StripSpectra.envelope)
        self.envelope = np.ascontiguousarray(envelopes[:, pick]).reshape(-1)
        self.neg_envelope = -self.envelope
        self.two_envelope = 2.0 * self.envelope
        per_pixel = np.ones(count) if per_pixel is None else per_pixel
        weights = (np.asarray(strips.weights, dtype=np.float64)[:, None]
                   * per_pixel[None, :]).reshape(-1)
        data = values[:, pick].astype(np.float64).reshape(-1)
        self.total_weight = max(float(weights.sum()), 1e-30)
        centred = data - float(np.dot(weights, data)) / self.total_weight
        self.data_norm = math.sqrt(max(float(np.dot(weights, centred * centred)), 0.0))
        #: the number of pixels with the same noise in the correlation: (Σw)² / Σw²
        self.effective_size = self.total_weight**2 / max(float(np.dot(weights, weights)),
                                                         1e-30)
        self.weights = weights.astype(f32)
        self.centred = (weights * centred).astype(f32)
        #: ∂χ/∂(m, a, b, s) (rows 0-3 of (5, N)) and −cs_term: χ + w = (p, 1) · J
        self._rows = np.empty((5, k * count), dtype=f32)
        self._rows[4] = -self.cs_term
        self.jacobian = self._rows[:4]
        #: the phase less its m term at the last (a, b, s) evaluated
        self._fixed_key: tuple[float, float, float] | None = None
        self._fixed_part: np.ndarray | None = None
        for j, factor in enumerate((plane.cos2a[pick], plane.sin2a[pick])):
            self.jacobian[1 + j].reshape(k, count)[:] = k1g2_1 * factor
        self.jacobian[0] = self.k1g2
        np.multiply(self.k1g2, self.offset, out=self.jacobian[3])
        self.size = data.size

    def phase(self, p: np.ndarray) -> np.ndarray:
        """χ + w (radians) at parameters p = (m, a, b, s) (float32)."""
        f32 = np.float32
        key = (float(p[1]), float(p[2]), float(p[3]))
        if key == self._fixed_key:  # only m changed (a refinement of m alone): 2 passes
            if self._fixed_part is None:
                self._fixed_part = (np.append(np.asarray(key, dtype=f32), f32(1.0))
                                    @ self._rows[1:])
            two_chi = self.jacobian[0] * f32(p[0])
            two_chi += self._fixed_part
            return two_chi
        self._fixed_key, self._fixed_part = key, None
        return np.append(np.asarray(p, dtype=f32), f32(1.0)) @ self._rows

    def evaluate(self, p: np.ndarray, gradient: bool = True) -> tuple[float, np.ndarray]:
        """(correlation, its gradient with respect to (m, a, b, s))."""
        if self.data_norm <= 0 or self.size < 4:
            return 0.0, np.zeros(4)
        two_chi = self.phase(p)
        two_chi *= 2.0
        model = np.cos(two_chi)
        model *= self.neg_envelope  # the model −E cos 2χ
        wm = self.weights * model
        s_md = float(np.dot(model, self.centred))
        sum_m = float(wm.sum(dtype=np.float64))
        s_mm = float(np.dot(wm, model)) - sum_m * sum_m / self.total_weight
        if s_mm <= 1e-30:
            return 0.0, np.zeros(4)
        root = math.sqrt(s_mm)
        r = s_md / (root * self.data_norm)
        if not gradient:
            return r, np.zeros(4)
        # ∂r/∂p = J · [∂model/∂χ (√s_mm · centred − s_md / √s_mm · w (model − mean))]
        # / (s_mm · |data|), with ∂model/∂χ = 2E sin 2χ
        model -= np.float32(sum_m / self.total_weight)
        model *= self.weights
        model *= np.float32(-s_md / root)
        model += np.float32(root) * self.centred
        slope = np.sin(two_chi)
        slope *= self.two_envelope
        model *= slope
        return r, (self.jacobian @ model).astype(np.float64) / (s_mm * self.data_norm)


def refine(target: StripCorrelation, start: StripFit, free: tuple[bool, bool, bool, bool],
           slope_bounds: float = MAX_SLOPE) -> StripFit:
    """Maximise the correlation from `start` over the parameters marked in `free` (m, a, b, s)
    by L-BFGS-B; one unit moves the rings by about one radian at the outer limit."""
    x0 = np.array([start.mean, start.a, start.b, start.slope])
    lam_g2 = max(float(target.k1g2.max()) if target.size else 1.0, 1e-12)
    reach = max(float(np.abs(target.offset).max()) if target.size else 0.0, 1.0)
    scale = np.array([1.0, 1.0, 1.0, 1.0 / reach]) / lam_g2
    mask = np.array(free)
    if not mask.any():
        return StripFit(*x0, target.evaluate(x0, gradient=False)[0])

    def cost(u: np.ndarray) -> tuple[float, np.ndarray]:
        p = x0.copy()
        p[mask] += u * scale[mask]
        r, grad = target.evaluate(p)
        return -r, -(grad[mask] * scale[mask])

    bounds = [(None, None)] * 3 + [((-slope_bounds - x0[3]) / scale[3],
                                    (slope_bounds - x0[3]) / scale[3])]
    result = optimize.minimize(cost, np.zeros(int(mask.sum())), jac=True, method="L-BFGS-B",
                               bounds=[b for b, f in zip(bounds, free, strict=True) if f],
                               options={"maxiter": 100, "ftol": 1e-8, "gtol": 1e-6})
    p = x0.copy()
    p[mask] += result.x * scale[mask]
    return StripFit(float(p[0]), float(p[1]), float(p[2]), float(p[3]), float(-result.fun))


def coarse_defocus(search: CtfSearch, strips: StripSpectra, g_low: float, g_high: float,
                   ring_limit: float, lo: float, hi: float, slopes: tuple[float, ...],
                   count: int) -> list[tuple[float, float]]:
    """The best (defocus at the axis, slope) pairs of an exhaustive search on the strips'
    rotational averages over [lo, hi] Å for each of `slopes`: at most `count` local maxima
    over defocus at least 10% apart, best first. Each candidate is scored up to where the
    rings of its farthest strip are 3 spectrum pixels apart (`ring_limit / defocus`)."""
    grid = strips.grid
    select = grid.half & (grid.radius_px >= g_low / grid.dk) & (
        grid.radius_px <= g_high / grid.dk)
    profiles, radii = [], None
    for spectrum in strips.normalised:
        radii, profile = radial_profile(spectrum, grid.radius_px, select)
        profiles.append(profile)
    if radii is None or radii.size < 4:
        return []
    g = radii * grid.dk
    g2 = g * g
    lam = search.wavelength_angstrom
    cs_term = 0.5 * math.pi * search.cs_mm * 1e7 * lam**3 * g2 * g2
    w = amplitude_contrast_phase(search.amplitude_contrast)
    step = max(20.0, min(100.0, 1.0 / (8.0 * lam * g_high**2)))
    defocus = np.arange(lo, hi + step, step)
    reach = float(np.abs(strips.offsets_angstrom).max())
    limits = np.maximum(np.minimum(g_high, ring_limit / (1.2 * (defocus + reach))), g_low * 1.5)
    mask = (g[None, :] <= limits[:, None]).astype(np.float64)  # (D, R)
    n = np.maximum(mask.sum(axis=1), 2.0)
    results = []
    envelopes = [strips.envelope(k, g2, lam) for k in range(len(profiles))]
    for slope in slopes:
        s_md = np.zeros(defocus.size)
        s_mm = np.zeros(defocus.size)
        s_dd = np.zeros(defocus.size)
        for profile, offset, weight, envelope in zip(profiles, strips.offsets_angstrom,
                                                     strips.weights, envelopes, strict=True):
            # sin² χ with its rings damped by the strip's defocus spread: (1 − E cos 2χ) / 2
            model = -np.cos(2.0 * (math.pi * lam * (defocus[:, None] + slope * offset)
                                   * g2[None, :] - cs_term[None, :] + w)) * envelope * mask
            model -= (model.sum(axis=1) / n)[:, None]
            model *= mask
            data = (profile[None, :] - ((mask @ profile) / n)[:, None]) * mask
            s_md += weight * (model * data).sum(axis=1)
            s_mm += weight * (model * model).sum(axis=1)
            s_dd += weight * (data * data).sum(axis=1)
        score = s_md / np.maximum(np.sqrt(s_mm * s_dd), 1e-30)
        peaks = [i for i in range(defocus.size)
                 if (i == 0 or score[i] >= score[i - 1])
                 and (i == defocus.size - 1 or score[i] >= score[i + 1])]
        results.extend((float(score[i]), float(defocus[i]), slope) for i in peaks)
    results.sort(key=lambda r: -r[0])
    chosen: list[tuple[float, float]] = []
    for _, d, slope in results:
        if all(abs(d - c) > 0.1 * c for c, _ in chosen):
            chosen.append((d, slope))
        if len(chosen) == count:
            break
    return chosen

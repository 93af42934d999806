"""Fitting the CTF to a normalised power spectrum (power_spectrum.py).

1. exhaustive search over (mean defocus, phase shift) on the rotational average: every
   candidate is scored up to where its own rings are 3 spectrum pixels apart; the best local
   maxima over defocus are kept;
2. for each, a first astigmatism from the defocus of 12 azimuthal sectors;
3. local refinement of the 2-D correlation between the spectrum and sin² χ over the fitting
   annulus, from the isotropic start and from the sector start: quasi-Newton (L-BFGS) with the
   analytic gradient. For a correlation, sin² χ = (1 − cos 2χ)/2 is the same model as −cos 2χ,
   whose derivative is 2 sin 2χ · ∂χ/∂p with ∂χ/∂Δf = πλg² (× cos 2α, sin 2α for the
   astigmatism terms) and ∂χ/∂Δφ = 1.

4. (ctf.py) refinement of the best with each pixel weighted by the contrast of the rings at
   its frequency (`contrast_weights`).

The astigmatism is parametrised as Δf(α) = m + a cos 2α + b sin 2α (smooth, no wrap-around):
U, V = m ± √(a² + b²) and the angle is ½ atan2(b, a).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from cryovault.science.ctf_model import amplitude_contrast_phase, electron_wavelength_angstrom
from cryovault.science.power_spectrum import SpectrumGrid, radial_profile

#: defocus and phase are refined in units where one unit moves the rings by about one radian
#: at the fitting limit; these are the corresponding scales of the phase (degrees per unit)
PHASE_SCALE_DEGREES = 10.0


@dataclass(frozen=True)
class CtfSearch:
    """Search settings: defocus range and fitting resolution range in Å."""

    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.07
    phase_plate: bool = False
    min_defocus_angstrom: float = 2000.0
    max_defocus_angstrom: float = 50000.0
    low_resolution_angstrom: float = 30.0
    #: the final refinement weighs each ring by its contrast (`contrast_weights`), so rings
    #: beyond where they are visible add no noise: the default reaches 3 Å
    high_resolution_angstrom: float = 3.0
    tile_size: int = 512

    @property
    def wavelength_angstrom(self) -> float:
        return electron_wavelength_angstrom(self.voltage_kv)


@dataclass
class Fit:
    """A refined fit: parameters (mean defocus Å, a Å, b Å, phase shift °), its correlation
    score and the fitting limit (1/Å) it was scored to."""

    mean: float
    a: float
    b: float
    phase_degrees: float
    score: float
    g_fit: float


def coarse_candidates(search: CtfSearch, grid: SpectrumGrid, normalised: np.ndarray,
                      g_low: float, g_high_user: float,
                      ring_limit: float) -> list[tuple[float, float]]:
    """The best (defocus, phase shift °) pairs of the rotational-average fit, at most 3 (4
    with a phase plate) local maxima over defocus, best first. `ring_limit / defocus` is the
    frequency (1/Å) up to which the rings of that defocus are at least 3 spectrum pixels
    apart: each candidate is scored up to there."""
    g_high_coarse = max(min(g_high_user, ring_limit / search.min_defocus_angstrom), g_low * 1.5)
    select = grid.half & (grid.radius_px >= g_low / grid.dk) & (
        grid.radius_px <= g_high_coarse / grid.dk)
    radii, profile = radial_profile(normalised, grid.radius_px, select)
    g = radii * grid.dk
    lam = search.wavelength_angstrom
    # a step that moves the rings at the high-resolution limit by at most 1/8 of a period
    step = max(20.0, min(100.0, 1.0 / (8.0 * lam * g_high_coarse**2)))
    defocus = np.arange(search.min_defocus_angstrom, search.max_defocus_angstrom + step, step)
    phases = np.arange(0.0, 180.0, 5.0) if search.phase_plate else np.zeros(1)
    limits = np.maximum(np.minimum(g_high_user, ring_limit / (1.2 * defocus)), g_low * 1.5)
    w = amplitude_contrast_phase(search.amplitude_contrast)
    g2 = g * g
    cs_term = 0.5 * math.pi * search.cs_mm * 1e7 * lam**3 * g2 * g2
    mask = (g[None, :] <= limits[:, None]).astype(np.float64)  # (C, B)
    count = np.maximum(mask.sum(axis=1), 2.0)
    p_mean = (mask @ profile) / count
    p_c = (profile[None, :] - p_mean[:, None]) * mask
    p_norm = np.maximum(np.sqrt((p_c**2).sum(axis=1)), 1e-30)
    base = math.pi * lam * defocus[:, None] * g2[None, :] - cs_term[None, :] + w
    scores = np.empty((defocus.size, phases.size))
    for j, phase in enumerate(phases):
        model = np.sin(base + math.radians(phase)) ** 2 * mask
        model -= (model.sum(axis=1) / count)[:, None]
        model *= mask
        norms = np.sqrt((model**2).sum(axis=1))
        scores[:, j] = (model * p_c).sum(axis=1) / np.maximum(norms * p_norm, 1e-30)
    best_phase = scores.argmax(axis=1)
    best = scores[np.arange(defocus.size), best_phase]
    peaks = [i for i in range(defocus.size)
             if (i == 0 or best[i] >= best[i - 1]) and (i == defocus.size - 1
                                                          or best[i] >= best[i + 1])]
    peaks.sort(key=lambda i: -best[i])
    chosen: list[int] = []
    for i in peaks:
        if all(abs(defocus[i] - defocus[j]) > 0.1 * defocus[j] for j in chosen):
            chosen.append(i)
        if len(chosen) == (4 if search.phase_plate else 3):
            break
    return [(float(defocus[i]), float(phases[best_phase[i]])) for i in chosen]


def sector_astigmatism(search: CtfSearch, grid: SpectrumGrid, normalised: np.ndarray,
                       mean0: float, phase0: float, g_low: float,
                       g_high: float) -> tuple[float, float]:
    """(a, b) from the defocus of 12 azimuthal sectors fitted with m + a cos 2α + b sin 2α."""
    alpha = np.mod(0.5 * np.arctan2(grid.sin2a, grid.cos2a), math.pi)
    ring = grid.half & (grid.g2 >= g_low**2) & (grid.g2 <= g_high**2)
    lam = search.wavelength_angstrom
    w = amplitude_contrast_phase(search.amplitude_contrast)
    trial = mean0 * np.linspace(0.7, 1.3, 121)
    n_sectors = 12
    angles, estimates = [], []
    for s in range(n_sectors):
        lo, hi = s * math.pi / n_sectors, (s + 1) * math.pi / n_sectors
        sel = ring & (alpha >= lo) & (alpha < hi)
        if sel.sum() < 50:
            continue
        radii, prof = radial_profile(normalised, grid.radius_px, sel)
        prof = prof - prof.mean()
        g2 = (radii * grid.dk) ** 2
        chi = (math.pi * lam * trial[:, None] * g2[None, :]
               - 0.5 * math.pi * search.cs_mm * 1e7 * lam**3 * g2 * g2
               + math.radians(phase0) + w)
        model = np.sin(chi) ** 2
        model -= model.mean(axis=1, keepdims=True)
        cc = (model @ prof) / np.maximum(np.linalg.norm(model, axis=1), 1e-30)
        angles.append(0.5 * (lo + hi))
        estimates.append(trial[int(cc.argmax())])
    if len(estimates) < 4:
        return 0.0, 0.0
    ang = np.array(angles)
    design = np.stack([np.ones_like(ang), np.cos(2 * ang), np.sin(2 * ang)], axis=1)
    coef, *_ = np.linalg.lstsq(design, np.array(estimates), rcond=None)
    return float(coef[1]), float(coef[2])


class RingCorrelation:
    """The correlation between the spectrum on a set of pixels and the CTF model, and its
    gradient, for the refinement (module docstring). `weights`, when given, weigh the pixels
    (a weighted correlation)."""

    def __init__(self, search: CtfSearch, grid: SpectrumGrid, normalised: np.ndarray,
                 select: np.ndarray, weights: np.ndarray | None = None) -> None:
        lam = search.wavelength_angstrom
        g2 = grid.g2[select]
        self.k1g2 = math.pi * lam * g2
        self.cs_term = 0.5 * math.pi * search.cs_mm * 1e7 * lam**3 * g2 * g2
        self.cos2a = grid.cos2a[select]
        self.sin2a = grid.sin2a[select]
        self.w = amplitude_contrast_phase(search.amplitude_contrast)
        self.weights = None if weights is None else weights[select].astype(np.float64)
        data = normalised[select].astype(np.float64)
        total = float(self.weights.sum()) if self.weights is not None else float(data.size)
        self.total_weight = max(total, 1e-30)
        mean = (float(np.dot(self.weights, data)) if self.weights is not None
                else float(data.sum())) / self.total_weight
        centred = data - mean
        if self.weights is not None:
            self.data_norm = math.sqrt(float(np.dot(self.weights, centred * centred)))
            centred *= self.weights
        else:
            self.data_norm = math.sqrt(float(np.dot(centred, centred)))
        self.centred = centred  # w · (d − d̄)
        # ∂χ/∂(m, a, b) per pixel, one row each
        self.jacobian = np.stack([self.k1g2, self.k1g2 * self.cos2a, self.k1g2 * self.sin2a])
        self.size = data.size

    def phase(self, mean: float, a: float, b: float, phase_rad: float) -> np.ndarray:
        defocus = mean + a * self.cos2a + b * self.sin2a
        return self.k1g2 * defocus - self.cs_term + (phase_rad + self.w)

    def score(self, mean: float, a: float, b: float, phase_rad: float) -> float:
        return self.evaluate(mean, a, b, phase_rad, gradient=False)[0]

    def evaluate(self, mean: float, a: float, b: float, phase_rad: float,
                 gradient: bool = True) -> tuple[float, np.ndarray]:
        """(correlation, its gradient with respect to (m, a, b, Δφ in radians))."""
        if self.data_norm <= 0 or self.size < 4:
            return 0.0, np.zeros(4)
        two_chi = 2.0 * self.phase(mean, a, b, phase_rad)
        model = -np.cos(two_chi)
        wm = model if self.weights is None else self.weights * model
        s_md = float(np.dot(model, self.centred))
        sum_m = float(wm.sum())
        s_mm = float(np.dot(wm, model)) - sum_m * sum_m / self.total_weight
        if s_mm <= 1e-30:
            return 0.0, np.zeros(4)
        root = math.sqrt(s_mm)
        r = s_md / (root * self.data_norm)
        if not gradient:
            return r, np.zeros(4)
        slope = 2.0 * np.sin(two_chi)  # ∂model/∂χ
        v_data = slope * self.centred
        model_c = model - sum_m / self.total_weight
        v_model = slope * (model_c if self.weights is None else self.weights * model_c)
        d_md = np.append(self.jacobian @ v_data, v_data.sum())
        d_mm = 2.0 * np.append(self.jacobian @ v_model, v_model.sum())
        grad = (d_md * root - s_md * d_mm / (2.0 * root)) / (s_mm * self.data_norm)
        return r, grad


def refine(correlation: RingCorrelation, start: tuple[float, float, float, float],
           fit_phase: bool, g_fit: float) -> Fit:
    """Maximise the correlation from `start` (m, a, b Å, phase °) by L-BFGS with the analytic
    gradient; the phase stays fixed unless `fit_phase`."""
    # one unit of the defocus parameters moves the rings by one radian at the fitting limit
    lam_g2 = max(float(correlation.k1g2.max()) if correlation.size else 1.0, 1e-12)
    scale = np.array([1.0 / lam_g2, 1.0 / lam_g2, 1.0 / lam_g2, PHASE_SCALE_DEGREES])
    n_free = 4 if fit_phase else 3
    x0 = np.array(start, dtype=np.float64)

    def cost(u: np.ndarray) -> tuple[float, np.ndarray]:
        p = x0.copy()
        p[:n_free] = x0[:n_free] + u * scale[:n_free]
        r, grad = correlation.evaluate(p[0], p[1], p[2], math.radians(p[3]))
        grad_p = grad.copy()
        grad_p[3] = grad[3] * math.pi / 180.0  # per degree
        return -r, -(grad_p[:n_free] * scale[:n_free])

    result = optimize.minimize(cost, np.zeros(n_free), jac=True, method="L-BFGS-B",
                               options={"maxiter": 200, "ftol": 1e-13, "gtol": 1e-9})
    p = x0.copy()
    p[:n_free] = x0[:n_free] + result.x * scale[:n_free]
    return Fit(float(p[0]), float(p[1]), float(p[2]), float(p[3]), float(-result.fun), g_fit)



def contrast_weights(search: CtfSearch, grid: SpectrumGrid, normalised: np.ndarray,
                     select: np.ndarray, fit: Fit) -> np.ndarray:
    """Per-pixel weights of a matched filter for a second refinement: with the data modelled
    as c(g) · CTF² + noise (unit variance after normalisation), the correlation ρ(g) between
    pixels and the fitted model over about one Thon ring gives c ∝ ρ and a noise variance
    ∝ 1 − ρ², so each pixel is weighted by ρ / (1 − ρ²) (0 where ρ ≤ 0). Rings buried in
    noise then stop adding noise to the fit. Full-grid array, 0 outside `select`."""
    target = RingCorrelation(search, grid, normalised, select)
    model = -np.cos(2.0 * target.phase(fit.mean, fit.a, fit.b, math.radians(fit.phase_degrees)))
    data = normalised[select].astype(np.float64)
    bins = np.rint(grid.radius_px[select]).astype(np.int64)
    n_bins = int(bins.max()) + 1 if bins.size else 1

    def per_bin(values: np.ndarray) -> np.ndarray:
        return np.bincount(bins, weights=values, minlength=n_bins)

    sums = [per_bin(v) for v in (np.ones_like(data), data, model, data * data, model * model,
                                 data * model)]
    # window of about one Thon ring at the mean defocus: period π / (dχ/dg) in bins
    g = np.arange(n_bins) * grid.dk
    lam = search.wavelength_angstrom
    slope = np.abs(2 * math.pi * lam * fit.mean * g
                   - 2 * math.pi * search.cs_mm * 1e7 * lam**3 * g**3)
    with np.errstate(divide="ignore"):
        period = np.where(slope > 0, math.pi / np.maximum(slope, 1e-30) / grid.dk, n_bins)
    half_width = np.clip(np.rint(0.5 * period), 2, 20).astype(np.int64)
    index = np.arange(n_bins)
    lo = np.maximum(0, index - half_width)
    hi = np.minimum(n_bins, index + half_width + 1)
    windowed = []
    for values in sums:
        cumulative = np.concatenate(([0.0], np.cumsum(values)))
        windowed.append(cumulative[hi] - cumulative[lo])
    count, s_d, s_m, s_dd, s_mm, s_dm = windowed
    count = np.maximum(count, 1.0)
    cov = s_dm - s_d * s_m / count
    var = np.maximum((s_dd - s_d * s_d / count) * (s_mm - s_m * s_m / count), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(var > 0, cov / np.sqrt(var), 0.0)
    rho = np.clip(rho, 0.0, 0.9)
    weights = np.zeros(normalised.shape, dtype=np.float64)
    weights[select] = (rho / (1.0 - rho * rho))[bins]
    return weights

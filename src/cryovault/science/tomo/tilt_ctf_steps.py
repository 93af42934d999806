"""The fitting steps of CTF per tilt (tilt_ctf.py): the central tilt's defocus and astigmatism
(`fit_central`), every tilt's defocus at the axis and gradient slope (`fit_gradient`), the
astigmatism shared by the central tilts (`joint_astigmatism`) and every tilt's final defocus
with the slope fixed (`fit_fixed`), on the strip spectra (tilt_spectra.py) with the model and
refinement of tilt_ctf_fit.py.

The frequency limits follow ctf.py: the unweighted fits are scored up to 4 Å or where the rings
of the farthest strip are 3 spectrum pixels apart; the weighted fits, whose pixels are weighted
by the ring contrast (ctf_search.contrast_weights, measured on the gradient-compensated
spectrum tilt_spectra.combined_spectrum), go up to the high-resolution limit. The final
defocus is the unweighted fit's (`fit_fixed`): the weights favour the low-frequency rings,
whose position says little about the defocus.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from cryovault.science.ctf_model import CtfParameters
from cryovault.science.ctf_quality import confidence_resolution, equiphase_average
from cryovault.science.ctf_search import CtfSearch, Fit, contrast_weights, sector_astigmatism
from cryovault.science.tomo.tilt_ctf_fit import (
    StripCorrelation,
    StripFit,
    coarse_defocus,
    refine,
)
from cryovault.science.tomo.tilt_spectra import StripSpectra, combined_spectrum

#: rings closer than this many spectrum pixels are not fitted (as ctf.py)
MIN_RING_PERIOD_PX = 3.0
#: the unweighted fits and the score stop at this resolution (as ctf.py)
SCORE_RESOLUTION_ANGSTROM = 4.0
#: a fit is trusted when its correlation is this many standard deviations of noise's (pure
#: Poisson noise and too small a field at realistic dose reach ≤ 4.3 in the tests, fitted
#: series 7-26)
MIN_SIGNIFICANCE = 6.0


@dataclass
class FitLimits:
    """Frequency limits (1/Å) shared by all fits of a series."""

    g_low: float
    g_high: float
    g_score: float
    ring_limit: float  # ring_limit / Δf: where rings of Δf are MIN_RING_PERIOD_PX apart

    def fit(self, defocus: float, cap: float) -> float:
        return max(min(cap, self.ring_limit / max(defocus, 1.0)), self.g_low * 1.5)


def contrast_target(search: CtfSearch, strips: StripSpectra, limits: FitLimits,
                    fit: StripFit) -> StripCorrelation:
    """The correlation weighted by the ring contrast of the gradient-compensated spectrum
    (ctf_search.contrast_weights) around `fit`, up to where the farthest strip's rings are
    resolved."""
    reach = float(np.abs(strips.offsets_angstrom).max())
    g_final = limits.fit((fit.mean + math.hypot(fit.a, fit.b) + abs(fit.slope) * reach)
                         * 1.05, limits.g_high)
    combined = combined_spectrum(strips, fit.mean, fit.slope, search.voltage_kv, search.cs_mm,
                                 g_final)
    grid = strips.grid
    select = grid.half & (grid.g2 >= limits.g_low**2) & (grid.g2 <= g_final**2)
    weights = contrast_weights(search, grid, combined.normalised, select,
                               Fit(fit.mean, fit.a, fit.b, 0.0, fit.score, g_final))
    return StripCorrelation(search, strips, limits.g_low, g_final, weights)


def weighted_refine(search: CtfSearch, strips: StripSpectra, limits: FitLimits,
                    start: StripFit, free: tuple[bool, bool, bool, bool],
                    rounds: int) -> StripFit:
    """Refinement weighted by the ring contrast (`contrast_target`), `rounds` times at most."""
    best = start
    reach = float(np.abs(strips.offsets_angstrom).max())
    for _ in range(rounds):
        target = contrast_target(search, strips, limits, best)
        fit = refine(target, best, free)
        settled = max(abs(fit.mean - best.mean), abs(fit.a - best.a), abs(fit.b - best.b),
                      abs(fit.slope - best.slope) * max(reach, 1.0)) < 1.0
        best = fit
        if settled:
            break
    return best


def fit_central(search: CtfSearch, strips: StripSpectra,
                limits: FitLimits) -> tuple[StripFit, bool]:
    """Defocus and astigmatism of the central tilt as ctf.py fits them (up to 3 candidates of
    the exhaustive search, each refined from no astigmatism and from the 12-sector estimate,
    then 3 rounds of contrast-weighted refinement; the slope fixed at +1: near 0° the offsets
    are ~0), its significance as score, and whether it reaches MIN_SIGNIFICANCE."""
    reach = float(np.abs(strips.offsets_angstrom).max())
    candidates = coarse_defocus(search, strips, limits.g_low, limits.g_score, limits.ring_limit,
                                search.min_defocus_angstrom, search.max_defocus_angstrom,
                                (1.0,), 3)
    fits = []
    for mean0, slope0 in candidates:
        g_fit = limits.fit((mean0 + reach) * 1.25, limits.g_score)
        target = StripCorrelation(search, strips, limits.g_low, g_fit)
        combined = combined_spectrum(strips, mean0, slope0, search.voltage_kv, search.cs_mm,
                                     g_fit)
        a0, b0 = sector_astigmatism(search, strips.grid, combined.normalised, mean0, 0.0,
                                    limits.g_low, g_fit)
        for start in (StripFit(mean0, 0.0, 0.0, slope0, 0.0), StripFit(mean0, a0, b0, slope0, 0.0)):
            fits.append(refine(target, start, (True, True, True, False)))
    if not fits:
        mid = 0.5 * (search.min_defocus_angstrom + search.max_defocus_angstrom)
        return StripFit(mid, 0.0, 0.0, 1.0, 0.0), False
    best = max(fits, key=lambda f: f.score)
    best = weighted_refine(search, strips, limits, best, (True, True, True, False), 3)
    score = significance(search, strips, limits, best)
    return StripFit(best.mean, best.a, best.b, best.slope, score), score >= MIN_SIGNIFICANCE


def score_target(search: CtfSearch, strips: StripSpectra, limits: FitLimits,
                 fit: StripFit) -> StripCorrelation:
    """The unweighted correlation up to the score's limit (4 Å, or where the rings of the
    farthest strip around `fit` are MIN_RING_PERIOD_PX apart)."""
    reach = float(np.abs(strips.offsets_angstrom).max())
    g = limits.fit((fit.mean + math.hypot(fit.a, fit.b) + abs(fit.slope) * reach) * 1.05,
                   limits.g_score)
    return StripCorrelation(search, strips, limits.g_low, g)


def significance(search: CtfSearch, strips: StripSpectra, limits: FitLimits,
                 fit: StripFit) -> float:
    """The significance of the fit: the unweighted correlation of `score_target` times
    √(pixels) (the correlation's standard deviation on noise is 1 / √pixels)."""
    target = score_target(search, strips, limits, fit)
    r = target.evaluate(np.array([fit.mean, fit.a, fit.b, fit.slope]), gradient=False)[0]
    return r * math.sqrt(target.effective_size)


def fit_gradient(search: CtfSearch, strips: StripSpectra, limits: FitLimits, a: float,
                 b: float, lo: float, hi: float) -> StripFit:
    """One tilt with the astigmatism (a, b) fixed: the exhaustive search over [lo, hi] Å with
    slopes ±1 (2 candidates), each candidate's defocus refined at its slope, then the defocus
    at the axis and the gradient's slope of the best refined together, weighted by the ring
    contrast (refining the slope on both candidates too changed no slope by more than 0.04 on
    the benchmark series, for twice the evaluations). The score is the significance; the
    slope is NaN where the strips carry no gradient (a tilt at 0°)."""
    reach = float(np.abs(strips.offsets_angstrom).max())
    candidates = coarse_defocus(search, strips, limits.g_low, limits.g_score, limits.ring_limit,
                                lo, hi, (1.0, -1.0) if reach > 1.0 else (1.0,), 2)
    starts = []
    for mean0, slope0 in candidates or [(0.5 * (lo + hi), 1.0)]:
        g_fit = limits.fit((mean0 + reach) * 1.25, limits.g_score)
        target = StripCorrelation(search, strips, limits.g_low, g_fit)
        starts.append(refine(target, StripFit(mean0, a, b, slope0, 0.0),
                             (True, False, False, False)))
    best = max(starts, key=lambda f: f.score)
    joint = weighted_refine(search, strips, limits, best, (True, False, False, reach > 1.0), 1)
    return StripFit(joint.mean, a, b, joint.slope if reach > 1.0 else math.nan,
                    significance(search, strips, limits, joint))


def fit_fixed(search: CtfSearch, strips: StripSpectra, limits: FitLimits, mean: float,
              a: float, b: float, sign: int) -> tuple[float, float, float]:
    """The defocus at the axis (Å) refined alone from `mean` (fit_gradient's, already weighted
    by the ring contrast) with the astigmatism (a, b) and the gradient's slope (`sign`) fixed,
    by the unweighted correlation of `score_target`; its significance (on that target: the
    defocus moves by tens of Å, which leaves its frequency limit as it is) and its confidence
    resolution (Å, ctf_quality on combined_spectrum)."""
    fit = StripFit(mean, a, b, float(sign), 0.0)
    target = score_target(search, strips, limits, fit)
    fit = refine(target, fit, (True, False, False, False))
    score = fit.score * math.sqrt(target.effective_size)
    half = math.hypot(a, b)
    params = CtfParameters(fit.mean + half, fit.mean - half,
                           math.degrees(0.5 * math.atan2(b, a)) % 180.0, 0.0,
                           search.voltage_kv, search.cs_mm, search.amplitude_contrast)
    # confidence_resolution looks up to where rings are 2 spectrum pixels apart
    g_quality = 1.1 * limits.ring_limit * MIN_RING_PERIOD_PX / 2.0 / (fit.mean + half)
    combined = combined_spectrum(strips, fit.mean, float(sign), search.voltage_kv,
                                 search.cs_mm, g_quality)
    equiphase = equiphase_average(params, combined)
    resolution, _ = confidence_resolution(params, equiphase, limits.g_low, strips.grid.tile,
                                          strips.grid.pixel_size)
    return fit.mean, score, resolution


def joint_astigmatism(search: CtfSearch, tilts: list[StripSpectra], limits: FitLimits,
                      means: list[float], signs: list[int], a: float,
                      b: float) -> tuple[float, float]:
    """The astigmatism (a, b) (Å) shared by several tilts, each with its own defocus at the
    axis (from `means`) and gradient slope fixed at its sign: the sum of the tilts'
    contrast-weighted correlations, each scaled by √(its effective pixels) (its significance
    scale, so that tilts count by their information), maximised by L-BFGS over
    (a, b, m_1 … m_k) from (a, b, means)."""
    targets = [contrast_target(search, strips, limits, StripFit(m, a, b, float(s), 0.0))
               for strips, m, s in zip(tilts, means, signs, strict=True)]
    scales = [math.sqrt(t.effective_size) for t in targets]
    k = len(targets)
    lam_g2 = max([float(t.k1g2.max()) for t in targets if t.size] + [1e-12])
    unit = 1.0 / lam_g2  # one unit moves the outer rings by about one radian
    x0 = np.array([a, b, *means], dtype=float)

    def cost(u: np.ndarray) -> tuple[float, np.ndarray]:
        p = x0 + u * unit
        total, grad = 0.0, np.zeros(2 + k)
        for j, (target, scale, sign) in enumerate(zip(targets, scales, signs, strict=True)):
            r, g = target.evaluate(np.array([p[2 + j], p[0], p[1], float(sign)]))
            total += scale * r
            grad[:2] += scale * g[1:3]
            grad[2 + j] = scale * g[0]
        return -total, -grad * unit

    result = optimize.minimize(cost, np.zeros(2 + k), jac=True, method="L-BFGS-B",
                               options={"maxiter": 100, "ftol": 1e-9, "gtol": 1e-6})
    p = x0 + result.x * unit
    return float(p[0]), float(p[1])

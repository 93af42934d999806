"""CTF estimation from a micrograph (CTFFIND4-like): the public entry point and its result.

The formula and its conventions are in ctf_model.py (re-exported here), the spectrum in
power_spectrum.py, the fit in ctf_search.py, the quality measures in ctf_quality.py and the
diagnostic image in ctf_diagnostic.py.

Estimation:
1. power spectrum: the mean periodogram of overlapping tiles, computed once (tiles of
   `CtfSearch.tile_size`, twice that on images that hold 4 × 4 of them, so that the finer Thon
   rings of high defocus stay resolved); background subtracted and normalised by its local RMS;
2. exhaustive search over (defocus, phase shift) on the rotational average; for the best
   candidates, a first astigmatism from 12 azimuthal sectors, then local refinement of the 2-D
   correlation between the spectrum and CTF² (quasi-Newton with the analytic gradient) over the
   annulus where the rings are resolved, up to 4 Å; the best is refined again, each ring
   weighted by its measured contrast (a matched filter, `ctf_search.contrast_weights`, three
   rounds), up to the high-resolution limit or where the rings along defocus U are 3 spectrum
   pixels apart. The weighting keeps noise-dominated rings from adding noise, so the fit can use
   the faint outer rings: on the benchmark's 4K micrographs at 40 e⁻/Å² it brought the RMS
   astigmatism error from 35 to 27 Å and the worst angle error from 4.3° to 2.5°;
3. the 1-D equiphase average with the fitted CTF² and the confidence resolution;
4. `fit_ok` requires a correlation score well above that of noise, at least two Thon rings fitted
   and a defocus inside the searched range: a blank or non-CTF image is reported as a failed fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from cryovault.science.ctf_diagnostic import write_diagnostic_png
from cryovault.science.ctf_model import (
    CtfParameters,
    amplitude_contrast_phase,
    ctf_2d,
    ctf_phase,
    ctf_value,
    defocus_at_azimuth,
    electron_wavelength_angstrom,
)
from cryovault.science.ctf_quality import (
    MIN_SCORE,
    RESOLUTION_CC_THRESHOLD,
    confidence_resolution,
    equiphase_average,
)
from cryovault.science.ctf_search import (
    CtfSearch,
    Fit,
    RingCorrelation,
    coarse_candidates,
    contrast_weights,
    refine,
    sector_astigmatism,
)
from cryovault.science.errors import ScienceInputError
from cryovault.science.fourier import fft_workers
from cryovault.science.power_spectrum import (
    NormalisedSpectrum,
    normalised_spectrum,
    ring_limit_frequency,
    tile_size_for,
    tiled_power_spectrum,
)
from cryovault.science.threads import single_threaded_blas

__all__ = ["MIN_SCORE", "RESOLUTION_CC_THRESHOLD", "CtfParameters", "CtfResult", "CtfSearch",
           "amplitude_contrast_phase", "ctf_2d", "ctf_phase", "ctf_value",
           "defocus_at_azimuth", "electron_wavelength_angstrom", "estimate_ctf", "fft_workers",
           "tiled_power_spectrum", "write_diagnostic_png"]

#: the fit of each candidate extends to where rings of 1.25 × its defocus are resolved; the
#: final refinement to where the rings along defocus U (× 1.05) are
CANDIDATE_DEFOCUS_MARGIN = 1.25
FINAL_DEFOCUS_MARGIN = 1.05
#: rings closer than this many spectrum pixels are not fitted
MIN_RING_PERIOD_PX = 3.0
#: the candidates are fitted, and the score is computed, up to this resolution (or the
#: fitting limit if lower), so that scores compare between fitting ranges (MIN_SCORE is
#: calibrated on it); only the final, weighted refinement goes further
SCORE_RESOLUTION_ANGSTROM = 4.0
#: rounds of the weighted refinement (weights from the previous round's fit)
WEIGHTED_ROUNDS = 3


@dataclass
class CtfResult:
    """The fit. `to_json` gives the public keys of `cryovault ctf --json`."""

    defocus_u_angstrom: float
    defocus_v_angstrom: float
    astigmatism_angle_degrees: float
    phase_shift_degrees: float
    resolution_angstrom: float
    score: float
    fit_ok: bool
    pixel_size_angstrom: float
    search: CtfSearch
    #: why fit_ok is false ("" when it is true)
    failure_reason: str = ""
    #: centred 2-D spectrum (background-subtracted, normalised), tile × tile
    spectrum: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)
    #: 1-D equiphase average: frequency (1/Å), normalised data, fitted CTF², and in the units of
    #: the amplitude spectrum the data and its background
    frequencies_per_angstrom: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    equiphase_average: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    fitted_curve: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    amplitude_average: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    background_average: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    fit_cc: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    @property
    def astigmatism_angstrom(self) -> float:
        return self.defocus_u_angstrom - self.defocus_v_angstrom

    @property
    def parameters(self) -> CtfParameters:
        return CtfParameters(self.defocus_u_angstrom, self.defocus_v_angstrom,
                             self.astigmatism_angle_degrees, self.phase_shift_degrees,
                             self.search.voltage_kv, self.search.cs_mm,
                             self.search.amplitude_contrast)

    def to_json(self) -> dict[str, float | bool]:
        def num(value: float) -> float:
            return round(float(value), 4) if math.isfinite(value) else 0.0

        return {
            "defocus_u_angstrom": num(self.defocus_u_angstrom),
            "defocus_v_angstrom": num(self.defocus_v_angstrom),
            "astigmatism_angle_degrees": num(self.astigmatism_angle_degrees),
            "phase_shift_degrees": num(self.phase_shift_degrees),
            "resolution_angstrom": num(self.resolution_angstrom),
            "score": num(self.score),
            "fit_ok": bool(self.fit_ok),
        }


def estimate_ctf(image: np.ndarray, pixel_size_angstrom: float,
                 search: CtfSearch | None = None, *, workers: int | None = None) -> CtfResult:
    """Fit defocus U/V, astigmatism angle (and phase shift with `search.phase_plate`) to the
    Thon rings of `image`. Raises ScienceInputError for unusable input (NaNs, too small, bad
    pixel size or ranges); returns fit_ok=False when no CTF is found."""
    search = search or CtfSearch()
    _check_inputs(image, pixel_size_angstrom, search)
    workers = workers or fft_workers()
    px = float(pixel_size_angstrom)
    tile = tile_size_for(image.shape, search.tile_size)
    spectrum = normalised_spectrum(image, tile, px, workers)
    g_low = 1.0 / search.low_resolution_angstrom
    g_high = min(1.0 / search.high_resolution_angstrom, 0.5 / px * 0.95)
    with single_threaded_blas():  # many small products: see threads.py
        fit = _fit(search, spectrum, g_low, g_high)

    half_astig = math.hypot(fit.a, fit.b)
    angle = math.degrees(0.5 * math.atan2(fit.b, fit.a)) % 180.0
    phase_deg = fit.phase_degrees % 180.0 if search.phase_plate else 0.0
    defocus_u, defocus_v = fit.mean + half_astig, fit.mean - half_astig
    params = CtfParameters(defocus_u, defocus_v, angle, phase_deg, search.voltage_kv,
                           search.cs_mm, search.amplitude_contrast)
    equiphase = equiphase_average(params, spectrum)
    resolution, rings = confidence_resolution(params, equiphase, g_low, tile, px)

    reasons = []
    if fit.score < MIN_SCORE:
        reasons.append(f"score {fit.score:.3f} below {MIN_SCORE}")
    if rings < 2.0:
        reasons.append(f"only {rings:.1f} Thon rings agree with the fit")
    margin = 0.02 * (search.max_defocus_angstrom - search.min_defocus_angstrom)
    if not (search.min_defocus_angstrom + margin <= fit.mean
            <= search.max_defocus_angstrom - margin):
        reasons.append("defocus at the edge of the searched range")
    return CtfResult(
        defocus_u_angstrom=defocus_u, defocus_v_angstrom=defocus_v,
        astigmatism_angle_degrees=angle, phase_shift_degrees=phase_deg,
        resolution_angstrom=resolution, score=fit.score, fit_ok=not reasons,
        pixel_size_angstrom=px, search=search, failure_reason="; ".join(reasons),
        spectrum=spectrum.normalised.astype(np.float32),
        frequencies_per_angstrom=equiphase.frequencies, equiphase_average=equiphase.data,
        fitted_curve=equiphase.fit, amplitude_average=equiphase.amplitude,
        background_average=equiphase.background, fit_cc=equiphase.window_cc)


def _fit(search: CtfSearch, spectrum: NormalisedSpectrum, g_low: float, g_high: float) -> Fit:
    """Coarse search and unweighted refinement of each candidate (from two starts) up to the
    score's limit, then weighted refinement of the best up to the fitting limit; the score of
    the result."""
    grid, normalised = spectrum.grid, spectrum.normalised
    # rings of defocus Δf are MIN_RING_PERIOD_PX pixels apart up to ring_limit / Δf
    ring_limit = ring_limit_frequency(search.wavelength_angstrom, 1.0, grid.tile,
                                      grid.pixel_size, MIN_RING_PERIOD_PX)
    g_score = min(g_high, 1.0 / SCORE_RESOLUTION_ANGSTROM)

    def fit_limit(defocus: float, cap: float) -> float:
        return max(min(cap, ring_limit / max(defocus, 1.0)), g_low * 1.5)

    def annulus(g_fit: float) -> np.ndarray:
        return grid.half & (grid.g2 >= g_low**2) & (grid.g2 <= g_fit**2)

    fits: list[Fit] = []
    for mean0, phase0 in coarse_candidates(search, grid, normalised, g_low, g_score,
                                           ring_limit):
        g_fit = fit_limit(mean0 * CANDIDATE_DEFOCUS_MARGIN, g_score)
        target = RingCorrelation(search, grid, normalised, annulus(g_fit))
        a0, b0 = sector_astigmatism(search, grid, normalised, mean0, phase0, g_low, g_fit)
        for start in ((mean0, 0.0, 0.0, phase0), (mean0, a0, b0, phase0)):
            fits.append(refine(target, start, search.phase_plate, g_fit))
    if not fits:
        return Fit(0.5 * (search.min_defocus_angstrom + search.max_defocus_angstrom), 0.0, 0.0,
                   0.0, 0.0, g_low)
    best = max(fits, key=lambda f: f.score)
    for _ in range(WEIGHTED_ROUNDS):
        g_final = fit_limit((best.mean + math.hypot(best.a, best.b)) * FINAL_DEFOCUS_MARGIN,
                            g_high)
        select = annulus(g_final)
        weights = contrast_weights(search, grid, normalised, select, best)
        fit = refine(RingCorrelation(search, grid, normalised, select, weights),
                     (best.mean, best.a, best.b, best.phase_degrees), search.phase_plate,
                     g_final)
        settled = (max(abs(fit.mean - best.mean), abs(fit.a - best.a), abs(fit.b - best.b))
                   < 1.0 and abs(fit.phase_degrees - best.phase_degrees) < 0.1)
        best = fit
        if settled:
            break
    g_scored = fit_limit((best.mean + math.hypot(best.a, best.b)) * FINAL_DEFOCUS_MARGIN,
                         g_score)
    score = RingCorrelation(search, grid, normalised, annulus(g_scored)).score(
        best.mean, best.a, best.b, math.radians(best.phase_degrees))
    return Fit(best.mean, best.a, best.b, best.phase_degrees, score, best.g_fit)


def _check_inputs(image: np.ndarray, pixel_size: float, search: CtfSearch) -> None:
    if image.ndim != 2:
        raise ScienceInputError(f"expected a 2-D micrograph, got an array of shape {image.shape}")
    if min(image.shape) < 128:
        raise ScienceInputError(f"micrograph of {image.shape[1]}×{image.shape[0]} pixels is too "
                                "small for CTF estimation (at least 128×128)")
    if not (isinstance(pixel_size, int | float) and math.isfinite(pixel_size)
            and 0.05 <= pixel_size <= 50):
        raise ScienceInputError(f"pixel size {pixel_size!r} Å is not plausible (0.05-50 Å)")
    if not np.isfinite(image).all():
        raise ScienceInputError("micrograph contains NaN or infinite values")
    if not 0 < search.min_defocus_angstrom < search.max_defocus_angstrom:
        raise ScienceInputError("defocus range must be MIN:MAX with 0 < MIN < MAX (Å)")
    if not search.low_resolution_angstrom > search.high_resolution_angstrom > 0:
        raise ScienceInputError("resolution range must be LOW:HIGH in Å with LOW > HIGH > 0")
    if search.high_resolution_angstrom < 2 * pixel_size * 0.999:
        raise ScienceInputError(f"high-resolution limit {search.high_resolution_angstrom} Å is "
                                f"beyond Nyquist ({2 * pixel_size:.3g} Å at {pixel_size} Å/px)")
    if not 0 <= search.amplitude_contrast < 1:
        raise ScienceInputError("amplitude contrast must be in [0, 1)")
    if not (search.voltage_kv > 0 and search.cs_mm >= 0):
        raise ScienceInputError("voltage must be > 0 kV and Cs ≥ 0 mm")

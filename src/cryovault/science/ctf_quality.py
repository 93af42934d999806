"""How good a CTF fit is: the 1-D equiphase average, the confidence resolution, the score.

- The equiphase average maps each pixel of the spectrum to the frequency with the same CTF
  phase at the mean defocus (CTFFIND4's "equiphase averaging"), so that the rings of an
  astigmatic spectrum add up, and compares it with the fitted CTF²;
- the confidence resolution is where the correlation between the two, over a window of about
  two Thon rings, first falls below 0.5 (unless it recovers within the next ring), scanning up
  from the first ring minimum above the low-resolution limit (CTFFIND4's "resolution of fit").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cryovault.science.ctf_model import CtfParameters, ctf_phase
from cryovault.science.power_spectrum import NormalisedSpectrum, ring_limit_frequency

#: score (2-D correlation coefficient) below which a fit is not trusted; noise and non-CTF
#: images score ≤ 0.03 in tests/science/test_ctf_estimation.py, real-looking data 0.1-0.6.
MIN_SCORE = 0.1
#: windowed equiphase correlation that defines the confidence resolution.
RESOLUTION_CC_THRESHOLD = 0.5


@dataclass
class EquiphaseAverage:
    """1-D profiles over `frequencies` (1/Å): the normalised data, the fitted CTF², in the
    units of the amplitude spectrum the data and its background, and the windowed correlation
    between data and fit."""

    frequencies: np.ndarray
    data: np.ndarray
    fit: np.ndarray
    amplitude: np.ndarray
    background: np.ndarray
    window_cc: np.ndarray


def _ring_period_bins(params: CtfParameters, freqs: np.ndarray, dk: float,
                      n_bins: int) -> np.ndarray:
    """Period of the Thon rings (in bins) at each frequency, for the mean defocus."""
    lam = params.wavelength_angstrom
    cs = params.cs_mm * 1e7
    mean = 0.5 * (params.defocus_u_angstrom + params.defocus_v_angstrom)
    slope = np.abs(2 * math.pi * lam * mean * freqs - 2 * math.pi * cs * lam**3 * freqs**3)
    with np.errstate(divide="ignore"):
        return np.where(slope > 0, math.pi / np.maximum(slope, 1e-30) / dk, n_bins)


def windowed_correlation(data: np.ndarray, fit: np.ndarray,
                         half_widths: np.ndarray) -> np.ndarray:
    """Pearson correlation of data and fit over [i − h_i, i + h_i] ∩ [1, n) for every i ≥ 2
    (0 below), from cumulative sums."""
    n = data.size
    index = np.arange(n)
    lo = np.maximum(1, index - half_widths)
    hi = np.minimum(n, index + half_widths + 1)

    def window_sum(values: np.ndarray) -> np.ndarray:
        cumulative = np.concatenate(([0.0], np.cumsum(values, dtype=np.float64)))
        return cumulative[hi] - cumulative[lo]

    count = np.maximum(hi - lo, 1).astype(np.float64)
    s_d, s_f = window_sum(data), window_sum(fit)
    cov = window_sum(data * fit) - s_d * s_f / count
    var_d = window_sum(data * data) - s_d * s_d / count
    var_f = window_sum(fit * fit) - s_f * s_f / count
    denominator = np.sqrt(np.maximum(var_d * var_f, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        cc = np.where(denominator > 1e-12 * np.maximum(count, 1), cov / denominator, 0.0)
    cc[:2] = 0.0
    return cc


def equiphase_average(params: CtfParameters, spectrum: NormalisedSpectrum) -> EquiphaseAverage:
    """The 1-D equiphase averages of the spectrum for the fitted parameters."""
    grid = spectrum.grid
    lam = params.wavelength_angstrom
    cs = params.cs_mm * 1e7
    mean = 0.5 * (params.defocus_u_angstrom + params.defocus_v_angstrom)
    half = 0.5 * (params.defocus_u_angstrom - params.defocus_v_angstrom)
    theta = math.radians(params.astigmatism_angle_degrees)
    cos2t, sin2t = math.cos(2 * theta), math.sin(2 * theta)
    sel = grid.half & (grid.radius_px > 1.0) & (grid.radius_px <= grid.tile // 2 - 1)
    defocus = mean + half * (grid.cos2a[sel] * cos2t + grid.sin2a[sel] * sin2t)
    g2 = grid.g2[sel]
    c = math.pi * lam * defocus * g2 - 0.5 * math.pi * cs * lam**3 * g2 * g2
    # solve π λ Δf_mean u − π/2 Cs λ³ u² = c for u = g'² (smaller root)
    a2 = 0.5 * math.pi * cs * lam**3
    a1 = math.pi * lam * mean
    if a2 > 0:
        disc = np.maximum(a1 * a1 - 4 * a2 * c, 0.0)
        u = (a1 - np.sqrt(disc)) / (2 * a2)
    else:
        u = c / a1
    g_eq = np.sqrt(np.maximum(u, 0.0))
    n_bins = grid.tile // 2
    bins = np.rint(g_eq / grid.dk).astype(np.int64)
    keep = bins < n_bins
    bins = bins[keep]
    safe = np.maximum(np.bincount(bins, minlength=n_bins).astype(np.float64), 1)

    def average(values: np.ndarray) -> np.ndarray:
        return np.bincount(bins, weights=values[sel][keep], minlength=n_bins) / safe

    freqs = np.arange(n_bins) * grid.dk
    iso = CtfParameters(mean, mean, 0.0, params.phase_shift_degrees, params.voltage_kv,
                        params.cs_mm, params.amplitude_contrast)
    fit = np.sin(ctf_phase(iso, freqs, np.zeros_like(freqs))) ** 2
    data = average(spectrum.normalised)
    period = _ring_period_bins(params, freqs, grid.dk, n_bins)
    half_widths = np.clip(np.rint(period), 3, 40).astype(np.int64)
    return EquiphaseAverage(freqs, data, fit, average(spectrum.amplitude),
                            average(spectrum.background),
                            windowed_correlation(data, fit, half_widths))


def confidence_resolution(params: CtfParameters, equiphase: EquiphaseAverage, g_low: float,
                          tile: int, pixel_size: float) -> tuple[float, float]:
    """Resolution (Å) where the windowed correlation first drops below the threshold, scanning
    up from the low-resolution limit, and the number of Thon rings up to there."""
    freqs, fit, window_cc = equiphase.frequencies, equiphase.fit, equiphase.window_cc
    lam = params.wavelength_angstrom
    cs = params.cs_mm * 1e7
    mean = 0.5 * (params.defocus_u_angstrom + params.defocus_v_angstrom)
    g_max = min(ring_limit_frequency(lam, params.defocus_u_angstrom, tile, pixel_size, 2.0),
                freqs[-1])
    # scan from the first Thon-ring minimum above the low-resolution limit: below it the
    # background subtraction leaves the data unreliable
    lo = int(math.ceil(g_low / freqs[1])) if freqs.size > 1 else 0
    start = lo
    for i in range(lo + 1, freqs.size - 1):
        if fit[i] <= fit[i - 1] and fit[i] <= fit[i + 1]:
            start = i
            break
    dk = freqs[1] if freqs.size > 1 else 1.0
    periods = _ring_period_bins(params, freqs, dk, freqs.size)
    last_good = start
    i = start
    while i < freqs.size and freqs[i] <= g_max:
        if window_cc[i] < RESOLUTION_CC_THRESHOLD:
            # a dip counts as the end of the fit unless the correlation recovers within the
            # next Thon ring
            period = int(min(max(3, round(periods[i])), 40))
            ahead = window_cc[i:min(freqs.size, i + period + 1)]
            recovered = np.nonzero(ahead >= RESOLUTION_CC_THRESHOLD)[0]
            if recovered.size == 0:
                break
            i += int(recovered[0])
            continue
        last_good = i
        i += 1
    g_res = max(freqs[last_good], g_low)

    def chi(g: float) -> float:
        return math.pi * lam * mean * g * g - 0.5 * math.pi * cs * lam**3 * g**4

    rings = (chi(g_res) - chi(freqs[start])) / math.pi + 0.5 if last_good > start else 0.0
    return 1.0 / g_res, max(rings, 0.0)

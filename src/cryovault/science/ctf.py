"""Contrast transfer function: the formula, and its estimation from a micrograph (CTFFIND4-like).

Conventions (docs/architecture.md, "science/"): spatial frequencies in 1/Å; defocus in Å,
positive = underfocus, U ≥ V; the astigmatism angle is in degrees from the +x axis (array
columns) towards +y (array rows) to the direction of defocus U, reported in [0, 180).

The CTF follows Rohou & Grigorieff (2015), eq. 1-3 (CTFFIND4):

    χ(g, α) = π λ g² Δf(α) − π/2 Cs λ³ g⁴ + Δφ + w,    w = arctan(A / √(1 − A²))
    Δf(α)   = ½ [Δf_U + Δf_V + (Δf_U − Δf_V) cos(2 (α − α_ast))]
    CTF     = −sin χ  (= −√(1−A²) sin χ₀ − A cos χ₀ with χ₀ = χ − w)

with g the spatial frequency, α its azimuth, λ the relativistic electron wavelength, Cs the
spherical aberration, Δφ the phase-plate shift and A the amplitude contrast. RELION's ctf.h gives
the same |CTF|; tests/science/test_ctf_formula.py checks both from the published equations.

Estimation:
1. power spectrum: average of the periodograms of overlapping tiles (50 % overlap, edge taper);
   the amplitude spectrum is its square root;
2. background: a box average of the amplitude spectrum, subtracted; the result is divided by its
   local RMS so that every Thon ring weighs the same;
3. exhaustive search over (defocus, phase shift) on the rotational average, then per-sector
   defocus estimates give a first astigmatism; local refinement (Nelder-Mead) of the 2-D
   normalised correlation between the spectrum and CTF² over the fitting annulus;
4. the 1-D equiphase average (each pixel mapped to the frequency with the same CTF phase at the
   mean defocus) with the fitted CTF²; the confidence resolution is where the correlation
   between the two over a window of about two Thon rings first falls below 0.5;
5. `fit_ok` requires a correlation score well above that of noise, at least two Thon rings fitted
   and a defocus inside the searched range: a blank or non-CTF image is reported as a failed fit.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.fft as sfft
from scipy import ndimage, optimize
from scipy.signal.windows import tukey

from cryovault.science.errors import ScienceInputError

#: score (2-D correlation coefficient) below which a fit is not trusted; noise and non-CTF
#: images score ≤ 0.03 in tests/science/test_ctf_estimation.py, real-looking data 0.1-0.6.
MIN_SCORE = 0.1
#: windowed equiphase correlation that defines the confidence resolution.
RESOLUTION_CC_THRESHOLD = 0.5


def fft_workers() -> int:
    """Threads for scipy.fft: CRYOVAULT_FFT_WORKERS, else the CPUs this process may use."""
    env = os.environ.get("CRYOVAULT_FFT_WORKERS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def electron_wavelength_angstrom(voltage_kv: float) -> float:
    """Relativistic electron wavelength λ = h / √(2 m₀ e V (1 + e V / 2 m₀ c²)), in Å."""
    volts = voltage_kv * 1e3
    return 12.2643247 / math.sqrt(volts * (1.0 + 0.978466e-6 * volts))


@dataclass(frozen=True)
class CtfParameters:
    """All a CTF depends on. Defocus in Å (positive = underfocus), angle in degrees from +x
    towards +y to the direction of defocus U."""

    defocus_u_angstrom: float
    defocus_v_angstrom: float
    astigmatism_angle_degrees: float = 0.0
    phase_shift_degrees: float = 0.0
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.07
    b_factor_angstrom2: float = 0.0

    @property
    def wavelength_angstrom(self) -> float:
        return electron_wavelength_angstrom(self.voltage_kv)


def amplitude_contrast_phase(amplitude_contrast: float) -> float:
    """w = arctan(A / √(1 − A²)) in radians."""
    a = float(amplitude_contrast)
    return math.atan2(a, math.sqrt(max(0.0, 1.0 - a * a)))


def defocus_at_azimuth(params: CtfParameters, azimuth_rad: np.ndarray) -> np.ndarray:
    """Δf(α) in Å for frequency azimuths α (radians from +x towards +y)."""
    mean = 0.5 * (params.defocus_u_angstrom + params.defocus_v_angstrom)
    half = 0.5 * (params.defocus_u_angstrom - params.defocus_v_angstrom)
    angle = math.radians(params.astigmatism_angle_degrees)
    return mean + half * np.cos(2.0 * (np.asarray(azimuth_rad) - angle))


def ctf_phase(params: CtfParameters, kx: np.ndarray, ky: np.ndarray) -> np.ndarray:
    """χ (radians) at spatial frequencies (kx, ky) in 1/Å, amplitude contrast included."""
    kx = np.asarray(kx, dtype=np.float64)
    ky = np.asarray(ky, dtype=np.float64)
    lam = params.wavelength_angstrom
    g2 = kx * kx + ky * ky
    defocus = defocus_at_azimuth(params, np.arctan2(ky, kx))
    cs = params.cs_mm * 1e7
    return (math.pi * lam * defocus * g2 - 0.5 * math.pi * cs * lam**3 * g2 * g2
            + math.radians(params.phase_shift_degrees)
            + amplitude_contrast_phase(params.amplitude_contrast))


def ctf_value(params: CtfParameters, kx: np.ndarray, ky: np.ndarray) -> np.ndarray:
    """CTF = −sin χ, times the envelope exp(−B g²/4) when a B-factor is set."""
    value = -np.sin(ctf_phase(params, kx, ky))
    if params.b_factor_angstrom2:
        g2 = np.asarray(kx) ** 2 + np.asarray(ky) ** 2
        value = value * np.exp(-params.b_factor_angstrom2 * g2 / 4.0)
    return value


def ctf_2d(params: CtfParameters, shape: tuple[int, int], pixel_size_angstrom: float,
           *, half: bool = True) -> np.ndarray:
    """The CTF sampled on the grid of `rfft2` (half=True) or `fft2` of an image of `shape`."""
    ny, nx = shape
    ky = sfft.fftfreq(ny, d=pixel_size_angstrom)[:, None]
    kx = (sfft.rfftfreq(nx, d=pixel_size_angstrom) if half
          else sfft.fftfreq(nx, d=pixel_size_angstrom))[None, :]
    return ctf_value(params, kx, ky)


# --------------------------------------------------------------------------------------------
# Estimation
# --------------------------------------------------------------------------------------------


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
    high_resolution_angstrom: float = 4.0
    tile_size: int = 512


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


def tiled_power_spectrum(image: np.ndarray, tile_size: int, *,
                         workers: int | None = None) -> np.ndarray:
    """Mean periodogram of overlapping tiles (step tile/2, Tukey edge taper, each tile's mean
    removed), in the layout of `rfft2` of one tile: shape (tile, tile // 2 + 1)."""
    workers = workers or fft_workers()
    ny, nx = image.shape
    step = tile_size // 2
    starts_y = list(range(0, ny - tile_size + 1, step))
    starts_x = list(range(0, nx - tile_size + 1, step))
    taper = np.outer(tukey(tile_size, 0.2), tukey(tile_size, 0.2)).astype(np.float32)
    total = np.zeros((tile_size, tile_size // 2 + 1), dtype=np.float64)
    count = 0
    img = np.asarray(image, dtype=np.float32)
    for y0 in starts_y:
        row = np.stack([img[y0:y0 + tile_size, x0:x0 + tile_size] for x0 in starts_x])
        row = row - row.mean(axis=(1, 2), keepdims=True)
        row *= taper
        spectra = sfft.rfft2(row, workers=workers)
        total += (spectra.real**2 + spectra.imag**2).sum(axis=0)
        count += len(starts_x)
    return total / max(count, 1)


def _full_centred(half: np.ndarray) -> np.ndarray:
    """The centred full-plane spectrum (tile × tile, origin at [tile/2, tile/2]) of an rfft2
    half-plane spectrum of a real image (Friedel symmetry)."""
    t = half.shape[0]
    h = half.shape[1]
    full = np.empty((t, t), dtype=half.dtype)
    full[:, :h] = half
    rows = (-np.arange(t)) % t
    cols = t - np.arange(h, t)
    full[:, h:] = half[rows][:, cols]
    return sfft.fftshift(full)


@dataclass
class _Grid:
    """Frequency geometry of the centred tile spectrum."""

    tile: int
    pixel_size: float
    g2: np.ndarray  # g² in 1/Å²
    radius_px: np.ndarray  # |g| in spectrum pixels
    cos2a: np.ndarray
    sin2a: np.ndarray
    half: np.ndarray  # one of each Friedel pair

    @property
    def dk(self) -> float:
        return 1.0 / (self.tile * self.pixel_size)


def _grid(tile: int, pixel_size: float) -> _Grid:
    k = (np.arange(tile) - tile // 2) / (tile * pixel_size)
    ky, kx = np.meshgrid(k, k, indexing="ij")
    g2 = kx**2 + ky**2
    alpha = np.arctan2(ky, kx)
    half = (kx > 0) | ((kx == 0) & (ky > 0))
    return _Grid(tile, pixel_size, g2, np.sqrt(g2) * tile * pixel_size, np.cos(2 * alpha),
                 np.sin(2 * alpha), half)


class _Model:
    """sin² χ on a set of pixels for the refinement, with its constants precomputed."""

    def __init__(self, search: CtfSearch, g2: np.ndarray, cos2a: np.ndarray,
                 sin2a: np.ndarray) -> None:
        lam = electron_wavelength_angstrom(search.voltage_kv)
        self.k1g2 = math.pi * lam * g2
        self.cs_term = 0.5 * math.pi * search.cs_mm * 1e7 * lam**3 * g2 * g2
        self.cos2a = cos2a
        self.sin2a = sin2a
        self.w = amplitude_contrast_phase(search.amplitude_contrast)

    def __call__(self, mean: float, a: float, b: float, phase_rad: float) -> np.ndarray:
        defocus = mean + a * self.cos2a + b * self.sin2a
        return np.sin(self.k1g2 * defocus - self.cs_term + (phase_rad + self.w)) ** 2


def _pearson(model: np.ndarray, centred_data: np.ndarray, data_norm: float) -> float:
    m = model - model.mean()
    denominator = math.sqrt(float(np.dot(m, m))) * data_norm
    return float(np.dot(m, centred_data)) / denominator if denominator > 0 else 0.0


def _ring_limit_frequency(search: CtfSearch, defocus: float, tile: int, pixel_size: float,
                          min_period_px: float) -> float:
    """Highest frequency (1/Å) at which Thon rings of `defocus` are at least `min_period_px`
    spectrum pixels apart (period of sin² χ = π / |dχ/dg|)."""
    lam = electron_wavelength_angstrom(search.voltage_kv)
    dk = 1.0 / (tile * pixel_size)
    # dχ/dg ≈ 2πλΔf g (the Cs term only lowers it at these frequencies)
    return 1.0 / (2.0 * lam * max(defocus, 1.0) * min_period_px * dk)


def estimate_ctf(image: np.ndarray, pixel_size_angstrom: float,
                 search: CtfSearch | None = None, *, workers: int | None = None) -> CtfResult:
    """Fit defocus U/V, astigmatism angle (and phase shift with `search.phase_plate`) to the
    Thon rings of `image`. Raises ScienceInputError for unusable input (NaNs, too small, bad
    pixel size or ranges); returns fit_ok=False when no CTF is found."""
    search = search or CtfSearch()
    _check_inputs(image, pixel_size_angstrom, search)
    workers = workers or fft_workers()
    tile = min(search.tile_size, _largest_even_tile(image.shape))
    px = float(pixel_size_angstrom)
    grid, amplitude, background, normalised = _normalised_spectrum(image, tile, px, workers)

    nyquist = 0.5 / px
    g_low = 1.0 / search.low_resolution_angstrom
    g_high_user = min(1.0 / search.high_resolution_angstrom, nyquist * 0.95)

    # -- 1. exhaustive search on the rotational average ---------------------------------------
    # each defocus candidate is scored up to where its own rings are 3 spectrum pixels apart
    g_high_coarse = min(g_high_user, _ring_limit_frequency(
        search, search.min_defocus_angstrom, tile, px, 3.0))
    g_high_coarse = max(g_high_coarse, g_low * 1.5)
    radius = grid.radius_px
    r_lo, r_hi = g_low / grid.dk, g_high_coarse / grid.dk
    sel = grid.half & (radius >= r_lo) & (radius <= r_hi)
    bins = np.rint(radius[sel]).astype(np.int64)
    counts = np.bincount(bins)
    sums = np.bincount(bins, weights=normalised[sel])
    valid = counts > 0
    r_values = np.nonzero(valid)[0]
    profile = sums[valid] / counts[valid]
    defocus_grid, phase_grid = _coarse_grid(search, g_high_coarse)
    limits = np.minimum(g_high_user, _ring_limit_frequency(search, 1.0, tile, px, 3.0)
                        / (1.2 * defocus_grid))
    limits = np.maximum(limits, g_low * 1.5)
    best = _coarse_search(search, profile, r_values * grid.dk, defocus_grid, phase_grid, limits)

    # -- 2. per-sector astigmatism, then 2-D refinement -----------------------------------------
    candidates = []
    for mean0, phase0 in best:
        g_fit = min(g_high_user, _ring_limit_frequency(search, mean0 * 1.25, tile, px, 3.0))
        g_fit = max(g_fit, g_low * 1.5)
        fit_sel = grid.half & (grid.g2 >= g_low**2) & (grid.g2 <= g_fit**2)
        data = normalised[fit_sel]
        centred = data - data.mean()
        norm = math.sqrt(float(np.dot(centred, centred)))
        model = _Model(search, grid.g2[fit_sel], grid.cos2a[fit_sel], grid.sin2a[fit_sel])

        def cost(p: np.ndarray, model: _Model = model, centred: np.ndarray = centred,
                 norm: float = norm) -> float:
            phase = math.radians(p[3]) if search.phase_plate else 0.0
            return -_pearson(model(p[0], p[1], p[2], phase), centred, norm)

        a0, b0 = _sector_astigmatism(search, grid, normalised, mean0, phase0, g_low, g_fit)
        for start in ((mean0, 0.0, 0.0), (mean0, a0, b0)):
            x0 = np.array([start[0], start[1], start[2], phase0])
            simplex = np.array([x0, x0 + [150, 0, 0, 0], x0 + [0, 150, 0, 0],
                                x0 + [0, 0, 150, 0], x0 + [0, 0, 0, 15]])
            if not search.phase_plate:
                simplex = simplex[:4, :3]
                x0 = x0[:3]

                def cost3(p: np.ndarray, cost=cost, phase0=phase0) -> float:
                    return cost(np.array([p[0], p[1], p[2], phase0]))

                fun = cost3
            else:
                fun = cost
            res = optimize.minimize(fun, x0, method="Nelder-Mead",
                                    options={"initial_simplex": simplex, "xatol": 0.5,
                                             "fatol": 1e-7, "maxiter": 800})
            p = np.append(res.x, phase0) if not search.phase_plate else res.x
            candidates.append((float(res.fun), p, g_fit))
    candidates.sort(key=lambda c: c[0])
    neg_score, p, g_fit = candidates[0]
    # Thon rings finer than 3 spectrum pixels before the high-resolution limit: refine once
    # more on the spectrum of tiles twice as large
    if g_fit < 0.95 * g_high_user and min(image.shape) >= 4 * tile:
        neg_score, p, g_fit, tile, grid, amplitude, background, normalised = _refine_large_tiles(
            image, px, search, p, g_low, g_high_user, 2 * tile, workers)
    mean, a, b, phase_deg = (float(v) for v in p)
    half_astig = math.hypot(a, b)
    angle = math.degrees(0.5 * math.atan2(b, a)) % 180.0
    phase_deg = phase_deg % 180.0 if search.phase_plate else 0.0
    defocus_u, defocus_v = mean + half_astig, mean - half_astig
    params = CtfParameters(defocus_u, defocus_v, angle, phase_deg, search.voltage_kv,
                           search.cs_mm, search.amplitude_contrast)
    score = -neg_score

    # -- 3. equiphase average and confidence resolution -----------------------------------------
    eq = _equiphase(params, grid, normalised, amplitude, background, search, px)
    freqs, eq_data, eq_fit, eq_amp, eq_bg, window_cc = eq
    resolution, rings = _confidence_resolution(params, freqs, eq_fit, window_cc, g_low, search,
                                               tile, px)

    reasons = []
    if score < MIN_SCORE:
        reasons.append(f"score {score:.3f} below {MIN_SCORE}")
    if rings < 2.0:
        reasons.append(f"only {rings:.1f} Thon rings agree with the fit")
    margin = 0.02 * (search.max_defocus_angstrom - search.min_defocus_angstrom)
    if not (search.min_defocus_angstrom + margin <= mean <= search.max_defocus_angstrom - margin):
        reasons.append("defocus at the edge of the searched range")
    return CtfResult(
        defocus_u_angstrom=defocus_u, defocus_v_angstrom=defocus_v,
        astigmatism_angle_degrees=angle, phase_shift_degrees=phase_deg,
        resolution_angstrom=resolution, score=score, fit_ok=not reasons,
        pixel_size_angstrom=px, search=search, failure_reason="; ".join(reasons),
        spectrum=normalised.astype(np.float32), frequencies_per_angstrom=freqs,
        equiphase_average=eq_data, fitted_curve=eq_fit, amplitude_average=eq_amp,
        background_average=eq_bg, fit_cc=window_cc)


def _normalised_spectrum(image: np.ndarray, tile: int, px: float,
                         workers: int) -> tuple[_Grid, np.ndarray, np.ndarray, np.ndarray]:
    """Amplitude spectrum (centred), its box background, and the normalised residual."""
    power = tiled_power_spectrum(image, tile, workers=workers)
    amplitude = _full_centred(np.sqrt(power))
    grid = _grid(tile, px)
    box = max(9, tile // 16) | 1
    background = ndimage.uniform_filter(amplitude, size=box, mode="reflect")
    residual = amplitude - background
    rms = np.sqrt(ndimage.uniform_filter(residual**2, size=box, mode="reflect"))
    floor = max(float(np.median(rms)) * 1e-6, 1e-30)
    normalised = np.clip(residual / np.maximum(rms, floor), -3.0, 3.0)
    normalised[grid.radius_px < 1.5] = 0.0
    return grid, amplitude, background, normalised


def _refine_large_tiles(image: np.ndarray, px: float, search: CtfSearch, p: np.ndarray,
                        g_low: float, g_high_user: float, tile: int, workers: int):
    grid, amplitude, background, normalised = _normalised_spectrum(image, tile, px, workers)
    mean = float(p[0] + math.hypot(p[1], p[2]))
    g_fit = min(g_high_user, _ring_limit_frequency(search, mean * 1.05, tile, px, 3.0))
    sel = grid.half & (grid.g2 >= g_low**2) & (grid.g2 <= g_fit**2)
    data = normalised[sel]
    centred = data - data.mean()
    norm = math.sqrt(float(np.dot(centred, centred)))
    model = _Model(search, grid.g2[sel], grid.cos2a[sel], grid.sin2a[sel])
    n_free = 4 if search.phase_plate else 3

    def cost(q: np.ndarray) -> float:
        phase = math.radians(q[3]) if search.phase_plate else math.radians(p[3])
        return -_pearson(model(q[0], q[1], q[2], phase), centred, norm)

    x0 = np.array(p[:n_free], dtype=np.float64)
    steps = np.array([50.0, 50.0, 50.0, 5.0])[:n_free]
    simplex = np.vstack([x0] + [x0 + np.eye(n_free)[i] * steps[i] for i in range(n_free)])
    res = optimize.minimize(cost, x0, method="Nelder-Mead",
                            options={"initial_simplex": simplex, "xatol": 0.5, "fatol": 1e-7,
                                     "maxiter": 800})
    q = np.append(res.x, p[3]) if not search.phase_plate else res.x
    return float(res.fun), q, g_fit, tile, grid, amplitude, background, normalised


def _largest_even_tile(shape: tuple[int, ...]) -> int:
    size = min(shape)
    return size - size % 2


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


def _coarse_grid(search: CtfSearch, g_high: float) -> tuple[np.ndarray, np.ndarray]:
    lam = electron_wavelength_angstrom(search.voltage_kv)
    # a step that moves the rings at the high-resolution limit by at most 1/8 of a period
    step = max(20.0, min(100.0, 1.0 / (8.0 * lam * g_high**2)))
    defocus = np.arange(search.min_defocus_angstrom, search.max_defocus_angstrom + step, step)
    phases = np.arange(0.0, 180.0, 5.0) if search.phase_plate else np.zeros(1)
    return defocus, phases


def _coarse_search(search: CtfSearch, profile: np.ndarray, g: np.ndarray,
                   defocus: np.ndarray, phases: np.ndarray,
                   limits: np.ndarray) -> list[tuple[float, float]]:
    """The best (defocus, phase shift) pairs of the rotational-average fit, each candidate
    scored over the bins up to its own limit: the top local maxima over defocus (best phase
    for each)."""
    lam = electron_wavelength_angstrom(search.voltage_kv)
    w = amplitude_contrast_phase(search.amplitude_contrast)
    g2 = g * g
    cs_term = 0.5 * math.pi * search.cs_mm * 1e7 * lam**3 * g2 * g2
    mask = (g[None, :] <= limits[:, None]).astype(np.float64)  # (C, B)
    count = np.maximum(mask.sum(axis=1), 2.0)
    p_mean = (mask @ profile) / count
    p_c = (profile[None, :] - p_mean[:, None]) * mask
    p_norm = np.maximum(np.sqrt((p_c**2).sum(axis=1)), 1e-30)
    scores = np.empty((defocus.size, phases.size))
    for j, phase in enumerate(phases):
        chi = (math.pi * lam * defocus[:, None] * g2[None, :] - cs_term[None, :]
               + math.radians(phase) + w)
        model = np.sin(chi) ** 2 * mask
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


def _sector_astigmatism(search: CtfSearch, grid: _Grid, normalised: np.ndarray, mean0: float,
                        phase0: float, g_low: float, g_high: float) -> tuple[float, float]:
    """Defocus in 12 azimuthal sectors fitted with Δf(α) = m + a cos 2α + b sin 2α."""
    k = (np.arange(grid.tile) - grid.tile // 2) * grid.dk
    ky, kx = np.meshgrid(k, k, indexing="ij")
    alpha = np.mod(np.arctan2(ky, kx), math.pi)
    ring = (grid.g2 >= g_low**2) & (grid.g2 <= g_high**2)
    lam = electron_wavelength_angstrom(search.voltage_kv)
    w = amplitude_contrast_phase(search.amplitude_contrast)
    trial = mean0 * np.linspace(0.7, 1.3, 121)
    n_sectors = 12
    angles, estimates = [], []
    for s in range(n_sectors):
        lo, hi = s * math.pi / n_sectors, (s + 1) * math.pi / n_sectors
        sel = ring & (alpha >= lo) & (alpha < hi)
        if sel.sum() < 50:
            continue
        bins = np.rint(grid.radius_px[sel]).astype(np.int64)
        counts = np.bincount(bins)
        sums = np.bincount(bins, weights=normalised[sel])
        valid = counts > 0
        g = np.nonzero(valid)[0] * grid.dk
        prof = sums[valid] / counts[valid]
        prof = prof - prof.mean()
        g2 = g * g
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


def _equiphase(params: CtfParameters, grid: _Grid, normalised: np.ndarray,
               amplitude: np.ndarray, background: np.ndarray, search: CtfSearch,
               px: float) -> tuple[np.ndarray, ...]:
    """1-D equiphase averages (frequency, normalised data, fitted CTF², amplitude, background,
    windowed correlation)."""
    lam = params.wavelength_angstrom
    cs = params.cs_mm * 1e7
    mean = 0.5 * (params.defocus_u_angstrom + params.defocus_v_angstrom)
    half = 0.5 * (params.defocus_u_angstrom - params.defocus_v_angstrom)
    theta = math.radians(params.astigmatism_angle_degrees)
    cos2t, sin2t = math.cos(2 * theta), math.sin(2 * theta)
    defocus = mean + half * (grid.cos2a * cos2t + grid.sin2a * sin2t)
    sel = grid.half & (grid.radius_px > 1.0) & (grid.radius_px <= grid.tile // 2 - 1)
    g2 = grid.g2[sel]
    c = math.pi * lam * defocus[sel] * g2 - 0.5 * math.pi * cs * lam**3 * g2 * g2
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
    counts = np.bincount(bins, minlength=n_bins).astype(np.float64)
    safe = np.maximum(counts, 1)
    eq_data = np.bincount(bins, weights=normalised[sel][keep], minlength=n_bins) / safe
    eq_amp = np.bincount(bins, weights=amplitude[sel][keep], minlength=n_bins) / safe
    eq_bg = np.bincount(bins, weights=background[sel][keep], minlength=n_bins) / safe
    freqs = np.arange(n_bins) * grid.dk
    iso = CtfParameters(mean, mean, 0.0, params.phase_shift_degrees, params.voltage_kv,
                        params.cs_mm, params.amplitude_contrast)
    fit = np.sin(ctf_phase(iso, freqs, np.zeros_like(freqs))) ** 2
    # windowed correlation over about two Thon rings
    dchi = np.abs(2 * math.pi * lam * mean * freqs - 2 * math.pi * cs * lam**3 * freqs**3)
    period_bins = np.where(dchi > 0, math.pi / np.maximum(dchi, 1e-30) / grid.dk, n_bins)
    window_cc = np.zeros(n_bins)
    for i in range(2, n_bins):
        half_w = int(min(max(3, round(period_bins[i])), 40))
        lo, hi = max(1, i - half_w), min(n_bins, i + half_w + 1)
        d = eq_data[lo:hi] - eq_data[lo:hi].mean()
        f = fit[lo:hi] - fit[lo:hi].mean()
        den = math.sqrt(float(np.dot(d, d) * np.dot(f, f)))
        window_cc[i] = float(np.dot(d, f)) / den if den > 0 else 0.0
    return freqs, eq_data, fit, eq_amp, eq_bg, window_cc


def _confidence_resolution(params: CtfParameters, freqs: np.ndarray, fit: np.ndarray,
                           window_cc: np.ndarray, g_low: float, search: CtfSearch, tile: int,
                           px: float) -> tuple[float, float]:
    """Resolution (Å) where the windowed correlation first drops below the threshold, scanning
    up from the low-resolution limit, and the number of Thon rings up to there."""
    mean = 0.5 * (params.defocus_u_angstrom + params.defocus_v_angstrom)
    g_max = min(_ring_limit_frequency(search, params.defocus_u_angstrom, tile, px, 2.0),
                freqs[-1])
    # scan from the first Thon-ring minimum above the low-resolution limit: below it the
    # background subtraction leaves the data unreliable
    lo = int(math.ceil(g_low / freqs[1])) if freqs.size > 1 else 0
    start = lo
    for i in range(lo + 1, freqs.size - 1):
        if fit[i] <= fit[i - 1] and fit[i] <= fit[i + 1]:
            start = i
            break
    lam = params.wavelength_angstrom
    cs = params.cs_mm * 1e7
    dk = freqs[1] if freqs.size > 1 else 1.0
    last_good = start
    i = start
    while i < freqs.size and freqs[i] <= g_max:
        if window_cc[i] < RESOLUTION_CC_THRESHOLD:
            # a dip counts as the end of the fit unless the correlation recovers within the
            # next Thon ring
            slope = abs(2 * math.pi * lam * mean * freqs[i]
                        - 2 * math.pi * cs * lam**3 * freqs[i] ** 3)
            period = int(min(max(3, round(math.pi / max(slope, 1e-30) / dk)), 40))
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


# --------------------------------------------------------------------------------------------
# Diagnostic image
# --------------------------------------------------------------------------------------------


def write_diagnostic_png(result: CtfResult, path: Path) -> None:
    """CTFFIND-style diagnostic: the spectrum with the fitted CTF² in its right half, and
    below it the 1-D equiphase average (black), the fit (red) and the windowed correlation
    (blue), with the confidence resolution marked (green)."""
    from PIL import Image, ImageDraw

    spec = np.asarray(result.spectrum, dtype=np.float64)
    t = spec.shape[0]
    params = result.parameters
    k = (np.arange(t) - t // 2) / (t * result.pixel_size_angstrom)
    ky, kx = np.meshgrid(k, k, indexing="ij")
    model = np.sin(ctf_phase(params, kx, ky)) ** 2
    g = np.sqrt(kx**2 + ky**2)
    smooth = ndimage.gaussian_filter(spec, 1.0)
    lo, hi = np.percentile(smooth[g > 1.0 / result.search.low_resolution_angstrom], [2, 98])
    data8 = np.clip((smooth - lo) / max(hi - lo, 1e-12), 0, 1)
    panel = data8.copy()
    panel[:, t // 2:] = model[:, t // 2:]
    panel[g < 1.0 / result.search.low_resolution_angstrom] = 0.5
    top = Image.fromarray((panel * 255).astype(np.uint8), mode="L").convert("RGB")
    size = 512
    top = top.resize((size, size), Image.Resampling.BILINEAR)
    plot_h = 200
    canvas = Image.new("RGB", (size, size + plot_h), "white")
    canvas.paste(top, (0, 0))
    draw = ImageDraw.Draw(canvas)
    freqs = result.frequencies_per_angstrom
    if freqs.size > 2:
        f_max = freqs[-1]

        def xy(f: float, v: float) -> tuple[float, float]:
            return (8 + (size - 16) * f / f_max, size + plot_h - 10 - (plot_h - 30) * v)

        start = int(np.searchsorted(freqs, 1.0 / result.search.low_resolution_angstrom))
        data = result.equiphase_average[start:]
        if data.size:
            d_lo, d_hi = np.percentile(data, [1, 99])
            scaled = np.clip((data - d_lo) / max(d_hi - d_lo, 1e-12), 0, 1)
            draw.line([xy(f, v) for f, v in zip(freqs[start:], scaled, strict=True)],
                      fill=(0, 0, 0), width=1)
            draw.line([xy(f, v) for f, v in zip(freqs[start:], result.fitted_curve[start:],
                                                 strict=True)], fill=(220, 30, 30), width=1)
            cc = np.clip(result.fit_cc[start:], 0, 1)
            draw.line([xy(f, v) for f, v in zip(freqs[start:], cc, strict=True)],
                      fill=(40, 80, 220), width=1)
        if result.resolution_angstrom > 0:
            x = xy(1.0 / result.resolution_angstrom, 0)[0]
            draw.line([(x, size + 12), (x, size + plot_h - 10)], fill=(30, 160, 30), width=1)
        label = (f"U {result.defocus_u_angstrom:.0f} Å  V {result.defocus_v_angstrom:.0f} Å  "
                 f"angle {result.astigmatism_angle_degrees:.1f}°  phase "
                 f"{result.phase_shift_degrees:.1f}°  res {result.resolution_angstrom:.1f} Å  "
                 f"score {result.score:.3f}  {'ok' if result.fit_ok else 'FAILED'}")
        draw.text((6, size + 2), label, fill=(0, 0, 0))
    canvas.save(path, format="PNG")

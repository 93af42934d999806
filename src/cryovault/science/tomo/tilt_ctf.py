"""CTF per tilt of a tilt series, and the handedness check (issue #10, step 5).

Works on the raw (unaligned, bin 1) stack of kept tilts, the tilt axis at φ through the image
centre. Each tilt's power spectrum is taken in strips parallel to the axis (tilt_spectra.py)
and fitted with the defocus gradient across the tilt included (tilt_ctf_fit.py, the steps in
tilt_ctf_steps.py): at distance d pixels from the axis a series of correct handedness has the
defocus Δf_axis − d tan θ · px.

Tiles are at least MIN_TILE_ANGSTROM wide (the rings must stay resolved out to ~4.5 Å); the
defocus spread inside each strip (a tile spans up to ~1800 Å of defocus at 60°) damps, then
inverts, its rings at high frequency, which the model includes (StripSpectra.envelope).

1. the central tilt (smallest |angle|; the next ones if its fit fails): defocus, astigmatism
   U − V and angle, as ctf.py does (exhaustive search, sector astigmatism, refinement, then
   refinement weighted by the ring contrast);
2. every tilt, with that astigmatism: an exhaustive search of the defocus at the axis within
   ±max(6000 Å, 30%) of the central tilt's, then the defocus and the gradient's slope s fitted
   together (s = +1: the gradient of correct handedness, −1: inverted);
3. handedness: the measured gradient G_i = s_i · x_i with x_i = −tan θ_i · px (Å per pixel
   from the axis) of the tilts with a good fit, regressed through the origin on x_i: the slope
   β and its standard error σ from the scatter (up to two passes dropping tilts beyond 4
   robust sigmas). "correct" when β ≥ 3σ and β ≥ 0.25, "incorrect" when −β ≥ 3σ and
   −β ≥ 0.25, "undetermined" otherwise (fewer than 3 tilts beyond 10°, a flat specimen, too
   little signal);
4. the astigmatism refined jointly on up to ASTIGMATISM_TILTS well-fitted tilts within
   ±ASTIGMATISM_MAX_TILT_DEGREES (each with its own defocus, s at the handedness found) —
   the same lens for every tilt, √k × the central tilt's information; it is reported for
   every tilt;
5. every tilt's defocus refined alone with s fixed at the handedness found (+1 when
   undetermined) and that astigmatism, from step 2's defocus (itself weighted by the ring
   contrast), by the unweighted correlation up to 4 Å (the weights favour the low-frequency
   rings, which carry little of the defocus: the unweighted peak is ~2 × sharper in the
   tests; a second weighted round here changed no defocus by more than 1 Å); the
   confidence resolution (ctf_quality.py) on the strips' spectra stretched onto the rings of
   the axis defocus (tilt_spectra.combined_spectrum). `fit_ok` requires the fit's
   significance (its correlation in standard deviations of the correlation of noise,
   tilt_ctf_steps.significance) ≥ 6 and a defocus inside the searched window (not within
   2% of the searched range of its edges); the significance is also reported as `score`.

Time: at most MAX_TILES tiles per tilt (a subset spread across the axis on large images), so
the cost per tilt does not grow with the detector. Every tilt's strip spectra are computed
once and kept for step 5 in float16 (≤ MAX_STRIPS × tile² × 2 bytes, ~9 MB at 768² tiles:
~0.4 GB for 41 tilts; computing them again would cost ~20% more time).

Information: the rings stand out of the noise in proportion to dose × √area. At the realistic
~3 e⁻/Å² per tilt, tests/science/tomo/test_tilt_ctf.py measures what a given area reaches;
simulated 4096² series at 1.35 Å/px (the benchmark's tilts, 3.2 × the area of the 1536² at
2 Å/px tested; 5 tilts −60…60°) gave |errors| ≤ 37 Å within ±30° and 79-90 Å at ±60°
(handedness +1), ≤ 42 Å at every tilt (handedness −1), astigmatism 421 and 416 Å at 32-33°
(truth 400 Å at 30°).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from cryovault.science.ctf_search import CtfSearch
from cryovault.science.errors import ScienceInputError
from cryovault.science.fourier import fft_workers
from cryovault.science.power_spectrum import SpectrumGrid, ring_limit_frequency
from cryovault.science.threads import run_parallel, single_threaded_blas
from cryovault.science.tomo.tilt_ctf_fit import StripFit
from cryovault.science.tomo.tilt_ctf_steps import (
    MIN_RING_PERIOD_PX,
    MIN_SIGNIFICANCE,
    SCORE_RESOLUTION_ANGSTROM,
    FitLimits,
    fit_central,
    fit_fixed,
    fit_gradient,
    joint_astigmatism,
)
from cryovault.science.tomo.tilt_spectra import StripSpectra, strip_spectra

#: tiles of each tilt's spectrum at most (a subset of large images: the time is then the same
#: for any detector size) and strips of distance to the axis at most
MAX_TILES = 64
MAX_STRIPS = 8
#: the smallest tile side in Å (CtfSearch.tile_size pixels, larger where that is less): Thon
#: rings of defocus Δf at frequency g are 1 / (2λΔf g) apart, so 512 px at 1.35 Å/px resolve
#: those of 4 µm only to ~7 Å, where 1000 Å reach ~4.5 Å (defocus error ÷ 2.5 in the tests)
MIN_TILE_ANGSTROM = 1000.0
#: the per-tilt search window around the central tilt's defocus: ± max(Å, fraction)
WINDOW_ANGSTROM = 6000.0
WINDOW_FRACTION = 0.3
#: handedness: significance (slope / standard error) and smallest |slope| for a decision
HANDEDNESS_SIGMAS = 3.0
HANDEDNESS_MIN_SLOPE = 0.25
#: tilts at least this far from 0° that carry the gradient; at least this many are needed
HANDEDNESS_MIN_TILT_DEGREES = 10.0
HANDEDNESS_MIN_TILTS = 3
#: the astigmatism is refined jointly on up to this many well-fitted tilts nearest 0°, within
#: this angle (their rings reach furthest)
ASTIGMATISM_TILTS = 5
ASTIGMATISM_MAX_TILT_DEGREES = 30.0


@dataclass
class TiltCtfResult:
    """CTF per kept tilt, in input order. Defocus in Å at the tilt axis (positive underfocus);
    the astigmatism (U − V, Å) and its angle (degrees from +x towards +y of the raw image to the
    direction of U) are the central tilt's, for every tilt. `handedness` is "correct",
    "incorrect" or "undetermined"; `handedness_slope` is the measured defocus gradient in units
    of the expected one for correct handedness (≈ +1 correct, ≈ −1 inverted) and
    `handedness_sigma` its standard error (NaN both when no tilt carries a gradient)."""

    defocus_angstrom: np.ndarray
    astigmatism_angstrom: float
    astigmatism_angle_degrees: float
    resolution_angstrom: np.ndarray
    fit_ok: np.ndarray
    handedness: str
    handedness_slope: float
    handedness_sigma: float
    central_index: int
    #: per tilt: the significance of the reported fit (its correlation in standard deviations
    #: of noise's, tilt_ctf_steps.significance) and the gradient's slope s fitted freely (NaN
    #: where the tilt carries no gradient)
    score: np.ndarray
    gradient_slope: np.ndarray

    def defocus_rows(self) -> np.ndarray:
        """(n, 3): defocus U, defocus V (Å) and the astigmatism angle (°) of each tilt."""
        half = 0.5 * self.astigmatism_angstrom
        d = np.asarray(self.defocus_angstrom, dtype=float)
        return np.stack([d + half, d - half, np.full(d.shape, self.astigmatism_angle_degrees)],
                        axis=1)


def estimate_tilt_ctf(stack: np.ndarray, angles_degrees: np.ndarray,
                      pixel_size_angstrom: float, axis_degrees: float, *,
                      search: CtfSearch | None = None,
                      workers: int | None = None) -> TiltCtfResult:
    """CTF per tilt and handedness of a raw stack (n, ny, nx) of kept tilts at
    `angles_degrees` (stage angles), tilt axis at `axis_degrees` (geometry.py). Raises
    ScienceInputError for unusable input (NaN or infinite values are looked for in the tiles
    that are read); a tilt without a usable fit gets fit_ok False."""
    search = search or CtfSearch()
    angles = _check_inputs(stack, angles_degrees, pixel_size_angstrom, axis_degrees, search)
    workers = workers or fft_workers()
    px = float(pixel_size_angstrom)
    n = len(angles)
    smallest = min(stack.shape[1:])
    # tiles of at least MIN_TILE_ANGSTROM: the rings stay resolved out to ~4.5 Å at 4 µm
    tile = max(search.tile_size, 64 * math.ceil(MIN_TILE_ANGSTROM / px / 64))
    tile = int(min(tile, smallest))
    tile -= tile % 2
    grid = SpectrumGrid.of(tile, px)
    lam = search.wavelength_angstrom
    g_low = 1.0 / search.low_resolution_angstrom
    g_high = min(1.0 / search.high_resolution_angstrom, 0.5 / px * 0.95)
    limits = FitLimits(g_low, g_high, min(g_high, 1.0 / SCORE_RESOLUTION_ANGSTROM),
                       ring_limit_frequency(lam, 1.0, tile, px, MIN_RING_PERIOD_PX))

    def spectra(i: int) -> StripSpectra:
        return strip_spectra(stack[i], px, float(angles[i]), axis_degrees, tile, MAX_TILES,
                             MAX_STRIPS, grid)

    with single_threaded_blas():
        order = [int(i) for i in np.argsort(np.abs(angles), kind="stable")]
        cached = {order[0]: spectra(order[0])}
        central_fit, ok = fit_central(search, cached[order[0]], limits)
        central = order[0]
        for i in order[1:3]:  # the next tilts from 0° when the central one has no rings
            if ok:
                break
            cached[i] = spectra(i)
            fit, ok = fit_central(search, cached[i], limits)
            if ok:
                central, central_fit = i, fit
        a, b = central_fit.a, central_fit.b
        if ok:
            window = max(WINDOW_ANGSTROM, WINDOW_FRACTION * central_fit.mean)
            lo = max(search.min_defocus_angstrom, central_fit.mean - window)
            hi = min(search.max_defocus_angstrom, central_fit.mean + window)
        else:
            lo, hi = search.min_defocus_angstrom, search.max_defocus_angstrom

        # every tilt's strips kept for step 5 in float16 (values within ±3: ~1e-3 precision,
        # half the memory of float32)
        kept: dict[int, StripSpectra] = {}

        def spectra_of(i: int) -> StripSpectra:
            if i in cached:
                return cached[i]
            if i in kept:
                return replace(kept[i], normalised=kept[i].normalised.astype(np.float32))
            strips = spectra(i)
            kept[i] = replace(strips, normalised=strips.normalised.astype(np.float16))
            return strips

        def gradients(start: int, stop: int) -> list[StripFit]:
            return [fit_gradient(search, spectra_of(i), limits, a, b, lo, hi)
                    for i in range(start, stop)]

        fits = [f for part in run_parallel(gradients, n, workers) for f in part]

        x = -np.tan(np.radians(angles)) * px
        slopes = np.array([f.slope for f in fits])
        usable = np.array([f.score >= MIN_SIGNIFICANCE for f in fits])
        handedness, beta, sigma = decide_handedness(x, slopes, usable, angles)
        sign = -1 if handedness == "incorrect" else 1
        joint = [int(i) for i in order if usable[i]
                 and abs(angles[i]) <= ASTIGMATISM_MAX_TILT_DEGREES][:ASTIGMATISM_TILTS]
        if ok and len(joint) > 1:
            for i in joint:
                cached[i] = spectra_of(i)
            a, b = joint_astigmatism(search, [cached[i] for i in joint], limits,
                                     [fits[i].mean for i in joint], [sign] * len(joint), a, b)

        def fixed(start: int, stop: int) -> list[tuple[float, float, float]]:
            return [fit_fixed(search, spectra_of(i), limits, fits[i].mean, a, b, sign)
                    for i in range(start, stop)]

        chosen = [c for part in run_parallel(fixed, n, workers) for c in part]

    defocus = np.array([c[0] for c in chosen])
    score = np.array([c[1] for c in chosen])
    resolution = np.array([c[2] for c in chosen])
    margin = 0.02 * (search.max_defocus_angstrom - search.min_defocus_angstrom)
    fit_ok = (score >= MIN_SIGNIFICANCE) & (defocus >= lo + margin) & (defocus <= hi - margin)
    half = math.hypot(a, b)
    return TiltCtfResult(
        defocus_angstrom=defocus, astigmatism_angstrom=2.0 * half,
        astigmatism_angle_degrees=math.degrees(0.5 * math.atan2(b, a)) % 180.0,
        resolution_angstrom=resolution, fit_ok=fit_ok, handedness=handedness,
        handedness_slope=beta, handedness_sigma=sigma, central_index=central, score=score,
        gradient_slope=slopes)


def decide_handedness(x: np.ndarray, slopes: np.ndarray, usable: np.ndarray,
                      angles: np.ndarray) -> tuple[str, float, float]:
    """(verdict, slope β, its standard error σ) from the per-tilt gradient slopes s_i (module
    docstring, step 3): G_i = s_i x_i regressed through the origin on x_i."""
    keep = usable & np.isfinite(slopes)
    informative = keep & (np.abs(angles) >= HANDEDNESS_MIN_TILT_DEGREES)
    if int(informative.sum()) < HANDEDNESS_MIN_TILTS or float((x[keep] ** 2).sum()) <= 0:
        return "undetermined", math.nan, math.nan
    xs, gs = x[keep], slopes[keep] * x[keep]
    for _ in range(2):
        beta = float((gs * xs).sum() / (xs * xs).sum())
        residual = gs - beta * xs
        scale = 1.4826 * float(np.median(np.abs(residual)))
        inlier = np.abs(residual) <= max(4.0 * scale, 1e-12)
        if inlier.all() or inlier.sum() < HANDEDNESS_MIN_TILTS:
            break
        xs, gs = xs[inlier], gs[inlier]
    beta = float((gs * xs).sum() / (xs * xs).sum())
    dof = max(len(xs) - 1, 1)
    sigma = math.sqrt(float(((gs - beta * xs) ** 2).sum()) / dof / float((xs * xs).sum()))
    if abs(beta) >= max(HANDEDNESS_SIGMAS * sigma, HANDEDNESS_MIN_SLOPE):
        return ("correct" if beta > 0 else "incorrect"), beta, sigma
    return "undetermined", beta, sigma


def _check_inputs(stack: np.ndarray, angles_degrees: np.ndarray, pixel_size: float,
                  axis_degrees: float, search: CtfSearch) -> np.ndarray:
    """The angles as floats, after checking everything the estimation relies on."""
    if not isinstance(stack, np.ndarray) or stack.ndim != 3:
        raise ScienceInputError("expected a stack of tilts (n, ny, nx), got "
                                f"{getattr(stack, 'shape', type(stack).__name__)}")
    angles = np.asarray(angles_degrees, dtype=float).reshape(-1)
    if len(angles) != stack.shape[0] or len(angles) == 0:
        raise ScienceInputError(f"{len(angles)} tilt angles for a stack of {stack.shape[0]} "
                                "tilts")
    if not np.isfinite(angles).all() or np.abs(angles).max() >= 89.0:
        raise ScienceInputError("tilt angles must be finite and within ±89°")
    if min(stack.shape[1:]) < 128:
        raise ScienceInputError(f"tilts of {stack.shape[2]}×{stack.shape[1]} pixels are too "
                                "small for CTF estimation (at least 128×128)")
    if not (isinstance(pixel_size, int | float) and math.isfinite(pixel_size)
            and 0.05 <= pixel_size <= 50):
        raise ScienceInputError(f"pixel size {pixel_size!r} Å is not plausible (0.05-50 Å)")
    if not math.isfinite(float(axis_degrees)):
        raise ScienceInputError("the tilt-axis angle must be finite")
    if search.phase_plate:
        raise ScienceInputError("CTF per tilt does not fit a phase-plate shift")
    if not 0 < search.min_defocus_angstrom < search.max_defocus_angstrom:
        raise ScienceInputError("defocus range must be MIN:MAX with 0 < MIN < MAX (Å)")
    if not search.low_resolution_angstrom > search.high_resolution_angstrom > 0:
        raise ScienceInputError("resolution range must be LOW:HIGH in Å with LOW > HIGH > 0")
    if not 0 <= search.amplitude_contrast < 1:
        raise ScienceInputError("amplitude contrast must be in [0, 1)")
    if not (search.voltage_kv > 0 and search.cs_mm >= 0):
        raise ScienceInputError("voltage must be > 0 kV and Cs ≥ 0 mm")
    if search.tile_size < 64:
        raise ScienceInputError("CTF tiles must be at least 64 pixels")
    return angles

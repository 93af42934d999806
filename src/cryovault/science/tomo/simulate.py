"""Simulated tilt series with known truth (tests, benchmarks, the acquisition simulator).

The phantom is a slab of `thickness_nm` (optionally tilted about x by `x_tilt_degrees`) filled
with Gaussian blobs of a few sizes (macromolecules, vesicle-like dense bodies), wider than the
field of view so that tilted views stay filled. Each tilt i, recorded at stage angle θ_i:

1. the blobs are projected analytically at the true tilt θ_i + `y_tilt_degrees` and placed in the
   raw image through the forward model of geometry.py (axis φ + δ_i, magnification m_i, shift
   s_i): a projected phase image (bilinear splatting, then each size's Gaussian in Fourier space);
2. amorphous ice is added: white phase noise whose RMS grows as √(path through the slab),
   the path being thickness / cos θ;
3. the CTF is applied with a defocus that varies across the tilted specimen:
   Δf(r) = Δf_i − h · (r · n) · tan θ_i · pixel size (θ_i the true tilt), with n the axis
   normal (geometry.axis_normal)
   and h = +1 for a series of correct handedness, −1 for an inverted one (the CTF is applied in
   strips along the axis and blended);
4. transmission falls with the path through the slab (exp(−t / (λ cos θ))), then Poisson counts
   at the tilt's dose (e⁻/Å²) — a realistic series has ~3 e⁻/Å² per tilt;
5. bad tilts get their defect: "dark" (1% of the dose), "blank" (no specimen: flat ice only),
   "obstructed" (a grid bar covers ≥ 40% of the image) or "drift" (blurred by 40 Å of motion).

`SimulatedTiltSeries.truth` holds every parameter; `phantom_volume` renders the slab's
density on a grid for comparison with a reconstruction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.fft as sfft

from cryovault.science.ctf_model import CtfParameters, ctf_2d
from cryovault.science.fourier import fft_workers
from cryovault.science.tomo.geometry import (
    axis_normal,
    forward_matrix,
    image_centre,
    project_points,
    rotation_matrix,
)

BAD_KINDS = ("dark", "blank", "obstructed", "drift")


@dataclass(frozen=True)
class Blobs:
    """Phantom blobs in Å relative to the slab's centre: centres (N, 3) [x, y, z], Gaussian
    sigma (N,) and phase weight (N,) (radians × Å², the integral of the projected blob)."""

    centres: np.ndarray
    sigma: np.ndarray
    weight: np.ndarray


@dataclass
class TiltSeriesTruth:
    """Everything the series was made with. Angles in degrees, shifts [x, y] in pixels of the
    stack, defocus in Å at the tilt axis (positive underfocus)."""

    tilt_angles_degrees: np.ndarray  # stage angles as recorded (input order)
    tilt_axis_degrees: float
    x_tilt_degrees: float
    y_tilt_degrees: float  # true tilt = stage angle + y_tilt
    rotation_errors_degrees: np.ndarray  # δ_i
    magnifications: np.ndarray  # m_i
    shifts_px: np.ndarray  # s_i, (n, 2)
    defocus_angstrom: np.ndarray  # at the tilt axis
    astigmatism_angstrom: float  # defocus U − V, the same for all tilts
    astigmatism_angle_degrees: float
    handedness: int  # +1 correct, −1 inverted
    thickness_nm: float
    pixel_size_angstrom: float
    dose_per_tilt: np.ndarray  # e⁻/Å²
    bad_tilts: dict[int, str] = field(default_factory=dict)  # index → kind
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.07

    def ctf(self, index: int) -> CtfParameters:
        """The CTF at the tilt axis of tilt `index`."""
        half = self.astigmatism_angstrom / 2.0
        d = float(self.defocus_angstrom[index])
        return CtfParameters(d + half, d - half, self.astigmatism_angle_degrees, 0.0,
                             self.voltage_kv, self.cs_mm, self.amplitude_contrast)


@dataclass
class SimulatedTiltSeries:
    """A stack (n, ny, nx) of counts (float32) in input order, and its truth."""

    stack: np.ndarray
    truth: TiltSeriesTruth
    blobs: Blobs


@dataclass(frozen=True)
class TiltSeriesSpec:
    """Parameters of `simulate_tilt_series`; defaults are a realistic ±60° series."""

    shape: tuple[int, int] = (512, 512)
    pixel_size_angstrom: float = 5.4
    tilt_angles_degrees: tuple[float, ...] = tuple(np.arange(-60.0, 60.1, 3.0))
    tilt_axis_degrees: float = 85.0
    thickness_nm: float = 150.0
    x_tilt_degrees: float = 0.0
    y_tilt_degrees: float = 0.0
    shift_sigma_px: float = 10.0  # random per-tilt shifts (accumulating stage errors)
    rotation_error_sigma_degrees: float = 0.0
    magnification_sigma: float = 0.0
    defocus_angstrom: float = 40000.0  # at 0°
    defocus_sigma_angstrom: float = 1500.0  # per-tilt focus error
    astigmatism_angstrom: float = 400.0
    astigmatism_angle_degrees: float = 30.0
    handedness: int = 1
    total_dose: float = 120.0  # e⁻/Å² over the series
    bad_tilts: tuple[tuple[int, str], ...] = ()
    #: amorphous ice: RMS phase (radians) of a 1 Å² column per √Å of path through the slab
    #: (random atoms add up as √thickness); 0.0023 gives SPA's 0.04 rad through 30 nm of ice and
    #: 0.09 rad through 150 nm
    ice_phase_rms: float = 0.0023
    blob_density_per_um3: float = 2.0e5
    mean_free_path_nm: float = 350.0
    ctf_strips: int = 8
    seed: int = 0


def make_blobs(spec: TiltSeriesSpec, rng: np.random.Generator) -> Blobs:
    """Blobs filling the slab over the area that any tilt up to the largest angle sees."""
    px = spec.pixel_size_angstrom
    ny, nx = spec.shape
    max_tilt = math.radians(min(75.0, max(abs(a) for a in spec.tilt_angles_degrees) + 5.0))
    half_t = spec.thickness_nm * 10.0 / 2.0
    diag = math.hypot(nx, ny) * px / 2.0
    half_x = (diag / math.cos(max_tilt) + half_t * math.tan(max_tilt)) * 1.05
    half_y = diag * 1.05
    volume_um3 = (2 * half_x) * (2 * half_y) * (2 * half_t) * 1e-12
    n = max(100, int(spec.blob_density_per_um3 * volume_um3))
    centres = rng.uniform([-half_x, -half_y, -half_t], [half_x, half_y, half_t], size=(n, 3))
    kind = rng.random(n)
    # mostly macromolecule-sized blobs, some larger dense bodies
    sigma = np.where(kind < 0.85, rng.uniform(20.0, 45.0, n), rng.uniform(60.0, 120.0, n))
    sigma = np.maximum(sigma, 1.2 * px)
    weight = np.where(kind < 0.85, 2.0, 0.8) * sigma**2 * rng.uniform(0.6, 1.4, n)
    x_tilt = math.radians(spec.x_tilt_degrees)
    if x_tilt:
        c, s = math.cos(x_tilt), math.sin(x_tilt)
        y, z = centres[:, 1].copy(), centres[:, 2].copy()
        centres[:, 1], centres[:, 2] = c * y - s * z, s * y + c * z
    return Blobs(centres, sigma, weight)


def render_projection(blobs: Blobs, shape: tuple[int, int], pixel_size: float, tilt: float,
                      axis: float, magnification: float, shift: np.ndarray) -> np.ndarray:
    """Projected phase (radians) of the blobs at true tilt `tilt`, placed in an image of
    `shape` through m R(axis) and `shift` (pixels)."""
    ny, nx = shape
    uv = project_points(blobs.centres / pixel_size, tilt)
    m = forward_matrix(axis, magnification)
    c = image_centre(shape)
    # written out: a (N, 2) @ (2, 2) product goes through BLAS and is ~10× slower here
    r = np.stack([m[0, 0] * uv[:, 0] + m[0, 1] * uv[:, 1] + shift[0] + c[0],
                  m[1, 0] * uv[:, 0] + m[1, 1] * uv[:, 1] + shift[1] + c[1]], axis=1)
    workers = fft_workers()
    ky = sfft.fftfreq(ny)[:, None]
    kx = sfft.rfftfreq(nx)[None, :]
    g2 = kx**2 + ky**2
    total = np.zeros((ny, nx // 2 + 1), dtype=np.complex128)
    sig_px = blobs.sigma / pixel_size * magnification
    # blobs in groups of similar size, each blurred by its mean size (each blob in one group)
    edges = np.unique(np.quantile(sig_px, np.linspace(0, 1, 7)))
    group = np.clip(np.searchsorted(edges, sig_px, side="right") - 1, 0, max(len(edges) - 2, 0))
    for g in range(max(len(edges) - 1, 1)):
        sel = group == g
        if not sel.any():
            continue
        grid = _splat(r[sel], blobs.weight[sel] / pixel_size**2, shape)
        s = float(sig_px[sel].mean())
        total += sfft.rfft2(grid, workers=workers) * np.exp(-2 * math.pi**2 * s * s * g2)
    return sfft.irfft2(total, s=shape, workers=workers).astype(np.float32)


def _splat(points: np.ndarray, weights: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear splatting of weighted points [x, y] onto a grid (ny, nx); outside points drop."""
    ny, nx = shape
    x0 = np.floor(points[:, 0]).astype(np.int64)
    y0 = np.floor(points[:, 1]).astype(np.int64)
    fx = points[:, 0] - x0
    fy = points[:, 1] - y0
    out = np.zeros(ny * nx)
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                      (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = x0 + dx, y0 + dy
        ok = (xi >= 0) & (xi < nx) & (yi >= 0) & (yi < ny)
        out += np.bincount(yi[ok] * nx + xi[ok], weights=(weights * w)[ok], minlength=ny * nx)
    return out.reshape(ny, nx)


def apply_ctf_gradient(phase: np.ndarray, pixel_size: float, ctf: CtfParameters,
                       axis_degrees: float, gradient_angstrom_per_px: float,
                       strips: int) -> np.ndarray:
    """Weak-phase image 1 + 2 F⁻¹[Φ · CTF] where the defocus changes linearly across the axis
    by `gradient_angstrom_per_px` per pixel along the axis normal (strips blended linearly)."""
    workers = fft_workers()
    ny, nx = phase.shape
    spectrum = sfft.rfft2(phase, workers=workers)
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float32)
    c = image_centre(phase.shape)
    n = axis_normal(axis_degrees)
    dist = (xx - c[0]) * n[0] + (yy - c[1]) * n[1]
    if abs(gradient_angstrom_per_px) * (float(dist.max()) - float(dist.min())) < 1.0 or strips < 2:
        offsets = np.array([0.0])
    else:
        offsets = np.linspace(float(dist.min()), float(dist.max()), strips)
    out = np.zeros(phase.shape, dtype=np.float32)
    weight_sum = np.zeros(phase.shape, dtype=np.float32)
    step = offsets[1] - offsets[0] if len(offsets) > 1 else 1.0
    for off in offsets:
        delta = gradient_angstrom_per_px * off
        p = CtfParameters(ctf.defocus_u_angstrom + delta, ctf.defocus_v_angstrom + delta,
                          ctf.astigmatism_angle_degrees, ctf.phase_shift_degrees, ctf.voltage_kv,
                          ctf.cs_mm, ctf.amplitude_contrast)
        transfer = ctf_2d(p, phase.shape, pixel_size).astype(np.complex64)
        transfer[0, 0] = 0
        filtered = sfft.irfft2(spectrum * transfer, s=phase.shape, workers=workers)
        w = (np.maximum(0.0, 1.0 - np.abs(dist - off) / step) if len(offsets) > 1
             else np.ones_like(dist))
        out += w * filtered
        weight_sum += w
    return (1.0 + 2.0 * out / np.maximum(weight_sum, 1e-6)).astype(np.float32)


def tilt_intensity(phase: np.ndarray, pixel_size: float, ctf: CtfParameters,
                   axis_degrees: float, tilt_degrees: float, thickness_nm: float,
                   rng: np.random.Generator, *, handedness: int = 1,
                   ice_phase_rms: float = TiltSeriesSpec.ice_phase_rms,
                   mean_free_path_nm: float = TiltSeriesSpec.mean_free_path_nm,
                   strips: int = TiltSeriesSpec.ctf_strips) -> np.ndarray:
    """Expected intensity of one tilt relative to the unattenuated beam (float32; it may dip
    below 0 where the weak-phase approximation fails: clip before drawing counts) from the
    specimen's projected phase (radians per pixel, e.g. `render_projection`): steps 2–4 of the
    module docstring as `simulate_tilt_series` does them, without dose, defects or counts —
    amorphous-ice phase noise for the path thickness / cos θ, the CTF with the defocus gradient
    Δf(r) = Δf − h · (r · n) · tan θ · pixel size across the tilt (`ctf` is the defocus at the
    image centre, Å; h = `handedness`) and the slab's transmission exp(−t / (λ cos θ)), θ being
    the specimen's true tilt; cos θ is floored at 0.2. For acquisition simulators that draw
    their own counts; `phase` is not modified."""
    cos_t = max(math.cos(math.radians(tilt_degrees)), 0.2)
    path_angstrom = thickness_nm * 10.0 / cos_t
    noisy = phase + rng.normal(0.0, ice_phase_rms * math.sqrt(path_angstrom) / pixel_size,
                               size=phase.shape).astype(np.float32)
    sign = 1 if handedness >= 0 else -1
    gradient = -sign * math.tan(math.radians(tilt_degrees)) * pixel_size
    image = apply_ctf_gradient(noisy, pixel_size, ctf, axis_degrees, gradient, strips)
    transmission = math.exp(-thickness_nm / (mean_free_path_nm * cos_t))
    return (image * transmission).astype(np.float32)


def _dose_symmetric_order(angles: np.ndarray) -> np.ndarray:
    """Acquisition order of a dose-symmetric scheme: from the angle nearest 0 outward,
    alternating sides in groups of two."""
    start = int(np.argmin(np.abs(angles)))
    pos = [i for i in np.argsort(angles, kind="stable")
           if angles[i] >= angles[start] and i != start]
    neg = [i for i in np.argsort(-angles, kind="stable") if angles[i] < angles[start]]
    order = [start]
    while pos or neg:
        for side in (pos, neg):
            order.extend(side[:2])
            del side[:2]
    return np.array(order)


def simulate_tilt_series(spec: TiltSeriesSpec | None = None, **changes: object
                         ) -> SimulatedTiltSeries:
    """A tilt series from `spec` (or TiltSeriesSpec(**changes)); see the module docstring."""
    if spec is None:
        spec = TiltSeriesSpec(**changes)  # type: ignore[arg-type]
    elif changes:
        raise TypeError("give either spec or keyword changes")
    rng = np.random.default_rng(spec.seed)
    angles = np.asarray(spec.tilt_angles_degrees, dtype=float)
    n = len(angles)
    px = spec.pixel_size_angstrom
    blobs = make_blobs(spec, rng)
    order = _dose_symmetric_order(angles)
    # shifts: a random walk in acquisition order (stage recentring errors), centred
    steps = rng.normal(0.0, spec.shift_sigma_px / math.sqrt(max(n, 1)) * 2.0, size=(n, 2))
    walk = np.cumsum(steps[order], axis=0)
    shifts = np.empty((n, 2))
    shifts[order] = walk
    shifts -= shifts.mean(axis=0)
    shifts += rng.normal(0.0, spec.shift_sigma_px * 0.5, size=(n, 2))
    rot = rng.normal(0.0, spec.rotation_error_sigma_degrees, n)
    mags = 1.0 + rng.normal(0.0, spec.magnification_sigma, n)
    defocus = spec.defocus_angstrom + rng.normal(0.0, spec.defocus_sigma_angstrom, n)
    dose = np.full(n, spec.total_dose / n)
    truth = TiltSeriesTruth(
        tilt_angles_degrees=angles, tilt_axis_degrees=spec.tilt_axis_degrees,
        x_tilt_degrees=spec.x_tilt_degrees, y_tilt_degrees=spec.y_tilt_degrees,
        rotation_errors_degrees=rot, magnifications=mags, shifts_px=shifts,
        defocus_angstrom=defocus, astigmatism_angstrom=spec.astigmatism_angstrom,
        astigmatism_angle_degrees=spec.astigmatism_angle_degrees,
        handedness=1 if spec.handedness >= 0 else -1, thickness_nm=spec.thickness_nm,
        pixel_size_angstrom=px, dose_per_tilt=dose, bad_tilts=dict(spec.bad_tilts))
    for index, kind in spec.bad_tilts:
        if kind not in BAD_KINDS:
            raise ValueError(f"unknown bad-tilt kind {kind!r} (one of {', '.join(BAD_KINDS)})")
        if not 0 <= index < n:
            raise ValueError(f"bad tilt index {index} outside 0..{n - 1}")
    stack = np.empty((n, *spec.shape), dtype=np.float32)
    for i in range(n):
        stack[i] = _simulate_tilt(spec, truth, blobs, i, rng)
    return SimulatedTiltSeries(stack, truth, blobs)


def _simulate_tilt(spec: TiltSeriesSpec, truth: TiltSeriesTruth, blobs: Blobs, i: int,
                   rng: np.random.Generator) -> np.ndarray:
    px = spec.pixel_size_angstrom
    stage = float(truth.tilt_angles_degrees[i])
    tilt = stage + spec.y_tilt_degrees
    kind = truth.bad_tilts.get(i)
    axis = spec.tilt_axis_degrees + float(truth.rotation_errors_degrees[i])
    if kind == "blank":
        phase = np.zeros(spec.shape, dtype=np.float32)
    else:
        phase = render_projection(blobs, spec.shape, px, tilt, axis,
                                  float(truth.magnifications[i]), truth.shifts_px[i])
    image = tilt_intensity(phase, px, truth.ctf(i), axis, tilt, spec.thickness_nm, rng,
                           handedness=truth.handedness, ice_phase_rms=spec.ice_phase_rms,
                           mean_free_path_nm=spec.mean_free_path_nm, strips=spec.ctf_strips)
    if kind == "drift":
        image = _motion_blur(image, 40.0 / px, rng)
    dose = float(truth.dose_per_tilt[i]) * (0.01 if kind == "dark" else 1.0)
    expected = np.maximum(image, 0.0) * dose * px * px
    if kind == "obstructed":
        expected *= _grid_bar_mask(spec.shape, rng)
    return rng.poisson(expected).astype(np.float32)


def _motion_blur(image: np.ndarray, length_px: float, rng: np.random.Generator) -> np.ndarray:
    """The image averaged along a straight motion of `length_px` in a random direction."""
    workers = fft_workers()
    ny, nx = image.shape
    a = rng.uniform(0, math.pi)
    ky = sfft.fftfreq(ny)[:, None]
    kx = sfft.rfftfreq(nx)[None, :]
    arg = math.pi * length_px * (kx * math.cos(a) + ky * math.sin(a))
    kernel = np.sinc(arg / math.pi)
    return sfft.irfft2(sfft.rfft2(image, workers=workers) * kernel, s=image.shape,
                       workers=workers).astype(np.float32)


def _grid_bar_mask(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Transmission of a grid bar entering from one side and covering 40–60% of the image, with
    a slightly blurred straight edge."""
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float32)
    c = image_centre(shape)
    d = rotation_matrix(rng.uniform(0, 360)) @ np.array([1.0, 0.0])
    dist = (xx - c[0]) * d[0] + (yy - c[1]) * d[1]
    cut = np.quantile(dist, rng.uniform(0.4, 0.6))
    edge = max(2.0, 0.01 * max(shape))
    return (0.02 + 0.98 / (1.0 + np.exp((cut - dist) / edge))).astype(np.float32)


def phantom_volume(blobs: Blobs, shape_zyx: tuple[int, int, int],
                   pixel_size: float) -> np.ndarray:
    """The blobs' density (phase per voxel) on a grid (nz, ny, nx) centred on the slab, in the
    reconstruction's frame (tilt axis along y, x tilt included; no y tilt)."""
    nz, ny, nx = shape_zyx
    pts = blobs.centres / pixel_size + np.array([(nx - 1) / 2, (ny - 1) / 2, (nz - 1) / 2])
    keep = ((pts[:, 0] > -8) & (pts[:, 0] < nx + 8) & (pts[:, 1] > -8) & (pts[:, 1] < ny + 8)
            & (pts[:, 2] > -8) & (pts[:, 2] < nz + 8))
    vol = np.zeros(shape_zyx, dtype=np.float32)
    zz = np.arange(nz)[:, None, None]
    yy = np.arange(ny)[None, :, None]
    xx = np.arange(nx)[None, None, :]
    for (x, y, z), s, w in zip(pts[keep], blobs.sigma[keep] / pixel_size,
                               blobs.weight[keep] / pixel_size**2, strict=True):
        r = int(math.ceil(3 * s))
        z0, z1 = max(0, int(z) - r), min(nz, int(z) + r + 2)
        y0, y1 = max(0, int(y) - r), min(ny, int(y) + r + 2)
        x0, x1 = max(0, int(x) - r), min(nx, int(x) + r + 2)
        if z0 >= z1 or y0 >= y1 or x0 >= x1:
            continue
        g = np.exp(-((zz[z0:z1] - z) ** 2 + (yy[:, y0:y1] - y) ** 2 + (xx[..., x0:x1] - x) ** 2)
                   / (2 * s * s))
        vol[z0:z1, y0:y1, x0:x1] += w / (math.sqrt(2 * math.pi) * s) * g
    return vol

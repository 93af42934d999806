"""Simulated micrographs and movies with known truth (tests, benchmarks, demo data).

The specimen is a projected phase image φ (radians): particles made of random atoms (projected
and blurred by an atomic B-factor) embedded in amorphous ice (random atoms too, as a white
Gaussian field with the same blur) whose thickness varies smoothly. The image is formed in the
weak-phase-object approximation, I = 1 + 2 F⁻¹[Φ · CTF · exp(−B g²/4)] with CTF = −sin χ
(ctf.py, amplitude contrast included), and counted with Poisson shot noise at the given dose.

A movie moves that image: frame f shows I(x − d_f − u_f(x)), with d_f a global drift trajectory
(a smooth beam-induced start, a slow linear drift and a small frame-to-frame jitter) and
u_f(x) a smooth local deformation that grows as 1 − exp(−f/τ) (quadratic and sinusoidal terms
of zero mean over the frame). The shift that aligns frame f at x onto frame 0 is therefore
−(d_f + u_f(x)): `MovieTruth.applied_shift_px` gives it in the convention of motion.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from cryovault.science.ctf_model import CtfParameters, ctf_2d
from cryovault.science.fourier import fft_workers


@dataclass(frozen=True)
class Specimen:
    """What lies on the grid, in physical units."""

    particle_radius_angstrom: float = 60.0
    particle_fraction: float = 0.3  # of the area covered by particles
    atoms_per_cubic_angstrom: float = 0.05
    particle_contrast_radians: float = 0.15  # phase through the centre of a particle
    ice_noise_radians: float = 0.04  # RMS phase of amorphous ice per pixel at 1 Å
    thickness_variation_radians: float = 0.3  # RMS of the slow ice-thickness variation
    thickness_correlation_angstrom: float = 400.0
    #: relative RMS of the intensity lost to inelastic scattering (energy filter) where the ice
    #: is thicker or thinner, and its correlation length: the low-resolution amplitude contrast
    #: that real movies are aligned on
    absorption_contrast: float = 0.05
    absorption_correlation_angstrom: float = 60.0
    atom_b_factor_angstrom2: float = 20.0


def specimen_phase(shape: tuple[int, int], pixel_size_angstrom: float,
                   rng: np.random.Generator, specimen: Specimen | None = None) -> np.ndarray:
    """Projected phase (radians, mean 0) of particles in ice, float32 of `shape`."""
    spec = specimen or Specimen()
    ny, nx = shape
    px = pixel_size_angstrom
    flat = np.zeros(ny * nx, dtype=np.float64)
    radius_px = spec.particle_radius_angstrom / px
    area = ny * nx
    n_particles = int(spec.particle_fraction * area / (math.pi * radius_px**2))
    atoms_per_particle = int(4 / 3 * math.pi * spec.particle_radius_angstrom**3
                             * spec.atoms_per_cubic_angstrom)
    # phase per atom so that a column through the centre carries particle_contrast_radians
    atoms_per_centre_column = 2 * spec.particle_radius_angstrom * spec.atoms_per_cubic_angstrom
    phase_per_atom = spec.particle_contrast_radians / atoms_per_centre_column * px**2
    batch = max(1, 2_000_000 // max(atoms_per_particle, 1))
    for start in range(0, n_particles, batch):
        count = min(batch, n_particles - start)
        centres = rng.uniform([0, 0], [ny, nx], size=(count, 2))
        directions = rng.normal(size=(count, atoms_per_particle, 3))
        directions /= np.linalg.norm(directions, axis=2, keepdims=True)
        radii = radius_px * rng.random((count, atoms_per_particle, 1)) ** (1 / 3)
        points = directions[..., :2] * radii + centres[:, None, :]
        iy = np.clip(np.rint(points[..., 0]).astype(np.int64), 0, ny - 1)
        ix = np.clip(np.rint(points[..., 1]).astype(np.int64), 0, nx - 1)
        flat += np.bincount((iy * nx + ix).ravel(), minlength=area)
    phase = flat.reshape(ny, nx) * phase_per_atom
    phase += rng.normal(0.0, spec.ice_noise_radians / px, size=(ny, nx))
    workers = fft_workers()
    spectrum = sfft.rfft2(phase.astype(np.float32), workers=workers)
    ky = sfft.fftfreq(ny, d=px)[:, None]
    kx = sfft.rfftfreq(nx, d=px)[None, :]
    g2 = kx**2 + ky**2
    spectrum *= np.exp(-spec.atom_b_factor_angstrom2 * g2 / 4).astype(np.float32)
    # slow thickness variation: a Gaussian random field
    sigma = spec.thickness_correlation_angstrom
    slow = rng.normal(size=(ny, nx)).astype(np.float32)
    slow_spec = sfft.rfft2(slow, workers=workers) * np.exp(
        -2 * math.pi**2 * sigma**2 * g2).astype(np.float32)
    slow = sfft.irfft2(slow_spec, s=(ny, nx), workers=workers)
    slow *= spec.thickness_variation_radians / max(float(slow.std()), 1e-12)
    phase = sfft.irfft2(spectrum, s=(ny, nx), workers=workers) + slow
    phase -= phase.mean()
    return phase.astype(np.float32)


def absorption(shape: tuple[int, int], pixel_size_angstrom: float, rng: np.random.Generator,
               specimen: Specimen | None = None) -> np.ndarray:
    """Multiplicative transmission 1 + δ(x) of mean 1: a Gaussian random field of relative RMS
    `absorption_contrast` (float32)."""
    spec = specimen or Specimen()
    ny, nx = shape
    px = pixel_size_angstrom
    workers = fft_workers()
    ky = sfft.fftfreq(ny, d=px)[:, None]
    kx = sfft.rfftfreq(nx, d=px)[None, :]
    g2 = kx**2 + ky**2
    sigma = spec.absorption_correlation_angstrom
    noise = sfft.rfft2(rng.normal(size=shape).astype(np.float32), workers=workers)
    noise *= np.exp(-2 * math.pi**2 * sigma**2 * g2).astype(np.float32)
    field_ = sfft.irfft2(noise, s=shape, workers=workers)
    # Centred before scaling: on an image not much larger than the correlation length the
    # field's mean is far from 0 and 1 + δ would otherwise go negative.
    field_ -= field_.mean()
    field_ *= spec.absorption_contrast / max(float(field_.std()), 1e-12)
    return (1.0 + field_).astype(np.float32)


def ctf_image(phase: np.ndarray, pixel_size_angstrom: float, ctf: CtfParameters) -> np.ndarray:
    """Weak-phase-object image 1 + 2 F⁻¹[Φ · CTF · envelope] (float32, mean 1, ≥ 0)."""
    workers = fft_workers()
    spectrum = sfft.rfft2(phase, workers=workers)
    transfer = ctf_2d(ctf, phase.shape, pixel_size_angstrom).astype(np.float32)
    spectrum *= transfer
    spectrum[0, 0] = 0
    image = 1.0 + 2.0 * sfft.irfft2(spectrum, s=phase.shape, workers=workers)
    return np.maximum(image, 0.0).astype(np.float32)


@dataclass
class SimulatedMicrograph:
    """A counted micrograph and the CTF it was made with."""

    image: np.ndarray  # counts per pixel, float32
    pixel_size_angstrom: float
    ctf: CtfParameters
    dose_e_per_angstrom2: float


def simulate_micrograph(shape: tuple[int, int], pixel_size_angstrom: float,
                        ctf: CtfParameters, *, dose_e_per_angstrom2: float = 40.0,
                        seed: int = 0, specimen: Specimen | None = None) -> SimulatedMicrograph:
    """A micrograph of particles in ice through `ctf` with Poisson noise at the given dose."""
    rng = np.random.default_rng(seed)
    phase = specimen_phase(shape, pixel_size_angstrom, rng, specimen)
    image = ctf_image(phase, pixel_size_angstrom, ctf)
    image *= absorption(shape, pixel_size_angstrom, rng, specimen)
    expected = image * dose_e_per_angstrom2 * pixel_size_angstrom**2
    counts = rng.poisson(expected).astype(np.float32)
    return SimulatedMicrograph(counts, pixel_size_angstrom, ctf, dose_e_per_angstrom2)


# --------------------------------------------------------------------------------------------
# Movies
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MotionModel:
    """Parameters of the simulated motion, in pixels and frames."""

    initial_jump_px: float = 6.0  # beam-induced motion at the start, reached as 1 − e^(−f/τ)
    initial_tau_frames: float = 4.0
    drift_px_per_frame: float = 0.3  # slow stage drift
    jitter_px: float = 0.05  # RMS frame-to-frame random-walk step
    local_amplitude_px: float = 1.5  # size of the local deformation at its full extent
    local_tau_frames: float = 6.0


@dataclass
class MovieTruth:
    """Ground truth of a simulated movie."""

    shape: tuple[int, int]
    drift_px: np.ndarray  # (n, 2) [x, y] global displacement of the content in each frame
    local_coefficients: np.ndarray = field(repr=False)  # (2, 3) deformation field coefficients
    local_growth: np.ndarray = field(repr=False)  # (n,) 1 − exp(−f/τ)

    def local_displacement_px(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(n, ..., 2) local displacement u_f at pixel positions (x, y)."""
        ny, nx = self.shape
        xt = 2.0 * np.asarray(x, dtype=np.float64) / max(nx - 1, 1) - 1.0
        yt = 2.0 * np.asarray(y, dtype=np.float64) / max(ny - 1, 1) - 1.0
        cx, cy = self.local_coefficients
        ux = cx[0] * (xt**2 - 1 / 3) + cx[1] * xt * yt + cx[2] * np.sin(0.5 * math.pi * yt)
        uy = cy[0] * (yt**2 - 1 / 3) + cy[1] * xt * yt + cy[2] * np.sin(0.5 * math.pi * xt)
        field_xy = np.stack([ux, uy], axis=-1)
        growth = self.local_growth.reshape((-1,) + (1,) * field_xy.ndim)
        return growth * field_xy[None]

    @property
    def applied_shifts_px(self) -> np.ndarray:
        """(n, 2) the global shift that aligns each frame onto frame 0 (motion.py's
        convention): −d_f (the local field has zero mean over the frame)."""
        return -(self.drift_px - self.drift_px[0])

    def applied_shift_in_box_px(self, centre: tuple[float, float],
                                size: tuple[float, float]) -> np.ndarray:
        """(n, 2) the applied shift averaged over a box (what a patch measures)."""
        xs = centre[0] + np.linspace(-0.5, 0.5, 9) * size[0]
        ys = centre[1] + np.linspace(-0.5, 0.5, 9) * size[1]
        gx, gy = np.meshgrid(xs, ys)
        local = self.local_displacement_px(gx.ravel(), gy.ravel()).mean(axis=1)
        total = self.drift_px + local
        return -(total - total[0])

    def applied_shift_px(self, x: float, y: float) -> np.ndarray:
        """(n, 2) the shift that aligns the neighbourhood of (x, y) in each frame onto frame 0."""
        local = self.local_displacement_px(np.asarray(x), np.asarray(y))
        total = self.drift_px + local
        return -(total - total[0])


@dataclass
class SimulatedMovie:
    """Frames of counts (uint16, n × ny × nx) and their truth."""

    frames: np.ndarray
    pixel_size_angstrom: float
    dose_per_frame_e_per_angstrom2: float
    truth: MovieTruth
    ctf: CtfParameters
    #: the gain reference that corrects the frames (counts × gain), or None
    gain: np.ndarray | None = None


def simulate_trajectory(n_frames: int, rng: np.random.Generator,
                        motion: MotionModel) -> np.ndarray:
    """(n, 2) global displacement [x, y] of the content, 0 in frame 0."""
    f = np.arange(n_frames, dtype=np.float64)
    angle = rng.uniform(0, 2 * math.pi)
    jump = motion.initial_jump_px * (1 - np.exp(-f / motion.initial_tau_frames))
    drift_angle = angle + rng.uniform(-1.0, 1.0)
    trajectory = np.stack([jump * math.cos(angle) + motion.drift_px_per_frame * f
                           * math.cos(drift_angle),
                           jump * math.sin(angle) + motion.drift_px_per_frame * f
                           * math.sin(drift_angle)], axis=1)
    steps = rng.normal(0.0, motion.jitter_px, size=(n_frames, 2))
    steps[0] = 0
    trajectory += np.cumsum(steps, axis=0)
    return trajectory - trajectory[0]


def simulate_movie(shape: tuple[int, int], n_frames: int, *, pixel_size_angstrom: float = 1.0,
                   dose_per_frame: float = 1.0, ctf: CtfParameters | None = None,
                   motion: MotionModel | None = None, seed: int = 0,
                   gain_variation: float = 0.0, hot_pixels: int = 0,
                   specimen: Specimen | None = None) -> SimulatedMovie:
    """A movie of `n_frames` frames of `shape` with Poisson counts at `dose_per_frame` e⁻/Å².

    With `gain_variation` > 0 each pixel's sensitivity varies by that relative RMS and
    `SimulatedMovie.gain` is the reference that corrects it; `hot_pixels` pixels count 50×
    the mean in every frame."""
    rng = np.random.default_rng(seed)
    motion = motion or MotionModel()
    ctf = ctf or CtfParameters(15000.0, 14000.0, 30.0)
    ny, nx = shape
    drift = simulate_trajectory(n_frames, rng, motion)
    coefficients = rng.uniform(-1.0, 1.0, size=(2, 3))
    coefficients *= motion.local_amplitude_px / max(np.abs(coefficients).sum(axis=1).max(), 1e-9)
    growth = 1 - np.exp(-np.arange(n_frames) / motion.local_tau_frames)
    truth = MovieTruth((ny, nx), drift, coefficients, growth)
    margin = int(np.ceil(np.abs(drift).max() + motion.local_amplitude_px * 2 + 8))
    big = (ny + 2 * margin, nx + 2 * margin)
    image = ctf_image(specimen_phase(big, pixel_size_angstrom, rng, specimen),
                      pixel_size_angstrom, ctf)
    image *= absorption(big, pixel_size_angstrom, rng, specimen)
    expected_per_px = dose_per_frame * pixel_size_angstrom**2
    sensitivity = None
    gain = None
    if gain_variation > 0:
        sensitivity = np.clip(1 + rng.normal(0, gain_variation, size=shape), 0.5, 1.5)
        # make the pattern non-symmetric so that a flipped or rotated reference is detectable
        sensitivity[:, : nx // 3] *= 1.1
        sensitivity[: ny // 4] *= 0.9
        gain = (1.0 / sensitivity).astype(np.float32)
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float32)
    frames = np.empty((n_frames, ny, nx), dtype=np.uint16)
    local_full = truth.local_displacement_px(xx[None, :: 8, :: 8], yy[None, :: 8, :: 8])[:, 0]
    for f in range(n_frames):
        # content displaced by d + u: sample the static image at x − d − u
        local = _upsample_field(local_full[f], (ny, nx))
        sx = xx - drift[f, 0] - local[..., 0] + margin
        sy = yy - drift[f, 1] - local[..., 1] + margin
        frame = ndimage.map_coordinates(image, [sy, sx], order=1, mode="reflect")
        rate = frame * expected_per_px
        if sensitivity is not None:
            rate = rate * sensitivity
        counts = rng.poisson(rate)
        if hot_pixels:
            hot_rng = np.random.default_rng(seed + 99991)
            idx = hot_rng.choice(ny * nx, size=hot_pixels, replace=False)
            counts.reshape(-1)[idx] = max(50 * expected_per_px, 20)
        frames[f] = counts
    return SimulatedMovie(frames, pixel_size_angstrom, dose_per_frame, truth, ctf, gain)


def _upsample_field(coarse: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of a (ny/8, nx/8, 2) field sampled every 8 pixels."""
    ny, nx = shape
    cy, cx = coarse.shape[:2]
    gy = np.minimum(np.arange(ny) / 8.0, cy - 1)
    gx = np.minimum(np.arange(nx) / 8.0, cx - 1)
    out = np.empty((ny, nx, 2), dtype=np.float32)
    for c in range(2):
        y0 = np.floor(gy).astype(int)
        x0 = np.floor(gx).astype(int)
        y1 = np.minimum(y0 + 1, cy - 1)
        x1 = np.minimum(x0 + 1, cx - 1)
        wy = (gy - y0)[:, None]
        wx = (gx - x0)[None, :]
        v = coarse[..., c]
        out[..., c] = ((1 - wy) * ((1 - wx) * v[y0][:, x0] + wx * v[y0][:, x1])
                       + wy * ((1 - wx) * v[y1][:, x0] + wx * v[y1][:, x1]))
    return out


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------


def write_mrc_movie(path: Path, frames: np.ndarray, pixel_size_angstrom: float) -> None:
    """An MRC stack (mode 6, uint16 counts; float32 frames as mode 2)."""
    import mrcfile

    data = frames if frames.dtype in (np.uint16, np.float32) else frames.astype(np.float32)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = pixel_size_angstrom
        mrc.header.ispg = 0  # an image stack, not a volume


def write_tiff_movie(path: Path, frames: np.ndarray, *, compression: str = "lzw") -> None:
    """One TIFF page per frame (uint8 when counts allow, else uint16), LZW or deflate."""
    import tifffile

    data = frames.astype(np.uint8) if frames.max() < 256 else frames.astype(np.uint16)
    codec = {"lzw": "lzw", "deflate": "zlib", "zlib": "zlib", "none": None}[compression]
    with tifffile.TiffWriter(path) as tif:
        for frame in data:
            tif.write(frame, compression=codec, contiguous=False)


def write_eer_movie(path: Path, movie: SimulatedMovie, *, eer_frames_per_fraction: int = 10,
                    seed: int = 0) -> int:
    """Spread each frame's counts over `eer_frames_per_fraction` EER frames (a pixel with c
    counts gets one event in c consecutive EER frames from a random start, so that grouping by
    `eer_frames_per_fraction` gives the frames back exactly; counts above that are clipped),
    with random sub-pixel codes, and write an EER file with science/eer_io.py. Returns the
    number of EER frames."""
    from cryovault.science.eer_io import EerEvents, write_eer

    rng = np.random.default_rng(seed)
    n, ny, nx = movie.frames.shape
    k = eer_frames_per_fraction

    def events():
        for f in range(n):
            counts = np.minimum(movie.frames[f].ravel(), k).astype(np.int16)
            start = rng.integers(0, k, size=counts.size, dtype=np.int16)
            for s in range(k):
                positions = np.flatnonzero((s - start) % k < counts)
                yield EerEvents(positions, rng.integers(0, 16, positions.size))

    write_eer(path, events(), width=nx, height=ny, n_frames=n * k,
              dose_per_frame_e_per_pixel=movie.dose_per_frame_e_per_angstrom2
              * movie.pixel_size_angstrom**2 / k)
    return n * k

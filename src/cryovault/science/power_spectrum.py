"""The power spectrum of a micrograph as CTF estimation sees it.

1. the mean periodogram of overlapping tiles (step tile/2, Tukey edge taper, each tile's mean
   removed), computed once, a row of tiles at a time;
2. its square root (the amplitude spectrum) as a centred full plane;
3. the background (a box average wider than a Thon ring) subtracted, and the result divided by
   its local RMS so that every ring weighs the same, clipped at ±3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from cryovault.science.fourier import fft_workers, tukey


def tiled_power_spectrum(image: np.ndarray, tile_size: int, *,
                         workers: int | None = None) -> np.ndarray:
    """Mean periodogram of overlapping tiles (step tile/2, Tukey edge taper, each tile's mean
    removed), in the layout of `rfft2` of one tile: shape (tile, tile // 2 + 1)."""
    workers = workers or fft_workers()
    img = np.asarray(image, dtype=np.float32)
    step = tile_size // 2
    windows = sliding_window_view(img, (tile_size, tile_size))[::step, ::step]
    n_rows, n_cols = windows.shape[:2]
    taper = np.outer(tukey(tile_size, 0.2), tukey(tile_size, 0.2)).astype(np.float32)
    total = np.zeros((tile_size, tile_size // 2 + 1), dtype=np.float64)
    row = np.empty((n_cols, tile_size, tile_size), dtype=np.float32)
    for i in range(n_rows):
        row[...] = windows[i]
        row -= row.mean(axis=(1, 2), keepdims=True)
        row *= taper
        spectra = sfft.rfft2(row, workers=workers)
        power = spectra.real**2
        power += spectra.imag**2
        total += power.sum(axis=0)
    return total / max(n_rows * n_cols, 1)


def full_centred(half: np.ndarray) -> np.ndarray:
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
class SpectrumGrid:
    """Frequency geometry of a centred tile × tile spectrum of pixels of `pixel_size` Å."""

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

    @classmethod
    def of(cls, tile: int, pixel_size: float) -> SpectrumGrid:
        k = (np.arange(tile) - tile // 2) / (tile * pixel_size)
        ky, kx = np.meshgrid(k, k, indexing="ij")
        g2 = kx**2 + ky**2
        alpha = np.arctan2(ky, kx)
        half = (kx > 0) | ((kx == 0) & (ky > 0))
        return cls(tile, pixel_size, g2, np.sqrt(g2) * tile * pixel_size, np.cos(2 * alpha),
                   np.sin(2 * alpha), half)


@dataclass
class NormalisedSpectrum:
    """A micrograph's spectrum: the grid, the amplitude spectrum and its background, and the
    normalised residual that the fit works on (all centred, tile × tile)."""

    grid: SpectrumGrid
    amplitude: np.ndarray
    background: np.ndarray
    normalised: np.ndarray

    @property
    def tile(self) -> int:
        return self.grid.tile


def normalised_spectrum(image: np.ndarray, tile: int, pixel_size: float,
                        workers: int) -> NormalisedSpectrum:
    """Amplitude spectrum (centred), its box background, and the normalised residual."""
    power = tiled_power_spectrum(image, tile, workers=workers)
    amplitude = full_centred(np.sqrt(power))
    grid = SpectrumGrid.of(tile, pixel_size)
    box = max(9, tile // 16) | 1
    background = ndimage.uniform_filter(amplitude, size=box, mode="reflect")
    residual = amplitude - background
    rms = np.sqrt(ndimage.uniform_filter(residual**2, size=box, mode="reflect"))
    floor = max(float(np.median(rms)) * 1e-6, 1e-30)
    normalised = np.clip(residual / np.maximum(rms, floor), -3.0, 3.0)
    normalised[grid.radius_px < 1.5] = 0.0
    return NormalisedSpectrum(grid, amplitude, background, normalised)


def tile_size_for(shape: tuple[int, ...], preferred: int) -> int:
    """Tiles of `preferred` pixels, twice that when the image holds at least 4 × 4 of them
    (finer Thon rings stay resolved at high defocus), never larger than the image (even)."""
    smallest = min(shape)
    tile = 2 * preferred if smallest >= 4 * preferred else preferred
    tile = min(tile, smallest - smallest % 2)
    return int(tile)


def ring_limit_frequency(wavelength_angstrom: float, defocus: float, tile: int,
                         pixel_size: float, min_period_px: float) -> float:
    """Highest frequency (1/Å) at which Thon rings of `defocus` are at least `min_period_px`
    spectrum pixels apart (period of sin² χ = π / |dχ/dg|, dχ/dg ≈ 2πλΔf g: the Cs term only
    lowers it at these frequencies)."""
    dk = 1.0 / (tile * pixel_size)
    return 1.0 / (2.0 * wavelength_angstrom * max(defocus, 1.0) * min_period_px * dk)


def radial_profile(values: np.ndarray, radius_px: np.ndarray,
                   select: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(radii in spectrum pixels, mean of `values`) over the selected pixels, by rounded
    radius; only radii that hold pixels."""
    bins = np.rint(radius_px[select]).astype(np.int64)
    counts = np.bincount(bins)
    sums = np.bincount(bins, weights=values[select])
    valid = counts > 0
    return np.nonzero(valid)[0].astype(np.float64), sums[valid] / counts[valid]


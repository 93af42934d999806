"""Dose weighting and the aligned sums of a movie (Grant & Grigorieff 2015).

The aligned sum is Σ_f F_f · e^(−2πi g·s_f) and the dose-weighted sum
Σ_f q_f F_f · e^(−2πi g·s_f) · √(n / Σ_f q_f²), with the exposure filter
q_f(g) = exp(−N_f / 2N_e(g)), N_e(g) = 0.245 g^−1.665 + 2.81 e⁻/Å² (× 0.8 at 200 kV) and N_f the
cumulative exposure at the middle of frame f. The normalisation keeps the noise power of the
plain sum. `--bin` crops both in Fourier space (a binned pixel holds the counts of B × B pixels).

`SumAccumulator` adds one frame's spectrum at a time to both sums, a band of rows at a time so
that the frame's row of the phase ramp, the filter and both sums stay in the CPU cache; bands run
in threads. q_f is kept as one array multiplied by q_step = exp(−dose / 2N_e) per frame (no
exponential per frame), and Σ q_f² is a geometric series.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from cryovault.science.fourier import crop_spectrum, frequencies, phase_factors
from cryovault.science.threads import run_parallel

#: rows of the spectrum processed at a time
ROW_BAND = 64


def critical_exposure(g_per_angstrom: np.ndarray, voltage_kv: float = 300.0) -> np.ndarray:
    """N_e(g) = 0.245 g^−1.665 + 2.81 e⁻/Å² (Grant & Grigorieff 2015, 300 kV; × 0.8 at 200 kV,
    interpolated linearly in between)."""
    g = np.maximum(np.asarray(g_per_angstrom, dtype=np.float64), 1e-6)
    scale = 1.0 if voltage_kv >= 300 else max(0.8, 0.8 + 0.2 * (voltage_kv - 200) / 100)
    return (0.245 * g ** -1.665 + 2.81) * scale


def exposure_filter(g_per_angstrom: np.ndarray, exposure_e_per_angstrom2: float,
                    voltage_kv: float = 300.0) -> np.ndarray:
    """q(g, N) = exp(−N / 2 N_e(g))."""
    return np.exp(-exposure_e_per_angstrom2 / (2.0 * critical_exposure(g_per_angstrom,
                                                                        voltage_kv)))


def output_shape(full_shape: tuple[int, int], binning: int) -> tuple[int, int]:
    """Even size of the sums after Fourier binning by `binning`."""
    ny, nx = full_shape
    oy, ox = ny // binning, nx // binning
    return oy - oy % 2, ox - ox % 2


class SumAccumulator:
    """The aligned and dose-weighted sums of frames given one spectrum at a time, in order."""

    def __init__(self, n_frames: int, full_shape: tuple[int, int], pixel_size_angstrom: float,
                 dose_per_frame: float, *, binning: int = 1, voltage_kv: float = 300.0,
                 pre_exposure: float = 0.0, workers: int = 1) -> None:
        self.n_frames = n_frames
        self.full_shape = full_shape
        self.shape = output_shape(full_shape, binning)
        self.pixel_size = pixel_size_angstrom
        self.binning = binning
        self.workers = workers
        self.fy, self.fx = frequencies(self.shape, full_shape)
        # float32 throughout: these are 8-million-pixel arrays at 4K, and a filter needs no more
        g = np.sqrt((self.fy[:, None] ** 2).astype(np.float32)
                    + (self.fx[None, :] ** 2).astype(np.float32)) / np.float32(
                        pixel_size_angstrom)
        g[0, 0] = 1e-6
        scale = 1.0 if voltage_kv >= 300 else max(0.8, 0.8 + 0.2 * (voltage_kv - 200) / 100)
        inv_ne = np.float32(1.0 / scale) / (np.float32(0.245) * g ** np.float32(-1.665)
                                            + np.float32(2.81))
        half_dose = np.float32(0.5 * dose_per_frame)
        first = (np.float32(pre_exposure) + half_dose) * inv_ne
        self.q = np.exp(-first / 2)
        self.q_step = np.exp(-half_dose * inv_ne)
        # Σ_f q_f² = e^(−first) (1 − r^n) / (1 − r), r = q_step²
        ratio = self.q_step.astype(np.float64) ** 2
        with np.errstate(invalid="ignore", divide="ignore"):
            series = np.where(ratio < 1 - 1e-6, (1 - ratio**n_frames) / (1 - ratio), n_frames)
        q2 = np.exp(-first.astype(np.float64)) * series
        self.norm = np.sqrt(n_frames / np.maximum(q2, 1e-30)).astype(np.float32)
        self.plain = np.zeros((self.shape[0], self.shape[1] // 2 + 1), dtype=np.complex64)
        self.weighted = np.zeros_like(self.plain)
        self.added = 0

    def add(self, spectrum: np.ndarray, shift_xy: np.ndarray) -> None:
        """Add the next frame: its rfft2 spectrum (full size, or already cropped to the output
        size) and the shift [x, y] applied to it, in original pixels."""
        if spectrum.shape != self.plain.shape:
            spectrum = crop_spectrum(spectrum, self.shape)
        row_phase = phase_factors(self.fy, shift_xy[1])
        col_phase = phase_factors(self.fx, shift_xy[0])

        def band(start: int, stop: int) -> None:
            for r0 in range(start, stop, ROW_BAND):
                r1 = min(stop, r0 + ROW_BAND)
                shifted = spectrum[r0:r1] * col_phase
                shifted *= row_phase[r0:r1, None]
                self.plain[r0:r1] += shifted
                shifted *= self.q[r0:r1]
                self.weighted[r0:r1] += shifted
                self.q[r0:r1] *= self.q_step[r0:r1]

        run_parallel(band, self.plain.shape[0], self.workers)
        self.added += 1

    def sums(self) -> tuple[np.ndarray, np.ndarray]:
        """(aligned sum, dose-weighted sum) as float32 images of the output size."""
        if self.added != self.n_frames:
            raise RuntimeError(f"{self.added} frames added, {self.n_frames} expected")
        self.weighted *= self.norm
        aligned = sfft.irfft2(self.plain, s=self.shape, workers=self.workers)
        weighted = sfft.irfft2(self.weighted, s=self.shape, workers=self.workers)
        return aligned.astype(np.float32, copy=False), weighted.astype(np.float32, copy=False)

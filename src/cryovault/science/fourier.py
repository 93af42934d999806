"""Fourier-space helpers shared by motion correction, CTF estimation and the simulator.

Spectra are `scipy.fft.rfft2` half-planes: an image of (ny, nx) pixels has a spectrum of
(ny, nx // 2 + 1) complex values, rows in `fftfreq` order. "Cropping" a spectrum keeps its
low-frequency block, which is the spectrum of the image Fourier-binned to fewer pixels over the
same field of view.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.fft as sfft


def fft_workers() -> int:
    """Threads for scipy.fft: CRYOVAULT_FFT_WORKERS, else the CPUs this process may use."""
    env = os.environ.get("CRYOVAULT_FFT_WORKERS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def crop_spectrum(spectrum: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The low-frequency (my, mx//2+1) block of rfft2 spectra (..., ny, nx//2+1); my even."""
    my, mx = shape
    ny = spectrum.shape[-2]
    out = np.empty(spectrum.shape[:-2] + (my, mx // 2 + 1), dtype=spectrum.dtype)
    out[..., : my // 2, :] = spectrum[..., : my // 2, : mx // 2 + 1]
    out[..., my // 2:, :] = spectrum[..., ny - my // 2:, : mx // 2 + 1]
    return out


def frequencies(shape: tuple[int, int],
                full_shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(fy, fx) of the rfft2 grid of an image of `shape`, in cycles per pixel of `full_shape`
    (the image before Fourier cropping; default `shape` itself)."""
    my, mx = shape
    ny, nx = full_shape or shape
    fy = sfft.fftfreq(my) * (my / ny)
    fx = np.arange(mx // 2 + 1) / nx
    return fy, fx


def phase_factors(frequency: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """exp(−2πi f s) for every shift (any shape) and frequency: shape shift.shape + (len(f),),
    complex64. Multiplying a spectrum by it along that axis moves the content by +s."""
    angle = (-2.0 * np.pi) * np.asarray(shift, dtype=np.float64)[..., None] * frequency
    out = np.empty(angle.shape, dtype=np.complex64)
    out.real = np.cos(angle)
    out.imag = np.sin(angle)
    return out


def next_even_fast_len(n: int) -> int:
    """The smallest even size ≥ n that scipy.fft transforms quickly."""
    m = sfft.next_fast_len(n + n % 2, real=True)
    while m % 2:
        m = sfft.next_fast_len(m + 1, real=True)
    return m


def tukey(n: int, alpha: float) -> np.ndarray:
    """The Tukey (tapered cosine) window of `n` points with taper fraction `alpha`, as
    scipy.signal.windows.tukey(n, alpha) (importing scipy.signal costs half a second of every
    command's start-up)."""
    if n <= 1:
        return np.ones(max(n, 0))
    if alpha <= 0:
        return np.ones(n)
    alpha = min(alpha, 1.0)
    index = np.arange(n, dtype=np.float64)
    width = int(np.floor(alpha * (n - 1) / 2.0))
    window = np.ones(n)
    rise = index[: width + 1]
    fall = index[n - width - 1:]
    window[: width + 1] = 0.5 * (1 + np.cos(np.pi * (-1 + 2.0 * rise / alpha / (n - 1))))
    window[n - width - 1:] = 0.5 * (1 + np.cos(np.pi * (-2.0 / alpha + 1
                                                         + 2.0 * fall / alpha / (n - 1))))
    return window

"""The contrast transfer function (CTF) of the electron microscope: its formula.

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft


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

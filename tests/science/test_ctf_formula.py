"""The CTF formula against the published equations (CTFFIND4: Rohou & Grigorieff 2015, eq. 1-3;
RELION ctf.h conventions), and the astigmatism-angle convention."""

import math

import numpy as np
import pytest

from cryovault.science.ctf import (
    CtfParameters,
    ctf_2d,
    ctf_phase,
    ctf_value,
    electron_wavelength_angstrom,
)


def test_electron_wavelength_matches_tabulated_values():
    # λ = h / sqrt(2 m0 e V (1 + e V / 2 m0 c²)), CODATA constants
    h, m0, e, c = 6.62607015e-34, 9.1093837015e-31, 1.602176634e-19, 299792458.0
    for kv, table in ((300, 0.019687), (200, 0.025079), (100, 0.037014)):
        v = kv * 1e3
        exact = h / math.sqrt(2 * m0 * e * v * (1 + e * v / (2 * m0 * c * c))) * 1e10
        assert electron_wavelength_angstrom(kv) == pytest.approx(exact, rel=2e-5)
        assert electron_wavelength_angstrom(kv) == pytest.approx(table, abs=2e-6)


def ctffind4(g, alpha, du, dv, ast_deg, kv, cs_mm, ac, phase_deg):
    """Rohou & Grigorieff (2015) eq. 1-3, written out independently."""
    lam = 12.2643247 / math.sqrt(kv * 1e3 * (1 + 0.978466e-6 * kv * 1e3))
    df = 0.5 * (du + dv + (du - dv) * np.cos(2 * (alpha - math.radians(ast_deg))))
    chi = (math.pi * lam * g**2 * df - 0.5 * math.pi * cs_mm * 1e7 * lam**3 * g**4
           + math.radians(phase_deg))
    w1, w2 = math.sqrt(1 - ac * ac), ac
    return -w1 * np.sin(chi) - w2 * np.cos(chi)


def relion(g, alpha, du, dv, ast_deg, kv, cs_mm, ac, phase_deg):
    """RELION ctf.h: deltaf negative for underfocus, argument K1 Δf u² + K2 u⁴ − K5 − K3,
    CTF = −sin(argument) (RELION's overall sign is the opposite of CTFFIND's)."""
    lam = 12.2643247 / math.sqrt(kv * 1e3 * (1 + 0.978466e-6 * kv * 1e3))
    k1 = math.pi * lam
    k2 = math.pi / 2 * cs_mm * 1e7 * lam**3
    k3 = math.atan(ac / math.sqrt(1 - ac * ac))
    k5 = math.radians(phase_deg)
    avg, dev = -(du + dv) / 2, -(du - dv) / 2
    deltaf = avg + dev * np.cos(2 * (alpha - math.radians(ast_deg)))
    argument = k1 * deltaf * g**2 + k2 * g**4 - k5 - k3
    return -np.sin(argument)


@pytest.mark.parametrize("params", [
    (15000.0, 14000.0, 30.0, 300.0, 2.7, 0.07, 0.0),
    (32000.0, 31200.0, 125.0, 200.0, 2.0, 0.1, 0.0),
    (6000.0, 5000.0, -40.0, 300.0, 0.01, 0.07, 90.0),
])
def test_ctf_matches_ctffind4_and_relion(params):
    du, dv, ast, kv, cs, ac, phase = params
    rng = np.random.default_rng(1)
    g = rng.uniform(0.0, 0.5, 2000)
    alpha = rng.uniform(-math.pi, math.pi, 2000)
    p = CtfParameters(du, dv, ast, phase, kv, cs, ac)
    ours = ctf_value(p, g * np.cos(alpha), g * np.sin(alpha))
    np.testing.assert_allclose(ours, ctffind4(g, alpha, du, dv, ast, kv, cs, ac, phase),
                               atol=1e-9)
    # RELION's CTF is the same curve with the opposite overall sign
    np.testing.assert_allclose(ours, -relion(g, alpha, du, dv, ast, kv, cs, ac, phase),
                               atol=1e-9)


def test_first_zero_of_an_isotropic_ctf():
    # with A = 0, Cs = 0: −sin(π λ Δf g²) is zero at g = 1 / sqrt(λ Δf)
    p = CtfParameters(20000.0, 20000.0, 0.0, 0.0, 300.0, 0.0, 0.0)
    g0 = 1 / math.sqrt(electron_wavelength_angstrom(300) * 20000.0)
    assert abs(ctf_value(p, np.array([g0]), np.array([0.0]))[0]) < 1e-9
    assert ctf_value(p, np.array([0.5 * g0]), np.array([0.0]))[0] < 0  # CTFFIND sign


def test_angle_convention_defocus_u_lies_at_the_astigmatism_angle_from_x_towards_y():
    # angle 30°: along (cos 30°, sin 30°) in (kx, ky) = (column, row) frequency the defocus is U
    p = CtfParameters(20000.0, 18000.0, 30.0, 0.0, 300.0, 0.0, 0.0)
    lam = electron_wavelength_angstrom(300)
    g = 0.1
    for angle, expected in ((30.0, 20000.0), (120.0, 18000.0), (210.0, 20000.0)):
        kx = np.array([g * math.cos(math.radians(angle))])
        ky = np.array([g * math.sin(math.radians(angle))])
        chi = ctf_phase(p, kx, ky)[0]
        assert chi / (math.pi * lam * g * g) == pytest.approx(expected, rel=1e-12)
    # on the rfft2 grid of an image, +y is the row axis: a CTF with angle 90° has defocus U
    # along the rows' frequency axis (first axis of the array)
    shape = (64, 64)
    along_u = CtfParameters(20000.0, 10000.0, 90.0, 0.0, 300.0, 0.0, 0.0)
    grid = ctf_2d(along_u, shape, 1.0)
    ky_only = grid[5, 0]  # ky = 5/64, kx = 0
    kx_only = grid[0, 5]
    isotropic_u = ctf_2d(CtfParameters(20000.0, 20000.0, 0.0, 0.0, 300.0, 0.0, 0.0), shape, 1.0)
    isotropic_v = ctf_2d(CtfParameters(10000.0, 10000.0, 0.0, 0.0, 300.0, 0.0, 0.0), shape, 1.0)
    assert ky_only == pytest.approx(isotropic_u[5, 0])
    assert kx_only == pytest.approx(isotropic_v[0, 5])

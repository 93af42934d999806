"""Geometry conventions (DESIGN.md): projection, .xf round trips, warping, gauge."""

from __future__ import annotations

import numpy as np
import pytest

from cryovault.science.tomo.geometry import (
    TiltAlignment,
    axis_normal,
    forward_from_xf,
    gauge_residual_px,
    project_points,
    rotation_matrix,
    xf_from_forward,
)
from cryovault.science.tomo.simulate import simulate_tilt_series
from cryovault.science.tomo.stackops import bin_image, warp_image


def test_projection_follows_design_convention() -> None:
    # φ = 0: (x, y, z) at θ projects to (x cos θ + z sin θ, y)
    uv = project_points(np.array([[10.0, 5.0, 20.0]]), 30.0)
    assert uv[0] == pytest.approx([10 * np.cos(np.pi / 6) + 20 * 0.5, 5.0])
    # the axis direction is (−sin φ, cos φ)
    assert rotation_matrix(30.0) @ np.array([0.0, 1.0]) == pytest.approx([-0.5, np.sqrt(3) / 2])
    assert axis_normal(30.0) == pytest.approx([np.sqrt(3) / 2, 0.5])


@pytest.mark.parametrize("axis,mag,shift", [(85.0, 1.0, (3.0, -4.0)), (-12.5, 1.02, (0.0, 7.5))])
def test_xf_round_trip(axis: float, mag: float, shift: tuple[float, float]) -> None:
    row = xf_from_forward(axis, mag, np.array(shift))
    a, m, s = forward_from_xf(row)
    assert a == pytest.approx(axis)
    assert m == pytest.approx(mag)
    assert s == pytest.approx(shift)
    # a raw point r = m R(φ)(u, v) + s maps back to (u, v)
    uv = np.array([12.0, -30.0])
    r = mag * rotation_matrix(axis) @ uv + np.array(shift)
    aligned = np.array([[row[0], row[1]], [row[2], row[3]]]) @ r + row[4:]
    assert aligned == pytest.approx(uv)


def test_warp_brings_rotated_shifted_series_onto_the_axis_vertical_one() -> None:
    common = dict(shape=(192, 192), tilt_angles_degrees=(0.0, 0.0), defocus_sigma_angstrom=0.0,
                  ice_phase_rms=0.0, total_dose=1e6)
    reference = simulate_tilt_series(shift_sigma_px=0.0, tilt_axis_degrees=0.0, **common)
    moved = simulate_tilt_series(shift_sigma_px=8.0, tilt_axis_degrees=40.0,
                                 rotation_error_sigma_degrees=1.0, magnification_sigma=0.02,
                                 **common)
    t = moved.truth
    xf = TiltAlignment(t.tilt_angles_degrees, 40.0, t.shifts_px, t.rotation_errors_degrees,
                       t.magnifications).xf()
    inner = (slice(48, -48), slice(48, -48))
    for i in range(2):
        warped = warp_image(moved.stack[i], xf[i])
        cc = np.corrcoef(warped[inner].ravel(), reference.stack[0][inner].ravel())[0, 1]
        raw = np.corrcoef(moved.stack[i][inner].ravel(), reference.stack[0][inner].ravel())[0, 1]
        assert cc > 0.99 > raw + 0.5
    # the same at bin 2: shifts scale by 1/2
    warped2 = warp_image(bin_image(moved.stack[0], 2), xf[0], binning=2)
    cc2 = np.corrcoef(warped2[24:-24, 24:-24].ravel(),
                      bin_image(reference.stack[0], 2)[24:-24, 24:-24].ravel())[0, 1]
    assert cc2 > 0.98


def test_gauge_residual_removes_origin_shifts_only() -> None:
    angles = np.arange(-60.0, 61.0, 3.0)
    t = np.radians(angles)
    origin = np.stack([4.0 * np.cos(t) + 9.0 * np.sin(t), np.full_like(t, -2.0)], axis=1)
    assert np.abs(gauge_residual_px(angles, origin)).max() < 1e-9
    noise = np.random.default_rng(1).normal(0, 1, origin.shape)
    res = gauge_residual_px(angles, origin + noise)
    assert 0.8 < np.sqrt((res**2).sum(1).mean()) < 1.6

"""Tomogram positioning: the Y tilt from the transmission, the slab's plane from a coarse
reconstruction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cryovault.science.tomo.geometry import TiltAlignment
from cryovault.science.tomo.positioning import (
    position_tomogram,
    slab_mid_height,
    slab_plane,
    transmission_offset,
)
from cryovault.science.tomo.simulate import simulate_tilt_series
from cryovault.science.tomo.stackops import bin_stack


@pytest.mark.parametrize("y_tilt", [0.0, 4.0, -6.5])
def test_y_tilt_within_one_degree(y_tilt: float) -> None:
    sim = simulate_tilt_series(shape=(256, 256), pixel_size_angstrom=10.0, y_tilt_degrees=y_tilt,
                               shift_sigma_px=3.0, seed=int(10 + y_tilt))
    t = sim.truth
    alignment = TiltAlignment(t.tilt_angles_degrees, t.tilt_axis_degrees, t.shifts_px)
    found = position_tomogram(bin_stack(sim.stack, 2), alignment, 2, 10.0)
    assert abs(found.y_tilt_degrees - y_tilt) <= 1.0


def test_transmission_offset_needs_a_thickness_signal() -> None:
    angles = np.arange(-60.0, 61.0, 3.0)
    beta = math.radians(2.5)
    means = 100.0 * np.exp(-0.4 / np.cos(np.radians(angles) + beta))
    found = transmission_offset(angles, means)
    assert found is not None and found[0] == pytest.approx(2.5, abs=0.05)
    # flat intensities (no slab), or too narrow a range: nothing to measure
    assert transmission_offset(angles, np.full_like(angles, 100.0)) is None
    assert transmission_offset(np.arange(-9.0, 10.0, 3.0), means[:7]) is None


def test_slab_plane_follows_a_tilted_slab() -> None:
    nz, ny, nx = 80, 64, 64
    z = np.arange(nz)[:, None, None] - (nz - 1) / 2
    y = np.arange(ny)[None, :, None] - (ny - 1) / 2
    x = np.arange(nx)[None, None, :] - (nx - 1) / 2
    mid = 0.2 * x - 0.1 * y + 3.0
    contrast = (np.abs(z - mid) < 15).astype(np.float32) + 0.01
    a, b, c, _ = slab_plane(contrast)
    assert (a, b, c) == pytest.approx((0.2, -0.1, 3.0), abs=0.05)
    assert slab_mid_height(np.zeros(10)) is None

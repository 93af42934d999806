"""The whole alignment (clean stack, pair alignment, positioning, patch tracking, CTF per tilt)
on a simulated series against its truth, at the issue's thresholds: injected bad tilts found and
nothing else dropped, shifts RMS ≤ 1 px at bin 1 (after removing the reconstruction-origin gauge),
tilt-axis angle ≤ 0.5°, Y tilt ≤ 1°."""

from __future__ import annotations

import numpy as np
import pytest

from cryovault.science.tomo.align import align_series
from cryovault.science.tomo.geometry import gauge_residual_px, rotation_matrix
from cryovault.science.tomo.simulate import simulate_tilt_series


@pytest.fixture(scope="module")
def aligned():
    sim = simulate_tilt_series(shape=(768, 768), pixel_size_angstrom=5.4, thickness_nm=60.0,
                               tilt_axis_degrees=84.3, y_tilt_degrees=2.0,
                               shift_sigma_px=15.0, rotation_error_sigma_degrees=0.3,
                               magnification_sigma=0.004, bad_tilts=((1, "dark"),
                                                                     (30, "obstructed")),
                               seed=7)
    # the user's tilt-axis angle is 1.2° off
    return sim, align_series(sim.stack, sim.truth.tilt_angles_degrees, 5.4, 85.5)


def test_bad_tilts_dropped_and_nothing_else(aligned):
    sim, result = aligned
    assert sorted(d.index for d in result.dropped) == [1, 30]
    assert len(result.kept_indices) == len(sim.truth.tilt_angles_degrees) - 2


def test_geometry_within_the_issue_thresholds(aligned):
    sim, result = aligned
    t = sim.truth
    kept = result.kept_indices
    al = result.alignment
    assert abs(al.axis_degrees - t.tilt_axis_degrees) <= 0.5
    assert result.axis_correction_degrees == pytest.approx(al.axis_degrees - 85.5)
    assert abs(result.y_tilt_degrees - t.y_tilt_degrees) <= 1.0
    assert al.angles_degrees == pytest.approx(t.tilt_angles_degrees[kept]
                                              + result.y_tilt_degrees)
    err = (al.shifts_px - t.shifts_px[kept]) @ rotation_matrix(-t.tilt_axis_degrees).T
    res = gauge_residual_px(t.tilt_angles_degrees[kept] + t.y_tilt_degrees, err)
    assert float(np.sqrt((res**2).sum(axis=1).mean())) <= 1.0
    assert np.all(np.isfinite(result.accuracy_px))
    assert float(np.nanmean(result.accuracy_px)) < 3.0
    assert set(result.timings_s) == {"clean", "pair alignment", "positioning",
                                     "patch tracking", "ctf"}

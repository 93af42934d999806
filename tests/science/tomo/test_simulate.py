"""The tilt-series simulator: truth, bad tilts, dose, defocus gradient."""

from __future__ import annotations

import numpy as np
import pytest

from cryovault.science.tomo.simulate import (
    TiltSeriesSpec,
    phantom_volume,
    simulate_tilt_series,
)


def test_series_has_truth_for_every_tilt_and_realistic_counts() -> None:
    sim = simulate_tilt_series(shape=(128, 128), seed=4)
    t = sim.truth
    n = len(TiltSeriesSpec().tilt_angles_degrees)
    assert sim.stack.shape == (n, 128, 128) and sim.stack.dtype == np.float32
    assert t.shifts_px.shape == (n, 2) and len(t.defocus_angstrom) == n
    assert t.dose_per_tilt.sum() == pytest.approx(120.0)
    # counts ≈ dose × px² × transmission; the path through the slab grows at high tilt
    means = sim.stack.mean(axis=(1, 2))
    centre = int(np.argmin(np.abs(t.tilt_angles_degrees)))
    assert 3.0 * 5.4**2 * 0.5 < means[centre] < 3.0 * 5.4**2
    assert means[0] < 0.85 * means[centre] and means[-1] < 0.85 * means[centre]


def test_bad_tilts_have_their_defect() -> None:
    sim = simulate_tilt_series(shape=(128, 128), seed=5,
                               bad_tilts=((3, "dark"), (10, "blank"), (25, "obstructed")))
    means = sim.stack.mean(axis=(1, 2))
    assert means[3] < 0.05 * means[4]
    assert sim.truth.bad_tilts == {3: "dark", 10: "blank", 25: "obstructed"}
    dark_fraction = (sim.stack[25] < 0.2 * means[24]).mean()
    assert dark_fraction > 0.3
    with pytest.raises(ValueError, match="unknown bad-tilt kind"):
        simulate_tilt_series(shape=(64, 64), bad_tilts=((1, "melted"),))
    with pytest.raises(ValueError, match="outside"):
        simulate_tilt_series(shape=(64, 64), bad_tilts=((99, "dark"),))


def test_same_seed_same_series() -> None:
    a = simulate_tilt_series(shape=(64, 64), seed=9, tilt_angles_degrees=(-3.0, 0.0, 3.0))
    b = simulate_tilt_series(shape=(64, 64), seed=9, tilt_angles_degrees=(-3.0, 0.0, 3.0))
    assert np.array_equal(a.stack, b.stack)


def test_phantom_volume_is_a_slab_of_the_given_thickness() -> None:
    # 100 nm at 20 Å/px: 50 voxels thick, centred in 90
    sim = simulate_tilt_series(shape=(96, 96), pixel_size_angstrom=20.0, thickness_nm=100.0,
                               tilt_angles_degrees=(0.0,))
    vol = phantom_volume(sim.blobs, (90, 96, 96), 20.0)
    profile = vol.mean(axis=(1, 2))
    inside = profile[30:60].mean()
    assert profile[:12].mean() < 0.2 * inside and profile[-12:].mean() < 0.2 * inside
    assert profile[24] > 0.5 * inside and profile[65] > 0.5 * inside

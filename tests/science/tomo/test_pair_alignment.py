"""Coarse pair alignment by cosine-stretched cross-correlation of neighbouring tilts."""

from __future__ import annotations

import numpy as np

from cryovault.science.tomo.geometry import gauge_residual_px, rotation_matrix
from cryovault.science.tomo.pair_alignment import bandpass, correlate, pair_align
from cryovault.science.tomo.simulate import simulate_tilt_series
from cryovault.science.tomo.stackops import bin_stack


def _rms_error(angles: np.ndarray, axis: float, found: np.ndarray, true: np.ndarray) -> float:
    err = (found - true) @ rotation_matrix(-axis).T  # in the axis-vertical frame
    res = gauge_residual_px(angles, err)
    return float(np.sqrt((res**2).sum(axis=1).mean()))


def test_correlate_finds_a_known_shift() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(128, 128)).astype(np.float32)
    from scipy import ndimage

    image = ndimage.gaussian_filter(image, 2)
    moved = ndimage.shift(image, (-3.25, 5.5), order=3, mode="wrap")  # (y, x)
    shift, score = correlate(moved, image, bandpass(image.shape), 30)
    assert np.allclose(shift, [5.5, -3.25], atol=0.15)
    assert score > 0.5


def test_pair_alignment_recovers_shifts_to_a_few_pixels() -> None:
    sim = simulate_tilt_series(shape=(384, 384), tilt_axis_degrees=84.0, shift_sigma_px=15.0,
                               seed=11)
    t = sim.truth
    before = _rms_error(t.tilt_angles_degrees, 84.0, np.zeros_like(t.shifts_px), t.shifts_px)
    alignment, scores = pair_align(sim.stack, t.tilt_angles_degrees, 84.0, 1)
    after = _rms_error(t.tilt_angles_degrees, 84.0, alignment.shifts_px, t.shifts_px)
    assert before > 8.0
    assert after < 3.0
    assert alignment.axis_degrees == 84.0 and len(scores) == len(t.tilt_angles_degrees)
    # the same series binned by 2 gives shifts at bin 1
    binned_alignment, _ = pair_align(bin_stack(sim.stack, 2), t.tilt_angles_degrees, 84.0, 2)
    assert _rms_error(t.tilt_angles_degrees, 84.0, binned_alignment.shifts_px,
                      t.shifts_px) < 4.0

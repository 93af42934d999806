"""Marker-free patch tracking (issue #10, step 4) against simulated truth.

The series is a 41-tilt ±60° series at realistic dose (120 e⁻/Å² in all), 768² at 5.4 Å/px
with a 60-nm slab: a field of view ~7× the thickness, as for a 4096² series at 2.7 Å/px with a
150-nm slab (the geometry the issue's thresholds are meant for; patch tracking on thicker slabs
in small fields is less accurate, see patch_tracking's docstring). Tracking runs at bin 2 and
starts from an alignment with shift errors of up to ±3 px and the tilt axis 1.5° off. A second,
thick series (140-nm slab, a field ~3× the thickness, two high tilts dropped so that the
neighbours there are 6° apart) checks the depth smear of the correlation, without which the
tracking there jumps between features at different depths (errors of ~2 px RMS, 7 px at the
gaps).
"""

import math

import numpy as np
import pytest
from scipy import ndimage

from cryovault.science.errors import ScienceInputError
from cryovault.science.tomo.geometry import TiltAlignment, gauge_residual_px, project_points
from cryovault.science.tomo.patch_correlate import (
    PatchCorrelator,
    depth_extent,
    measure_offsets,
)
from cryovault.science.tomo.patch_solve import PatchObservations, fit_patch_model
from cryovault.science.tomo.patch_tracking import track_patches
from cryovault.science.tomo.simulate import simulate_tilt_series
from cryovault.science.tomo.stackops import bin_stack

AXIS = 84.3


def shift_errors(alignment: TiltAlignment, true_shifts: np.ndarray) -> np.ndarray:
    """Per-tilt error [x, y] of the aligned image centre (aligned frame, bin-1 px) after
    removing the reconstruction-origin gauge."""
    errors = [np.linalg.solve(alignment.forward(i)[0], true_shifts[i] - alignment.shifts_px[i])
              for i in range(len(alignment))]
    return gauge_residual_px(alignment.angles_degrees, np.array(errors))


def rms(errors: np.ndarray) -> float:
    return float(np.sqrt((errors**2).sum(axis=1).mean()))


@pytest.fixture(scope="module")
def series():
    return simulate_tilt_series(shape=(768, 768), pixel_size_angstrom=5.4, thickness_nm=60.0,
                                tilt_axis_degrees=AXIS, rotation_error_sigma_degrees=0.3,
                                magnification_sigma=0.005, shift_sigma_px=15.0, seed=3)


@pytest.fixture(scope="module")
def start(series):
    truth = series.truth
    rng = np.random.default_rng(5)
    n = len(truth.tilt_angles_degrees)
    return TiltAlignment(truth.tilt_angles_degrees, AXIS + 1.5,
                         truth.shifts_px + rng.uniform(-3.0, 3.0, (n, 2)))


@pytest.fixture(scope="module")
def tracked(series, start):
    return track_patches(bin_stack(series.stack, 2), start, binning=2)


def test_shifts_within_1_px_at_bin_1(series, start, tracked):
    before = rms(shift_errors(start, series.truth.shifts_px))
    after = rms(shift_errors(tracked.alignment, series.truth.shifts_px))
    assert before > 2.0
    assert after <= 1.0
    assert np.abs(shift_errors(tracked.alignment, series.truth.shifts_px)).max() < 2.5


def test_tilt_axis_within_half_a_degree(series, tracked):
    truth = series.truth
    true_axis = truth.tilt_axis_degrees + truth.rotation_errors_degrees.mean()
    assert abs(tracked.alignment.axis_degrees - true_axis) <= 0.5
    assert tracked.axis_correction_degrees == pytest.approx(
        tracked.alignment.axis_degrees - (AXIS + 1.5))
    assert tracked.axis_correction_degrees < -1.0


def test_rotations_and_magnifications_follow_the_truth(series, tracked):
    truth = series.truth
    fit = tracked.alignment
    centre = int(np.argmin(np.abs(truth.tilt_angles_degrees)))
    assert fit.rotations_degrees.mean() == pytest.approx(0.0, abs=1e-9)
    assert fit.magnifications[centre] == pytest.approx(1.0)
    true_rot = truth.rotation_errors_degrees - truth.rotation_errors_degrees.mean()
    assert np.sqrt(np.mean((fit.rotations_degrees - true_rot) ** 2)) < 0.1
    # magnifications relative to the central tilt's (the scale gauge)
    true_rel = truth.magnifications / truth.magnifications[centre]
    assert np.sqrt(np.mean((fit.magnifications - true_rel) ** 2)) < 0.003


@pytest.fixture(scope="module")
def thick_series():
    """A 140-nm slab (130 working px at bin 2) with the tilts at −54° and +51° dropped."""
    series = simulate_tilt_series(shape=(768, 768), pixel_size_angstrom=5.4, thickness_nm=140.0,
                                  tilt_axis_degrees=AXIS, rotation_error_sigma_degrees=0.3,
                                  magnification_sigma=0.005, shift_sigma_px=15.0, seed=3)
    angles = series.truth.tilt_angles_degrees
    keep = np.array([i for i, a in enumerate(angles) if a not in (-54.0, 51.0)])
    return series, keep


def test_thick_slab_with_gaps_stays_within_1_px(thick_series):
    series, keep = thick_series
    truth = series.truth
    rng = np.random.default_rng(5)
    start = TiltAlignment(truth.tilt_angles_degrees[keep], AXIS + 1.5,
                          truth.shifts_px[keep] + rng.uniform(-3.0, 3.0, (len(keep), 2)))
    tracked = track_patches(bin_stack(series.stack[keep], 2), start, binning=2)
    errors = shift_errors(tracked.alignment, truth.shifts_px[keep])
    assert rms(errors) <= 1.0
    assert np.abs(errors).max() < 3.0
    true_axis = truth.tilt_axis_degrees + truth.rotation_errors_degrees.mean()
    assert abs(tracked.alignment.axis_degrees - true_axis) <= 0.5


def test_depth_extent_measures_the_slab(thick_series):
    series, _ = thick_series
    truth = series.truth
    stack = bin_stack(series.stack, 2)
    alignment = TiltAlignment(truth.tilt_angles_degrees, AXIS, truth.shifts_px,
                              truth.rotation_errors_degrees, truth.magnifications)
    centre = int(np.argmin(np.abs(truth.tilt_angles_degrees)))
    expected = 1400.0 / (5.4 * 2)
    correlator = PatchCorrelator(64)
    for other in (centre - 3, centre + 2):
        forwards = [(m, s / 2) for m, s in (alignment.forward(centre), alignment.forward(other))]
        extent = depth_extent(stack[centre], forwards[0],
                              math.radians(truth.tilt_angles_degrees[centre]), stack[other],
                              forwards[1], math.radians(truth.tilt_angles_degrees[other]),
                              correlator)
        assert extent == pytest.approx(expected, rel=0.3)
    # no parallax between a tilt and itself: nothing to measure
    assert depth_extent(stack[centre], forwards[0], 0.0, stack[centre], forwards[0], 0.0,
                        correlator) is None


def test_residuals_and_counts(tracked):
    n = len(tracked.alignment)
    assert tracked.residual_px.shape == (n,)
    assert np.all(np.isfinite(tracked.residual_px))
    assert 0.1 < float(np.median(tracked.residual_px)) < 4.0
    assert tracked.n_trajectories >= 40
    assert tracked.n_observations >= 0.8 * tracked.n_trajectories * n


def _synthetic_observations(rng, truth: TiltAlignment, n_points: int, noise: float):
    points = np.column_stack([rng.uniform(-400, 400, (n_points, 2)),
                              rng.uniform(-80, 80, n_points)])
    tilt, traj, pos = [], [], []
    for i in range(len(truth)):
        m, s = truth.forward(i)
        r = project_points(points, truth.angles_degrees[i]) @ m.T + s
        tilt.append(np.full(n_points, i))
        traj.append(np.arange(n_points))
        pos.append(r + rng.normal(0.0, noise, r.shape))
    return PatchObservations(np.concatenate(tilt), np.concatenate(traj), np.concatenate(pos))


def test_solver_recovers_the_model_despite_outliers():
    rng = np.random.default_rng(1)
    angles = np.arange(-60.0, 60.1, 3.0)
    n = len(angles)
    rot = rng.normal(0.0, 0.3, n)
    rot -= rot.mean()
    mags = 1.0 + rng.normal(0.0, 0.005, n)
    mags /= mags[20]
    truth = TiltAlignment(angles, AXIS, rng.normal(0.0, 15.0, (n, 2)), rot, mags)
    obs = _synthetic_observations(rng, truth, 60, 0.3)
    bad = rng.random(len(obs.tilt)) < 0.05
    obs.position_px[bad] += rng.normal(0.0, 30.0, (int(bad.sum()), 2))
    start = TiltAlignment(angles, AXIS + 1.5, truth.shifts_px + rng.uniform(-3, 3, (n, 2)))
    fit = fit_patch_model(obs, start, 20)
    assert fit.alignment.axis_degrees == pytest.approx(AXIS, abs=0.03)
    assert np.abs(fit.alignment.rotations_degrees - rot).max() < 0.05
    assert np.abs(fit.alignment.magnifications - mags).max() < 5e-4
    assert rms(shift_errors(fit.alignment, truth.shifts_px)) < 0.1
    assert fit.kept[bad].mean() < 0.2 and fit.kept[~bad].mean() > 0.98
    good = np.hypot(*fit.residual_px[fit.kept].T)
    assert np.sqrt(np.mean(good**2)) == pytest.approx(0.3 * math.sqrt(2), rel=0.2)


def test_origin_follows_the_starting_shifts():
    """The fit's origin (a gauge) is chosen to keep the shifts close to the start's."""
    rng = np.random.default_rng(2)
    angles = np.arange(-60.0, 60.1, 3.0)
    truth = TiltAlignment(angles, AXIS, rng.normal(0.0, 10.0, (len(angles), 2)))
    obs = _synthetic_observations(rng, truth, 40, 0.0)
    fit = fit_patch_model(obs, truth, 20)
    assert np.abs(fit.alignment.shifts_px - truth.shifts_px).max() < 0.02


def _textured_image(rng, shape=(256, 256)) -> np.ndarray:
    return ndimage.gaussian_filter(rng.normal(size=shape), 2.0).astype(np.float32)


def test_measure_offsets_finds_known_shifts_and_recentring_removes_the_pull():
    rng = np.random.default_rng(3)
    image = _textured_image(rng)
    forward = (np.eye(2), np.zeros(2))
    centres = np.array([[-40.0, -30.0], [0.0, 0.0], [35.0, 20.0], [-20.0, 40.0]])
    shift = np.array([3.4, -2.7])
    correlator = PatchCorrelator(64)
    args = (image, forward, centres, image, forward, centres - shift, 1.0, correlator)
    plain, cc, usable = measure_offsets(*args)
    recentred, cc2, usable2 = measure_offsets(*args, recentre=3)
    assert usable.all() and usable2.all()
    assert np.all(cc2 > 0.95)
    assert np.abs(recentred - shift).max() < 0.1
    assert np.abs(recentred - shift).max() < np.abs(plain - shift).max()


def test_patches_leaving_the_image_are_unusable():
    rng = np.random.default_rng(4)
    image = _textured_image(rng)
    forward = (np.eye(2), np.zeros(2))
    centres = np.array([[0.0, 0.0], [110.0, 0.0]])
    _, _, usable = measure_offsets(image, forward, centres, image, forward, centres, 1.0,
                                   PatchCorrelator(64))
    assert usable.tolist() == [True, False]


@pytest.mark.parametrize(
    ("stack_shape", "n_angles", "kwargs", "message"),
    [
        ((64, 64), 7, {}, "stack"),
        ((7, 128, 128), 6, {}, "alignment"),
        ((4, 128, 128), 4, {}, "at least 5"),
        ((7, 128, 128), 7, {"binning": 0}, "binning"),
        ((7, 128, 128), 7, {"patch_size_px": 100}, "patch size"),
        ((7, 128, 128), 7, {"thickness_angstrom": 500.0}, "pixel size"),
        ((7, 128, 128), 7, {"thickness_angstrom": -1.0, "pixel_size_angstrom": 2.0},
         "thickness"),
    ],
)
def test_bad_input(stack_shape, n_angles, kwargs, message):
    stack = np.ones(stack_shape, dtype=np.float32)
    alignment = TiltAlignment(np.linspace(-30, 30, n_angles), AXIS)
    with pytest.raises(ScienceInputError, match=message):
        track_patches(stack, alignment, **kwargs)


def test_nan_angles_and_pixel_size_rejected():
    alignment = TiltAlignment(np.linspace(-30, 30, 7), AXIS)
    stack = np.ones((7, 128, 128), dtype=np.float32)
    stack[3, 5, 5] = np.nan
    with pytest.raises(ScienceInputError, match="NaN"):
        track_patches(stack, alignment)
    with pytest.raises(ScienceInputError, match="85"):
        track_patches(np.ones((7, 128, 128), dtype=np.float32),
                      TiltAlignment(np.linspace(-90, 90, 7), AXIS))
    with pytest.raises(ScienceInputError, match="pixel size"):
        track_patches(np.ones((7, 128, 128), dtype=np.float32), alignment,
                      pixel_size_angstrom=0.0)


def test_featureless_stack_is_refused():
    rng = np.random.default_rng(6)
    stack = rng.poisson(50.0, (9, 192, 192)).astype(np.float32)
    with pytest.raises(ScienceInputError, match="trajector"):
        track_patches(stack, TiltAlignment(np.linspace(-24, 24, 9), AXIS),
                      min_correlation=0.3)

"""CTF estimation against simulated ground truth (issue #8 thresholds).

The issue sets the thresholds on 4096 × 4096 micrographs at 40 e⁻/Å². For speed the tests use
2048 × 2048 at 160 e⁻/Å²: the same number of counts per micrograph, so the same information in
the power spectrum (4 × fewer pixels, 4 × the counts each); benchmarks/science_ctf.py checks
the full size."""

import math

import numpy as np
import pytest

from cryovault.science.ctf import MIN_SCORE, CtfParameters, CtfSearch, estimate_ctf
from cryovault.science.simulate import simulate_micrograph, specimen_phase

SIZE = 2048
DOSE = 40.0 * (4096 / SIZE) ** 2


def angle_error(a: float, b: float) -> float:
    return abs((a - b + 90.0) % 180.0 - 90.0)


CASES = [
    # mean defocus, astigmatism (U − V), angle, phase shift
    (5000.0, 600.0, 10.0, None),
    (21000.0, 900.0, 75.0, None),
    (35000.0, 500.0, 140.0, None),
    (14000.0, 0.0, 0.0, None),
    (10000.0, 800.0, 60.0, 30.0),
    (16000.0, 600.0, 160.0, 110.0),
]


@pytest.mark.parametrize("mean,astig,angle,phase", CASES)
def test_fit_recovers_the_simulated_ctf(mean, astig, angle, phase):
    truth = CtfParameters(mean + astig / 2, mean - astig / 2, angle, phase or 0.0,
                          300.0, 2.7, 0.07, b_factor_angstrom2=60.0)
    sim = simulate_micrograph((SIZE, SIZE), 1.0, truth, dose_e_per_angstrom2=DOSE,
                              seed=int(mean + angle))
    fit = estimate_ctf(sim.image, 1.0, CtfSearch(phase_plate=phase is not None))
    assert fit.fit_ok, fit.failure_reason
    assert fit.defocus_u_angstrom >= fit.defocus_v_angstrom
    fitted_mean = 0.5 * (fit.defocus_u_angstrom + fit.defocus_v_angstrom)
    assert abs(fitted_mean - mean) <= 50.0
    if astig >= 500:
        assert abs(fit.astigmatism_angstrom - astig) <= 50.0
        assert angle_error(fit.astigmatism_angle_degrees, angle) <= 3.0
    if phase is not None:
        assert angle_error(fit.phase_shift_degrees, phase) <= 5.0
    else:
        assert fit.phase_shift_degrees == 0.0
    assert 2.0 <= fit.resolution_angstrom <= 8.0
    assert fit.score > MIN_SCORE
    # the 1-D equiphase average follows the fitted curve
    freqs = fit.frequencies_per_angstrom
    band = (freqs > 1 / 20) & (freqs < 1 / 6)
    cc = np.corrcoef(fit.equiphase_average[band], fit.fitted_curve[band])[0, 1]
    assert cc > 0.6


@pytest.mark.parametrize("kind", ["blank", "no_ctf", "smooth"])
def test_no_ctf_means_a_failed_fit_with_a_low_score(kind):
    rng = np.random.default_rng(7)
    if kind == "blank":
        image = rng.poisson(DOSE, (SIZE, SIZE)).astype(np.float32)
    elif kind == "no_ctf":  # specimen contrast without any CTF
        phase = specimen_phase((SIZE, SIZE), 1.0, rng)
        image = rng.poisson(DOSE * np.clip(1 + 2 * phase, 0, None)).astype(np.float32)
    else:  # a gradient and shot noise
        y, x = np.mgrid[0:SIZE, 0:SIZE]
        image = rng.poisson(DOSE * (1 + 0.3 * x / SIZE + 0.2 * y / SIZE)).astype(np.float32)
    fit = estimate_ctf(image, 1.0)
    assert not fit.fit_ok
    assert fit.score < MIN_SCORE
    assert fit.failure_reason


def test_constant_image_fails_cleanly():
    fit = estimate_ctf(np.full((512, 512), 5.0, np.float32), 1.0)
    assert not fit.fit_ok and math.isfinite(fit.score)

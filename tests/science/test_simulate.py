"""The simulator's images stay physical at every size: a small image (comparable to the
absorption field's correlation length) must not get negative intensities."""

import numpy as np
import pytest

from cryovault.science.simulate import Specimen, absorption, simulate_movie


@pytest.mark.parametrize("size", [48, 64, 96, 128])
def test_small_movies_simulate(size):
    movie = simulate_movie((size, size), 3, pixel_size_angstrom=1.0)
    assert np.isfinite(movie.frames).all() and (movie.frames >= 0).all()


@pytest.mark.parametrize("seed", range(8))
def test_absorption_is_a_transmission_of_mean_one(seed):
    field = absorption((96, 96), 1.0, np.random.default_rng(seed))
    spec = Specimen()
    assert abs(float(field.mean()) - 1.0) < 1e-4
    assert float(field.std()) == pytest.approx(spec.absorption_contrast, rel=1e-3)
    assert float(field.min()) > 0

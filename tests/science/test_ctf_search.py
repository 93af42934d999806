"""The CTF refinement's correlation, its analytic gradient and the contrast weights."""

import math

import numpy as np
import pytest

from cryovault.science.ctf_model import CtfParameters, ctf_phase
from cryovault.science.ctf_search import (
    CtfSearch,
    Fit,
    RingCorrelation,
    contrast_weights,
    refine,
)
from cryovault.science.power_spectrum import SpectrumGrid


def _spectrum(params: CtfParameters, tile: int, noise: float, seed: int,
              b_factor: float = 150.0):
    grid = SpectrumGrid.of(tile, 1.0)
    k = (np.arange(tile) - tile // 2) / tile
    ky, kx = np.meshgrid(k, k, indexing="ij")
    envelope = np.exp(-b_factor * (kx**2 + ky**2))
    rings = np.sin(ctf_phase(params, kx, ky)) ** 2 - 0.5
    rng = np.random.default_rng(seed)
    return grid, rings * envelope + noise * rng.normal(size=(tile, tile))


def _select(grid, low=1 / 30, high=1 / 4):
    return grid.half & (grid.g2 >= low**2) & (grid.g2 <= high**2)


@pytest.mark.parametrize("weighted", [False, True])
def test_gradient_matches_finite_differences(weighted):
    truth = CtfParameters(12400.0, 11600.0, 35.0, 40.0)
    grid, data = _spectrum(truth, 256, 0.3, 0)
    select = _select(grid)
    weights = np.random.default_rng(1).uniform(0.2, 1.0, size=data.shape) if weighted else None
    target = RingCorrelation(CtfSearch(phase_plate=True), grid, data, select, weights)
    p = np.array([12050.0, 310.0, -120.0, math.radians(35.0)])
    r, grad = target.evaluate(*p)
    for i, step in enumerate((0.5, 0.5, 0.5, 1e-4)):
        up, down = p.copy(), p.copy()
        up[i] += step
        down[i] -= step
        numeric = (target.score(*up) - target.score(*down)) / (2 * step)
        assert grad[i] == pytest.approx(numeric, rel=1e-3, abs=1e-9)
    assert -1 <= r <= 1


def test_uniform_weights_give_the_plain_correlation():
    truth = CtfParameters(15000.0, 14000.0, 120.0)
    grid, data = _spectrum(truth, 128, 0.2, 2)
    select = _select(grid)
    plain = RingCorrelation(CtfSearch(), grid, data, select)
    uniform = RingCorrelation(CtfSearch(), grid, data, select, np.full(data.shape, 3.0))
    args = (14600.0, 200.0, 300.0, 0.0)
    assert uniform.score(*args) == pytest.approx(plain.score(*args), rel=1e-9)


@pytest.mark.parametrize("noise,tolerance", [(0.0, 2.0), (0.2, 15.0)])
def test_refinement_and_contrast_weights_recover_the_truth(noise, tolerance):
    truth = CtfParameters(20300.0, 19700.0, 70.0)
    grid, data = _spectrum(truth, 512, noise, 3, b_factor=40.0)
    search = CtfSearch()
    select = _select(grid, high=1 / 3)
    theta = math.radians(70.0)
    start = (20030.0, 200 * math.cos(2 * theta), 200 * math.sin(2 * theta), 0.0)
    fit = refine(RingCorrelation(search, grid, data, select), start, False, 1 / 3)
    weights = contrast_weights(search, grid, data, select, fit)
    assert weights[~select].max() == 0
    if noise:
        radius = np.sqrt(grid.g2)
        inner = select & (radius < 0.1)
        outer = select & (radius > 0.3)
        # the envelope leaves the outer rings in the noise: they weigh much less
        assert weights[inner].mean() > 3 * weights[outer].mean()
    weighted = refine(RingCorrelation(search, grid, data, select, weights),
                      (fit.mean, fit.a, fit.b, 0.0), False, 1 / 3)
    for result in (fit, weighted):
        assert isinstance(result, Fit)
        assert result.mean == pytest.approx(20000.0, abs=tolerance)
        assert result.a == pytest.approx(300 * math.cos(2 * theta), abs=tolerance)
        assert result.b == pytest.approx(300 * math.sin(2 * theta), abs=tolerance)

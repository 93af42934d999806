"""The alignment core: the windowed correlation is the inverse transform restricted to a
window, and the pyramid recovers known sub-pixel shifts."""

import numpy as np
import pytest
import scipy.fft as sfft
from scipy import ndimage

from cryovault.science.alignment import (
    StackLevel,
    _self_window,
    _Window,
    _windowed_correlation,
    align_pyramid,
    pyramid_shapes,
)
from cryovault.science.fourier import frequencies, phase_factors


def test_window_is_the_inverse_transform_at_small_offsets():
    rng = np.random.default_rng(0)
    shape = (48, 40)
    cross = (rng.normal(size=(48, 21)) + 1j * rng.normal(size=(48, 21))).astype(np.complex64)
    full = sfft.irfft2(cross, s=shape)
    window = _Window(shape, 2)
    corr = (window.ey @ cross @ window.ex).real * window.norm
    for i, dy in enumerate(range(-2, 3)):
        for j, dx in enumerate(range(-2, 3)):
            assert corr[i, j] == pytest.approx(full[dy % 48, dx % 40], abs=1e-4)


def _stack(n: int, shape: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    spectra = rng.normal(size=(2, shape[0], n, shape[1] // 2 + 1)) + 1j * rng.normal(
        size=(2, shape[0], n, shape[1] // 2 + 1))
    return spectra.astype(np.complex64)


def test_windowed_correlation_equals_the_full_correlation_with_the_others():
    shape, n = (32, 32), 4
    values = _stack(n, shape, 1)
    level = StackLevel(values, shape, (64, 64))  # every level pixel is 2 original pixels
    shifts = np.random.default_rng(2).uniform(-3, 3, size=(2, n, 2))
    window = _Window(shape, 2)
    corr = _windowed_correlation(level, shifts, window, _self_window(level, window, 2), 2)
    fy, fx = frequencies(shape, (64, 64))
    for b in range(2):
        z = np.stack([values[b, :, f] * phase_factors(fy, shifts[b, f, 1])[:, None]
                      * phase_factors(fx, shifts[b, f, 0])[None, :] for f in range(n)])
        total = z.sum(axis=0)
        for f in range(n):
            full = sfft.irfft2(z[f] * np.conj(total - z[f]), s=shape)
            expected = np.array([[full[dy % 32, dx % 32] for dx in range(-2, 3)]
                                 for dy in range(-2, 3)])
            np.testing.assert_allclose(corr[b, f], expected, rtol=2e-4, atol=2e-3)


def test_pyramid_recovers_known_subpixel_shifts():
    rng = np.random.default_rng(5)
    shape, n = (256, 256), 6
    image = ndimage.gaussian_filter(rng.normal(size=shape), 1.5)
    truth = np.vstack([[0.0, 0.0], rng.uniform(-9, 9, size=(n - 1, 2))])
    fy, fx = frequencies(shape)
    base = sfft.rfft2(image)
    values = np.empty((1, shape[0], n, shape[1] // 2 + 1), dtype=np.complex64)
    for f in range(n):
        # content moved by −truth: the shift that aligns it back is +truth
        moved = base * phase_factors(fy, -truth[f, 1])[:, None] * phase_factors(
            fx, -truth[f, 0])[None, :]
        noisy = sfft.irfft2(moved, s=shape) + rng.normal(0, 0.05, size=shape)
        values[0, :, f] = sfft.rfft2(noisy)
    values[0, 0, :, 0] = 0
    level = StackLevel(values, shape, shape)
    shifts, iterations = align_pyramid(level, np.zeros((1, n, 2)), tolerance_px=0.001,
                                       max_iterations=20, max_shift_px=30, search_first=True)
    assert iterations > 0
    np.testing.assert_allclose(shifts[0], truth, atol=0.02)


def test_cropped_level_is_the_low_frequency_block():
    values = _stack(3, (16, 16), 7)
    level = StackLevel(values, (16, 16), (16, 16))
    small = level.cropped((8, 8))
    assert small.values.shape == (2, 8, 3, 5)
    np.testing.assert_array_equal(small.values[:, :4], values[:, :4, :, :5])
    np.testing.assert_array_equal(small.values[:, 4:], values[:, 12:, :, :5])
    np.testing.assert_allclose(small.pixel_ratio, [2.0, 2.0])
    scratch = np.empty(2 * 8 * 3 * 5 + 7, dtype=np.complex64)
    again = level.cropped((8, 8), scratch)
    assert np.shares_memory(again.values, scratch)
    np.testing.assert_array_equal(again.values, small.values)


def test_pyramid_shapes_go_from_coarse_to_the_finest():
    assert pyramid_shapes((2048, 2048)) == [(256, 256), (1024, 1024), (2048, 2048)]
    assert pyramid_shapes((128, 96))[-1] == (128, 96)
    assert pyramid_shapes((64, 64)) == [(64, 64)]

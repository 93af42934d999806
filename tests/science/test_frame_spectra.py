"""Pass-1/pass-2 building blocks: cropped transforms, patch grids, frame reading, the sums."""

import math

import numpy as np
import pytest
import scipy.fft as sfft
from scipy.signal.windows import tukey as scipy_tukey

from cryovault.science.dose_weighting import SumAccumulator, critical_exposure
from cryovault.science.errors import ScienceInputError
from cryovault.science.fourier import crop_spectrum, frequencies, phase_factors, tukey
from cryovault.science.frame_spectra import CroppedTransform, FrameReader, PatchGrid


def test_tukey_is_scipys():
    for n in (1, 2, 3, 64, 511, 4096):
        for alpha in (0.0, 0.2, 0.4, 1.0):
            np.testing.assert_allclose(tukey(n, alpha), scipy_tukey(n, alpha), atol=1e-12)


@pytest.mark.parametrize("shape", [(512, 384), (256, 128), (128, 384)])
def test_cropped_transform_is_the_cropped_rfft2(shape):
    rng = np.random.default_rng(0)
    image = rng.normal(size=(512, 384)).astype(np.float32)
    expected = crop_spectrum(sfft.rfft2(image), shape)
    got = CroppedTransform((512, 384), shape, 2)(image)
    assert got.shape == (shape[0], shape[1] // 2 + 1)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-2)


def test_tapered_transform_removes_the_mean_and_tapers():
    rng = np.random.default_rng(1)
    image = (rng.normal(size=(300, 256)) + 7).astype(np.float32)
    taper = np.outer(tukey(300, 0.2), tukey(256, 0.2))
    expected = crop_spectrum(sfft.rfft2((image - image.mean()) * taper), (150, 128))
    got = CroppedTransform((300, 256), (150, 128), 2, taper=0.2)(image)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=5e-2)


def test_patch_grid_spans_the_image_with_overlapping_fast_sizes():
    grid = PatchGrid.plan((1600, 1600), 5, 5, 1.5)
    assert grid.size == (480, 480) and len(grid.starts) == 25
    assert grid.starts[0] == (0, 0) and grid.starts[-1] == (1600 - 480, 1600 - 480)
    centres = grid.centres()
    assert centres[12] == pytest.approx([799.5, 799.5])
    assert sfft.next_fast_len(480, real=True) == 480
    with pytest.raises(ScienceInputError, match="too small"):
        PatchGrid.plan((64, 64), 5, 5, 1.0)


def test_frame_reader_drops_an_odd_row_and_checks_shapes():
    frames = [np.arange(15 * 11, dtype=np.uint16).reshape(15, 11)] * 3
    reader = FrameReader(frames, frames[0])
    assert reader.shape == (14, 10)
    out = reader.read(1)
    assert out.dtype == np.float32 and out.shape == (14, 10)
    np.testing.assert_array_equal(out, frames[1][:14, :10])
    reader = FrameReader([frames[0], np.zeros((15, 12))], frames[0])
    with pytest.raises(ScienceInputError, match="frame 1 has shape"):
        reader.read(1)


def test_sum_accumulator_matches_the_formulas():
    rng = np.random.default_rng(3)
    n, shape, px, dose = 5, (64, 48), 1.3, 2.0
    frames = rng.normal(size=(n,) + shape)
    shifts = rng.uniform(-3, 3, size=(n, 2))
    acc = SumAccumulator(n, shape, px, dose, voltage_kv=200.0, pre_exposure=1.0, workers=2)
    for f in range(n):
        acc.add(sfft.rfft2(frames[f]).astype(np.complex64), shifts[f])
    aligned, weighted = acc.sums()
    fy, fx = frequencies(shape)
    g = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) / px
    ne = critical_exposure(g, 200.0)
    plain = np.zeros((64, 25), complex)
    dw = np.zeros((64, 25), complex)
    q2 = np.zeros((64, 25))
    for f in range(n):
        shifted = sfft.rfft2(frames[f]) * np.outer(phase_factors(fy, shifts[f, 1]),
                                                   phase_factors(fx, shifts[f, 0]))
        q = np.exp(-(1.0 + dose * (f + 0.5)) / (2 * ne))
        plain += shifted
        dw += q * shifted
        q2 += q * q
    np.testing.assert_allclose(aligned, sfft.irfft2(plain, s=shape), atol=2e-4)
    np.testing.assert_allclose(weighted, sfft.irfft2(dw * np.sqrt(n / q2), s=shape), atol=2e-4)
    assert math.isclose(acc.pixel_size, px)


def test_binned_sums_hold_the_counts_of_the_binned_pixels():
    rng = np.random.default_rng(4)
    frames = rng.poisson(5.0, size=(3, 64, 64)).astype(np.float64)
    acc = SumAccumulator(3, (64, 64), 1.0, 1.0, binning=2)
    for f in range(3):
        acc.add(sfft.rfft2(frames[f]).astype(np.complex64), np.zeros(2))
    aligned, _ = acc.sums()
    assert aligned.shape == (32, 32)
    assert aligned.sum() == pytest.approx(frames.sum(), rel=1e-5)

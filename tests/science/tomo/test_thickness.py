"""Sample thickness from SIRT reconstructions of simulated slabs, and the reconstruct command."""

import mrcfile
import numpy as np
import pytest
from PIL import Image

from cryovault.science.errors import ScienceInputError
from cryovault.science.tomo.geometry import TiltAlignment
from cryovault.science.tomo.reconstruct import reconstruct_series, sample_rows
from cryovault.science.tomo.simulate import phantom_volume, simulate_tilt_series
from cryovault.science.tomo.sirt import sirt
from cryovault.science.tomo.thickness import measure_thickness

PIXEL = 21.6  # Å: a 5.4 Å/px series at bin 4


def contrast(stack: np.ndarray) -> np.ndarray:
    return 1.0 - stack / stack.mean(axis=(1, 2), keepdims=True)


@pytest.mark.parametrize(("thickness_nm", "volume_nm"), [(100.0, 300.0), (200.0, 400.0)])
def test_thickness_of_a_simulated_slab_is_within_ten_percent(thickness_nm, volume_nm):
    # realistic dose (120 e⁻/Å² at 5.4 Å/px is 16× that per 21.6 Å pixel)
    sim = simulate_tilt_series(shape=(96, 96), pixel_size_angstrom=PIXEL, shift_sigma_px=0.0,
                               tilt_axis_degrees=0.0, total_dose=120.0 * 16,
                               thickness_nm=thickness_nm, seed=2)
    nz = round(volume_nm * 10 / PIXEL)
    volume = sirt(contrast(sim.stack), sim.truth.tilt_angles_degrees, nz, 15)
    found = measure_thickness(volume, PIXEL)
    assert found.nm == pytest.approx(thickness_nm, rel=0.10)
    assert 0.0 < found.uncertainty_nm < 0.2 * thickness_nm
    # the slab is centred in the volume
    assert found.centre == pytest.approx((nz - 1) / 2, abs=3.0)
    assert found.z_bottom - found.z_top == pytest.approx(found.nm * 10 / PIXEL)


def test_a_slab_tilted_in_the_volume_is_measured_within_its_uncertainty():
    # 10° about x (no X-tilt correction): the envelope is thicker than the slab
    sim = simulate_tilt_series(shape=(96, 96), pixel_size_angstrom=PIXEL, shift_sigma_px=0.0,
                               tilt_axis_degrees=0.0, total_dose=120.0 * 16, thickness_nm=100.0,
                               x_tilt_degrees=10.0, seed=7)
    volume = sirt(contrast(sim.stack), sim.truth.tilt_angles_degrees, 140, 15)
    found = measure_thickness(volume, PIXEL)
    assert found.nm == pytest.approx(100.0, rel=0.10)
    assert abs(found.nm - 100.0) < 2.0 * found.uncertainty_nm


def test_an_off_centre_slab_is_found_where_it_is():
    sim = simulate_tilt_series(shape=(64, 64), pixel_size_angstrom=PIXEL, shift_sigma_px=0.0,
                               tilt_axis_degrees=0.0, total_dose=1e5, thickness_nm=100.0,
                               seed=4)
    # the volume's centre 20 voxels above the slab's: the slab sits 20 voxels below centre
    volume = sirt(contrast(sim.stack), sim.truth.tilt_angles_degrees, 120, 10,
                  z_centre_px=20.0)
    found = measure_thickness(volume, PIXEL)
    assert found.centre == pytest.approx((120 - 1) / 2 - 20.0, abs=3.0)


def test_no_slab_in_noise_is_an_error():
    rng = np.random.default_rng(0)
    with pytest.raises(ScienceInputError, match="no slab"):
        measure_thickness(rng.normal(size=(60, 48, 48)).astype(np.float32), PIXEL)
    with pytest.raises(ScienceInputError, match="pixel size"):
        measure_thickness(np.zeros((60, 48, 48), np.float32), 0.0)


def test_sample_rows_are_contiguous_blocks_spread_over_y():
    rows = sample_rows(1024, 128, 32)
    assert len(rows) == 128 and rows[0] == 0 and rows[-1] == 1023
    assert len(np.split(rows, np.where(np.diff(rows) > 1)[0] + 1)) == 4
    np.testing.assert_array_equal(sample_rows(100, 128, 32), np.arange(100))


def test_reconstruct_series_aligns_reconstructs_and_measures(tmp_path):
    # a raw series at 10.8 Å/px (axis 85°, shifts), reconstructed at bin 2 with its true .xf
    sim = simulate_tilt_series(shape=(192, 192), pixel_size_angstrom=10.8, thickness_nm=150.0,
                               total_dose=120.0 * 4, seed=3)
    truth = sim.truth
    xf = TiltAlignment(truth.tilt_angles_degrees, truth.tilt_axis_degrees, truth.shifts_px,
                       truth.rotation_errors_degrees, truth.magnifications).xf()
    result = reconstruct_series(sim.stack, truth.tilt_angles_degrees, 10.8, xf_rows=xf,
                                binning=2, iterations=15, out_dir=tmp_path / "out", name="ts")
    assert result.thickness_nm == pytest.approx(150.0, rel=0.10)
    assert 0.0 < result.thickness_uncertainty_nm < 30.0
    assert result.voxel_size_angstrom == pytest.approx(PIXEL)
    with mrcfile.open(result.volume_path) as mrc:
        volume = np.array(mrc.data)
        assert volume.shape == (result.volume_thickness_px, 96, 96)
        assert float(mrc.voxel_size.x) == pytest.approx(PIXEL, rel=1e-5)
    # the volume is the slab plus a margin: thicker than it, not twice as thick
    assert 150.0 < volume.shape[0] * PIXEL / 10 < 220.0
    # binning, warping and SIRT put the specimen where it is (a wrong geometry gives ~0)
    phantom = phantom_volume(sim.blobs, volume.shape, PIXEL)
    assert float(np.corrcoef(volume.ravel(), phantom.ravel())[0, 1]) > 0.25
    with Image.open(result.preview_path) as preview:
        assert preview.mode == "L" and preview.size == (96, 96)
        pixels = np.asarray(preview)
        assert pixels.min() < 20 and pixels.max() > 235  # contrast stretched


def test_reconstruct_series_with_a_given_thickness(tmp_path):
    sim = simulate_tilt_series(shape=(64, 64), pixel_size_angstrom=PIXEL, shift_sigma_px=0.0,
                               tilt_axis_degrees=0.0, total_dose=1e5, thickness_nm=100.0,
                               seed=5)
    # 120 px at bin 1 → 120 voxels: room for the slab (46 voxels) and quiet space around it
    result = reconstruct_series(sim.stack, sim.truth.tilt_angles_degrees, PIXEL, binning=1,
                                iterations=10, thickness=120, out_dir=tmp_path, name="given")
    assert result.volume_thickness_px == 120
    assert result.thickness_nm == pytest.approx(100.0, rel=0.10)
    assert result.volume_path.exists() and result.preview_path.exists()


def test_slab_edges_ignore_noisy_volume_ends():
    # a reconstruction much thicker than the slab: its ends (few rays) are noisy, above half
    from cryovault.science.tomo.thickness import slab_edges

    z = np.arange(400, dtype=float)
    profile = 0.35 + 0.6 * ((z > 150) & (z < 260))
    profile[:12] = 0.8
    profile[-12:] = 0.8
    edges = slab_edges(profile)
    assert edges is not None
    assert abs(edges[0] - 150.5) < 2 and abs(edges[1] - 259.5) < 2

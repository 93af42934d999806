"""SIRT: the projector's geometry, the reconstruction against the phantom and against ASTRA."""

import math

import numpy as np
import pytest

from cryovault.science.errors import ScienceInputError
from cryovault.science.tomo.reconstruct import reconstruct_series
from cryovault.science.tomo.simulate import phantom_volume, simulate_tilt_series
from cryovault.science.tomo.sirt import ParallelProjector, project, sirt

ANGLES = np.arange(-60.0, 60.1, 3.0)
PIXEL = 21.6  # Å: a 5.4 Å/px series at bin 4


def corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum()))


@pytest.fixture(scope="module")
def series():
    """Noise-free-ish 96² series at bin-4 sampling, axis vertical, no shifts, and its
    projections as density contrast."""
    sim = simulate_tilt_series(shape=(96, 96), pixel_size_angstrom=PIXEL, shift_sigma_px=0.0,
                               tilt_axis_degrees=0.0, total_dose=1e6, thickness_nm=150.0,
                               defocus_sigma_angstrom=0.0, seed=1)
    contrast = 1.0 - sim.stack / sim.stack.mean(axis=(1, 2), keepdims=True)
    return sim, contrast


@pytest.mark.parametrize(("nz", "z_centre"), [(20, 0.0), (21, 0.0), (1, 0.0), (21, 7.5)])
def test_projector_is_the_transpose_of_the_backprojector(nz, z_centre):
    # z_centre 0 takes the symmetric (even/odd) path, an off-centre volume the general one
    rng = np.random.default_rng(0)
    p = ParallelProjector(ANGLES, nz, 48, 48, z_centre)
    assert p.symmetric == (z_centre == 0.0)
    x = rng.normal(size=(nz, 48, 3)).astype(np.float32)
    y = rng.normal(size=(len(ANGLES), 48, 3)).astype(np.float32)
    lhs = float(np.sum(p.forward(x) * y))
    rhs = float(np.sum(x * p.back(y)))
    assert lhs == pytest.approx(rhs, rel=1e-4)
    weighted = rng.normal(size=(nz, 48, 3)).astype(np.float32)
    w = rng.uniform(0.5, 2.0, size=(nz, 48, 1)).astype(np.float32)
    expected = weighted + w * p.back(y)
    p.back_add(y, weighted, w)
    np.testing.assert_allclose(weighted, expected, rtol=1e-5, atol=1e-4)


def test_symmetric_and_general_paths_agree():
    # a hair off centre forces the general path: the same operator to float32 rounding
    rng = np.random.default_rng(1)
    x = rng.normal(size=(15, 40, 2)).astype(np.float32)
    fast, general = ParallelProjector(ANGLES, 15, 40, 40), ParallelProjector(ANGLES, 15, 40, 40,
                                                                             1e-9)
    assert fast.symmetric and not general.symmetric
    np.testing.assert_allclose(fast.forward(x), general.forward(x), rtol=1e-4, atol=1e-4)
    y = fast.forward(x)
    np.testing.assert_allclose(fast.back(y), general.back(y), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("z_centre", [0.0, 4.5])
def test_tilts_at_plus_and_minus_theta_share_filters_exactly(z_centre):
    # ±θ pairs use one set of (conjugate) filters: the same as projecting tilt by tilt
    angles = np.array([-45.0, -30.0, 0.0, 12.0, 30.0, 45.0, 30.0, -7.0])  # a repeat, singles
    rng = np.random.default_rng(3)
    x = rng.normal(size=(12, 32, 2)).astype(np.float32)
    y = rng.normal(size=(len(angles), 32, 2)).astype(np.float32)
    together = ParallelProjector(angles, 12, 32, 32, z_centre)
    assert len(together.lead) == 6 and len(together.partner) == 2
    alone = [ParallelProjector(angles[i: i + 1], 12, 32, 32, z_centre)
             for i in range(len(angles))]
    expected = np.concatenate([p.forward(x) for p in alone])
    np.testing.assert_allclose(together.forward(x), expected, rtol=1e-4, atol=1e-4)
    back = sum(p.back(y[i: i + 1]) for i, p in enumerate(alone))
    np.testing.assert_allclose(together.back(y), back, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("z_centre", [0.0, 9.0])
def test_ray_and_voxel_weights_are_exact(z_centre):
    # the sums are exact: rays missing the volume get weight 0, not 1 / rounding noise
    p = ParallelProjector(ANGLES, 20, 48, 48, z_centre)
    inv_row, inv_col = p.weights()
    row_sum = p.forward(np.ones((20, 48, 1), np.float32))
    col_sum = p.back(np.ones((len(ANGLES), 48, 1), np.float32))
    hit = row_sum > 1e-3  # (the FFT's rounding is ~1e-6 of nz)
    np.testing.assert_allclose(1.0 / inv_row[hit], row_sum[hit], rtol=1e-5, atol=1e-5)
    assert np.all(inv_row[row_sum < 1e-4] == 0.0)
    assert np.count_nonzero(inv_row == 0.0) > 0  # at 60° the edge rays miss the slab
    np.testing.assert_allclose(inv_col, 1.0 / col_sum, rtol=1e-4)


@pytest.mark.parametrize("z_centre", [0.0, 7.5])
def test_a_point_projects_to_x_cos_plus_z_sin(z_centre):
    nz, nx = 21, 64
    volume = np.zeros((nz, 1, nx), dtype=np.float32)
    iz, ix = 16, 44
    volume[iz, 0, ix] = 1.0
    x = ix - (nx - 1) / 2
    z = iz - (nz - 1) / 2 + z_centre
    proj = project(volume, ANGLES, z_centre_px=z_centre)[:, 0, :]
    u = np.arange(nx) - (nx - 1) / 2
    t = np.radians(ANGLES)
    np.testing.assert_allclose(proj.sum(axis=1), 1.0, atol=1e-4)  # unit mass at every angle
    np.testing.assert_allclose((proj * u).sum(axis=1), x * np.cos(t) + z * np.sin(t), atol=1e-3)


def test_uniform_slab_projects_to_its_path_length():
    slab = np.ones((30, 2, 64), dtype=np.float32)
    proj = project(slab, [0.0, 45.0, 60.0])
    np.testing.assert_allclose(proj[:, 0, 32], [30.0, 30 / math.cos(math.pi / 4), 60.0],
                               rtol=1e-4)


def test_sirt_fits_the_projections():
    rng = np.random.default_rng(2)
    from scipy import ndimage
    truth = ndimage.gaussian_filter(rng.normal(size=(24, 6, 64)), 2.0).astype(np.float32)
    b = project(truth, ANGLES)
    few = sirt(b, ANGLES, 24, 2)
    many = sirt(b, ANGLES, 24, 30)
    assert few.shape == many.shape == truth.shape and many.dtype == np.float32
    residual = [float(np.linalg.norm(project(v, ANGLES) - b)) for v in (few, many)]
    assert residual[1] < 0.5 * residual[0] < 0.5 * float(np.linalg.norm(b))
    assert corr(many, truth) > 0.8
    positive = sirt(b, ANGLES, 24, 5, nonnegative=True)
    assert positive.min() >= 0.0


def test_sirt_correlates_with_the_phantom(series):
    sim, contrast = series
    volume = sirt(contrast, sim.truth.tilt_angles_degrees, 64, 20)
    phantom = phantom_volume(sim.blobs, volume.shape, PIXEL)
    # the CTF removes the lowest frequencies and the missing wedge smears z: ~0.4 is the
    # ceiling here; a mirrored geometry (angles negated) gives ~0.05
    assert corr(volume, phantom) > 0.3
    mirrored = sirt(contrast, -sim.truth.tilt_angles_degrees, 64, 20)
    assert corr(mirrored, phantom) < 0.15


def test_sirt_agrees_with_astra_cpu_sirt(series):
    astra = pytest.importorskip("astra")
    sim, contrast = series
    angles = sim.truth.tilt_angles_degrees
    nz, rows = 64, np.arange(4, 96, 8)  # ASTRA's CPU SIRT is slow: 12 slices
    ours = sirt(contrast[:, rows, :], angles, nz, 20)
    vol_geom = astra.create_vol_geom(nz, 96)  # rows = z (index increasing = +z), cols = x
    # ASTRA projects to u = x cos a − z sin a with z its row index: a = −θ is our geometry
    proj_geom = astra.create_proj_geom("parallel", 1.0, 96, -np.radians(angles))
    projector = astra.create_projector("linear", proj_geom, vol_geom)
    theirs = np.zeros_like(ours)
    try:
        for k, y in enumerate(rows):
            sino = astra.data2d.create("-sino", proj_geom, contrast[:, y, :])
            rec = astra.data2d.create("-vol", vol_geom, 0)
            cfg = astra.astra_dict("SIRT")
            cfg.update(ProjectorId=projector, ProjectionDataId=sino, ReconstructionDataId=rec)
            alg = astra.algorithm.create(cfg)
            astra.algorithm.run(alg, 20)
            theirs[:, k, :] = astra.data2d.get(rec)
            astra.algorithm.delete(alg)
            astra.data2d.delete([sino, rec])
    finally:
        astra.projector.delete(projector)
    # different discretisations of the same line integrals (ours: linear shear + linear
    # detector splat; ASTRA: Joseph's linear interpolation): measured 0.99
    assert corr(ours, theirs) > 0.97
    phantom = phantom_volume(sim.blobs, (nz, 96, 96), PIXEL)[:, rows, :]
    assert corr(ours, phantom) > 0.3
    assert corr(theirs, phantom) > 0.3


@pytest.mark.parametrize(("change", "message"), [
    ({"angles": ANGLES[:-1]}, "tilt angles for a stack"),
    ({"thickness_px": 0}, "thickness"),
    ({"iterations": 0}, "iterations"),
    ({"relaxation": 2.5}, "relaxation"),
    ({"angles": np.where(ANGLES == 60.0, 89.0, ANGLES)}, "within"),
])
def test_sirt_refuses_bad_input(change, message):
    args = {"stack": np.zeros((len(ANGLES), 8, 16), np.float32), "angles": ANGLES,
            "thickness_px": 8, "iterations": 2, "relaxation": 1.0}
    args.update(change)
    with pytest.raises(ScienceInputError, match=message):
        sirt(args["stack"], args["angles"], args["thickness_px"], args["iterations"],
             relaxation=args["relaxation"])


@pytest.mark.parametrize(("change", "message"), [
    ({"angles": ANGLES[:-1]}, "tilt angles for a stack"),
    ({"angles": np.where(ANGLES == 3.0, 0.0, ANGLES)}, "duplicate"),
    ({"thickness": 0}, "thickness"),
    ({"thickness": -10}, "thickness"),
    ({"thickness": "thick"}, "thickness"),
    ({"iterations": 0}, "iterations"),
    ({"binning": 0}, "binning"),
    ({"pixel_size": 0.0}, "pixel size"),
    ({"xf_rows": np.zeros((3, 6))}, ".xf rows"),
    ({"name": "../ts"}, "plain file name"),
])
def test_reconstruct_series_refuses_bad_input(tmp_path, change, message):
    args = {"angles": ANGLES, "pixel_size": 5.4, "thickness": 64, "iterations": 2,
            "binning": 2, "xf_rows": None, "name": "ts"}
    args.update(change)
    stack = np.ones((len(ANGLES), 64, 64), np.float32)
    with pytest.raises(ScienceInputError, match=message):
        reconstruct_series(stack, args.pop("angles"), args.pop("pixel_size"), **args,
                           out_dir=tmp_path)
    assert not list(tmp_path.iterdir())

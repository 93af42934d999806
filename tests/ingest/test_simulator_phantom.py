"""The tomography simulator's specimen and tilt images (phantom.py), rendered with the science
tilt-series simulator: blobs in the slab, gold beads, CTF with the defocus gradient of a
correctly handed series, transmission through the slab."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cryovault.ingest.simulator.phantom import (
    BEAD_RADIUS_ANGSTROM,
    _projection,
    make_specimen,
    tilt_image,
)
from cryovault.science.ctf import CtfSearch, estimate_ctf
from cryovault.science.ctf_model import CtfParameters
from cryovault.science.tomo.simulate import (
    render_projection,
    simulate_tilt_series,
    tilt_intensity,
)

ANGLES = [float(a) for a in range(-60, 61, 3)]


def test_specimen_is_a_slab_of_blobs_with_beads_on_its_surfaces():
    size, pixel = 128, 16.0
    specimen = make_specimen(size, pixel, ANGLES, np.random.default_rng(3))
    half_t = specimen.thickness_angstrom / 2
    assert 1200 <= specimen.thickness_angstrom <= 2400
    z = specimen.blobs.centres[:, 2]
    assert np.abs(z).max() <= half_t and z.min() < -0.8 * half_t and z.max() > 0.8 * half_t
    # the blobs cover what the highest tilt sees: wider than the field along x
    assert np.abs(specimen.blobs.centres[:, 0]).max() > 1.5 * size * pixel / 2
    beads = specimen.beads
    assert len(beads.centres) == 10
    assert np.abs(beads.centres[:, :2]).max() <= 0.4 * size * pixel
    depth = half_t - np.abs(beads.centres[:, 2])
    radius = beads.sigma * math.sqrt(5.0)
    assert depth == pytest.approx(radius)  # touching the surface, inside the slab
    assert sorted(np.sign(beads.centres[:, 2])) == [-1] * 5 + [1] * 5
    assert np.all(np.abs(radius - BEAD_RADIUS_ANGSTROM) <= 0.1 * BEAD_RADIUS_ANGSTROM)
    assert beads.weight == pytest.approx(4 / 3 * math.pi * radius**3)


def test_rendering_the_blobs_in_view_gives_the_whole_phantom_s_projection():
    size, pixel = 128, 32.0
    specimen = make_specimen(size, pixel, ANGLES, np.random.default_rng(5))
    shift = np.array([3.5, -2.0])
    for tilt in (0.0, -48.0):
        ours = _projection(specimen.blobs, (size, size), pixel, tilt, 85.0, shift)
        full = render_projection(specimen.blobs, (size, size), pixel, tilt, 85.0, 1.0, shift)
        assert np.corrcoef(ours.ravel(), full.ravel())[0, 1] > 0.99
        assert ours.sum() == pytest.approx(full.sum(), rel=1e-3)


def test_the_slab_transmits_less_at_high_tilt():
    size, pixel = 128, 16.0
    rng = np.random.default_rng(7)
    specimen = make_specimen(size, pixel, ANGLES, rng, beads=0)
    ctf = CtfParameters(30000.0, 30000.0)
    means = {tilt: float(tilt_image(specimen, tilt, 85.0, size, pixel, (0.0, 0.0), ctf,
                                    rng).mean()) for tilt in (0.0, 60.0)}
    t = specimen.thickness_angstrom
    assert means[0.0] == pytest.approx(math.exp(-t / 3500.0), rel=0.03)
    assert means[60.0] / means[0.0] == pytest.approx(math.exp(-t / 3500.0), rel=0.03)


def test_defocus_changes_across_a_tilt_as_in_a_correctly_handed_series():
    # tilt axis along y: the specimen's height changes along x. Δf(r) = Δf − (r · n) tan θ px,
    # so at +50° the right half is closer to focus than the left half, at −50° further.
    size, pixel = 512, 3.0
    rng = np.random.default_rng(1)
    specimen = make_specimen(size, pixel, [-50.0, 50.0], rng, beads=0)
    ctf = CtfParameters(20000.0, 20000.0)
    search = CtfSearch(tile_size=256, low_resolution_angstrom=40.0, high_resolution_angstrom=8.0,
                       min_defocus_angstrom=10000.0, max_defocus_angstrom=30000.0)
    for tilt in (50.0, -50.0):
        image = tilt_image(specimen, tilt, 0.0, size, pixel, (0.0, 0.0), ctf, rng)
        left = estimate_ctf(image[:, :size // 2], pixel, search)
        right = estimate_ctf(image[:, size // 2:], pixel, search)
        assert left.fit_ok and right.fit_ok
        mean = [(r.defocus_u_angstrom + r.defocus_v_angstrom) / 2 for r in (left, right)]
        expected = -math.tan(math.radians(tilt)) * pixel * size / 2  # right minus left
        assert mean[1] - mean[0] == pytest.approx(expected, rel=0.1)
        assert sum(mean) / 2 == pytest.approx(20000.0, abs=150.0)


def test_tilt_physics_is_the_science_simulator_s():
    # the same phantom and truth through tilt_intensity give what simulate_tilt_series drew
    shape = (256, 256)
    sim = simulate_tilt_series(shape=shape, tilt_angles_degrees=(40.0,), seed=3)
    truth = sim.truth
    pixel, axis = truth.pixel_size_angstrom, truth.tilt_axis_degrees
    rng = np.random.default_rng(0)

    def expected(shift: np.ndarray) -> np.ndarray:
        phase = render_projection(sim.blobs, shape, pixel, 40.0, axis, 1.0, shift)
        image = tilt_intensity(phase, pixel, truth.ctf(0), axis, 40.0, truth.thickness_nm, rng)
        return np.maximum(image, 0.0) * truth.dose_per_tilt[0] * pixel**2

    ours = expected(truth.shifts_px[0])
    counts = sim.stack[0]
    assert ours.mean() == pytest.approx(counts.mean(), rel=0.01)
    assert np.corrcoef(ours.ravel(), counts.ravel())[0, 1] > 0.8
    moved = expected(truth.shifts_px[0] + 5.0)
    assert np.corrcoef(moved.ravel(), counts.ravel())[0, 1] < 0.6

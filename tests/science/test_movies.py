"""Movie formats, EER grouping/upsampling, gain reference checks, defect correction."""

from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tifffile

from cryovault.science.eer_io import EerEvents, count_ifds, pack_events, write_eer
from cryovault.science.errors import ScienceInputError
from cryovault.science.movies import detect_bad_pixels, open_movie
from cryovault.science.simulate import (
    simulate_movie,
    write_eer_movie,
    write_mrc_movie,
    write_tiff_movie,
)


@pytest.fixture(scope="module")
def sim():
    return simulate_movie((192, 256), 6, dose_per_frame=3.0, seed=5, gain_variation=0.08)


@pytest.fixture(scope="module")
def files(sim, tmp_path_factory):
    root = tmp_path_factory.mktemp("movies")
    write_mrc_movie(root / "m.mrcs", sim.frames, 1.0)
    write_tiff_movie(root / "lzw.tif", sim.frames, compression="lzw")
    write_tiff_movie(root / "deflate.tiff", sim.frames, compression="deflate")
    write_eer_movie(root / "m.eer", sim, eer_frames_per_fraction=8, seed=2)
    with mrcfile.new(root / "gain.mrc") as mrc:
        mrc.set_data(sim.gain)
    tifffile.imwrite(root / "gain.tif", sim.gain)
    with mrcfile.new(root / "gain_flipped.mrc") as mrc:
        mrc.set_data(np.ascontiguousarray(sim.gain[:, ::-1]))
    with mrcfile.new(root / "gain_transposed.mrc") as mrc:
        mrc.set_data(np.ascontiguousarray(sim.gain.T))
    return root


@pytest.mark.parametrize("name", ["m.mrcs", "lzw.tif", "deflate.tiff"])
def test_stacks_read_back_exactly(files, sim, name):
    movie = open_movie(files / name, correct_hot_pixels=False)
    assert len(movie) == 6 and movie.info.shape == (192, 256)
    np.testing.assert_array_equal(movie.raw, sim.frames)
    np.testing.assert_array_equal(movie[2], sim.frames[2].astype(np.float32))


def test_tiff_is_compressed(files):
    with tifffile.TiffFile(files / "lzw.tif") as tif:
        assert tif.pages[0].compression == 5  # LZW
    with tifffile.TiffFile(files / "deflate.tiff") as tif:
        assert tif.pages[0].compression in (8, 32946)  # deflate


def test_eer_grouping_gives_the_fractions_back(files, sim):
    assert count_ifds(files / "m.eer") == 48
    movie = open_movie(files / "m.eer", eer_grouping=8, correct_hot_pixels=False)
    assert movie.info.eer_frames == 48 and len(movie) == 6
    np.testing.assert_array_equal(movie.raw, np.minimum(sim.frames, 8))
    coarser = open_movie(files / "m.eer", eer_grouping=20, correct_hot_pixels=False)
    assert len(coarser) == 2 and coarser.info.eer_frames_dropped == 8
    np.testing.assert_array_equal(coarser.raw[0], movie.raw[:2].sum(0) + _first_eer(
        files / "m.eer", 16, 20))


def _first_eer(path: Path, start: int, stop: int) -> np.ndarray:
    with tifffile.TiffFile(path) as tif:
        return tif.series[0].asarray(key=slice(start, stop)).sum(0)


def test_eer_upsampling_doubles_the_size_and_keeps_the_counts(files):
    base = open_movie(files / "m.eer", eer_grouping=8, correct_hot_pixels=False)
    fine = open_movie(files / "m.eer", eer_grouping=8, eer_upsampling=2,
                      correct_hot_pixels=False)
    assert fine.info.shape == (384, 512)
    np.testing.assert_array_equal(fine.raw.reshape(6, 192, 2, 256, 2).sum(axis=(2, 4)),
                                  base.raw)


def test_eer_writer_bit_stream_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    frames = [EerEvents(np.sort(rng.choice(300 * 200, 500, replace=False)),
                        rng.integers(0, 16, 500)) for _ in range(3)]
    frames.append(EerEvents(np.array([], dtype=np.int64)))
    write_eer(tmp_path / "x.eer", frames, width=300, height=200, n_frames=4)
    with tifffile.TiffFile(tmp_path / "x.eer") as tif:
        data = tif.series[0].asarray()
    for frame, events in zip(data, frames, strict=True):
        expected = np.zeros(300 * 200, bool)
        expected[events.positions] = True
        np.testing.assert_array_equal(frame.ravel(), expected)
    assert len(pack_events(frames[0], 300 * 200)) % 2 == 0


def test_gain_is_applied_from_mrc_or_tiff(files, sim):
    for gain in ("gain.mrc", "gain.tif"):
        movie = open_movie(files / "m.mrcs", gain_path=files / gain, correct_hot_pixels=False)
        np.testing.assert_allclose(movie[1], sim.frames[1] * sim.gain, rtol=1e-6)


def test_gain_orientation_and_size_are_checked(files):
    with pytest.raises(ScienceInputError, match="orientation.*flipped left-right"):
        open_movie(files / "m.mrcs", gain_path=files / "gain_flipped.mrc")
    with pytest.raises(ScienceInputError, match="256×192.*transposed"):
        open_movie(files / "m.mrcs", gain_path=files / "gain_transposed.mrc")


def test_hot_and_dead_pixels_are_replaced(tmp_path):
    rng = np.random.default_rng(1)
    frames = rng.poisson(5.0, (10, 64, 64)).astype(np.uint16)
    frames[:, 10, 20] = 80  # hot
    frames[:, 30, 40] = 0  # dead
    mask = detect_bad_pixels(frames)
    assert mask[10, 20] and mask[30, 40] and mask.sum() <= 3
    movie_path = tmp_path / "defects.mrc"
    write_mrc_movie(movie_path, frames, 1.0)
    movie = open_movie(movie_path)
    assert movie.n_defects >= 2
    assert 2 < movie[0][10, 20] < 9 and 2 < movie[3][30, 40] < 9


def test_bad_files_are_named_with_their_problem(files, tmp_path, sim):
    truncated = tmp_path / "cut.mrcs"
    truncated.write_bytes((files / "m.mrcs").read_bytes()[:60000])
    with pytest.raises(ScienceInputError, match="cut.mrcs: file is truncated"):
        open_movie(truncated)
    eer_cut = tmp_path / "cut.eer"
    eer_cut.write_bytes((files / "m.eer").read_bytes()[:100000])
    with pytest.raises(ScienceInputError, match="cut.eer: file is truncated"):
        open_movie(eer_cut, eer_grouping=8)
    no_count = tmp_path / "nocount.eer"
    write_eer(no_count, [EerEvents(np.array([1, 5]))] * 2, width=16, height=16, n_frames=2,
              include_frame_count=False)
    with pytest.raises(ScienceInputError, match="no frame count"):
        open_movie(no_count, eer_grouping=1)
    with pytest.raises(ScienceInputError, match="--eer-grouping"):
        open_movie(files / "m.eer")
    one = tmp_path / "one.mrc"
    write_mrc_movie(one, sim.frames[:1], 1.0)
    with pytest.raises(ScienceInputError, match="one.mrc: the movie has 1 frame"):
        open_movie(one)
    nan = tmp_path / "nan.mrc"
    frames = sim.frames[:3].astype(np.float32)
    frames[2, 3, 3] = np.nan
    write_mrc_movie(nan, frames, 1.0)
    with pytest.raises(ScienceInputError, match="frame 2 contains NaN"):
        open_movie(nan)
    with pytest.raises(ScienceInputError, match="file not found"):
        open_movie(tmp_path / "missing.mrc")

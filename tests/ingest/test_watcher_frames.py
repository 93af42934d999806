"""Movie completeness from the file structure: TIFF/EER IFD chains, MRC headers, and the
stability tracker."""

from __future__ import annotations

import numpy as np
import pytest

from cryovault.ingest.watcher.frames import check_movie, walk_ifd_chain
from cryovault.ingest.watcher.stability import StabilityTracker
from cryovault.science.simulate import (
    SimulatedMovie,
    write_eer_movie,
    write_mrc_movie,
    write_tiff_movie,
)


def _frames(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).poisson(3.0, (n, size, size)).astype(np.uint16)


def _truncate(path, size: int, out) -> None:
    out.write_bytes(path.read_bytes()[:size])


@pytest.mark.parametrize("compression", ["lzw", "none"])
def test_tiff_frame_count_and_expected_fractions(tmp_path, compression):
    movie = tmp_path / "FoilHole_1_Data_2_3_20250101_120000_fractions.tiff"
    write_tiff_movie(movie, _frames(8), compression=compression)
    chain = walk_ifd_chain(movie)
    assert len(chain.offsets) == 8 and chain.terminated and not chain.big
    assert check_movie(movie, 8).complete
    assert check_movie(movie, None) == check_movie(movie, 8)
    fewer = check_movie(movie, 10)
    assert not fewer.complete and fewer.frames == 8 and "8 of 10 frames" in fewer.reason
    more = check_movie(movie, 6)
    assert not more.complete and "states 6" in more.reason


def test_tiff_being_written_is_incomplete_at_every_length(tmp_path):
    """A movie copied in chunks: every prefix is refused (chain runs past the end or the last
    frame's strips are missing), only the whole file passes."""
    movie = tmp_path / "m_fractions.tiff"
    write_tiff_movie(movie, _frames(5), compression="lzw")
    data = movie.read_bytes()
    partial = tmp_path / "partial_fractions.tiff"
    verdicts = []
    for length in sorted({0, 4, 8, 100, *range(200, len(data), max(1, len(data) // 40)),
                          len(data) - 1}):
        partial.write_bytes(data[:length])
        verdicts.append(check_movie(partial, None).complete)
    assert not any(verdicts)
    partial.write_bytes(data)
    assert check_movie(partial, 5).complete


def test_tiff_garbage_is_reported_not_raised(tmp_path):
    junk = tmp_path / "junk_fractions.tiff"
    junk.write_bytes(b"this is not a tiff at all")
    check = check_movie(junk, 8)
    assert not check.complete and "TIFF" in check.reason
    with pytest.raises(FileNotFoundError):
        check_movie(tmp_path / "gone_fractions.tiff", 8)


def test_eer_frame_count_from_its_own_metadata(tmp_path):
    frames = _frames(3, size=64)
    simulated = SimulatedMovie(frames=frames, pixel_size_angstrom=1.0,
                               dose_per_frame_e_per_angstrom2=1.0, truth=None, ctf=None)
    movie = tmp_path / "FoilHole_1_Data_2_3_20250101_120000_EER.eer"
    n_eer = write_eer_movie(movie, simulated, eer_frames_per_fraction=4)
    assert n_eer == 12
    chain = walk_ifd_chain(movie)
    assert chain.big and chain.terminated and len(chain.offsets) == 12
    assert check_movie(movie, None).complete
    # EPU's fraction count for EER is a grouping: fewer than the raw frames is fine
    assert check_movie(movie, 3).complete
    assert not check_movie(movie, 40).complete
    data = movie.read_bytes()
    partial = tmp_path / "partial_EER.eer"
    for cut in (len(data) // 3, len(data) // 2, len(data) - 10):
        partial.write_bytes(data[:cut])
        assert not check_movie(partial, None).complete, cut


def test_mrc_header_must_match_the_file_size(tmp_path):
    movie = tmp_path / "FoilHole_1_Data_2_3_20250101_120000_Fractions.mrc"
    write_mrc_movie(movie, _frames(6), 1.0)
    assert check_movie(movie, 6).complete
    assert check_movie(movie, None).complete
    wrong = check_movie(movie, 7)
    assert not wrong.complete and "states 7" in wrong.reason
    data = movie.read_bytes()
    partial = tmp_path / "partial_Fractions.mrc"
    partial.write_bytes(data[: 1024 + 32 * 32 * 2 * 4 + 10])
    check = check_movie(partial, 6)
    assert not check.complete and check.frames == 4 and "4 of 6 frames" in check.reason
    partial.write_bytes(data[:500])
    assert not check_movie(partial, 6).complete
    partial.write_bytes(data + b"\0" * 16)
    assert "longer than its header" in check_movie(partial, 6).reason


def test_other_files_need_no_structure_check(tmp_path):
    jpg = tmp_path / "a.jpg"
    jpg.write_bytes(b"\xff\xd8")
    assert check_movie(jpg, None).complete


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_stability_needs_two_equal_observations_settle_apart():
    clock, wall = FakeClock(), FakeClock()
    wall.now = 2_000_000_000.0
    tracker = StabilityTracker(settle_s=1.0, clock=clock, wall_clock=wall)
    tracker.observe("a", 10, 5)
    assert not tracker.is_stable("a") and tracker.stable_for_s("a") is None
    clock.now += 0.5
    tracker.observe("a", 10, 5)
    assert not tracker.is_stable("a")  # seen twice, but only 0.5 s apart
    clock.now += 0.6
    tracker.observe("a", 10, 5)
    assert tracker.is_stable("a")
    clock.now += 1.0
    tracker.observe("a", 20, 5)  # grew: starts over
    assert not tracker.is_stable("a")
    clock.now += 1.0
    tracker.observe("a", 20, 6)  # touched: starts over
    clock.now += 1.0
    assert not tracker.is_stable("a")
    tracker.observe("a", 20, 6)
    assert tracker.is_stable("a") and tracker.stable_for_s("a") == pytest.approx(1.0)
    assert tracker.is_stable("a", settle_s=0.9) and not tracker.is_stable("a", settle_s=5)


def test_unchanged_time_trusts_an_old_mtime_only_once_confirmed():
    clock, wall = FakeClock(), FakeClock()
    wall.now = 2_000_000_000.0
    tracker = StabilityTracker(settle_s=1.0, clock=clock, wall_clock=wall)
    mtime_ns = int((wall.now - 300) * 1e9)  # written five minutes ago
    tracker.observe("old", 10, mtime_ns)
    assert tracker.unchanged_for_s("old") is None
    clock.now += 0.1
    tracker.observe("old", 10, mtime_ns)
    assert tracker.unchanged_for_s("old") == pytest.approx(300, abs=1e-3)
    fresh_ns = int(wall.now * 1e9)
    tracker.observe("new", 10, fresh_ns)
    clock.now += 2
    wall.now += 2
    tracker.observe("new", 10, fresh_ns)
    assert tracker.unchanged_for_s("new") == pytest.approx(2, abs=1e-3)
    tracker.forget("new")
    assert "new" not in tracker and len(tracker) == 1

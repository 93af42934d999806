"""The EER encoder and writer: streams decode exactly with imagecodecs, files read with tifffile
as EER (BigTIFF, compression 65000/65001/65002, metadata in tag 65001)."""

from __future__ import annotations

import imagecodecs
import numpy as np
import pytest
import tifffile

from cryovault.formats.eer import EerFrame, encode_frame, random_events, write_eer
from tests.formats.samples import write_eer_sample


def _decode(data: bytes, shape: tuple[int, int], rle: int = 7, horz: int = 2,
            vert: int = 2) -> np.ndarray:
    return imagecodecs.eer_decode(data, shape, rle, horz, vert).astype(bool)


@pytest.mark.parametrize("shape", [(64, 80), (7, 33), (1, 1), (300, 200)])
def test_encoded_frames_decode_to_the_same_events(shape):
    rng = np.random.default_rng(42)
    height, width = shape
    n_pixels = height * width
    cases = [np.array([], dtype=np.int64), np.array([0]), np.array([n_pixels - 1]),
             np.arange(n_pixels)]
    if n_pixels > 400:
        # gaps of exactly one and two escape codes (127, 254) and their neighbours
        cases.append(np.array([126, 127, 253, 254, 381, 382]))
    for _ in range(40):
        count = int(rng.integers(0, min(n_pixels, 500) + 1))
        cases.append(np.sort(rng.choice(n_pixels, size=count, replace=False)))
    for positions in cases:
        data = encode_frame(positions, n_pixels, subpixels=rng.integers(0, 16, positions.size))
        assert len(data) % 2 == 0
        expected = np.zeros(n_pixels, dtype=bool)
        expected[positions] = True
        np.testing.assert_array_equal(_decode(data, shape).ravel(), expected)


def test_eight_bit_codes_decode():
    positions = np.array([3, 300, 301, 5000])
    data = encode_frame(positions, 100 * 100, rle_bits=8)
    decoded = _decode(data, (100, 100), rle=8)
    assert list(np.flatnonzero(decoded)) == [3, 300, 301, 5000]


def test_encoder_rejects_unsorted_positions():
    with pytest.raises(ValueError, match="strictly increasing"):
        encode_frame(np.array([5, 3]), 100)
    with pytest.raises(ValueError, match="inside the frame"):
        encode_frame(np.array([100]), 100)


@pytest.mark.parametrize("compression", [65000, 65001, 65002])
def test_written_movie_reads_back_with_tifffile(tmp_path, compression):
    sample = write_eer_sample(tmp_path / "movie.eer", np.random.default_rng(1),
                              compression=compression)
    with tifffile.TiffFile(sample.path) as tif:
        assert tif.is_bigtiff
        assert tif.pages.first.is_eer
        assert tif.pages.first.compression == compression
        frames = tif.series[0]
        assert frames.kind == "eer" and frames.name == "frames"
        assert frames.shape == (sample.n_frames, 64, 96)
        data = tif.asarray(series=0)
        np.testing.assert_array_equal(data.sum(axis=0), sample.counts)
        meta = tif.eer_metadata
        assert meta["numberOfFrames"] == sample.n_frames
        assert meta["sensorPixelSize.width"] == pytest.approx(1.4e-5)
        assert meta["sensorPixelSize.width.unit"] == "m"
        assert meta["commercialName"] == "Falcon 4i"


def test_integrated_image_comes_first_and_frames_stay_a_series(tmp_path):
    sample = write_eer_sample(tmp_path / "movie.eer", np.random.default_rng(2), integrated=True)
    with tifffile.TiffFile(sample.path) as tif:
        assert len(tif.pages) == sample.n_frames + 1
        assert tif.pages.first.compression == 1
        names = [series.name for series in tif.series]
        assert names == ["frames", "integrated"]
        np.testing.assert_array_equal(tif.series[1].asarray(), sample.counts)
        np.testing.assert_array_equal(tif.asarray(series=0).sum(axis=0), sample.counts)


def test_frame_count_must_match(tmp_path):
    rng = np.random.default_rng(3)
    frames = [random_events(rng, 8, 8, 5) for _ in range(2)]
    with pytest.raises(ValueError, match="2 frames were given for n_frames=3"):
        write_eer(tmp_path / "x.eer", frames, width=8, height=8, n_frames=3)


def test_subpixel_codes_are_masked_to_the_width():
    frame = EerFrame(positions=np.array([1, 2]), subpixels=np.array([15, 7]))
    data = encode_frame(frame.positions, 16, subpixels=frame.subpixels, subpixel_bits=2)
    assert list(np.flatnonzero(_decode(data, (4, 4), horz=1, vert=1))) == [1, 2]

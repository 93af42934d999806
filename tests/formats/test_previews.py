"""Preview pyramid: contrast, binning, cached files, Deep Zoom tiles."""

from __future__ import annotations

import io
import json
import os
import threading

import numpy as np
import pytest
from PIL import Image

from cryovault.formats import previews
from cryovault.formats.images import SliceOutOfRange, UnreadableImage, probe_image
from cryovault.formats.previews import (
    HISTOGRAM_BINS,
    PreviewNotBuilt,
    TileOutOfRange,
    auto_contrast,
    bin_mean,
    build_preview,
    dzi_xml,
    load_preview,
    tile_png,
    to_u8,
)
from tests.formats.samples import micrograph, write_eer_sample, write_mrc, write_png


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(11)


def _png(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.mode == "L"
    return np.asarray(image)


def _brute_bin(array: np.ndarray, factor: int) -> np.ndarray:
    height, width = array.shape
    out = np.empty((-(-height // factor), -(-width // factor)))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = array[i * factor:(i + 1) * factor, j * factor:(j + 1) * factor].mean()
    return out


@pytest.mark.parametrize(("shape", "factor"), [((8, 8), 2), ((9, 13), 2), ((10, 7), 3),
                                               ((50, 41), 17), ((5, 5), 8), ((33, 70), 32),
                                               ((6, 6), 1)])
def test_bin_mean_matches_block_means_including_edges(rng, shape, factor):
    array = rng.normal(size=shape).astype(np.float32)
    np.testing.assert_allclose(bin_mean(array, factor), _brute_bin(array, factor), rtol=1e-5,
                               atol=1e-5)
    u8 = (rng.random(shape) * 255).astype(np.uint8)
    np.testing.assert_allclose(bin_mean(u8, factor), _brute_bin(u8, factor), rtol=1e-6)


def test_auto_contrast_percentiles_and_histogram(rng):
    plane = rng.normal(loc=5.0, scale=2.0, size=(1000, 1000)).astype(np.float32)
    contrast = auto_contrast(plane)
    assert contrast.lo == pytest.approx(5.0 - 2.576 * 2.0, abs=0.1)
    assert contrast.hi == pytest.approx(5.0 + 2.576 * 2.0, abs=0.1)
    assert len(contrast.histogram) == HISTOGRAM_BINS
    assert sum(contrast.histogram) + contrast.below + contrast.above == contrast.n_samples
    assert 0.003 < contrast.below / contrast.n_samples < 0.007
    # a sample, not the whole plane
    assert 200_000 <= contrast.n_samples < 1_000_000
    peak = int(np.argmax(contrast.histogram))
    assert abs(peak - HISTOGRAM_BINS // 2) < 20


def test_auto_contrast_ignores_non_finite_and_handles_constant_planes():
    plane = np.full((64, 64), 3.0, dtype=np.float32)
    contrast = auto_contrast(plane)
    assert (contrast.lo, contrast.hi) == (2.5, 3.5)
    assert to_u8(plane, contrast.lo, contrast.hi)[0, 0] == 128
    plane[::2] = np.nan
    plane[1, 1] = np.inf
    contrast = auto_contrast(plane)
    assert np.isfinite(contrast.lo) and np.isfinite(contrast.hi)
    nothing = auto_contrast(np.full((4, 4), np.nan, dtype=np.float32))
    assert nothing.n_samples == 0 and (nothing.lo, nothing.hi) == (0.0, 1.0)


def test_to_u8_rounds_and_clips():
    values = np.array([[-5.0, 0.0, 0.49, 0.51, 127.4, 127.6, 255.0, 900.0]], dtype=np.float32)
    assert to_u8(values, 0.0, 255.0).tolist() == [[0, 0, 0, 1, 127, 128, 255, 255]]


def test_build_preview_writes_every_file(tmp_path, rng):
    image = micrograph(rng, 1500, 2100)
    source = write_mrc(tmp_path / "mic.mrc", image, voxel=0.83)
    info = probe_image(source)
    cache = tmp_path / "cache"
    built = build_preview(source, cache, 0, info)
    assert not built.from_cache
    assert built.directory == cache / "slice_0"
    names = sorted(p.name for p in built.directory.iterdir())
    assert names == ["meta.json", "plane_u8.npy", "preview.png", "thumb.png"]

    meta = json.loads(built.meta_json.read_text())
    assert (meta["width"], meta["height"]) == (2100, 1500)
    assert meta["tile_size"] == 512 and meta["tile_overlap"] == 0
    assert meta["max_level"] == 12  # ceil(log2(2100))
    assert meta["pixel_size_angstrom"] == 0.83
    assert len(meta["histogram"]) == 256 and meta["lo"] < meta["hi"]

    preview = _png(built.preview_png.read_bytes())
    assert preview.shape == (meta["preview_height"], meta["preview_width"]) == (500, 700)
    assert meta["preview_bin"] == 3
    thumb = _png(built.thumb_png.read_bytes())
    assert max(thumb.shape) <= 256 and thumb.shape == (meta["thumb_height"],
                                                      meta["thumb_width"])
    plane = np.load(built.plane_u8)
    assert plane.dtype == np.uint8 and plane.shape == (1500, 2100)
    expected = np.clip(np.floor((image - meta["lo"]) * (255 / (meta["hi"] - meta["lo"])) + 0.5),
                       0, 255)
    assert np.abs(plane.astype(int) - expected).max() <= 1
    # the preview is the binned plane, in the same window
    binned = to_u8(bin_mean(image, 3), meta["lo"], meta["hi"])
    assert np.abs(preview.astype(int) - binned.astype(int)).max() <= 1


def test_second_call_uses_the_cache_without_reading_the_source(tmp_path, rng, monkeypatch):
    source = write_mrc(tmp_path / "mic.mrc", micrograph(rng, 300, 200))
    info = probe_image(source)
    cache = tmp_path / "cache"
    first = build_preview(source, cache, 0, info)
    stamps = {p.name: p.stat().st_mtime_ns for p in first.directory.iterdir()}

    def refuse(*args, **kwargs):
        raise AssertionError("the source was read again")

    monkeypatch.setattr(previews, "read_plane", refuse)
    second = build_preview(source, cache, 0, info)
    assert second.from_cache
    assert second.meta == first.meta
    assert {p.name: p.stat().st_mtime_ns for p in second.directory.iterdir()} == stamps
    assert load_preview(cache, 0) == second


def test_changed_source_is_rebuilt_and_old_tiles_dropped(tmp_path, rng):
    source = write_mrc(tmp_path / "mic.mrc", micrograph(rng, 300, 200))
    cache = tmp_path / "cache"
    first = build_preview(source, cache, 0, probe_image(source))
    tile_png(cache, 0, first.meta.max_level, 0, 0)
    old_tiles = first.directory / f"tiles-{first.meta.generation}"
    assert old_tiles.is_dir()

    write_mrc(source, micrograph(rng, 300, 200) * 10)
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    second = build_preview(source, cache, 0, probe_image(source))
    assert not second.from_cache
    assert second.meta.generation != first.meta.generation
    assert second.meta.hi > first.meta.hi * 5
    assert not old_tiles.exists()


def test_slices_of_a_stack_have_their_own_directories(tmp_path, rng):
    stack = np.stack([micrograph(rng, 64, 64) + 10 * i for i in range(3)]).astype(np.float32)
    source = write_mrc(tmp_path / "ts.st", stack, kind="stack")
    info = probe_image(source)
    cache = tmp_path / "cache"
    built = [build_preview(source, cache, i, info) for i in range(3)]
    assert [b.directory.name for b in built] == ["slice_0", "slice_1", "slice_2"]
    assert built[2].meta.lo > built[0].meta.lo + 15
    with pytest.raises(SliceOutOfRange):
        build_preview(source, cache, 3, info)


def test_non_finite_pixels_do_not_break_the_preview(tmp_path, rng):
    image = micrograph(rng, 100, 100)
    image[10:20, 10:20] = np.nan
    image[50, 50] = np.inf
    with pytest.warns(RuntimeWarning, match="NaN"):  # mrcfile's header statistics
        source = write_mrc(tmp_path / "nan.mrc", image)
    built = build_preview(source, tmp_path / "cache", 0, probe_image(source))
    plane = np.load(built.plane_u8)
    assert plane[15, 15] == 0 and plane[50, 50] == 255
    assert np.isfinite(built.meta.lo) and np.isfinite(built.meta.hi)


def test_eer_preview_is_the_summed_frame(tmp_path, rng):
    sample = write_eer_sample(tmp_path / "movie.eer", rng, width=200, height=150, n_frames=6,
                              events=6000)
    built = build_preview(sample.path, tmp_path / "cache", 0, probe_image(sample.path))
    meta = built.meta
    assert meta.pixel_size_angstrom is None and meta.source_format == "eer"
    expected = to_u8(sample.counts.astype(np.float32), meta.lo, meta.hi)
    np.testing.assert_array_equal(np.load(built.plane_u8), expected)


def test_unreadable_source_raises_and_leaves_no_slice(tmp_path, rng):
    source = write_png(tmp_path / "a.png", (rng.random((20, 20)) * 255).astype(np.uint8))
    info = probe_image(source)
    source.write_bytes(source.read_bytes()[:60])
    with pytest.raises(UnreadableImage):
        build_preview(source, tmp_path / "cache", 0, info)
    assert load_preview(tmp_path / "cache", 0) is None


def test_concurrent_builds_of_one_slice_leave_complete_files(tmp_path, rng):
    source = write_mrc(tmp_path / "mic.mrc", micrograph(rng, 700, 900))
    info = probe_image(source)
    cache = tmp_path / "cache"
    results, errors = [], []

    def build():
        try:
            results.append(build_preview(source, cache, 0, info))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len({r.meta for r in results}) == 1
    directory = cache / "slice_0"
    assert sorted(p.name for p in directory.iterdir()) == ["meta.json", "plane_u8.npy",
                                                           "preview.png", "thumb.png"]
    assert np.load(directory / "plane_u8.npy").shape == (700, 900)


# --------------------------------------------------------------------------------------------
# Tiles
# --------------------------------------------------------------------------------------------


@pytest.fixture
def pyramid(tmp_path, rng):
    image = micrograph(rng, 700, 1300)
    source = write_mrc(tmp_path / "mic.mrc", image)
    cache = tmp_path / "cache"
    built = build_preview(source, cache, 0, probe_image(source))
    return cache, built


def test_tiles_at_every_level_have_the_deep_zoom_shapes(pyramid):
    cache, built = pyramid
    meta = built.meta
    assert meta.max_level == 11  # ceil(log2(1300))
    assert meta.level_size(11) == (1300, 700)
    assert meta.level_size(10) == (650, 350)
    assert meta.level_size(0) == (1, 1)
    for level in range(meta.max_level + 1):
        width, height = meta.level_size(level)
        columns, rows = meta.tile_grid(level)
        assert (columns, rows) == (-(-width // 512), -(-height // 512))
        for col in range(columns):
            for row in range(rows):
                tile = _png(tile_png(cache, 0, level, col, row))
                expected = (min(512, height - row * 512), min(512, width - col * 512))
                assert tile.shape == expected, (level, col, row)


def test_tile_pixels_are_block_means_of_the_8_bit_plane(pyramid):
    cache, built = pyramid
    plane = np.load(built.plane_u8)
    top = built.meta.max_level
    np.testing.assert_array_equal(_png(tile_png(cache, 0, top, 2, 1)), plane[512:, 1024:])
    half = _png(tile_png(cache, 0, top - 1, 1, 0))  # level pixels 512..649 × 0..349
    expected = np.floor(_brute_bin(plane.astype(np.float64), 2)[:, 512:] + 0.5)
    np.testing.assert_array_equal(half, expected)
    single = _png(tile_png(cache, 0, 0, 0, 0))
    assert single.shape == (1, 1) and abs(int(single[0, 0]) - plane.mean()) <= 1


def test_tiles_are_cached_on_disk(pyramid, monkeypatch):
    cache, built = pyramid
    first = tile_png(cache, 0, 9, 0, 0)
    path = built.directory / f"tiles-{built.meta.generation}" / "9" / "0_0.png"
    assert path.read_bytes() == first

    def refuse(*args, **kwargs):
        raise AssertionError("the tile was rendered again")

    monkeypatch.setattr(previews, "render_tile", refuse)
    assert tile_png(cache, 0, 9, 0, 0) == first


@pytest.mark.parametrize(("level", "col", "row", "message"), [
    (-1, 0, 0, "level -1 does not exist: this image has levels 0 to 11"),
    (12, 0, 0, "level 12 does not exist"),
    (11, 3, 0, r"tile 3_0 does not exist at level 11: it has 3 × 2 tiles"),
    (11, 0, 2, "tile 0_2 does not exist"),
    (11, -1, 0, "tile -1_0 does not exist"),
    (0, 1, 0, "tile 1_0 does not exist at level 0"),
    (11, "0", 0, "tile column must be an integer"),
    (True, 0, 0, "tile level must be an integer"),
])
def test_out_of_range_tiles(pyramid, level, col, row, message):
    cache, _ = pyramid
    with pytest.raises(TileOutOfRange, match=message):
        tile_png(cache, 0, level, col, row)


def test_tiles_need_a_built_preview(tmp_path):
    with pytest.raises(PreviewNotBuilt, match="slice 0 has no preview"):
        tile_png(tmp_path / "cache", 0, 0, 0, 0)


def test_damaged_cached_plane_asks_for_a_rebuild(pyramid):
    cache, built = pyramid
    built.plane_u8.write_bytes(b"not a numpy file")
    with pytest.raises(PreviewNotBuilt, match="build the preview again"):
        tile_png(cache, 0, 5, 0, 0)


def test_dzi_descriptor(pyramid):
    _, built = pyramid
    xml = dzi_xml(built.meta)
    assert 'TileSize="512"' in xml and 'Overlap="0"' in xml and 'Format="png"' in xml
    assert '<Size Width="1300" Height="700"/>' in xml

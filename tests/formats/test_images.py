"""probe_image and read_plane on real-format files, and on truncated, damaged and mis-typed ones."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tifffile
from mrcfile.dtypes import get_ext_header_dtype
from PIL import Image

from cryovault.formats.images import (
    ImageInfo,
    SliceOutOfRange,
    UnreadableImage,
    probe_image,
    read_plane,
)
from tests.formats.samples import (
    EPU_JPEG,
    micrograph,
    truncate_copy,
    write_eer_sample,
    write_jpeg,
    write_mrc,
    write_png,
    write_tiff_frames,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def _details(info: ImageInfo) -> dict[str, str]:
    return dict(info.details)


# --------------------------------------------------------------------------------------------
# MRC
# --------------------------------------------------------------------------------------------


def test_mrc_single_image(tmp_path, rng):
    image = micrograph(rng)
    path = write_mrc(tmp_path / "mic.mrc", image, voxel=1.06)
    info = probe_image(path)
    assert (info.format, info.width, info.height, info.n_slices) == ("mrc", 120, 90, 1)
    assert info.slice_kind == "image"
    assert info.dtype == "float32"
    assert info.pixel_size_angstrom == 1.06
    assert info.n_frames is None
    assert _details(info)["Mode"] == "2 (float32)"
    assert _details(info)["Pixel size"] == "1.06 Å"
    plane = read_plane(path, info, 0)
    assert plane.dtype == np.float32 and plane.flags.c_contiguous
    np.testing.assert_array_equal(plane, image)


def test_mrc_stack_reads_each_section(tmp_path, rng):
    stack = np.stack([micrograph(rng, 40, 50) * (i + 1) for i in range(5)]).astype(np.int16)
    path = write_mrc(tmp_path / "particles.mrcs", stack, voxel=2.5, kind="stack")
    info = probe_image(path)
    assert (info.n_slices, info.slice_kind, info.dtype) == (5, "stack", "int16")
    assert info.pixel_size_angstrom == 2.5
    for index in (0, 3, 4):
        np.testing.assert_array_equal(read_plane(path, info, index), stack[index])


def test_mrc_volume_slices_along_z(tmp_path, rng):
    volume = rng.normal(size=(6, 30, 40)).astype(np.float32)
    path = write_mrc(tmp_path / "map.mrc", volume, voxel=(3.2, 3.2, 3.2), kind="volume")
    info = probe_image(path)
    assert (info.n_slices, info.slice_kind, info.width, info.height) == (6, "volume", 40, 30)
    assert _details(info)["Voxel size"] == "3.2 Å"
    np.testing.assert_array_equal(read_plane(path, info, 4), volume[4])


def test_mrc_anisotropic_voxel_and_no_pixel_size(tmp_path, rng):
    volume = rng.normal(size=(3, 20, 20)).astype(np.float32)
    path = write_mrc(tmp_path / "tomo.rec", volume, voxel=(10.0, 10.0, 20.0), kind="volume")
    assert _details(probe_image(path))["Voxel size"] == "10 × 10 × 20 Å"
    flat = write_mrc(tmp_path / "nopix.mrc", volume[0], voxel=0.0)
    info = probe_image(flat)
    assert info.pixel_size_angstrom is None
    assert "not recorded" in _details(info)["Pixel size"]


def test_mrc_big_endian_and_float16(tmp_path, rng):
    image = micrograph(rng, 20, 30)
    path = write_mrc(tmp_path / "be.mrc", image.astype(">f4"))
    info = probe_image(path)
    assert _details(info)["Byte order"] == "big-endian"
    np.testing.assert_array_equal(read_plane(path, info, 0), image)
    half = write_mrc(tmp_path / "half.mrc", image.astype(np.float16))
    info = probe_image(half)
    assert info.dtype == "float16"
    np.testing.assert_array_equal(read_plane(half, info, 0), image.astype(np.float16))


def test_mrc_fei_extended_header_gives_pixel_size_when_the_cell_has_none(tmp_path, rng):
    dtype = get_ext_header_dtype(b"FEI1", "<")
    record = np.zeros(1, dtype=dtype)
    record["Metadata size"] = dtype.itemsize
    record["Pixel size X"] = 0.83e-10
    record["HT"] = 300_000.0
    record["Dose"] = 50e20
    record["Microscope type"] = b"TITAN52336320"
    path = tmp_path / "epu.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(micrograph(rng, 20, 30))
        mrc.set_extended_header(record)
        mrc.header.exttyp = b"FEI1"
    info = probe_image(path)
    assert info.pixel_size_angstrom == pytest.approx(0.83)
    details = _details(info)
    assert details["High tension"] == "300 kV"
    assert details["Dose"] == "50 e⁻/Å²"
    assert details["Microscope"] == "TITAN52336320"
    assert details["Extended header"] == f"FEI1, {dtype.itemsize:,} bytes"


def test_truncated_mrc_is_caught_by_the_probe_with_sizes(tmp_path, rng):
    source = write_mrc(tmp_path / "full.mrc", rng.normal(size=(3, 64, 64)).astype(np.float32),
                       kind="stack")
    size = source.stat().st_size
    cut = truncate_copy(source, tmp_path / "cut.mrc", size // 2)
    with pytest.raises(UnreadableImage) as caught:
        probe_image(cut)
    message = caught.value.message
    assert message.startswith("cannot read cut.mrc: the MRC header says 64×64×3 float32")
    assert "truncated" in message and str(tmp_path) not in message
    one_short = truncate_copy(source, tmp_path / "short.mrc", size - 1)
    with pytest.raises(UnreadableImage, match=f"needs {size:,} bytes.*only {size - 1:,} bytes"):
        probe_image(one_short)
    header_only = truncate_copy(source, tmp_path / "head.mrc", 500)
    with pytest.raises(UnreadableImage, match="1,024-byte header.*only 500 bytes"):
        probe_image(header_only)


def test_read_plane_of_a_file_truncated_after_probing(tmp_path, rng):
    path = write_mrc(tmp_path / "mic.mrc", micrograph(rng))
    info = probe_image(path)
    truncate_copy(path, path, 4000)
    with pytest.raises(UnreadableImage, match="truncated"):
        read_plane(path, info, 0)


def test_damaged_mrc_headers(tmp_path, rng):
    path = write_mrc(tmp_path / "mic.mrc", micrograph(rng))
    data = bytearray(path.read_bytes())
    no_map = bytearray(data)
    no_map[208:212] = b"XXXX"
    (tmp_path / "nomap.mrc").write_bytes(no_map)
    with pytest.raises(UnreadableImage, match="not a valid MRC file"):
        probe_image(tmp_path / "nomap.mrc")
    packed = bytearray(data)
    packed[12:16] = struct.pack("<i", 101)
    (tmp_path / "packed.mrc").write_bytes(packed)
    with pytest.raises(UnreadableImage, match=r"mode 101 \(4-bit packed\)"):
        probe_image(tmp_path / "packed.mrc")
    bad_ext = bytearray(data)
    bad_ext[92:96] = struct.pack("<i", 10_000_000)  # extended header larger than the file
    (tmp_path / "ext.mrc").write_bytes(bad_ext)
    with pytest.raises(UnreadableImage, match="extended header is cut short"):
        probe_image(tmp_path / "ext.mrc")


def test_text_file_named_mrc_and_empty_and_missing_files(tmp_path):
    text = tmp_path / "notes.mrc"
    text.write_text("these are my notes, not a map\n" * 50)
    with pytest.raises(UnreadableImage, match="cannot read notes.mrc: it is not a valid MRC"):
        probe_image(text)
    empty = tmp_path / "empty.mrc"
    empty.write_bytes(b"")
    with pytest.raises(UnreadableImage, match=r"empty \(0 bytes\)"):
        probe_image(empty)
    with pytest.raises(UnreadableImage, match="could not be opened"):
        probe_image(tmp_path / "missing.mrc")
    unknown = tmp_path / "blob.bin"
    unknown.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(UnreadableImage, match="not an image format the viewer knows"):
        probe_image(unknown)


# --------------------------------------------------------------------------------------------
# TIFF
# --------------------------------------------------------------------------------------------


def test_tiff_single_page_with_resolution_in_centimetres(tmp_path, rng):
    image = (micrograph(rng) * 100).astype(np.int16)
    path = tmp_path / "mic.tif"
    tifffile.imwrite(path, image, resolution=(1e8 / 1.5, 1e8 / 1.5),
                     resolutionunit="CENTIMETER")
    info = probe_image(path)
    assert (info.format, info.n_slices, info.slice_kind, info.dtype) == ("tiff", 1, "image",
                                                                         "int16")
    assert info.n_frames == 1
    assert info.pixel_size_angstrom == pytest.approx(1.5, rel=1e-6)
    assert "Pixel size (resolution tags)" in _details(info)
    np.testing.assert_array_equal(read_plane(path, info, 0), image)


def test_tiff_print_resolution_is_not_a_pixel_size(tmp_path, rng):
    path = tmp_path / "photo.tif"
    tifffile.imwrite(path, (rng.random((20, 20)) * 255).astype(np.uint8), resolution=(72, 72),
                     resolutionunit="INCH")
    info = probe_image(path)
    assert info.pixel_size_angstrom is None
    assert "print resolution" in _details(info)["Resolution"]


def test_multi_frame_tiff_pages_and_imagej_pixel_size(tmp_path, rng):
    frames = (rng.random((6, 40, 50)) * 200).astype(np.uint8)
    path = tmp_path / "movie_fractions.tiff"
    tifffile.imwrite(path, frames, imagej=True, resolution=(1 / 0.25, 1 / 0.25),
                     metadata={"unit": "nm"})
    info = probe_image(path)
    assert (info.n_slices, info.n_frames, info.width, info.height) == (6, 6, 50, 40)
    assert info.slice_kind == "frames"
    assert info.pixel_size_angstrom == pytest.approx(2.5, rel=1e-6)
    for index in (0, 5):
        np.testing.assert_array_equal(read_plane(path, info, index), frames[index])


def test_lzw_multi_frame_tiff_like_epu_fractions(tmp_path, rng):
    frames = (rng.random((5, 32, 48)) * 4).astype(np.uint8)
    path = write_tiff_frames(tmp_path / "FoilHole_1_fractions.tiff", frames, compression="lzw")
    info = probe_image(path)
    assert info.n_slices == 5
    assert _details(info)["Compression"] == "lzw"
    np.testing.assert_array_equal(read_plane(path, info, 2), frames[2])


def test_rgb_tiff_is_read_as_luminance(tmp_path, rng):
    rgb = (rng.random((10, 12, 3)) * 255).astype(np.uint8)
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, rgb, photometric="rgb")
    info = probe_image(path)
    expected = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    np.testing.assert_allclose(read_plane(path, info, 0), expected, rtol=1e-5)


def test_truncated_and_damaged_tiffs(tmp_path, rng):
    frames = (rng.random((6, 40, 50)) * 200).astype(np.uint8)
    source = write_tiff_frames(tmp_path / "movie.tif", frames)
    size = source.stat().st_size
    # tifffile writes the first directory, all the data, then the other directories
    cut = truncate_copy(source, tmp_path / "cut.tif", size - 100)
    with pytest.raises(UnreadableImage, match=f"cannot read cut.tif: the directory of page 6 "
                                              f"ends at byte {size - 16:,} but the file has "
                                              f"only {size - 100:,} bytes; it looks truncated"):
        probe_image(cut)
    half = truncate_copy(source, tmp_path / "half.tif", size // 2)
    with pytest.raises(UnreadableImage, match="page 2 starts at byte .* past the end"):
        probe_image(half)
    header = truncate_copy(source, tmp_path / "head.tif", 10)
    with pytest.raises(UnreadableImage, match="the directory of page 1 ends at byte .* only 10 "
                                              "bytes; it looks truncated"):
        probe_image(header)
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"II*\x00" + struct.pack("<I", 8) + bytes(rng.integers(0, 256, 4000,
                                                                                dtype=np.uint8)))
    with pytest.raises(UnreadableImage, match="cannot read garbage.tif"):
        probe_image(garbage)


def test_damaged_compressed_tiff_data_fail_in_read_plane(tmp_path, rng):
    image = (rng.random((64, 64)) * 255).astype(np.uint8)
    path = tmp_path / "deflate.tif"
    tifffile.imwrite(path, image, compression="zlib")
    info = probe_image(path)
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages.first.dataoffsets[0]
        count = tif.pages.first.databytecounts[0]
    data = bytearray(path.read_bytes())
    data[offset:offset + count] = b"\xff" * count
    path.write_bytes(data)
    with pytest.raises(UnreadableImage, match="cannot read deflate.tif: the TIFF data"):
        read_plane(path, info, 0)


# --------------------------------------------------------------------------------------------
# EER
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [65000, 65001, 65002])
def test_eer_movie_is_the_sum_of_its_frames(tmp_path, rng, compression):
    sample = write_eer_sample(tmp_path / "FoilHole_1_EER.eer", rng, compression=compression)
    info = probe_image(sample.path)
    assert (info.format, info.width, info.height) == ("eer", 96, 64)
    assert (info.n_slices, info.slice_kind, info.n_frames) == (1, "image", sample.n_frames)
    assert info.pixel_size_angstrom is None
    details = _details(info)
    assert details["Frames"] == str(sample.n_frames)
    assert details["EER compression"].startswith(str(compression))
    assert details["Detector pixel"].startswith("14 µm")
    assert details["Total dose"] == "0.45 e⁻ per detector pixel"
    assert details["Camera"] == "Falcon 4i"
    plane = read_plane(sample.path, info, 0)
    assert plane.dtype == np.float32
    np.testing.assert_array_equal(plane, sample.counts)
    assert plane.sum() > 0


def test_eer_summing_in_small_chunks_gives_the_same_counts(tmp_path, rng, monkeypatch):
    from cryovault.formats import image_tiff

    sample = write_eer_sample(tmp_path / "movie.eer", rng, n_frames=11, events=2000)
    monkeypatch.setattr(image_tiff, "EER_FLUSH_FRAMES", 3)  # 3 + 3 + 3 + 2 frames
    info = probe_image(sample.path)
    np.testing.assert_array_equal(read_plane(sample.path, info, 0), sample.counts)


def test_eer_with_integrated_image_sums_only_the_frames(tmp_path, rng):
    sample = write_eer_sample(tmp_path / "movie.eer", rng, integrated=True)
    info = probe_image(sample.path, "eer")
    assert info.n_frames == sample.n_frames
    assert "Integrated image" in _details(info)
    np.testing.assert_array_equal(read_plane(sample.path, info, 0), sample.counts)


def test_truncated_eer_loses_frames_and_says_so(tmp_path, rng):
    sample = write_eer_sample(tmp_path / "movie.eer", rng, n_frames=9)
    size = sample.path.stat().st_size
    for n_bytes in (size - 3, size * 2 // 3, 600):
        cut = truncate_copy(sample.path, tmp_path / "cut.eer", n_bytes)
        with pytest.raises(UnreadableImage, match="cannot read cut.eer: .*truncated"):
            probe_image(cut)


def test_eer_with_damaged_frame_data(tmp_path, rng):
    sample = write_eer_sample(tmp_path / "movie.eer", rng)
    info = probe_image(sample.path)
    with tifffile.TiffFile(sample.path) as tif:
        page = tif.pages[3]
        offset, count = page.dataoffsets[0], page.databytecounts[0]
    data = bytearray(sample.path.read_bytes())
    data[offset:offset + count] = b"\xff" * count  # escape codes running past the frame
    sample.path.write_bytes(data)
    with pytest.raises(UnreadableImage, match="cannot read movie.eer: the EER data"):
        read_plane(sample.path, info, 0)


def test_plain_tiff_is_not_an_eer(tmp_path, rng):
    path = write_tiff_frames(tmp_path / "x.eer", (rng.random((3, 8, 8)) * 9).astype(np.uint8))
    with pytest.raises(UnreadableImage, match="not an EER movie"):
        probe_image(path, "eer")


# --------------------------------------------------------------------------------------------
# PNG and JPEG
# --------------------------------------------------------------------------------------------


def test_png_grey_colour_and_16_bit(tmp_path, rng):
    grey = (rng.random((30, 40)) * 255).astype(np.uint8)
    info = probe_image(write_png(tmp_path / "grey.png", grey))
    assert (info.format, info.width, info.height, info.dtype) == ("png", 40, 30, "uint8")
    assert info.pixel_size_angstrom is None and info.n_frames is None
    np.testing.assert_array_equal(read_plane(tmp_path / "grey.png", info, 0), grey)

    colour = (rng.random((30, 40, 3)) * 255).astype(np.uint8)
    path = write_png(tmp_path / "colour.png", colour)
    info = probe_image(path)
    assert "luminance" in _details(info)["Colour mode"]
    expected = np.asarray(Image.fromarray(colour).convert("L"), dtype=np.float32)
    np.testing.assert_array_equal(read_plane(path, info, 0), expected)

    deep = (rng.random((30, 40)) * 60000).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(deep).save(path)
    info = probe_image(path)
    assert info.dtype == "uint16"
    np.testing.assert_array_equal(read_plane(path, info, 0), deep)


def test_epu_jpeg_fixture(rng):
    info = probe_image(EPU_JPEG)
    assert (info.format, info.width, info.height) == ("jpeg", 512, 364)
    plane = read_plane(EPU_JPEG, info, 0)
    assert plane.shape == (364, 512) and plane.dtype == np.float32
    assert 0 < plane.mean() < 255


def test_truncated_and_damaged_png_and_jpeg(tmp_path, rng):
    image = (micrograph(rng, 80, 80) * 30 + 100).clip(0, 255).astype(np.uint8)
    png = write_png(tmp_path / "a.png", image)
    cut = truncate_copy(png, tmp_path / "cut.png", png.stat().st_size - 30)
    with pytest.raises(UnreadableImage, match="cannot read cut.png: .*truncated"):
        probe_image(cut)
    damaged = bytearray(png.read_bytes())
    idat = damaged.index(b"IDAT")
    damaged[idat + 10: idat + 60] = b"\x00" * 50
    (tmp_path / "damaged.png").write_bytes(damaged)
    info = probe_image(tmp_path / "damaged.png")  # the chunk structure is intact
    with pytest.raises(UnreadableImage, match="cannot read damaged.png"):
        read_plane(tmp_path / "damaged.png", info, 0)

    jpeg = write_jpeg(tmp_path / "a.jpg", image)
    cut = truncate_copy(jpeg, tmp_path / "cut.jpg", jpeg.stat().st_size // 2)
    with pytest.raises(UnreadableImage, match="cannot read cut.jpg: the JPEG data end before"):
        probe_image(cut)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + bytes(200))
    with pytest.raises(UnreadableImage, match="cannot read bad.jpg"):
        probe_image(bad)


def test_mistyped_files(tmp_path, rng):
    image = (rng.random((16, 16)) * 255).astype(np.uint8)
    jpeg_named_png = write_jpeg(tmp_path / "really_a_jpeg.png", image)
    info = probe_image(jpeg_named_png)  # the bytes decide
    assert info.format == "jpeg"
    with pytest.raises(UnreadableImage, match="it should be PNG but its first bytes are those "
                                              "of a JPEG file"):
        probe_image(jpeg_named_png, "png")
    html = tmp_path / "error.png"
    html.write_text("<html><body>502 Bad Gateway</body></html>")
    with pytest.raises(UnreadableImage, match="cannot read error.png"):
        probe_image(html)


def test_slice_out_of_range(tmp_path, rng):
    path = write_mrc(tmp_path / "s.mrcs", rng.normal(size=(3, 8, 8)).astype(np.float32),
                     kind="stack")
    info = probe_image(path)
    with pytest.raises(SliceOutOfRange, match=r"slice 3 does not exist: the image has 3 slices"):
        read_plane(path, info, 3)
    with pytest.raises(SliceOutOfRange):
        read_plane(path, info, -1)


def test_planes_larger_than_the_limit_are_refused_before_decoding(tmp_path):
    # 70,000 × 70,000 zlib-compressed zeros: a few MB on disk, 19.6 GB as float32
    path = tmp_path / "bomb.tif"
    zero_tile = zlib.compress(bytes(4096 * 4096))
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(iter([zero_tile] * 18 * 18), shape=(70_000, 70_000), dtype=np.uint8,
                  compression="zlib", tile=(4096, 4096))
    with pytest.raises(UnreadableImage, match=r"70000 × 70000 pixels \(4,900 megapixels\), "
                                              "more than the viewer's limit of 268"):
        probe_image(path)


def test_unknown_format_argument_is_a_programming_error(tmp_path, rng):
    path = write_mrc(tmp_path / "a.mrc", micrograph(rng, 8, 8))
    with pytest.raises(ValueError, match="unknown image format"):
        probe_image(path, "gif")


@pytest.mark.parametrize("maker", ["mrc", "tiff", "eer", "png", "jpeg"])
def test_every_truncation_point_raises_unreadable_image_only(tmp_path, rng, maker):
    """Cut each format at many points: probing, or reading when the probe passes, must raise
    UnreadableImage and nothing else."""
    image = (micrograph(rng, 24, 32) * 20 + 100).clip(0, 255).astype(np.uint8)
    source: Path
    if maker == "mrc":
        source = write_mrc(tmp_path / "a.mrc", image.astype(np.float32))
    elif maker == "tiff":
        source = write_tiff_frames(tmp_path / "a.tif", np.stack([image] * 3), compression="lzw")
    elif maker == "eer":
        source = write_eer_sample(tmp_path / "a.eer", rng, width=32, height=24, n_frames=4).path
    elif maker == "png":
        source = write_png(tmp_path / "a.png", image)
    else:
        source = write_jpeg(tmp_path / "a.jpg", image)
    size = source.stat().st_size
    for n_bytes in sorted({0, 1, 7, 8, 16, 100, 223, 224, 1023, 1024, size // 3, size // 2,
                           size - 2, size - 1}):
        if n_bytes >= size:
            continue
        cut = truncate_copy(source, tmp_path / f"cut{source.suffix}", n_bytes)
        with pytest.raises(UnreadableImage):
            info = probe_image(cut)
            read_plane(cut, info, 0)

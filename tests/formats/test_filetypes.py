"""viewer_kind and media_type."""

from __future__ import annotations

import numpy as np
import pytest

from cryovault.formats.filetypes import HEAD_BYTES, media_type, sniff_image, viewer_kind
from tests.formats.samples import (
    EPU_JPEG,
    FIXTURES,
    STAR_FIXTURES,
    write_eer_sample,
    write_mrc,
    write_png,
    write_tiff_frames,
)


def _head(path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(HEAD_BYTES)


def test_real_images_are_images(tmp_path):
    rng = np.random.default_rng(0)
    mrc = write_mrc(tmp_path / "a.mrc", rng.normal(size=(8, 8)).astype(np.float32))
    tif = write_tiff_frames(tmp_path / "a_fractions.tiff", np.zeros((3, 8, 8), np.uint8))
    eer = write_eer_sample(tmp_path / "a_EER.eer", rng).path
    png = write_png(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
    for path, sniffed in ((mrc, "mrc"), (tif, "tiff"), (eer, "tiff"), (png, "png"),
                          (EPU_JPEG, "jpeg")):
        assert viewer_kind(path.name, _head(path)) == "image", path
        assert sniff_image(_head(path)) == sniffed
    # the bytes decide, whatever the name
    assert viewer_kind("stack.mrcs", _head(mrc)) == "image"
    assert viewer_kind("no_extension", _head(mrc)) == "image"
    assert viewer_kind("picture.txt", _head(png)) == "image"


def test_damaged_images_go_to_the_image_viewer_text_behind_image_names_does_not():
    assert viewer_kind("cut.mrc", b"\x00\x10\x00\x00" * 10) == "image"
    assert viewer_kind("empty.tif", b"") == "image"
    assert viewer_kind("error.png", b"<html><body>502 Bad Gateway</body></html>") == "download"


@pytest.mark.parametrize(("path", "kind"), [
    (STAR_FIXTURES / "relion_postprocess.star", "table"),
    (STAR_FIXTURES / "tomo" / "relion5_aligntiltseries_tomograms.star", "table"),
    (FIXTURES / "mdoc" / "tomo_test_1.mdoc", "text"),
    (FIXTURES / "imod" / "TS_001.xf", "text"),
    (FIXTURES / "imod" / "TS_001.tlt", "text"),
    (FIXTURES / "imod" / "ctfplotter_v3.defocus", "text"),
    (FIXTURES / "logs" / "motioncor2_1.6.4_eer.log", "text"),
    (FIXTURES / "epu" / "atlas" / "Atlas.dm", "text"),
    (FIXTURES / "epu" / "epu-dir-example" / "Images-Disc1" / "GridSquare_8999138"
     / "GridSquare_20250108_151151.xml", "text"),
])
def test_fixture_files(path, kind):
    assert viewer_kind(path.name, _head(path)) == kind


def test_tables_json_text_and_downloads():
    assert viewer_kind("coords.csv", b"x,y\n1,2\n") == "table"
    assert viewer_kind("coords.TSV", b"x\ty\n1\t2\n") == "table"
    assert viewer_kind("meta.json", b'{"a": 1}') == "json"
    assert viewer_kind("notes.md", "# Grid 3 — ice too thick\n".encode()) == "text"
    assert viewer_kind("run.log", "Température 22 °C\n".encode("latin-1")) == "text"
    assert viewer_kind("README", b"plain words\n") == "text"
    assert viewer_kind("empty.txt", b"") == "text"
    assert viewer_kind("blob.star", b"data_\x00\x01\x02") == "download"
    assert viewer_kind("data.json", bytes(range(256))) == "download"
    assert viewer_kind("weights.bin", bytes(range(256))) == "download"
    assert viewer_kind("latin.bin", "café\n".encode("latin-1")) == "download"
    assert viewer_kind("movies.tar.gz", b"\x1f\x8b\x08\x00") == "download"
    assert viewer_kind("stack.mrc.gz", b"plain") == "download"
    assert viewer_kind("empty", b"") == "download"


def test_text_with_a_multibyte_character_cut_at_the_end_of_the_head():
    head = ("ångström " * 500).encode()[:11 * 100 + 1]  # 11 bytes a word: cut inside "å"
    assert head[-1] == 0xC3
    assert viewer_kind("notes.txt", head) == "text"
    assert viewer_kind("notes", head) == "text"


@pytest.mark.parametrize(("name", "expected"), [
    ("a.mrc", "application/octet-stream"),
    ("a.MRCS", "application/octet-stream"),
    ("a.eer", "application/octet-stream"),
    ("TS_01.st", "application/octet-stream"),
    ("run_data.star", "text/plain"),
    ("TS_01.mdoc", "text/plain"),
    ("TS_001.xf", "text/plain"),
    ("TS_001.tlt", "text/plain"),
    ("EpuSession.dm", "application/xml"),
    ("GridSquare.xml", "application/xml"),
    ("notes.md", "text/markdown"),
    ("a.csv", "text/csv"),
    ("a.tsv", "text/tab-separated-values"),
    ("a.json", "application/json"),
    ("a.png", "image/png"),
    ("a.jpg", "image/jpeg"),
    ("a.tiff", "image/tiff"),
    ("a.pdf", "application/pdf"),
    ("a.mrc.gz", "application/gzip"),
    ("a.tar.gz", "application/gzip"),
    ("a.unknownext", "application/octet-stream"),
    ("noext", "application/octet-stream"),
])
def test_media_type(name, expected):
    assert media_type(name) == expected

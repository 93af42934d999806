"""The viewers' endpoints (SPEC WS-11) on real-format files: MRC (image, stack, volume), TIFF,
EER, PNG; damaged files; the file page for tables, JSON, text and other files."""

from __future__ import annotations

import io
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tifffile
from PIL import Image

from cryovault.formats.eer import random_events, write_eer
from tests.helpers import assert_error
from tests.storage.test_files_api import dataset, stored_path  # noqa: F401 (fixture)
from tests.web.test_pages import PASSWORD

STAR = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "star" / (
    "relion31_optics_and_particles.star")


def put(user, parent: str, name: str, data: bytes) -> dict:
    response = user.post(f"/api/v1/elements/{parent}/files", params={"name": name}, content=data)
    assert response.status_code == 201, response.text
    return response.json()


def mrc_bytes(tmp_path: Path, data: np.ndarray, name: str = "a.mrc", voxel: float = 1.06,
              volume: bool = False) -> bytes:
    path = tmp_path / name
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = voxel
        if data.ndim == 3 and not volume:
            mrc.set_image_stack()
    return path.read_bytes()


def png_of(response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(response.content))


def test_mrc_image_preview_and_tiles(alice, dataset, tmp_path):  # noqa: F811
    plane = np.zeros((1500, 2100), np.float32)
    plane[:, 1050:] = 10.0  # right half bright
    file = put(alice, dataset["id"], "micrograph.mrc", mrc_bytes(tmp_path, plane))
    base = f"/api/v1/files/{file['id']}"
    info = alice.get(f"{base}/image").json()
    assert (info["format"], info["width"], info["height"], info["n_slices"]) == (
        "mrc", 2100, 1500, 1)
    assert info["pixel_size_angstrom"] == pytest.approx(1.06)
    preview = alice.get(f"{base}/preview").json()
    assert (preview["width"], preview["height"], preview["tile_size"]) == (2100, 1500, 512)
    assert preview["max_level"] == 12  # ceil(log2(2100))
    assert len(preview["histogram"]) == 256
    first = png_of(alice.get(f"{base}/preview.png"))
    assert max(first.size) <= 1024
    pixels = np.asarray(first.convert("L"))
    assert pixels[:, : pixels.shape[1] // 3].mean() < 30 < 220 < pixels[:, -10:].mean()
    full = png_of(alice.get(f"{base}/tiles/0/12/3_2.png"))
    assert full.size == (512, 1500 - 2 * 512)
    assert np.asarray(full.convert("L")).min() > 200  # a tile of the bright half
    top = png_of(alice.get(f"{base}/tiles/0/0/0_0.png"))
    assert top.size == (1, 1)
    assert_error(alice.get(f"{base}/tiles/0/13/0_0.png"), 404, "level 13")
    assert_error(alice.get(f"{base}/tiles/0/12/5_0.png"), 404, "5_0")
    assert_error(alice.get(f"{base}/tiles/0/12/x_y.png"), 404, "column")
    assert_error(alice.get(f"{base}/preview", params={"slice": 1}), 404, "slice")
    thumb = png_of(alice.get(f"{base}/thumbnail"))
    assert max(thumb.size) <= 256


def test_stack_and_volume_slices(alice, dataset, tmp_path):  # noqa: F811
    stack = np.stack([np.full((64, 64), i, np.float32) + np.eye(64, dtype=np.float32)
                      for i in range(3)])
    file = put(alice, dataset["id"], "particles.mrcs", mrc_bytes(tmp_path, stack, "p.mrcs"))
    info = alice.get(f"/api/v1/files/{file['id']}/image").json()
    assert (info["n_slices"], info["slice_kind"]) == (3, "stack")
    windows = {alice.get(f"/api/v1/files/{file['id']}/preview", params={"slice": i}).json()["lo"]
               for i in range(3)}
    assert len(windows) == 3  # each slice is its own image
    assert_error(alice.get(f"/api/v1/files/{file['id']}/preview", params={"slice": 3}), 404)

    volume = np.zeros((9, 32, 32), np.float32)
    volume[4] = np.eye(32)
    tomogram = put(alice, dataset["id"], "tomogram.mrc",
                   mrc_bytes(tmp_path, volume, "v.mrc", volume=True))
    info = alice.get(f"/api/v1/files/{tomogram['id']}/image").json()
    assert (info["n_slices"], info["slice_kind"]) == (9, "volume")
    # the thumbnail of a volume is its middle section (the only one with structure here)
    thumb = np.asarray(png_of(alice.get(f"/api/v1/files/{tomogram['id']}/thumbnail")).convert("L"))
    assert thumb.max() > thumb.min()


def test_tiff_eer_and_png(alice, dataset, tmp_path):  # noqa: F811
    frames = np.random.default_rng(1).integers(0, 5, (4, 48, 64)).astype(np.uint16)
    tiff = tmp_path / "movie.tiff"
    tifffile.imwrite(tiff, frames, photometric="minisblack")
    file = put(alice, dataset["id"], "movie_fractions.tiff", tiff.read_bytes())
    info = alice.get(f"/api/v1/files/{file['id']}/image").json()
    assert (info["format"], info["n_slices"], info["width"], info["height"]) == (
        "tiff", 4, 64, 48)
    assert png_of(alice.get(f"/api/v1/files/{file['id']}/preview.png", params={"slice": 3}))

    rng = np.random.default_rng(2)
    eer = tmp_path / "movie.eer"
    write_eer(eer, [random_events(rng, 256, 256, 2000) for _ in range(5)], width=256,
              height=256, n_frames=5)
    file = put(alice, dataset["id"], "movie_EER.eer", eer.read_bytes())
    info = alice.get(f"/api/v1/files/{file['id']}/image").json()
    assert (info["format"], info["n_slices"], info["n_frames"]) == ("eer", 1, 5)
    assert info["pixel_size_angstrom"] is None  # EER records only the detector's pixel pitch
    summed = png_of(alice.get(f"/api/v1/files/{file['id']}/preview.png"))
    assert summed.size == (256, 256)

    image = Image.fromarray(np.arange(100 * 80, dtype=np.uint32).reshape(80, 100).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    file = put(alice, dataset["id"], "atlas.png", buffer.getvalue())
    assert alice.get(f"/api/v1/files/{file['id']}/image").json()["format"] == "png"
    assert png_of(alice.get(f"/api/v1/files/{file['id']}/thumbnail")).size == (100, 80)


def test_damaged_images_say_cannot_read(alice, dataset, tmp_path):  # noqa: F811
    whole = mrc_bytes(tmp_path, np.ones((256, 256), np.float32))
    truncated = put(alice, dataset["id"], "cut.mrc", whole[:5000])
    for path in ("image", "preview", "preview.png", "thumbnail"):
        assert_error(alice.get(f"/api/v1/files/{truncated['id']}/{path}"), 422, "cannot read",
                     case=path)
    garbage = put(alice, dataset["id"], "noise.tiff", b"II*\x00" + b"\xff" * 300)
    assert_error(alice.get(f"/api/v1/files/{garbage['id']}/preview"), 422, "cannot read")
    not_an_image = put(alice, dataset["id"], "notes.txt", b"hello")
    assert_error(alice.get(f"/api/v1/files/{not_an_image['id']}/preview"), 422, "cannot read")


def test_bytes_changed_on_disk_are_flagged_before_showing(alice, dataset, app,  # noqa: F811
                                                          tmp_path):
    data = mrc_bytes(tmp_path, np.ones((128, 128), np.float32))
    file = put(alice, dataset["id"], "a.mrc", data)
    path = stored_path(app, file)
    damaged = bytearray(data)
    damaged[-1] ^= 0x55
    path.write_bytes(bytes(damaged))
    assert_error(alice.get(f"/api/v1/files/{file['id']}/preview"), 409, "checksum")
    assert alice.get(f"/api/v1/files/{file['id']}").json()["file"]["integrity"] == "mismatch"


def test_viewers_respect_access(alice, bob, dataset, tmp_path):  # noqa: F811
    file = put(alice, dataset["id"], "a.mrc", mrc_bytes(tmp_path, np.ones((8, 8), np.float32)))
    for path in ("image", "preview", "preview.png", "thumbnail", "tiles/0/0/0_0.png"):
        assert_error(bob.get(f"/api/v1/files/{file['id']}/{path}"), 404, case=path)


@pytest.fixture
def browser_login(client, alice):
    client.cookies.clear()
    assert client.post("/login", data={"login": "alice", "password": PASSWORD},
                       follow_redirects=False).status_code in (200, 303)
    return client


def test_file_page_for_each_kind(alice, dataset, browser_login, tmp_path):  # noqa: F811
    cases = {
        "run.star": (STAR.read_bytes(), "data-table"),
        "params.json": (b'{"voltage_kv": 300, "cs_mm": 2.7}', "text-view"),
        "motioncor.log": (b"<script>alert(1)</script> done\n", "text-view"),
        "archive.bin": (b"\x00\x01\x02", "no-viewer"),
        "broken.json": (b"{not json", "viewer-problem"),
        "cut.mrc": (mrc_bytes(tmp_path, np.ones((64, 64), np.float32))[:1500], "viewer-problem"),
        "ok.mrc": (mrc_bytes(tmp_path, np.ones((64, 64), np.float32)), "image-viewer"),
    }
    for name, (data, marker) in cases.items():
        file = put(alice, dataset["id"], name, data)
        page = browser_login.get(f"/files/{file['id']}")
        assert page.status_code == 200, (name, page.text[:300])
        assert marker in page.text, name
        assert "<script>alert(1)</script>" not in page.text
    pretty = put(alice, dataset["id"], "p.json", b'{"voltage_kv":300}')
    assert "&#34;voltage_kv&#34;: 300" in browser_login.get(f"/files/{pretty['id']}").text
    damaged = put(alice, dataset["id"], "c.mrc",
                  mrc_bytes(tmp_path, np.ones((64, 64), np.float32))[:3000])
    assert "cannot read" in browser_login.get(f"/files/{damaged['id']}").text

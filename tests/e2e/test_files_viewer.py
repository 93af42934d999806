"""Files in the browser (WS-10, WS-11, PLT-3): upload with progress and cancel, thumbnails,
the image viewer (zoom, contrast, scale bar), tables, the storage page."""

from __future__ import annotations

import re
from pathlib import Path

import mrcfile
import numpy as np
from playwright.sync_api import Page, expect

from tests.e2e.test_workspace_walkthrough import login, ready

STAR = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "star" / (
    "relion31_optics_and_particles.star")


def synthetic_micrograph(path: Path, size: int = 2048) -> None:
    """Noise with bright discs, so that zooming shows structure; 1.25 Å per pixel."""
    rng = np.random.default_rng(7)
    image = rng.normal(0, 1, (size, size)).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    for cx, cy in rng.integers(100, size - 100, (40, 2)):
        image[(xx - cx) ** 2 + (yy - cy) ** 2 < 30 ** 2] += 4
    with mrcfile.new(path) as mrc:
        mrc.set_data(image)
        mrc.voxel_size = 1.25


def make_dataset(page: Page, base: str) -> str:
    def post(body: dict) -> dict:
        response = page.request.post(f"{base}/api/v1/elements", data=body)
        assert response.status == 201, response.text()
        return response.json()

    workflow = post({"kind": "workflow", "name": "Apoferritin", "workflow_type": "free"})
    step = post({"kind": "step", "name": "Micrographs", "parent_id": workflow["id"]})
    return post({"kind": "dataset", "name": "Grid 3", "parent_id": step["id"]})["id"]


def test_upload_view_and_zoom(server, browser, shots, tmp_path):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    login(page, server, "alice")
    dataset = make_dataset(page, server)
    micrograph = tmp_path / "FoilHole_1_Data_2.mrc"
    synthetic_micrograph(micrograph)

    page.goto(f"{server}/workspace/{dataset}?view=cards")
    ready(page)
    expect(page.locator("#upload-button")).to_be_visible()
    page.locator("#upload-input").set_input_files([str(micrograph), str(STAR)])
    queue = page.locator("#upload-queue")
    expect(queue.locator("li.done")).to_have_count(2, timeout=30_000)
    expect(queue).to_contain_text("done")
    expect(page.locator("#items").get_by_role("link", name=micrograph.name)).to_be_visible()
    expect(page.locator("#items").get_by_role("link", name=STAR.name)).to_be_visible()
    # the micrograph's card shows its thumbnail
    thumb = page.locator("#items img.file-thumb")
    expect(thumb).to_have_count(1)
    page.wait_for_function(
        "() => document.querySelector('#items img.file-thumb')?.naturalWidth > 0")
    shots.take(page, "upload-done", guide=True)

    # The STAR file opens as tables.
    page.locator("#items").get_by_role("link", name=STAR.name).click()
    expect(page.locator(".data-table").first).to_be_visible()
    expect(page.locator(".table-block h2").first).to_contain_text("data_block_1")
    expect(page.locator(".data-table").nth(1)).to_contain_text("rlnCoordinateX")
    page.go_back()

    # The micrograph opens in the image viewer, with a scale bar from its pixel size.
    tiles: list[str] = []
    page.on("request", lambda r: tiles.append(r.url) if "/tiles/" in r.url else None)
    page.locator("#items").get_by_role("link", name=micrograph.name).click()
    expect(page.locator("body[data-viewer-ready='1']")).to_have_count(1, timeout=20_000)
    expect(page.locator("#image-details")).to_contain_text("1.25 Å")
    scale = page.locator("#scalebar .label")
    expect(scale).to_be_visible()
    before = scale.inner_text()
    shots.take(page, "image-viewer", guide=True)

    levels_before = {int(re.search(r"/tiles/0/(\d+)/", u).group(1)) for u in tiles}
    box = page.locator("#osd").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(8):
        page.mouse.wheel(0, -400)
        page.wait_for_timeout(150)
    # Zooming in loads the full-resolution level (11 for 2048 pixels), never loaded before.
    levels: set[int] = set()
    for _ in range(100):
        levels = {int(re.search(r"/tiles/0/(\d+)/", u).group(1)) for u in tiles}
        if 11 in levels:
            break
        page.wait_for_timeout(100)
    assert 11 in levels and 11 not in levels_before, (levels_before, levels)
    expect(scale).not_to_have_text(before)

    # Contrast: moving the black point changes the display filter.
    slope = page.locator("#contrast-filter feFuncR").get_attribute("slope")
    page.locator("#black-point").fill("100")
    expect(page.locator("#contrast-filter feFuncR")).not_to_have_attribute("slope", slope)
    expect(page.locator("#black-value")).not_to_be_empty()
    shots.take(page, "image-viewer-zoomed")
    context.close()


def test_cancel_an_upload_and_storage_page(server, browser, shots, tmp_path):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    login(page, server, "alice")
    dataset = make_dataset(page, server)
    big = tmp_path / "movie_fractions.tiff"
    big.write_bytes(b"\0" * (40 * 1024 * 1024))
    page.goto(f"{server}/workspace/{dataset}")
    ready(page)
    # Slow the network down so that the upload is still running when it is cancelled.
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1,
        "uploadThroughput": 2 * 1024 * 1024})
    page.locator("#upload-input").set_input_files(str(big))
    row = page.locator("#upload-queue li").filter(has_text=big.name)
    expect(row.locator(".upload-state")).to_contain_text("%")
    row.locator(".upload-cancel").click()
    expect(row).to_have_class(re.compile("cancelled"))
    expect(row.locator(".upload-state")).to_have_text("cancelled")
    uploads = page.request.get(f"{server}/api/v1/uploads").json()["items"]
    assert uploads == []
    children = page.request.get(f"{server}/api/v1/elements",
                                params={"parent_id": dataset}).json()["items"]
    assert children == []
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})

    page.goto(f"{server}/storage")
    storages = page.locator(".storage")
    expect(storages).to_have_count(3)
    expect(storages.first).to_contain_text("primary")
    expect(storages.first).to_contain_text("free")
    expect(page.locator(".meter").first).to_be_visible()
    assert "Registered in cryovault" in storages.first.get_attribute("title")
    shots.take(page, "storage-page", guide=True)
    page.goto(f"{server}/dashboard")
    expect(page.locator("#storage-summary .storage")).to_have_count(3)
    context.close()

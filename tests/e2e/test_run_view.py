"""The EPU run view in the browser (SPEC SPA-2): counts and items appear live while files are
registered (no reload, scroll kept), status dots, "Show only errors", list/cards remembered,
the micrograph page with its image, metadata and files."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

from playwright.sync_api import Page, expect

from tests.e2e.test_workspace_walkthrough import login
from tests.ingest.test_discovery import (
    acquisition_names,
    register_visit,
    session_name,
    simulated_visit,
    visit_files,
)

MDOC = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "mdoc"


class BrowserPut:
    """`put(url, content=, headers=)` through the signed-in browser context (as a watcher would
    call the API), answering like the test client."""

    def __init__(self, page: Page, base: str) -> None:
        self.request, self.base = page.context.request, base

    def __call__(self, url: str, content: bytes, headers: dict[str, str]) -> SimpleNamespace:
        response = self.request.put(self.base + url, data=content, headers=headers)
        return SimpleNamespace(status_code=response.status, json=response.json,
                               text=response.text())


def make_run(page: Page, base: str, name: str = "Grid 1 session") -> str:
    def post(body: dict) -> dict:
        response = page.request.post(f"{base}/api/v1/elements", data=body)
        assert response.status == 201, response.text()
        return response.json()

    workflow = post({"kind": "workflow", "name": "Apoferritin", "workflow_type": "spa"})
    steps = page.request.get(f"{base}/api/v1/elements?parent_id={workflow['id']}").json()["items"]
    imaging = next(step for step in steps if step["name"] == "Imaging")
    return post({"kind": "dataset", "name": name, "parent_id": imaging["id"],
                 "dataset_type": "epu_run"})["id"]


def split_at_acquisition(files: list, index: int) -> tuple[list, list]:
    """The files before the `index`-th acquisition's first file, and the rest."""
    names = acquisition_names(files)
    cut = next(i for i, (_, rel) in enumerate(files) if names[index] in rel)
    return files[:cut], files[cut:]


def test_run_view_fills_live(server, browser, shots):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    login(page, server, "alice")
    run = make_run(page, server)
    put = BrowserPut(page, server)
    visit = simulated_visit()
    files = visit_files(visit)
    session = session_name(visit)
    names = acquisition_names(files)
    first, rest = split_at_acquisition(files, 2)
    register_visit(put, run, first, session)

    page.goto(f"{server}/runs/{run}")
    expect(page.locator("#count-completed")).to_have_text("2")
    expect(page.locator("#count-in_progress")).to_have_text("0")
    expect(page.locator("#run-items .run-item")).to_have_count(2)
    expect(page.locator("#run-items .run-item .dot-completed")).to_have_count(2)
    page.evaluate("window.__sameDocument = true")

    # the rest of the session arrives while the page is open; the last movie comes later
    last_movie = next(f for f in rest if names[-1] in f[1] and "_fractions" in f[1])
    register_visit(put, run, [f for f in rest if f is not last_movie], session)
    expect(page.locator("#count-completed")).to_have_text(str(len(names) - 1), timeout=15_000)
    expect(page.locator("#count-in_progress")).to_have_text("1")
    expect(page.locator("#run-items .run-item")).to_have_count(len(names))
    last = page.locator("#run-items .run-item").last
    expect(last).to_have_attribute("data-status", "in_progress")
    expect(last.locator(".dot")).to_have_class(re.compile("dot-in_progress"))
    expect(last.locator(".run-name a")).to_have_text(names[-1])
    register_visit(put, run, [last_movie], session)
    expect(last).to_have_attribute("data-status", "completed", timeout=15_000)
    expect(page.locator("#count-completed")).to_have_text(str(len(names)))
    expect(page.locator("#count-in_progress")).to_have_text("0")
    assert page.evaluate("window.__sameDocument") is True  # never reloaded
    expect(page.locator("#run-items .run-item img").first).to_be_visible()
    shots.take(page, "epu-run-view", guide=True)

    # an acquisition whose XML is broken: failed, orange, its problem as the tooltip
    broken = "Images-Disc1/GridSquare_1/Data/FoilHole_2_Data_3_4_20260101_120000.xml"
    response = put(f"/api/v1/datasets/{run}/ingest/files/{broken}", content=b"<MicroscopeImage",
                   headers={"X-Source-Size": "16", "X-Source-Mtime": "1", "X-Session": session})
    assert response.status_code == 201 and response.json()["item"]["status"] == "failed"
    expect(page.locator("#count-failed")).to_have_text("1", timeout=15_000)
    expect(page.locator("#errors-count")).to_have_text("(1)")
    failed = page.locator("#run-items .run-item[data-status=failed]")
    expect(failed).to_have_count(1)
    expect(failed.locator(".dot")).to_have_attribute("title", re.compile(re.escape(broken)))

    page.locator("#only-errors").check()
    expect(page.locator("#run-items .run-item")).to_have_count(1)
    expect(page.locator("#run-items .run-item .run-name a")).to_have_text(
        "FoilHole_2_Data_3_4_20260101_120000")
    expect(page).to_have_url(re.compile(r"\?status=failed$"))
    page.reload()
    expect(page.locator("#only-errors")).to_be_checked()
    expect(page.locator("#run-items .run-item")).to_have_count(1)
    page.locator("#only-errors").uncheck()
    expect(page.locator("#run-items .run-item")).to_have_count(len(names) + 1)

    # cards, remembered on the next visit
    page.locator("#view-cards").click()
    expect(page.locator("#run-list")).to_have_class(re.compile("view-cards"))
    page.goto(f"{server}/runs/{run}")
    expect(page.locator("#run-list")).to_have_class(re.compile("view-cards"))
    expect(page.locator("#view-cards")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#run-items .run-item img")).to_have_count(len(names))
    shots.take(page, "epu-run-cards")

    # a micrograph: image, metadata, files
    page.locator("#run-items .run-item .run-name a", has_text=names[0]).click()
    expect(page).to_have_url(re.compile(r"/runs/.+/micrographs/"))
    expect(page.locator("body[data-viewer-ready='1']")).to_have_count(1, timeout=20_000)
    expect(page.locator("#micrograph-facts")).to_contain_text("Defocus target")
    expect(page.locator("#micrograph-metadata")).to_contain_text("Microscope")
    expect(page.locator("#scalebar")).to_be_visible()
    expect(page.locator("#run-files a.run-download")).to_have_count(5)  # xml jpg mrc movie copy
    href = page.locator("#run-files a.run-download").first.get_attribute("href")
    assert page.request.get(server + href).status == 200
    expect(page.locator("#previous-item")).to_have_count(0)
    shots.take(page, "epu-micrograph", guide=True)
    page.locator("#next-item").click()
    expect(page.locator("h1")).to_contain_text(names[1])
    context.close()


def test_run_view_pages_and_empty_run(server, browser, shots):
    context = browser.new_context(viewport={"width": 1300, "height": 800})
    page = context.new_page()
    login(page, server, "alice")
    run = make_run(page, server, "Empty session")
    page.goto(f"{server}/workspace/{run}")
    page.locator("#open-run-view").click()
    expect(page).to_have_url(f"{server}/runs/{run}")
    expect(page.locator("#run-empty")).to_be_visible()
    expect(page.locator("#count-completed")).to_have_text("0")
    # the first items arrive into an empty view
    visit = simulated_visit()
    files = visit_files(visit)
    first, _ = split_at_acquisition(files, 1)
    register_visit(BrowserPut(page, server), run, first, session_name(visit))
    expect(page.locator("#run-items .run-item")).to_have_count(1, timeout=15_000)
    expect(page.locator("#run-empty")).to_be_hidden()
    shots.take(page, "run-view-first-item")
    context.close()


def test_tomo_run_view(server, browser, shots):
    context = browser.new_context(viewport={"width": 1300, "height": 850})
    page = context.new_page()
    login(page, server, "alice")

    def post(body: dict) -> dict:
        response = page.request.post(f"{server}/api/v1/elements", data=body)
        assert response.status == 201, response.text()
        return response.json()

    workflow = post({"kind": "workflow", "name": "Lamella", "workflow_type": "et"})
    steps = page.request.get(f"{server}/api/v1/elements?parent_id={workflow['id']}").json()
    imaging = next(step for step in steps["items"] if step["name"] == "Imaging")
    run = post({"kind": "dataset", "name": "Tomo session", "parent_id": imaging["id"],
                "dataset_type": "tomo_run"})["id"]
    mdoc = MDOC / "tomo_test_1.mdoc"
    put = BrowserPut(page, server)
    response = put(f"/api/v1/datasets/{run}/ingest/files/Position_1.mdoc",
                   content=mdoc.read_bytes(),
                   headers={"X-Source-Size": str(mdoc.stat().st_size), "X-Source-Mtime": "1",
                            "X-Session": "tomo"})
    assert response.status_code == 201, response.text
    page.goto(f"{server}/runs/{run}")
    expect(page.locator("#count-in_progress")).to_have_text("1")
    item = page.locator("#run-items .run-item")
    expect(item).to_have_count(1)
    expect(item.locator(".run-name a")).to_have_text("Position_1")
    expect(page.locator("#open-discovery")).to_have_count(0)
    tilts = response.json()
    item.locator(".run-name a").click()
    expect(page.locator("#tilt-table tbody tr")).not_to_have_count(0)
    expect(page.locator("#series-metadata")).to_contain_text("Pixel size")
    assert tilts["item"]["kind"] == "tilt_series"
    shots.take(page, "tomo-tilt-series", guide=True)
    context.close()

"""The Discovery viewer in the browser (SPEC SPA-8): the atlas table, the atlas with a marker
per grid square, a grid square with its foil holes and acquisitions, the micrograph, the
hierarchy, the ruler, and deleting the atlas data."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.test_run_view import BrowserPut, make_run
from tests.e2e.test_workspace_walkthrough import login
from tests.ingest.test_discovery import (
    register_visit,
    session_name,
    simulated_visit,
    visit_files,
)


def click_visible_marker(page: Page, selector: str) -> str:
    """Click (a real mouse click) the first marker not covered by another; its data-id."""
    found = page.evaluate("""(selector) => {
      for (const marker of document.querySelectorAll(selector)) {
        const box = marker.getBoundingClientRect();
        const x = box.left + box.width / 2, y = box.top + box.height / 2;
        if (document.elementFromPoint(x, y) === marker) return {x, y, id: marker.dataset.id};
      }
      return null;
    }""", selector)
    assert found, f"no uncovered {selector}"
    page.mouse.click(found["x"], found["y"])
    return found["id"]


def test_discovery_atlas_square_micrograph(server, browser, shots):
    context = browser.new_context(viewport={"width": 1500, "height": 950})
    page = context.new_page()
    login(page, server, "alice")
    run = make_run(page, server)
    visit = simulated_visit()
    register_visit(BrowserPut(page, server), run, visit_files(visit), session_name(visit))
    truth = [json.loads(line) for line in (visit / "ground_truth.jsonl").read_text().splitlines()]
    atlas_truth = next(t for t in truth if t["kind"] == "atlas")
    exposures = [t for t in truth if t["kind"] == "acquisition"]

    # from the run view
    page.goto(f"{server}/runs/{run}")
    page.locator("#open-discovery").click()
    root = page.locator("#discovery")
    expect(root).to_have_attribute("data-ready", "atlas", timeout=20_000)
    rows = page.locator("#atlas-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Sample7")
    expect(rows.first).to_contain_text("Grid 1 session")
    expect(rows.first).to_have_class(re.compile("active"))
    squares = page.locator(".marker.square")
    expect(squares).to_have_count(len(atlas_truth["grid_squares"]))
    imaged = {str(t["grid_square_id"]) for t in exposures}
    expect(page.locator(".marker.square.state-completed")).to_have_count(len(imaged))
    expect(page.locator(".marker.square.state-not_imaged")).to_have_count(
        len(atlas_truth["grid_squares"]) - len(imaged))
    expect(page.locator("#hierarchy")).to_have_text("Atlas Sample7")
    expect(page.locator("#link-panel a.run-link")).to_have_attribute("href", f"/runs/{run}")
    expect(page.locator("#stage[data-ready='1']")).to_have_count(1)
    shots.take(page, "discovery-atlas")

    # the zoom buttons change the view; recenter brings the whole atlas back
    marker = squares.first
    before = marker.bounding_box()
    page.locator("#zoom-in").click()
    page.wait_for_timeout(600)
    assert marker.bounding_box()["x"] != pytest.approx(before["x"], abs=2)
    page.locator("#recenter").click()
    page.wait_for_timeout(900)
    assert marker.bounding_box()["x"] == pytest.approx(before["x"], abs=2)

    # atlas → grid square: click its marker
    square_id = click_visible_marker(page, ".marker.square.state-completed")
    expect(root).to_have_attribute("data-ready", "square", timeout=20_000)
    expect(page).to_have_url(re.compile(f"square={square_id}"))
    crumb = page.locator("#crumb-square")
    expect(crumb).to_contain_text("Grid square")
    epu_id = crumb.inner_text().split()[-1]
    mine = [t for t in exposures if str(t["grid_square_id"]) == epu_id]
    expect(page.locator(".marker.acquisition")).to_have_count(len(mine))
    expect(page.locator(".marker.acquisition.status-completed")).to_have_count(len(mine))
    expect(page.locator("#acquisition-list li")).to_have_count(len(mine))
    holes = {t["foil_hole_id"] for t in mine}
    expect(page.locator(".marker.hole.has-data")).to_have_count(len(holes))
    shots.take(page, "discovery-grid-square", guide=True)

    # the ruler: two clicks 200 screen pixels apart on the whole grid-square image
    page.locator("#recenter").click()
    page.wait_for_timeout(900)
    page.locator("#ruler").click()
    expect(page.locator("#ruler-readout")).to_contain_text("click two points")
    box = page.locator("#osd").bounding_box()
    square_truth = next(t for t in truth if t["kind"] == "grid_square"
                        and str(t["grid_square_id"]) == epu_id)
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.click(cx - 100, cy)
    page.mouse.click(cx + 100, cy)
    readout = page.locator("#ruler-readout")
    expect(readout).to_contain_text(re.compile(r"Distance: [\d.]+ (nm|µm)"))
    # home view: the square image (size_px/2 displayed pixels of 2 × its pixel size) fits
    # the viewer's smaller side
    displayed_px = page.evaluate("""async (file) => {
      const r = await fetch(`/api/v1/run-files/${file}/preview`); return (await r.json()).width;
    }""", page.locator("#stage").get_attribute("data-file"))
    screen_per_px = min(box["width"], box["height"]) / displayed_px
    expected = 200 / screen_per_px * 2 * square_truth["pixel_size_angstrom"]
    measured = float(readout.get_attribute("data-distance-angstrom"))
    assert measured == pytest.approx(expected, rel=0.03)
    assert "µm" in readout.inner_text()  # tens of µm on a grid square
    shots.take(page, "discovery-ruler")
    page.locator("#ruler").click()
    expect(readout).to_be_hidden()

    # grid square → micrograph: click an acquisition marker
    micrograph_id = click_visible_marker(page, ".marker.acquisition")
    expect(root).to_have_attribute("data-ready", "micrograph", timeout=20_000)
    expect(page).to_have_url(re.compile(f"micrograph={micrograph_id}"))
    name = page.locator("#crumb-micrograph").inner_text()
    assert name in {t["name"] for t in mine}
    expect(page.locator("#selection-details h3")).to_have_text(name)
    expect(page.locator("#selection-facts")).to_contain_text("Defocus target")
    expect(page.locator("#scalebar")).to_be_visible()
    expect(page.locator("#open-micrograph-page")).to_have_attribute(
        "href", f"/runs/{run}/micrographs/{micrograph_id}")
    shots.take(page, "discovery-micrograph")

    # the hierarchy goes back up; a deep link opens the same place
    page.locator("#crumb-square").click()
    expect(root).to_have_attribute("data-ready", "square", timeout=20_000)
    page.reload()
    expect(root).to_have_attribute("data-ready", "square", timeout=20_000)
    expect(page.locator("#crumb-square")).to_contain_text(epu_id)
    page.locator("#crumb-atlas").click()
    expect(root).to_have_attribute("data-ready", "atlas", timeout=20_000)

    # delete the atlas data: the squares stay reachable, micrographs stay
    page.locator("#delete-atlas").click()
    page.locator("#delete-atlas-confirm").click()
    expect(page.locator("#atlas-deleted")).to_be_visible()
    expect(rows.first).to_contain_text("data deleted")
    expect(page.locator("#stage-empty")).to_contain_text("The atlas image was deleted")
    expect(page.locator("#delete-atlas")).to_have_count(0)
    page.locator(f"#stage-empty .square-open[data-id='{square_id}']").click()
    expect(root).to_have_attribute("data-ready", "square", timeout=20_000)
    expect(page.locator(".marker.acquisition")).to_have_count(len(mine))
    counts = page.request.get(f"{server}/api/v1/datasets/{run}/micrographs").json()["counts"]
    assert counts["completed"] == len(exposures)
    context.close()


def test_discovery_from_the_workflow_and_for_a_viewer(server, browser):
    context = browser.new_context(viewport={"width": 1300, "height": 850})
    page = context.new_page()
    login(page, server, "alice")
    run = make_run(page, server, "Session A")
    visit = simulated_visit()
    files = [f for f in visit_files(visit) if f[1].startswith("Atlas/")]
    register_visit(BrowserPut(page, server), run, files, session_name(visit))
    workflow = page.request.get(f"{server}/api/v1/elements/{run}/path").json()[0]
    page.goto(f"{server}/workspace/{workflow['id']}")
    page.locator("#open-discovery-from-workspace").click()
    expect(page.locator("#discovery")).to_have_attribute("data-ready", "atlas", timeout=20_000)
    expect(page.locator("#atlas-table tbody tr")).to_have_count(1)
    expect(page.locator(".marker.square.state-not_imaged")).to_have_count(
        len(page.locator(".marker.square").all()))
    # sort by name, then by date both ways (a single atlas: the headers still answer)
    page.locator("#atlas-table [data-sort='name']").click()
    expect(page.locator("#atlas-table th").first).to_have_attribute("aria-sort", "ascending")
    page.locator("#sort-date").click()
    expect(page.locator("#atlas-table th").nth(1)).to_have_attribute("aria-sort", "descending")
    # bob, a viewer of the run: sees the atlas, may not delete it
    grants = [{"username": "alice", "level": "owner"}, {"username": "bob", "level": "viewer"}]
    response = page.request.put(f"{server}/api/v1/elements/{run}/sharing",
                                data={"privacy": "private", "grants": grants})
    assert response.status == 200, response.text()
    other = browser.new_context(viewport={"width": 1300, "height": 850})
    bob = other.new_page()
    login(bob, server, "bob")
    bob.goto(f"{server}/discovery/{run}")
    expect(bob.locator("#discovery")).to_have_attribute("data-ready", "atlas", timeout=20_000)
    expect(bob.locator("#delete-atlas")).to_have_count(0)
    other.close()
    context.close()

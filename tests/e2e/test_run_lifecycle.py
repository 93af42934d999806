"""Run lifecycle in the portal (SPEC JOB-5, JOB-6), in headless Chromium: the cleanup dialog
(rules, "Calculate size" with its result, "Clean up" after a confirmation with the total) and a
live export (start, seen in the jobs panel, "Live export running", Update, Stop)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from cryovault.lifecycle import live_export
from tests.e2e.test_workspace_walkthrough import login, ready
from tests.lifecycle.test_run_archive_export import (
    ACQUISITION_XML,
    EPU,
    FIXTURES,
    SQUARE,
    acquisition_name,
    integrated_mrc,
    movie_bytes,
)

pytestmark = pytest.mark.skipif(not FIXTURES.exists(), reason="../shared/fixtures is missing")
SESSION = "Supervisor_20250108_101446_62_cm40593-1_EPU"


def make_run(page: Page, base: str) -> str:
    def post(body: dict) -> dict:
        response = page.request.post(f"{base}/api/v1/elements", data=body)
        assert response.status == 201, response.text()
        return response.json()

    workflow = post({"kind": "workflow", "name": "Apoferritin", "workflow_type": "spa"})
    steps = page.request.get(f"{base}/api/v1/elements?parent_id={workflow['id']}").json()
    imaging = next(step for step in steps["items"] if step["name"] == "Imaging")
    return post({"kind": "dataset", "name": "Grid 1 session", "parent_id": imaging["id"],
                 "dataset_type": "epu_run"})["id"]


def register(page: Page, base: str, run: str, path: str, data: bytes) -> None:
    response = page.request.put(f"{base}/api/v1/datasets/{run}/ingest/files/{path}", data=data,
                                headers={"X-Source-Size": str(len(data)),
                                         "X-Source-Mtime": "1000", "X-Session": SESSION})
    assert response.status == 201, response.text()


def add_acquisition(page: Page, base: str, run: str, n: int) -> int:
    """A complete acquisition; returns its movie's size."""
    stem = f"{SQUARE}/Data/{acquisition_name(n)}"
    register(page, base, run, f"{stem}.xml", ACQUISITION_XML)
    register(page, base, run, f"{stem}.mrc", integrated_mrc(n))
    register(page, base, run, f"{stem}_fractions.tiff", movie_bytes(n))
    return len(movie_bytes(n))


def test_cleanup_dialog_calculates_then_cleans_up(server, browser, shots):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    login(page, server, "alice")
    run = make_run(page, server)
    register(page, server, run, "EpuSession.dm", (EPU / "EpuSession.dm").read_bytes())
    movie_total = sum(add_acquisition(page, server, run, n) for n in range(2))

    page.goto(f"{server}/workspace/{run}")
    ready(page)
    page.locator("#cleanup-current").click()
    dialog = page.locator("#cleanup-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#cleanup-rules label")).to_have_count(2)
    expect(dialog.locator("#cleanup-rules")).to_contain_text("Movies")
    expect(dialog.locator("#cleanup-rules")).to_contain_text("Integrated images")
    expect(dialog.locator("#cleanup-sizes-state")).to_contain_text("not calculated")
    # nothing chosen: a clear message, nothing removed
    dialog.locator("#cleanup-submit").click()
    expect(dialog.locator(".form-error")).to_contain_text("Choose at least one")

    dialog.locator("#cleanup-calculate").click()
    movies = dialog.locator('.rule-size[data-rule="movies"]')
    expect(movies).to_contain_text("2 files")
    expect(movies).to_have_attribute("title", f"{movie_total:,} bytes")
    expect(dialog.locator("#cleanup-sizes-state")).to_contain_text("Sizes calculated")
    shots.take(page, "cleanup-dialog", guide=True)

    dialog.locator("#cleanup-rule-movies").check()
    dialog.locator("#cleanup-submit").click()
    confirm = dialog.locator("#cleanup-confirm")
    expect(confirm).to_be_visible()
    expect(confirm).to_contain_text("2 files")
    expect(confirm).to_contain_text("movies")
    expect(dialog.locator("#cleanup-total")).to_have_attribute("title", f"{movie_total:,} bytes")
    dialog.locator("#cleanup-confirm-button").click()

    expect(page).to_have_url(f"{server}/jobs")
    done = page.locator('#jobs-completed tr:has(td:text-is("cleanup"))')
    expect(done).to_have_count(1, timeout=30_000)
    expect(done).to_contain_text("removed")
    files = page.request.get(f"{server}/api/v1/datasets/{run}/ingest/files").json()["items"]
    assert not [f for f in files if f["role"] == "movie"]
    assert len([f for f in files if f["role"] == "integrated"]) == 2
    micrographs = page.request.get(f"{server}/api/v1/datasets/{run}/micrographs").json()
    assert micrographs["counts"]["completed"] == 2
    context.close()


def test_live_export_from_the_portal(server, browser, shots, monkeypatch):
    monkeypatch.setattr(live_export, "POLL_SECONDS", 0.2)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    login(page, server, "alice")
    run = make_run(page, server)
    add_acquisition(page, server, run, 0)

    page.goto(f"{server}/workspace/{run}")
    ready(page)
    expect(page.locator("#live-export-running")).to_be_hidden()
    page.locator("#live-export-current").click()
    dialog = page.locator("#live-export-dialog")
    expect(dialog).to_be_visible()
    dialog.locator("#live-export-folder").fill("bad|name")
    dialog.locator("#live-export-submit").click()
    expect(dialog.locator(".form-error")).to_contain_text(": * ? \\ < > |")
    dialog.locator("#live-export-folder").fill("live")
    expect(dialog.locator("#live-export-where")).to_contain_text("live/Grid 1 session_")
    dialog.locator("#live-export-filter").select_option("completed")
    shots.take(page, "live-export-dialog", guide=True)
    dialog.locator("#live-export-submit").click()

    # the jobs panel shows it running
    expect(page).to_have_url(f"{server}/jobs")
    row = page.locator('#jobs-running tr:has(td:text-is("live_export"))')
    expect(row).to_have_count(1, timeout=20_000)
    expect(row).to_contain_text("Grid 1 session")
    add_acquisition(page, server, run, 1)  # data keeps arriving
    expect(row).to_contain_text("waiting for new data")
    shots.take(page, "live-export-job")

    # back on the run: "Live export running", Update, Stop
    page.goto(f"{server}/workspace/{run}")
    ready(page)
    running = page.locator("#live-export-running")
    expect(running).to_be_visible()
    expect(running).to_contain_text("completed items")
    expect(page.locator("#live-export-current")).to_be_hidden()
    running.locator("#live-export-update").click()
    expect(dialog).to_be_visible()
    expect(dialog.locator("#live-export-submit")).to_have_text("Update live export")
    expect(dialog.locator("#live-export-folder")).to_be_hidden()
    dialog.locator("#live-export-filter").select_option("all")
    dialog.locator("#live-export-submit").click()
    expect(dialog).to_be_hidden()
    expect(running).to_contain_text("all items")
    shots.take(page, "live-export-running")
    state = page.request.get(f"{server}/api/v1/elements/{run}/live-export").json()
    assert state["live_export"]["filter"] == {"status": "all"}
    running.locator("#live-export-stop").click()
    expect(running).to_be_hidden(timeout=20_000)
    expect(page.locator("#live-export-current")).to_be_visible()
    page.goto(f"{server}/jobs")
    expect(page.locator('#jobs-cancelled tr:has(td:text-is("live_export"))')).to_have_count(1)
    context.close()

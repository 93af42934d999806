"""Export from the portal (JOB-4) and the jobs monitor (JOB-2), in headless Chromium."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.test_files_viewer import make_dataset
from tests.e2e.test_workspace_walkthrough import login, ready


def test_export_and_watch_the_job(server, browser, shots):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    login(page, server, "alice")
    dataset = make_dataset(page, server)
    for n in range(3):
        response = page.request.post(
            f"{server}/api/v1/elements/{dataset}/files?name=FoilHole_{n}.mrc",
            data=bytes([n]) * (4 * 1024 * 1024),
            headers={"Content-Type": "application/octet-stream"})
        assert response.status == 201, response.text()

    page.goto(f"{server}/workspace/{dataset}")
    ready(page)
    page.locator("#export-current").click()
    dialog = page.locator("#export-dialog")
    expect(dialog).to_be_visible()
    dialog.locator("#export-folder").fill("bad:name")
    dialog.locator("#export-submit").click()
    expect(dialog.locator(".form-error")).to_contain_text(": * ? \\ < > |")
    dialog.locator("#export-folder").fill("2026/apoferritin")
    expect(dialog.locator("#export-where")).to_contain_text("2026/apoferritin/Grid 3_")
    shots.take(page, "export-dialog", guide=True)
    dialog.locator("#export-submit").click()

    expect(page).to_have_url(f"{server}/jobs")
    row = page.locator("#jobs-panel tr[data-job]").filter(has_text="export").first
    expect(row).to_be_visible()
    # The monitor updates by itself until the export has completed, its bar full.
    expect(page.locator("#jobs-completed tr", has_text="export")).to_have_count(1, timeout=30_000)
    bar = page.locator("#jobs-completed tr", has_text="export").locator("progress")
    expect(bar).to_have_attribute("value", re.compile(r"^1(\.0)?$"))
    expect(page.locator("#jobs-completed")).to_contain_text("bytes exported")
    shots.take(page, "jobs-monitor", guide=True)
    # remove it from the list
    page.locator("#jobs-completed tr", has_text="export").get_by_role("button").click()
    expect(page.locator("#jobs-completed tr", has_text="export")).to_have_count(0)
    context.close()

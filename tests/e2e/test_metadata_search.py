"""Metadata with units, notes, samples and search in the portal (SPEC MD-2 … MD-4, WS-8, WS-9,
PLT-2), in headless Chromium."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.test_workspace_walkthrough import add_element, login, open_element, ready


def test_metadata_notes_samples_and_search(server, browser, shots):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # hx-confirm asks before removing
    login(page, server, "alice")
    add_element(page, "folder", "Apoferritin screening")
    open_element(page, "Apoferritin screening")

    # Add a Double with an angle unit through the keyboard-friendly dialog.
    panel = page.locator("#datapanel")
    expect(panel.locator("#metadata-add")).to_be_visible()
    panel.locator("#metadata-add").click()
    dialog = page.locator("#metadata-dialog")
    expect(dialog).to_be_visible()
    dialog.locator("#metadata-name").fill("Stage tilt")
    dialog.locator("#metadata-type").select_option("double")
    dialog.locator("#metadata-value").fill("35.5")
    dialog.locator("#metadata-quantity").select_option("angle")
    units = dialog.locator("#metadata-unit option")
    expect(units.filter(has_text="arcmin")).to_have_count(1)  # the list follows the quantity
    expect(units.filter(has_text="nm")).to_have_count(0)
    dialog.locator("#metadata-unit").select_option("degree")
    shots.take(page, "metadata-add-dialog", guide=True)
    dialog.locator("#metadata-value").press("Enter")
    row = panel.locator("[data-meta-row][data-name='Stage tilt']")
    expect(row).to_contain_text("35.5")
    expect(row).to_contain_text("deg")

    # A bad value is refused in the dialog with the reason, not a crash.
    panel.locator("#metadata-add").click()
    dialog.locator("#metadata-name").fill("Frames")
    dialog.locator("#metadata-type").select_option("integer")
    dialog.locator("#metadata-value").fill("12.5")
    dialog.locator("#metadata-save").click()
    expect(dialog.locator(".form-error")).to_contain_text("not an integer")
    dialog.locator("#metadata-value").fill("40")
    dialog.locator("#metadata-save").click()
    expect(panel.locator("[data-meta-row][data-name='Frames']")).to_contain_text("40")

    # Change only the unit: the value is converted (35.5° = 2130′).
    row.locator("[data-metadata-edit]").click()
    expect(dialog.locator("#metadata-unit")).to_have_value("degree")
    dialog.locator("#metadata-unit").select_option("arcminute")
    dialog.locator("#metadata-save").click()
    expect(row).to_contain_text("2130")
    expect(row).to_contain_text("arcmin")

    # The filter box narrows the panel.
    panel.locator("#metadata-filter").fill("tilt")
    expect(panel.locator("[data-meta-row][data-name='Frames']")).to_be_hidden()
    expect(row).to_be_visible()
    shots.take(page, "metadata-panel", guide=True)
    panel.locator("#metadata-filter").fill("")

    # Export as CSV: the file is named after the element.
    with page.expect_download() as download:
        panel.locator("#export-csv").click()
    assert download.value.suggested_filename == "Apoferritin screening.csv"

    # A note with markdown, and a script that stays text.
    panel.locator("#note-body").fill("Grids **blotted** 3 s <script>window.pwned=1</script>")
    panel.locator("#note-add").click()
    expect(panel.locator(".note-body strong")).to_have_text("blotted")
    expect(panel.locator(".note-body")).to_contain_text("<script>")
    assert page.evaluate("window.pwned") is None
    panel.locator("#reference-target").fill("https://www.ebi.ac.uk/emdb/")
    panel.locator("#reference-label").fill("EMDB")
    panel.locator("#reference-add").click()
    expect(panel.locator("#references-list a", has_text="EMDB")).to_be_visible()
    shots.take(page, "notes-and-references", guide=True)

    # Register a sample and link the folder to it; the sample page lists the folder.
    page.locator("#nav-samples").click()
    ready(page)
    page.locator("#sample-add").click()
    page.locator("#sample-name").fill("Apoferritin batch 7")
    page.locator("#sample-name").press("Enter")
    expect(page.locator("h1")).to_have_text("Apoferritin batch 7")
    page.locator("#metadata-add").click()
    page.locator("#metadata-name").fill("Concentration")
    page.locator("#metadata-type").select_option("double")
    page.locator("#metadata-value").fill("2")
    page.locator("#metadata-quantity").select_option("mass concentration")
    page.locator("#metadata-unit").select_option("milligram / milliliter")
    page.locator("#metadata-save").click()
    expect(page.locator("[data-meta-row][data-name='Concentration']")).to_contain_text("mg/ml")
    sample_url = page.url
    page.goto(f"{server}/workspace")
    open_element(page, "Apoferritin screening")
    panel.locator("#reference-sample").select_option(label="Apoferritin batch 7")
    panel.locator("#reference-add").click()
    expect(panel.locator("#references-list a", has_text="Apoferritin batch 7")).to_be_visible()
    page.goto(sample_url)
    expect(page.locator("#referrer-list")).to_contain_text("Apoferritin screening")
    shots.take(page, "sample-page", guide=True)

    # Search by the metadata's name: the folder is found with its path and the snippet.
    page.locator("#nav-search").click()
    ready(page)
    page.locator("#search-q").fill("stage tilt")
    page.locator("#search-q").press("Enter")
    expect(page).to_have_url(re.compile(r"/search\?q=stage\+tilt"))
    hits = page.locator("#search-results .search-hit")
    expect(hits).to_have_count(1)
    expect(hits.first).to_contain_text("Apoferritin screening")
    expect(hits.first.locator(".snippet mark").first).to_have_text("Stage")
    shots.take(page, "search-results", guide=True)
    # "Search in" names only: the metadata match is gone.
    page.locator("#in-metadata").uncheck()
    page.locator("#in-notes").uncheck()
    page.locator("#search-submit").click()
    expect(page.locator("#search-total")).to_have_text("0 results")
    # FTS syntax is searched literally, never an error.
    page.locator("#search-q").fill('"blotted* NEAR -:')
    page.locator("#in-notes").check()
    page.locator("#search-submit").click()
    expect(page.locator("#search-total")).to_be_visible()

    # Another user finds nothing of alice's.
    other = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    login(other, server, "bob")
    other.goto(f"{server}/search?q=stage")
    expect(other.locator("#search-total")).to_have_text("0 results")
    context.close()

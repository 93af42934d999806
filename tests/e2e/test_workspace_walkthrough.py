"""The portal walk-through of the web-portal issue, in headless Chromium."""

from __future__ import annotations

import contextlib
import re

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect

from tests.e2e.conftest import PASSWORD


def login(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/workspace")
    expect(page).to_have_url(re.compile(r"/login\?next=/workspace"))
    page.fill("#login", username)
    page.fill("#password", PASSWORD)
    page.locator("#password").press("Enter")
    expect(page).to_have_url(f"{base}/workspace", timeout=15_000)


def ready(page: Page) -> None:
    """Wait until the page's script has wired the dialogs and shortcuts."""
    expect(page.locator("body[data-ready]")).to_have_count(1)


def add_element(page: Page, kind: str, name: str, **choices: str) -> None:
    ready(page)
    page.keyboard.press("n")  # keyboard shortcut for "+ Add element"
    dialog = page.locator("#add-dialog")
    expect(dialog).to_be_visible()
    dialog.locator("#add-kind").select_option(kind)
    for field, value in choices.items():
        dialog.locator(f"#{field}").select_option(value)
    dialog.locator("#add-name").fill(name)
    dialog.locator("#add-name").press("Enter")
    expect(page.locator("#items").get_by_role("link", name=name, exact=True)).to_be_visible()


def wait_until_gone(page: Page, name: str) -> None:
    """Deleted elements are greyed out at once and vanish when the deletion job completes.
    The page reloads itself after the request (HX-Refresh), so navigations may overlap ours."""
    row = page.locator("#items tr, #items li").filter(has_text=name)
    for _ in range(100):
        try:
            page.wait_for_load_state()
            classes = row.evaluate_all("rows => rows.map(r => r.className)")  # one snapshot
        except PlaywrightError:  # a reload started meanwhile
            page.wait_for_timeout(100)
            continue
        if not classes:
            return
        assert all("is-deleting" in c for c in classes), classes
        page.wait_for_timeout(100)
        with contextlib.suppress(PlaywrightError):
            page.reload()
    raise AssertionError(f"{name} was not deleted")


def open_element(page: Page, name: str) -> None:
    page.locator("#items").get_by_role("link", name=name, exact=True).click()
    expect(page.locator(".breadcrumb .current")).to_contain_text(name)


def test_walkthrough(server, browser, shots):
    owner = browser.new_context(viewport={"width": 1280, "height": 800})
    page = owner.new_page()
    page.goto(f"{server}/workspace")
    page.fill("#login", "alice")
    page.fill("#password", "wrong password")
    page.keyboard.press("Enter")
    expect(page.locator("#login-error")).to_contain_text("wrong username/e-mail or password")
    shots.take(page, "login-error")
    page.fill("#login", "alice@example.org")  # e-mail works as well as the username
    page.fill("#password", PASSWORD)
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{server}/workspace")

    # A folder, an SPA workflow whose three steps appear in order, a dataset.
    add_element(page, "folder", "Ribosome project")
    shots.take(page, "workspace-root", guide=True)
    open_element(page, "Ribosome project")
    page.locator("#add-element").click()
    add_dialog = page.locator("#add-dialog")
    add_dialog.locator("#add-kind").select_option("workflow")
    add_dialog.locator("#add-template").select_option("spa")
    shots.take(page, "add-workflow-dialog", guide=True)
    add_dialog.locator("#add-name").fill("70S SPA")
    add_dialog.locator("#add-submit").click()
    open_element(page, "70S SPA")
    expect(page.locator("#items tbody tr td.name a")).to_have_text(
        ["Screening", "Imaging", "Processing"])
    open_element(page, "Imaging")
    add_element(page, "dataset", "Grid 2 session", **{"add-dataset-type": "epu_run"})
    expect(page.locator("#items")).to_contain_text("epu_run")

    # Rename the dataset from its row.
    page.locator("#items [data-rename]").first.click()
    page.locator("#rename-name").fill("Grid 2 EPU session")
    page.locator("#rename-name").press("Enter")
    expect(page.locator("#items").get_by_role("link", name="Grid 2 EPU session")).to_be_visible()

    # Cards view shows the steps' statuses on the workflow card.
    page.locator(".breadcrumb a", has_text="Ribosome project").click()
    page.locator("label[for=view-cards]").click()
    expect(page.locator(".cards .card")).to_have_count(1)
    expect(page.locator(".cards .card .step-dots li")).to_have_count(3)
    shots.take(page, "workflow-cards", guide=True)

    # Share the workflow with bob as viewer from the sharing tab.
    open_element(page, "70S SPA")
    page.locator("#sharing-tab").click()
    expect(page.locator("#owners")).to_contain_text("alice")
    page.locator("#share-username").press_sequentially("bo", delay=80)  # as a person types
    expect(page.locator("#user-options option[value=bob]")).to_have_count(1)
    page.locator("#share-username").fill("bob")
    page.locator("#share-add").click()
    expect(page.locator("#members .grant[data-username=bob]")).to_be_visible()
    shots.take(page, "sharing-tab", guide=True)
    workflow_url = page.url

    # Bob sees the folder as a bare card, the workflow read-only.
    viewer = browser.new_context(viewport={"width": 1920, "height": 1080})
    bob = viewer.new_page()
    login(bob, server, "bob")
    expect(bob.locator("#items")).to_contain_text("Ribosome project")
    expect(bob.locator("#items")).to_contain_text("path only")
    bob.locator("#items").get_by_role("link", name="Ribosome project").click()
    expect(bob.locator(".notice")).to_contain_text("only as the path")
    expect(bob.locator("#add-element")).to_have_count(0)
    bob.goto(workflow_url)
    expect(bob.locator(".breadcrumb .current")).to_contain_text("70S SPA")
    expect(bob.locator("#add-element")).to_have_count(0)
    expect(bob.locator("#rename-current")).to_have_count(0)
    expect(bob.locator("#delete-current")).to_have_count(0)
    # a viewer may select items to download them, never to delete them
    expect(bob.locator("#items .select-item[data-actions*='delete']")).to_have_count(0)
    expect(bob.locator("#archive-current")).to_have_count(0)
    bob.locator("#sharing-tab").click()
    expect(bob.locator("#sharing-readonly")).to_be_visible()
    expect(bob.locator("#share-username")).to_have_count(0)
    shots.take(bob, "viewer-read-only")

    # Alice makes the workflow public; bob's access does not drop, a third user could view.
    page.locator("#privacy-public").check()
    expect(page.locator("#privacy-public")).to_be_checked()
    expect(page.locator("#everybody-level")).to_be_enabled()

    # Alice deletes the folder as owner: confirmation, then it is gone for both.
    page.locator(".breadcrumb a", has_text="Ribosome project").click()
    page.locator("#delete-current").click()
    expect(page.locator("#delete-dialog")).to_be_visible()
    expect(page.locator("#delete-what")).to_contain_text("Ribosome project")
    shots.take(page, "delete-confirmation", guide=True)
    page.locator("#delete-confirm").click()
    expect(page).to_have_url(f"{server}/workspace")
    wait_until_gone(page, "Ribosome project")
    bob.goto(workflow_url)
    expect(bob.locator("h1")).to_contain_text("Not found")
    owner.close()
    viewer.close()


def test_multi_select_keyboard_and_layout(server, browser, shots):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    login(page, server, "alice")
    for name in ("Alpha", "Beta"):
        add_element(page, "folder", name)
    page.locator("#explorer-add").click()  # the explorer's "+" opens the same dialog
    page.locator("#add-name").fill("Gamma")
    page.locator("#add-name").press("Enter")
    expect(page.locator("#tree")).to_contain_text("Gamma")
    boxes = page.locator("#items .select-item")
    expect(boxes).to_have_count(3)
    boxes.nth(0).check()
    boxes.nth(2).check()
    expect(page.locator("#selection-count")).to_have_text("2 selected")
    expect(page.locator("#delete-selected")).to_be_visible()
    shots.take(page, "multi-select", guide=True)
    ready(page)
    page.keyboard.press("Delete")
    expect(page.locator("#delete-what")).to_contain_text("2 elements")
    page.locator("#delete-confirm").click()
    wait_until_gone(page, "Alpha")
    wait_until_gone(page, "Gamma")
    expect(page.locator("#items .select-item")).to_have_count(1)
    expect(page.locator("#items")).to_contain_text("Beta")

    # Explorer: unfold, hide and show with the keyboard; panel widths and collapse.
    page.locator("#tree summary", has_text="Beta").click()
    expect(page.locator("#tree .tree-children").first).to_contain_text("Empty")
    ready(page)
    page.keyboard.press("e")
    expect(page.locator("#explorer")).to_be_hidden()
    page.keyboard.press("e")
    expect(page.locator("#explorer")).to_be_visible()
    page.locator("[data-size=half]").click()
    box = page.locator("#datapanel").bounding_box()
    assert box is not None and abs(box["width"] - 640) < 40
    page.locator("[data-size=collapsed]").click()
    expect(page.locator("#datapanel")).to_be_hidden()
    page.keyboard.press("p")
    expect(page.locator("#datapanel")).to_be_visible()

    # Dashboard lists the folder just visited.
    page.locator("#items").get_by_role("link", name="Beta").click()
    page.goto(f"{server}/dashboard")
    expect(page.locator("#recent")).to_contain_text("Beta")
    shots.take(page, "dashboard", guide=True)
    context.close()

"""Administration in headless Chromium (SPEC ADM-3 … ADM-5): a customer-admin installs a licence
key made by the CLI, creates a user manually, gives a role and a licence; the new user signs in
and switches the portal to French."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from cryovault.access.users import create_user
from cryovault.settings import Settings
from cryovault.web.app import create_app
from tests.e2e.conftest import PASSWORD
from tests.licensing import licensor  # noqa: F401  (fixture)
from tests.live_server import live_server

NEW_PASSWORD = "Cryo-vault-2026!"


@pytest.fixture
def admin_server(database_url, tmp_path, licensor):  # noqa: F811
    settings = Settings(data_dir=tmp_path, database_url=database_url, auto_upgrade=False,
                        license_public_key=licensor.public_key)
    app = create_app(settings, resume_jobs=False)
    with app.state.sessions() as db:
        create_user(db, "carol", PASSWORD, first_name="Carol", last_name="Diaz",
                    email="carol@example.org", roles=["customer-admin"])
        create_user(db, "alice", PASSWORD, first_name="Alice", last_name="Martin")
        db.commit()
    with live_server(app) as url:
        yield url
    app.state.engine.dispose()


def sign_in(page: Page, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#login", username)
    page.fill("#password", password)
    page.locator("#password").press("Enter")
    expect(page).to_have_url(f"{base}/workspace", timeout=15_000)
    expect(page.locator("body[data-ready]")).to_have_count(1)


def test_administration_walkthrough(admin_server, browser, shots, licensor):  # noqa: F811
    base = admin_server
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    sign_in(page, base, "carol", PASSWORD)
    page.locator("#nav-admin").click()
    expect(page).to_have_url(f"{base}/admin/users")
    expect(page.locator("#count-users")).to_have_text("2")

    # License page: the platform id, a key made with the CLI, the status table, the file.
    page.locator("#tab-licenses").click()
    platform = page.locator("#platform-id").inner_text().strip()
    page.fill("#license-key", licensor.issue(platform, "portal=5", "spa=2", days=400,
                                             customer="Institut Exemple"))
    page.fill("#license-key", page.input_value("#license-key")[:-4])  # a truncated copy
    page.locator("#install-license").click()
    expect(page.locator("#license-error")).to_contain_text("truncated")
    page.fill("#license-key", licensor.issue(platform, "portal=5", "spa=2", days=400,
                                             customer="Institut Exemple"))
    page.locator("#install-license").click()
    portal_row = page.locator('#license-status tr[data-feature="portal"]')
    expect(portal_row).to_contain_text("valid")
    expect(portal_row.locator("td").nth(1)).to_have_text("5")
    expect(portal_row.locator("td").nth(2)).to_have_text("2")  # carol and alice were seated
    shots.take(page, "admin-licenses", guide=True)
    page.get_by_role("button", name="Show licence file").click()
    expect(page.locator("dialog[open] .license-document")).to_contain_text('"platform_id"')
    shots.take(page, "admin-license-file")
    page.locator("dialog[open] [data-close]").click()

    # Add a user manually: a refused confirmation first, then the user.
    page.locator("#tab-users").click()
    page.locator("#add-user").click()
    dialog = page.locator("#add-user-dialog")
    expect(dialog).to_be_visible()
    dialog.locator("#new-username").fill("erin")
    dialog.locator("#new-email").fill("erin@example.org")
    dialog.locator("#new-first").fill("Erin")
    dialog.locator("#new-last").fill("Novak")
    dialog.locator("#new-password").fill(NEW_PASSWORD)
    dialog.locator("#new-password2").fill(NEW_PASSWORD + "x")
    dialog.locator("#create-user").click()
    expect(dialog.locator("#manual-form .form-error")).to_contain_text("confirmation")
    shots.take(page, "admin-add-user", guide=True)
    dialog.locator("#new-password2").fill(NEW_PASSWORD)
    dialog.locator("#create-user").click()
    expect(page).to_have_url(re.compile(r"/admin/users/[0-9a-f-]{36}$"))
    expect(page.locator("#user-title")).to_contain_text("erin")
    expect(page.locator("#user-licences")).to_contain_text("portal")  # a seat, automatically

    # A role (the picker offers only roles not held yet) and a licence.
    expect(page.locator("#role-select option")).to_have_count(5)
    page.select_option("#role-select", "workflow-admin")
    page.locator("#assign-role").click()
    expect(page.locator("#user-roles")).to_contain_text("workflow-admin")
    expect(page.locator("#role-select option")).to_have_count(4)
    page.select_option("#licence-select", "spa")
    page.locator("#assign-licence").click()
    expect(page.locator("#user-licences")).to_contain_text("spa")
    shots.take(page, "admin-user", guide=True)
    page.goto(f"{base}/admin/users")
    expect(page.locator('#users tr[data-username="erin"]')).to_contain_text("workflow-admin")
    expect(page.locator("#count-licenses")).to_have_text("2")
    shots.take(page, "admin-users", guide=True)
    context.close()

    # The new user signs in and switches the portal to French.
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    sign_in(page, base, "erin", NEW_PASSWORD)
    expect(page.locator("#nav-admin")).to_have_count(0)  # workflow-admin: no administration
    page.locator("#nav-settings").click()
    expect(page.locator("h1")).to_have_text("Settings")
    expect(page.locator("nav.toolbar")).to_contain_text("Workspace")
    page.select_option("#pref-language", "fr")
    page.select_option("#pref-date-format", "dmy")
    page.locator("#save-user-preferences").click()
    expect(page.locator("h1")).to_have_text("Paramètres")
    expect(page.locator("nav.toolbar")).to_contain_text("Espace de travail")
    expect(page.locator("nav.toolbar")).not_to_contain_text("Workspace")
    expect(page.locator("html")).to_have_attribute("lang", "fr")
    shots.take(page, "settings-preferences-fr", guide=True)
    page.locator("#tab-plugins").click()
    expect(page.locator("#plugins")).to_contain_text("core-workflow-templates")
    shots.take(page, "settings-plugins")
    # Signed out, the sign-in page stays in French.
    page.locator(".user-menu summary").click()
    page.locator("#logout").click()
    expect(page.locator("button[type=submit]")).to_have_text("Se connecter")
    context.close()

"""Settings > Health (SPEC ADM-6) in headless Chromium: every part with its state, Reindex
starting a job that shows in the Health tab and the jobs panel, and "Stop all live export jobs"."""

from __future__ import annotations

from playwright.sync_api import expect

from cryovault.access.users import create_user
from cryovault.db.jobs import Job
from cryovault.jobs.health import LIVE_EXPORT_JOB
from cryovault.jobs.records import create_job
from cryovault.settings import Settings
from cryovault.web.app import create_app
from tests.e2e.conftest import PASSWORD
from tests.e2e.test_workspace_walkthrough import login, ready
from tests.live_server import live_server

PARTS = ("database", "search", "jobs", "executor")


def test_health_tab_reindex_and_stop_live_exports(database_url, tmp_path, browser, shots):
    settings = Settings(data_dir=tmp_path, database_url=database_url, auto_upgrade=False)
    app = create_app(settings, resume_jobs=False)
    with app.state.sessions() as db:
        admin = create_user(db, "root", PASSWORD, roles=["customer-admin"])
        create_user(db, "alice", PASSWORD)
        db.commit()
        live = create_job(db, LIVE_EXPORT_JOB, _actor(admin), None, {"run": "e2e"}).id
        db.commit()
    with live_server(app) as server:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        login(page, server, "root")
        page.goto(f"{server}/settings?tab=health")
        ready(page)
        expect(page.locator("#tab-health")).to_have_class("active")
        rows = page.locator("#health-parts tbody tr")
        # the parts, then the three storages, each with a state
        expect(rows).to_have_count(len(PARTS) + 3)
        for kind in PARTS:
            expect(page.locator(f'#health-parts tr[data-part="{kind}"] .status')).to_have_text(
                "stable")
        storages = page.locator('#health-parts tr[data-part="storage"]')
        expect(storages).to_have_count(3)
        for index in range(3):
            expect(storages.nth(index)).to_contain_text("readable and writable")
            expect(storages.nth(index).locator(".status")).to_have_text("stable")
        expect(page.locator('tr[data-part="database"]')).to_contain_text(
            "SQLite 3." if database_url.startswith("sqlite") else "PostgreSQL ")

        page.locator("#health-reindex").click()
        expect(page.locator("#reindex-status")).to_contain_text("reindex job has started")
        job_id = page.locator("#reindex-status [data-job]").get_attribute("data-job")
        # the Health tab refreshes by itself and names the index as whole again
        expect(page.locator('tr[data-part="search"]')).to_contain_text("elements indexed")
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator("#stop-live-exports").click()
        expect(page.locator("#live-exports-status")).to_contain_text(
            "1 live export job was asked to stop")
        shots.take(page, "settings-health", guide=True)

        page.locator("#reindex-status a").click()
        expect(page).to_have_url(f"{server}/jobs")
        row = page.locator(f'#jobs-panel tr[data-job="{job_id}"]')
        expect(row).to_contain_text("reindex")
        expect(page.locator(f'#jobs-completed tr[data-job="{job_id}"]')).to_have_count(
            1, timeout=30_000)
        expect(page.locator(f'#jobs-cancelled tr[data-job="{live}"]')).to_have_count(1)
        shots.take(page, "jobs-after-reindex")
        context.close()
    with app.state.sessions() as db:
        assert db.get(Job, live).status == "cancelled"
    app.state.engine.dispose()


def test_a_user_without_admin_role_has_no_health_tab(server, browser):
    context = browser.new_context()
    page = context.new_page()
    login(page, server, "alice")
    page.goto(f"{server}/settings?tab=health")
    expect(page.locator("#tab-health")).to_have_count(0)
    expect(page.locator("#health-forbidden")).to_be_visible()
    context.close()


def _actor(user):
    from cryovault.access.actor import Actor

    return Actor.of(user)

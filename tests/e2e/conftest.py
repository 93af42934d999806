"""Browser tests: a real server on 127.0.0.1 and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from cryovault.access.users import create_user
from cryovault.settings import Settings
from cryovault.web.app import create_app
from tests.live_server import live_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output" / "e2e"
GUIDE_IMAGES = ROOT / "docs" / "images"
PASSWORD = "password-123"

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(database_url, tmp_path):
    """A live portal on a free local port, with users alice, bob and carol."""
    settings = Settings(data_dir=tmp_path, database_url=database_url, auto_upgrade=False)
    app = create_app(settings, resume_jobs=False)
    with app.state.sessions() as db:
        create_user(db, "alice", PASSWORD, email="alice@example.org", first_name="Alice",
                    last_name="Martin")
        create_user(db, "bob", PASSWORD, first_name="Bob", last_name="Okafor")
        db.commit()
    with live_server(app) as url:
        yield url
    app.state.engine.dispose()


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed: run 'make browser'")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # Generous waits: the 2-core CI machine may be busy with the rest of the suite.
        from playwright.sync_api import expect

        expect.set_options(timeout=10_000)
        yield browser
        browser.close()


class Shots:
    """Screenshots under test-output/e2e/<test>/; copied into docs/images for the user guide
    when UPDATE_GUIDE_SCREENSHOTS=1."""

    def __init__(self, name: str) -> None:
        self.folder = OUTPUT / name
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)

    def take(self, page, name: str, guide: bool = False) -> Path:
        path = self.folder / f"{name}.png"
        page.screenshot(path=str(path))
        if guide and os.environ.get("UPDATE_GUIDE_SCREENSHOTS") == "1":
            GUIDE_IMAGES.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, GUIDE_IMAGES / f"{name}.png")
        return path


@pytest.fixture
def shots(request) -> Shots:
    return Shots(request.node.name.replace("[", "-").replace("]", ""))

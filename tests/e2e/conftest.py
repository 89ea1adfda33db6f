"""End-to-end tests in a real browser: Playwright drives Debian's `chromium` (never a downloaded
browser) against a live server on SQLite with the test contact center seeded.

Screenshots of the pages are saved under `test-artifacts/screenshots/` (or
`$OMNICC_ARTIFACTS_DIR`) for people to look at.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from omnicc.store.database import migrate, sqlite_url
from tests.integration.api.live import PASSWORD, LiveServer, Seeded, seed, start_live_server

CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-dev-shm-usage",
                  "--no-first-run", "--disable-extensions"]
ARTIFACTS = Path(os.environ.get("OMNICC_ARTIFACTS_DIR", "test-artifacts")) / "screenshots"


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("Debian's chromium is not installed: run `make test` (it installs it) or "
                    "`apt-get install chromium`", pytrace=False)
    return found


@pytest.fixture(scope="module")
def e2e_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Seeded]]:
    folder = tmp_path_factory.mktemp("e2e")
    url = sqlite_url(folder / "omnicc.db")
    migrate(url)
    # Playwright's sync API keeps an event loop on this thread: seed from another one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        seeded = pool.submit(asyncio.run, seed(url)).result()
    server = start_live_server(url, folder / "data")
    try:
        yield server, seeded
    finally:
        server.stop()


# Module scope, not session: while Playwright's sync API runs it keeps an event loop on the
# main thread, and the tests collected after tests/e2e (asyncio.run in their fixtures) need it gone.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
    yield launched
    launched.close()


@pytest.fixture
def new_page(browser: Browser) -> Iterator[object]:
    contexts: list[BrowserContext] = []

    def make(width: int = 1366, height: int = 860) -> Page:
        context = browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def log_in(page: Page, server: LiveServer, username: str, path: str) -> None:
    page.goto(f"{server.url}{path}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{server.url}{path}")


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path

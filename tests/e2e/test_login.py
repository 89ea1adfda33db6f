"""The login page in Chromium: a wrong password is refused in words, a right one opens the
page the user asked for."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests.e2e.conftest import screenshot
from tests.integration.api.live import PASSWORD, LiveServer, Seeded


def test_login_refuses_then_admits(e2e_site: tuple[LiveServer, Seeded],
                                   new_page: Callable[..., Page]) -> None:
    server, _ = e2e_site
    page = new_page()
    page.goto(f"{server.url}/login?next=/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("wrong password entirely")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("wrong username or password")
    screenshot(page, "login")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{server.url}/desk")

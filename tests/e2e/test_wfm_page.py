"""The workforce page in Chromium: a supervisor builds a schedule from a forecast file, sees the
requirement against coverage, the shifts of Alice and Bob, adherence, and simulates the day."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from playwright.sync_api import Page, expect

from tests.e2e.conftest import log_in, screenshot
from tests.integration.api.live import LiveServer, Seeded


def forecast_csv() -> bytes:
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = ["start,volume,aht_s"]
    for half_hour in range(48):
        at = (midnight + timedelta(minutes=30 * half_hour)).isoformat().replace("+00:00", "Z")
        rows.append(f"{at},{2 if 16 <= half_hour < 40 else 0.5},180")
    return ("\n".join(rows) + "\n").encode()


def test_supervisor_plans_a_day(e2e_site: tuple[LiveServer, Seeded],
                                new_page: Callable[..., Page]) -> None:
    server, _ = e2e_site
    page = new_page(1366, 900)
    log_in(page, server, "sam", "/wfm")
    expect(page.get_by_role("navigation", name="Pages").get_by_role("link", name="Workforce")
           ).to_have_attribute("aria-current", "page")
    form = page.get_by_role("form", name="New schedule")
    expect(form).to_be_visible()  # opened, since there is no schedule yet
    form.get_by_label("Name").fill("Today")
    form.get_by_label("Queue").select_option(label="support")
    form.get_by_label("Forecast file").set_input_files(
        files=[{"name": "support.csv", "mimeType": "text/csv", "buffer": forecast_csv()}])
    form.get_by_label("Earliest start").fill("00:00")
    form.get_by_label("Latest start").fill("16:00")
    form.get_by_role("button", name="Build schedule").click()

    tiles = page.get_by_test_id("tiles")
    expect(tiles).to_contain_text("Optimal")
    expect(tiles).to_contain_text("2 agents")
    shifts = page.get_by_test_id("shifts")
    expect(shifts.get_by_role("rowheader", name="Alice")).to_be_visible()
    expect(shifts.get_by_role("rowheader", name="Bob")).to_be_visible()
    expect(page.get_by_test_id("coverage-chart").locator(".main-svg").first).to_be_attached()
    # Up to now: whoever's shift has begun, or the word that nobody's has.
    expect(page.get_by_test_id("adherence").locator("tbody")).to_contain_text(
        re.compile("Alice|Bob|Nobody was scheduled up to now"))

    page.get_by_role("button", name="Simulate day").click()
    expect(page.get_by_role("status").filter(has_text="Simulated")).to_be_visible(timeout=60_000)
    expect(tiles).not_to_contain_text("not simulated yet")
    page.get_by_text("Coverage as a table").click()
    expect(page.get_by_test_id("coverage-table").locator("tbody tr")).to_have_count(48)
    screenshot(page, "wfm")
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.reload()
    expect(page.get_by_test_id("shifts").get_by_role("rowheader", name="Alice")).to_be_visible()
    expect(page.get_by_test_id("adherence").locator("tbody")).not_to_be_empty()
    expect(page.locator(".toast.error")).to_have_count(0)
    assert errors == []

    phone = new_page(390, 844)
    log_in(phone, server, "sam", "/wfm")
    expect(phone.get_by_test_id("shifts").get_by_role("rowheader", name="Alice")).to_be_visible()
    screenshot(phone, "wfm-phone")

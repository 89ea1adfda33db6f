"""The reports page in Chromium: yesterday's generated day of the seeded contact center, per
hour by queue. Sam (supervisor) finds the nav link, sees the totals, the plotly chart (plotly.js
served by OmniCC, no CDN), the figures table and the agents' status timeline; opens the
contacts behind a queue's abandoned count (as many rows as the count says) and a handled
contact's conversation; switches to agents per day; exports CSV and Excel; adds a scheduled
report. Screenshots go to test-artifacts/screenshots/."""

from __future__ import annotations

import asyncio
import concurrent.futures
import csv
import io
import zipfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect

from omnicc.store.database import Database, migrate, sqlite_url
from tests.e2e.conftest import log_in, screenshot
from tests.integration.api.live import LiveServer, Seeded, seed, start_live_server
from tests.integration.reports.day import Center, add_customers, run_day

ZONE = ZoneInfo("Europe/Helsinki")


async def _seed_with_a_day(url: str, day_start_s: float) -> Seeded:
    seeded = await seed(url)
    database = Database(url)
    try:
        center = Center(seeded.tenant_id, list(seeded.queues.values()),
                        list(seeded.agents.values()))
        await add_customers(database, center, count=12)
        await run_day(database, center, start_s=day_start_s, length_s=3 * 3600.0)
    finally:
        await database.dispose()
    return seeded


@pytest.fixture(scope="module")
def reports_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    folder = tmp_path_factory.mktemp("e2e-reports")
    url = sqlite_url(folder / "omnicc.db")
    migrate(url)
    yesterday = datetime.now(ZONE).date() - timedelta(days=1)
    day_start_s = datetime(yesterday.year, yesterday.month, yesterday.day, 9, tzinfo=ZONE)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _seed_with_a_day(url, day_start_s.timestamp())).result()
    server = start_live_server(url, folder / "data")
    try:
        yield server, yesterday.isoformat()
    finally:
        server.stop()


def _count(page: Page, selector: str) -> int:
    return int(page.locator(selector).inner_text().replace(",", "").replace("\u202f", ""))


def test_a_supervisor_reads_drills_down_and_exports(
        reports_site: tuple[LiveServer, str], new_page: object) -> None:
    server, day = reports_site
    page: Page = new_page()  # type: ignore[operator]
    log_in(page, server, "sam", "/wallboard")
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Reports").click()
    page.wait_for_url(f"{server.url}/reports*")
    page.get_by_label("From", exact=True).fill(day)
    page.get_by_label("To", exact=True).fill(day)
    page.get_by_label("Per", exact=True).select_option("60min")
    page.get_by_label("By", exact=True).select_option("queue")
    page.get_by_role("button", name="Show report").click()

    expect(page.get_by_test_id("timezone")).to_have_text("Europe/Helsinki")
    table = page.get_by_test_id("report-table")
    expect(table.locator("tbody tr").first).to_contain_text("billing")  # by period, then name
    offered = _count(page, "[data-figure=offered]")
    assert offered > 20
    expect(page.locator("#chart .main-svg").first).to_be_visible()  # plotly drew it
    expect(page.locator("#timeline .main-svg").first).to_be_visible()
    assert page.evaluate("typeof window.Plotly.react") == "function"

    # Drill down: the whole range's abandoned contacts, as many as the total says.
    foot = table.locator("tfoot tr")
    abandoned = foot.get_by_role("button", name="Show the").nth(2)
    count = int(abandoned.inner_text())
    abandoned.click()
    dialog = page.get_by_test_id("drill")
    expect(dialog).to_be_visible()
    expect(dialog.locator("tbody tr")).to_have_count(count)
    expect(dialog.locator("tbody tr").first).to_contain_text("abandoned")
    screenshot(page, "reports-drill-down")
    page.get_by_role("button", name="Close").click()

    # A handled contact's conversation opens from the drill-down.
    foot.get_by_role("button", name="Show the").nth(1).click()
    dialog.get_by_role("button", name="Open the conversation").first.click()
    expect(dialog.locator("#conversation h3")).to_be_focused()
    page.get_by_role("button", name="Close").click()
    screenshot(page, "reports-queues-per-hour")

    page.get_by_label("Per", exact=True).select_option("day")
    page.get_by_label("By", exact=True).select_option("agent")
    page.get_by_role("button", name="Show report").click()
    expect(table.locator("tbody tr").first).to_contain_text("Alice")  # before Bob

    with page.expect_download() as csv_download:
        page.get_by_test_id("export-csv").click()
    rows = list(csv.reader(io.StringIO(open(csv_download.value.path(),  # noqa: SIM115
                                            encoding="utf-8").read())))
    assert rows[0][:3] == ["Period", "Agent", "Offered"] and rows[-1][0] == "Total"
    with page.expect_download() as xlsx_download:
        page.get_by_test_id("export-xlsx").click()
    assert "xl/worksheets/sheet1.xml" in zipfile.ZipFile(xlsx_download.value.path()).namelist()

    schedules = page.get_by_test_id("schedules")
    schedules.locator("summary").click()
    page.get_by_label("Schedule name").fill("Daily queues")
    page.get_by_label("Recipients (comma-separated)").fill("boss@example.com, team@example.com")
    page.get_by_role("button", name="Add schedule").click()
    expect(schedules.locator("tbody")).to_contain_text("boss@example.com, team@example.com")

    small: Page = new_page(390, 844)  # type: ignore[operator]
    log_in(small, server, "sam", "/reports")
    small.goto(f"{server.url}/reports?start={day}&end={day}&grain=60min&dimension=queue")
    expect(small.get_by_test_id("report-table").locator("tbody tr").first).to_be_visible()
    screenshot(small, "reports-phone")
    screenshot(page, "reports-agents-per-day")

"""The admin page in Chromium: an admin logs in through the shared login page, creates a queue
and a wrap-up code with the forms, sees the API's own words when an expression is wrong, and
exports the configuration as YAML."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.e2e.conftest import log_in, screenshot
from tests.integration.api.live import LiveServer, Seeded


def test_admin_configures_the_tenant(e2e_site: tuple[LiveServer, Seeded],
                                     new_page: Callable[..., Page]) -> None:
    server, _ = e2e_site
    page = new_page(1366, 860)
    log_in(page, server, "ada", "/admin")
    expect(page.get_by_role("navigation", name="Pages").get_by_role("link", name="Administration")
           ).to_have_attribute("aria-current", "page")
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    section = page.get_by_test_id("section")
    expect(section.get_by_role("heading", name="Queues")).to_be_visible()
    expect(section.get_by_test_id("row").filter(has_text="support")).to_have_count(1)

    # A wrong expression: the form stays open with the API's explanation, the field marked.
    page.get_by_role("button", name="New queue").click()
    page.get_by_label("Name", exact=True).fill("swedish")
    expression = page.get_by_label("Eligible agents (expression)")
    expression.fill("skills.swedish >=")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("alert")).to_contain_text("at position")
    expect(expression).to_have_attribute("aria-invalid", "true")
    screenshot(page, "admin-form")

    expression.fill("skills.swedish >= 2")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_test_id("status")).to_contain_text("Saved")
    created = section.get_by_test_id("row").filter(has_text="swedish")
    expect(created).to_contain_text("skills.swedish >= 2")
    screenshot(page, "admin")

    # Editing shows every setting and saves them all (a PUT is the whole queue).
    created.get_by_role("button", name="Edit swedish").click()
    expect(page.get_by_label("Offer timeout (s)")).to_have_value("20")
    page.get_by_label("Aging per second").fill("0.5")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_test_id("status")).to_contain_text("Saved")

    page.get_by_role("link", name="Wrap-up codes").click()
    expect(section.get_by_role("heading", name="Wrap-up codes")).to_be_visible()
    page.get_by_role("button", name="New wrap-up code").click()
    page.get_by_label("Code", exact=True).fill("callback")
    page.get_by_label("Label", exact=True).fill("Call the customer back")
    page.get_by_role("button", name="Create").click()
    expect(section.get_by_test_id("row").filter(has_text="callback")).to_contain_text(
        "Call the customer back")
    page.reload()  # the section is in the address
    expect(section.get_by_test_id("row").filter(has_text="callback")).to_have_count(1)

    page.get_by_role("link", name="Export / import").click()
    page.get_by_role("button", name="Load current configuration").click()
    yaml_box = page.get_by_label("Configuration (YAML)")
    expect(yaml_box).to_have_value(re.compile("Call the customer back"))
    assert "skills.swedish >= 2" in yaml_box.input_value()
    assert "aging_per_s: 0.5" in yaml_box.input_value()
    screenshot(page, "admin-config")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download YAML").click()
    saved = Path(download.value.path())
    text = saved.read_text(encoding="utf-8")
    assert "skills.swedish >= 2" in text and "callback" in text

    # A narrow window: the sections become a row of links above the list.
    page.set_viewport_size({"width": 700, "height": 900})
    page.get_by_role("link", name="Wrap-up codes").click()
    expect(section.get_by_test_id("row").filter(has_text="callback")).to_be_visible()
    screenshot(page, "admin-narrow")

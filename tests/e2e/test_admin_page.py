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


def test_admin_connects_channels(e2e_site: tuple[LiveServer, Seeded],
                                 new_page: Callable[..., Page]) -> None:
    """The channels' own sources have sections too: a messaging account shows the webhook path
    to give the provider, a SIP account's generated password is shown once and afterwards only
    enabling it is editable, and a mailbox keeps its password out of the form."""
    server, seeded = e2e_site
    page = new_page(1366, 860)
    log_in(page, server, "ada", "/admin")
    section = page.get_by_test_id("section")
    page.get_by_role("link", name="Messaging accounts").click()
    expect(section.get_by_role("heading", name="Messaging accounts")).to_be_visible()
    page.get_by_role("button", name="New messaging account").click()
    page.get_by_label("Name", exact=True).fill("sms-line")
    page.get_by_label("Provider").select_option("twilio")
    page.get_by_label("Channel").select_option("sms")
    page.get_by_label("Queue id").fill(seeded.queues["support"])
    page.get_by_label("Address", exact=True).fill("+15005550006")
    page.get_by_label("Account SID (Twilio)").fill("AC" + "0" * 32)
    page.get_by_label("Auth or access token").fill("twilio-auth-token")
    page.get_by_role("button", name="Create").click()
    row = section.get_by_test_id("row").filter(has_text="sms-line")
    expect(row).to_contain_text(re.compile(r"/api/messaging/[0-9a-f-]+/webhook"))
    row.get_by_role("button", name="Edit sms-line").click()
    expect(page.get_by_label("Auth or access token")).to_have_value("")  # never read back
    page.get_by_role("button", name="Cancel").click()

    page.get_by_role("link", name="SIP accounts").click()
    page.get_by_role("button", name="New SIP account").click()
    page.get_by_label("Agent id").fill(seeded.agents["alice"])
    page.get_by_label("User name").fill("alice-desk")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_test_id("status")).to_contain_text("Password set. Copy it now")
    row = section.get_by_test_id("row").filter(has_text="alice-desk")
    row.get_by_role("button", name="Edit alice-desk").click()
    expect(page.get_by_label("User name")).to_have_count(0)
    page.get_by_label("Enabled").uncheck()
    page.get_by_role("button", name="Save").click()
    expect(row).to_contain_text("No")

    page.get_by_role("link", name="Mailboxes").click()
    page.get_by_role("button", name="New mailbox").click()
    page.get_by_label("Name", exact=True).fill("help")
    page.get_by_label("Address", exact=True).fill("help@acme.example")
    page.get_by_label("Queue id").fill(seeded.queues["support"])
    page.get_by_label("IMAP server").fill("imap.acme.example")
    page.get_by_label("IMAP user name").fill("help")
    page.get_by_label("IMAP password").fill("imap-secret")
    page.get_by_label("SMTP server").fill("smtp.acme.example")
    page.get_by_label("Enabled", exact=True).uncheck()  # no reader for a server that is not there
    page.get_by_role("button", name="Create").click()
    expect(section.get_by_test_id("row").filter(has_text="help@acme.example")).to_have_count(1)
    screenshot(page, "admin-mailboxes")

    # The CRM connector, and the client company's contact for a queue.
    page.get_by_role("link", name="CRM", exact=True).click()
    expect(section.get_by_role("heading", name="Connector", exact=True)).to_be_visible()
    page.get_by_label("Look customers up in the CRM").check()
    page.get_by_label("Lookup URL").fill("https://crm.example/api/contacts?phone={phone}")
    page.get_by_label("Push every finished contact").check()
    page.get_by_label("Push URL").fill("https://crm.example/hooks/omnicc")
    page.get_by_role("button", name="Save connector").click()
    expect(page.get_by_test_id("status")).to_contain_text("push signing secret, shown only now")
    expect(section).to_contain_text("Everything was delivered.")
    screenshot(page, "admin-crm")
    page.get_by_role("link", name="Client contacts").click()
    page.get_by_role("button", name="New client contact").click()
    page.get_by_label("Queue id").fill(seeded.queues["support"])
    page.get_by_label("Email", exact=True).fill("Paula@Client.example")
    page.get_by_label("Urgent wrap-up codes").fill("escalate, complaint")
    page.get_by_role("button", name="Create").click()
    expect(section.get_by_test_id("row").filter(has_text="support")).to_contain_text(
        "paula@client.example")

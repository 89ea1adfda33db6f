"""The contact form and the desk's customer profile in Chromium: a visitor sends the
embeddable form on a page, the agent takes the request, marks the customer VIP with an
account manager, merges the visitor's second record (found by email) into this one, and sees
one timeline with both requests and the merge in the record's history. The tenant's CRM (a
local stand-in, connected through the admin API) shows its fields and link in the panel."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from omnicc.store.database import migrate, sqlite_url
from tests.e2e.conftest import log_in, screenshot
from tests.e2e.test_desk_email import SUPPORT, _prepare
from tests.integration.api.live import PASSWORD, LiveServer, Seeded, start_live_server
from tests.integration.crm.crm_server import TOKEN, FakeCrm, running_crm
from tests.integration.email.servers import MailServers, mail_servers

VISITOR = "maria.virtanen@example.fi"
WORK = "maria@work.example"

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Seeded]]:
    folder: Path = tmp_path_factory.mktemp("e2e-customer")
    url = sqlite_url(folder / "omnicc.db")
    migrate(url)
    servers: MailServers
    crm: FakeCrm
    for servers in mail_servers([SUPPORT, VISITOR]):
        for crm in running_crm():
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                seeded = pool.submit(asyncio.run, _prepare(url, servers)).result()
            server = start_live_server(url, folder / "data")
            try:
                connect_crm(server, crm)
                yield server, seeded
            finally:
                server.stop()


def connect_crm(server: LiveServer, crm: FakeCrm) -> None:
    """The admin connects a HubSpot-shaped CRM that knows the visitor by email."""
    crm.contacts.append({"id": "77", "properties": {
        "email": VISITOR, "company": "Virtanen Design Oy", "lifecyclestage": "customer",
        "url": "https://crm.example/contacts/77"}})
    with httpx.Client(base_url=server.url) as admin:
        login = admin.post("/api/auth/login", json={"username": "ada", "password": PASSWORD,
                                                   "tenant": "acme"})
        login.raise_for_status()
        answer = admin.put("/api/admin/crm", headers={"X-CSRF-Token": login.json()["csrf_token"]},
                           json={"lookup_enabled": True, "auth_value": TOKEN,
                                 "lookup_url": crm.url + "/contacts?email={email}",
                                 "mapping": {"record": "results[0]", "link": "properties.url",
                                             "fields": [{"label": "Company",
                                                         "path": "properties.company"},
                                                        {"label": "Stage",
                                                         "path": "properties.lifecyclestage"}]}})
        assert answer.status_code == 200, answer.text


def test_form_then_profile_and_merge_from_the_desk(site: tuple[LiveServer, Seeded],
                                                   new_page: Callable[..., Page]) -> None:
    server, seeded = site
    support = seeded.queues["support"]
    # The visitor's older record: a request from the work address.
    response = httpx.post(f"{server.url}/api/forms/contact", params={"tenant": "acme"},
                          json={"queue_id": support, "email": WORK, "message": "Invoice copy?",
                                "subject": "Invoice copy"})
    assert response.status_code == 202, response.text

    visitor = new_page(420, 900)
    visitor.goto(f"{server.url}/login")
    visitor.set_content(
        "<!doctype html><html lang='en'><title>Shop</title><main><h1>Acme shop</h1>"
        f"<script src='{server.url}/static/contact-form.js' data-tenant='acme' "
        f"data-queue='{support}' data-title='Contact us'></script></main></html>")
    form = visitor.get_by_role("form", name="Contact us")
    form.get_by_label("Your name").fill("Maria Virtanen")
    form.get_by_role("button", name="Send").click()
    expect(form.get_by_text("Please give your email address.")).to_be_visible()
    form.get_by_label("Email").fill("maria at example")
    form.get_by_label("Message").fill("Where is my order 1234?")
    form.get_by_role("button", name="Send").click()
    expect(visitor.get_by_text("not an email address")).to_be_visible()
    form.get_by_label("Email").fill(VISITOR)
    form.get_by_label("Phone (optional)").fill("+358 40 123 4567")
    form.get_by_label("Subject").fill("Order 1234")
    form.get_by_role("button", name="Send").click()
    expect(visitor.get_by_text("we received your message")).to_be_visible()
    screenshot(visitor, "contact-form-sent")

    alice = new_page()
    log_in(alice, server, "alice", "/desk")
    expect(alice.get_by_test_id("connection")).to_have_attribute("data-state", "online")
    alice.get_by_role("button", name="Available", exact=True).click()
    offer = alice.get_by_test_id("offer").filter(has_text="Order 1234")
    offer.get_by_role("button", name="Accept").click()

    expect(alice.get_by_test_id("email-panel")).to_contain_text("Where is my order 1234?")
    profile = alice.get_by_test_id("customer-profile")
    expect(profile.get_by_test_id("customer-timeline")).to_contain_text("Order 1234")
    crm = profile.get_by_test_id("customer-crm")
    expect(crm).to_contain_text("Virtanen Design Oy")
    expect(crm).to_contain_text("Stage")
    expect(crm.get_by_role("link", name="Open in the CRM")).to_have_attribute(
        "href", "https://crm.example/contacts/77")
    screenshot(alice, "desk-customer-crm")
    profile.get_by_label("VIP").check()
    profile.get_by_label("Account manager").select_option(label="Bob")
    profile.get_by_label("Segment").fill("gold")
    profile.get_by_role("button", name="Save profile").click()
    expect(alice.locator("#toasts")).to_contain_text("Profile saved.")

    profile.get_by_text("Merge another customer into this one").click()
    merge = profile.get_by_role("form", name="Merge another customer")
    merge.get_by_label("Value").fill(WORK)
    merge.get_by_role("button", name="Find customer").click()
    merge.get_by_role("button", name="into this one").click()
    expect(alice.locator("#toasts")).to_contain_text("Customers merged.")
    identities = profile.get_by_test_id("customer-identities")
    expect(identities).to_contain_text(WORK)
    expect(identities).to_contain_text(VISITOR)
    expect(identities).to_contain_text("+358401234567")
    expect(alice.locator("#customer")).to_contain_text(WORK)  # the card above follows
    # The conversation's own channel (email) is answered in its own panel, not offered here.
    send_by = profile.get_by_label("Send by")
    expect(send_by).not_to_contain_text("Email")
    timeline = profile.get_by_test_id("customer-timeline")
    expect(timeline.locator("li")).to_have_count(2)
    expect(timeline).to_contain_text("Invoice copy")
    expect(profile).to_contain_text("Merge")
    expect(profile.get_by_label("VIP")).to_be_checked()
    screenshot(alice, "desk-customer-merged")

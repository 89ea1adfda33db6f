"""A WhatsApp message on the agent's desk in Chromium: offered, accepted, read, answered; the
Cloud API stand-in gets the answer and the delivery receipt shows in the conversation; the
customer's photo shows as the file OmniCC fetched."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from omnicc.channels.messaging.meta import hub_signature
from omnicc.store.database import Database, migrate, sqlite_url
from omnicc.store.repositories import Agents, MessagingAccounts
from omnicc.store.tables import MessagingAccount
from tests.e2e.conftest import log_in, screenshot
from tests.integration.api.live import LiveServer, Seeded, seed, start_live_server
from tests.integration.messaging.providers import GRAPH_TOKEN, FakeProviders, fake_providers

SECRET = "meta-app-secret"
NUMBER_ID = "106540352242922"


async def _prepare(url: str, fake: FakeProviders) -> tuple[Seeded, str]:
    seeded = await seed(url)
    database = Database(url)
    try:
        async with database.session() as session:
            for agent_id in seeded.agents.values():
                agent = await Agents(session, seeded.tenant_id).get(agent_id)
                agent.capacity = {"chat": 2, "voice": 1, "whatsapp": 5}
            account = await MessagingAccounts(session, seeded.tenant_id).add(MessagingAccount(
                name="WhatsApp", provider="whatsapp", channel="whatsapp", address=NUMBER_ID,
                queue_id=seeded.queues["support"], auth_token=GRAPH_TOKEN, app_secret=SECRET,
                api_base_url=fake.url))
            return seeded, account.id
    finally:
        await database.dispose()


@pytest.fixture(scope="module")
def messaging_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[LiveServer, FakeProviders, str]]:
    folder: Path = tmp_path_factory.mktemp("e2e-messaging")
    url = sqlite_url(folder / "omnicc.db")
    migrate(url)
    for fake in fake_providers():
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            _, account_id = pool.submit(asyncio.run, _prepare(url, fake)).result()
        server = start_live_server(url, folder / "data")
        try:
            yield server, fake, account_id
        finally:
            server.stop()


def post_hook(server: LiveServer, account_id: str, value: dict[str, object]) -> None:
    raw = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "W", "changes": [
        {"field": "messages", "value": {"messaging_product": "whatsapp", **value}}]}]}).encode()
    response = httpx.post(f"{server.url}/api/messaging/{account_id}/webhook", content=raw,
                          headers={"Content-Type": "application/json",
                                   "X-Hub-Signature-256": hub_signature(SECRET, raw)})
    assert response.status_code == 200, response.text


def test_an_agent_answers_a_whatsapp_message(
        messaging_site: tuple[LiveServer, FakeProviders, str],
        new_page: Callable[..., Page]) -> None:
    server, fake, account_id = messaging_site
    alice = new_page()
    log_in(alice, server, "alice", "/desk")
    expect(alice.get_by_test_id("connection")).to_have_attribute("data-state", "online")
    alice.get_by_role("button", name="Available", exact=True).click()

    post_hook(server, account_id, {
        "contacts": [{"profile": {"name": "Aino Virtanen"}, "wa_id": "358401234567"}],
        "messages": [{"from": "358401234567", "id": "wamid.E2E1", "timestamp": "1",
                      "type": "text", "text": {"body": "<b>Is my order on its way?</b>"}}]})
    offer = alice.get_by_test_id("offer")
    expect(offer).to_contain_text("Whatsapp")
    offer.get_by_role("button", name="Accept").click()

    panel = alice.get_by_test_id("messaging-panel")
    expect(panel).to_be_visible()
    # Shown as text, never as markup.
    expect(panel.get_by_test_id("im-message").first).to_contain_text(
        "<b>Is my order on its way?</b>")
    expect(panel.get_by_test_id("im-window")).to_contain_text("Free answers possible until")
    expect(alice.get_by_test_id("composer")).to_be_hidden()

    panel.get_by_label("Your answer to +358401234567").fill("Yes, it ships today.")
    panel.get_by_role("button", name="Send", exact=True).click()
    expect(panel.get_by_test_id("im-status").last).to_have_text("Sent")
    (sent,) = fake.sent(f"/v21.0/{NUMBER_ID}/messages")
    assert sent.body["text"] == {"preview_url": False, "body": "Yes, it ships today."}

    wamid = "wamid.1"
    post_hook(server, account_id, {"statuses": [{"id": wamid, "status": "delivered",
                                                 "timestamp": "2",
                                                 "recipient_id": "358401234567"}]})
    expect(panel.get_by_test_id("im-status").last).to_have_text("Delivered")

    # A photo: fetched from the Cloud API into OmniCC, shown as the file, not a Graph link.
    fake.media["1003383421387256"] = b"\xff\xd8\xff\xe0" + bytes(64)
    post_hook(server, account_id, {"messages": [{
        "from": "358401234567", "id": "wamid.E2E2", "timestamp": "3", "type": "image",
        "image": {"caption": "the parcel", "mime_type": "image/jpeg", "id": "1003383421387256"}}]})
    expect(panel.get_by_role("link", name=re.compile(r"Download 1003383421387256\.jpg"))
           ).to_be_visible()
    screenshot(alice, "desk-messaging")

    panel.get_by_role("button", name="Done").click()
    expect(alice.get_by_test_id("wrap-up")).to_be_visible()

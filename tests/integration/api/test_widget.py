"""The chat widget as a customer's site embeds it: the demo page with its one script tag, the
script itself, the configuration it fetches from another origin, and the frames it sends.

Driving the widget in a browser is the end-to-end suite's job (Playwright); docs/widget.md
lists the labels it uses, and this file checks that the script still carries them.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from omnicc.store.database import Database
from omnicc.store.repositories import Tenants
from tests.integration.api.live import LiveServer, Seeded, live_server, receive, seed

pytestmark = pytest.mark.anyio

DOCS = Path(__file__).parents[3] / "docs" / "widget.md"
SCRIPT_TAG = re.compile(r'<script src="/static/widget\.js[^"]*"([^>]*)></script>')


async def seed_two(url: str) -> Seeded:
    seeded = await seed(url)
    database = Database(url)
    try:
        async with database.session() as session:
            await Tenants(session).create("zeta", "Zeta Water")
    finally:
        await database.dispose()
    return seeded


@pytest.fixture
def seeded(migrated_database_url: str) -> Seeded:
    return asyncio.run(seed_two(migrated_database_url))


@pytest.fixture
def server(migrated_database_url: str, seeded: Seeded, tmp_path: Path) -> Iterator[LiveServer]:
    yield from live_server(migrated_database_url, tmp_path / "data")


def embedded_tenant(html: str) -> str:
    tags = SCRIPT_TAG.findall(html)
    assert len(tags) == 1, html
    attributes = dict(re.findall(r'(data-[a-z]+)="([^"]*)"', tags[0]))
    assert attributes["data-prechat"] == "true"
    assert re.fullmatch(r"#[0-9a-f]{6}", attributes["data-color"])
    assert " defer" in tags[0]
    return attributes["data-tenant"]


async def test_the_demo_page_embeds_the_widget_with_one_script_tag(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as anonymous:
        page = await anonymous.get("/demo")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "Acme Energy" in page.text
        assert embedded_tenant(page.text) == "acme"  # the first tenant by slug
        chosen = await anonymous.get("/demo", params={"tenant": "zeta"})
        assert embedded_tenant(chosen.text) == "zeta"
        unknown = await anonymous.get("/demo", params={"tenant": '"><script>alert(1)'})
        assert embedded_tenant(unknown.text) == "acme"


async def test_the_widget_script_is_served_as_javascript(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as anonymous:
        script = await anonymous.get("/static/widget.js")
    assert script.status_code == 200
    assert re.match(r"(text|application)/javascript", script.headers["content-type"])
    assert "attachShadow" in script.text
    assert "innerHTML" not in script.text  # text only ever goes in through textContent
    # A classic script, so one plain <script> tag works on any site: no import/export
    # statements (an ES module from this server could not be imported by another origin).
    assert not re.search(r"^\s*(import|export)\b", script.text, re.MULTILINE)


def test_the_labels_the_browser_tests_use_are_documented_and_in_the_script() -> None:
    script = (Path(__file__).parents[3] / "src" / "omnicc" / "web" / "static"
              / "widget.js").read_text()
    documented = DOCS.read_text()
    labels = ["Open chat", "Message", "Send", "Name", "Email", "Topic", "Start chat",
              "End chat", "Comment", "Send rating", "Minimise chat", "Close chat",
              "Attach a file"]
    test_ids = ["position", "messages", "typing", "offline-notice", "csat", "prechat",
                "launcher", "end-chat", "thanks", "connection", "attach", "file-input",
                "upload", "attachment", "drop-zone"]
    for label in labels:
        assert f'"{label}"' in script, label
        assert f"`{label}`" in documented, label
    for test_id in test_ids:
        assert f'"data-testid": "{test_id}"' in script, test_id
        assert f"`{test_id}`" in documented, test_id
    assert "star${score === 1 ? \"\" : \"s\"}" in script  # "1 star" .. "5 stars"


async def test_any_site_may_read_the_widget_configuration(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as site:
        config = await site.get("/api/chat/config", params={"tenant": "acme"},
                                headers={"Origin": "https://www.acme-energy.example"})
    assert config.status_code == 200
    assert config.headers["access-control-allow-origin"] == "*"
    assert {q["name"] for q in config.json()["queues"]} == {"support", "billing"}


async def test_the_customer_ends_a_waiting_chat_and_is_asked_for_a_rating(
        server: LiveServer, seeded: Seeded) -> None:
    async with websockets.connect(server.ws_url + "/api/chat/ws?tenant=acme") as customer:
        await customer.send(json.dumps({"type": "hello", "visitor": None}))
        welcome = await receive(customer, "welcome")
        await customer.send(json.dumps({
            "type": "start", "queue_id": seeded.queues["billing"], "text": "Is anyone there?",
            "id": "w-1", "name": "Dana", "email": "dana@example.com", "topic": "billing"}))
        chat = await receive(customer, "chat")
        assert chat["is_offline"] is True  # nobody is logged in: a message for later
        await receive(customer, "ack")
        await customer.send(json.dumps({"type": "leave"}))
        ended = await receive(customer, "chat_ended")
        assert ended["contact_id"] == chat["contact_id"]
        await customer.send(json.dumps({"type": "rate", "contact_id": chat["contact_id"],
                                        "score": 4, "comment": ""}))
        await receive(customer, "rated")

    # Back later with the same token: recognised, with the earlier conversation.
    async with websockets.connect(server.ws_url + "/api/chat/ws?tenant=acme") as again:
        await again.send(json.dumps({"type": "hello", "visitor": welcome["visitor"]}))
        back = await receive(again, "welcome")
    assert back["visitor"] == welcome["visitor"]
    assert back["customer"]["name"] == "Dana"
    assert back["chat"] is None
    assert [m["text"] for m in back["history"]] == ["Is anyone there?",
                                                     "The customer left the chat."]

"""The agent desktop page over real HTTP and WebSockets, on SQLite and PostgreSQL: who may open
it, that the page and its modules agree on the elements they share, and the desk API calls the
page makes in the order an agent makes them (presence, offer, conversation with customer panel,
reply, note, whisper, typing, end, wrap-up with a disposition, transfer)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from omnicc.web import STATIC_DIR, TEMPLATES_DIR
from tests.integration.api.live import Browser, LiveServer, Seeded, live_server, receive, seed

pytestmark = pytest.mark.anyio

# The hooks the browser tests and docs/desk.md rely on.
TEST_HOOKS = ('data-testid="messages"', 'role="log"', 'for="reply"', ">Send<",
              'id="internal"', "Internal note", ">End chat<", ">Transfer<", 'for="disposition"',
              ">Finish wrap-up<", 'data-testid="customer-panel"', 'id="help-dialog"',
              'aria-label="Attach a file"')


@pytest.fixture
def seeded(migrated_database_url: str) -> Seeded:
    return asyncio.run(seed(migrated_database_url))


@pytest.fixture
def server(migrated_database_url: str, seeded: Seeded, tmp_path: Path) -> Iterator[LiveServer]:
    yield from live_server(migrated_database_url, tmp_path / "data")


async def start_chat(server: LiveServer, queue_id: str, text: str,
                     topic: str = "") -> tuple[Any, dict[str, Any]]:
    customer = await websockets.connect(server.ws_url + "/api/chat/ws?tenant=acme")
    await customer.send(json.dumps({"type": "hello", "visitor": None, "name": "Carol",
                                    "email": "Carol@Example.com"}))
    await receive(customer, "welcome")
    await customer.send(json.dumps({"type": "start", "queue_id": queue_id, "text": text,
                                    "id": "c-1", "name": "Carol", "topic": topic}))
    return customer, await receive(customer, "chat")


def test_every_element_the_modules_use_is_on_the_page() -> None:
    page = (TEMPLATES_DIR / "desk.html").read_text()
    ids = set(re.findall(r'id="([^"]+)"', page))
    used: set[str] = set()
    for module in STATIC_DIR.glob("desk*.js"):
        used |= set(re.findall(r'\$\("([^"]+)"\)', module.read_text()))
    assert used, "desk.js looks elements up with $(id)"
    assert used <= ids, sorted(used - ids)


def test_the_modules_never_write_markup() -> None:
    for module in STATIC_DIR.glob("desk*.js"):
        text = module.read_text()
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text, module.name


async def test_the_page_is_for_agents(server: LiveServer) -> None:
    alice = await Browser(server, "alice").login()
    page = await alice.http.get("/desk")
    assert page.status_code == 200
    assert '<script type="module" src="/static/desk.js' in page.text
    assert 'href="/static/desk.css' in page.text
    assert 'href="/desk" aria-current="page"' in page.text
    for hook in TEST_HOOKS:
        assert hook in page.text, hook
    for path in ("/static/desk.js", "/static/desk-view.js", "/static/desk-alerts.js",
                 "/static/desk.css"):
        assert (await alice.http.get(path)).status_code == 200, path
    anonymous = Browser(server, "nobody")
    refused = await anonymous.http.get("/desk")
    assert refused.status_code == 303
    assert refused.headers["location"] == "/login?next=/desk"
    # A supervisor may open the page; the desk API tells them they are not an agent.
    sam = await Browser(server, "sam").login()
    assert (await sam.http.get("/desk")).status_code == 200
    assert (await sam.http.get("/api/desk/state")).status_code == 403
    for browser in (alice, anonymous, sam):
        await browser.close()


async def test_a_chat_as_the_desk_page_drives_it(server: LiveServer, seeded: Seeded) -> None:
    alice = await Browser(server, "alice").login()
    sam = await Browser(server, "sam").login()
    codes = (await alice.http.get("/api/desk/wrap-up-codes")).json()
    assert codes == [{"code": "solved", "label": "Solved"}]
    state = (await alice.http.put("/api/desk/status", json={"status": "available"})).json()
    assert state["agent"]["status"] == "available"
    assert {"available", "break", "offline"} <= {s["name"] for s in state["statuses"]}
    assert state["agent"]["capacity"]["chat"] == 2

    async with alice.socket("/api/desk/ws") as desk:
        first = await receive(desk, "state")
        assert first["agent"]["presence"] == "available" and first["offers"] == []
        customer, chat = await start_chat(server, seeded.queues["support"], "My invoice?",
                                          topic="Invoice")
        conversation_id = chat["conversation_id"]
        created = await receive(desk, "offer.created")
        offers = (await alice.http.get("/api/desk/state")).json()["offers"]
        assert [o["offer_id"] for o in offers] == [created["offer_id"]]
        assert offers[0]["customer_name"] == "Carol" and offers[0]["topic"] == "Invoice"
        assert offers[0]["expires_at"] > first["now"]

        state = (await alice.http.post(f"/api/desk/offers/{created['offer_id']}/accept")).json()
        assert state["offers"] == []
        [task] = state["tasks"]
        assert task["conversation_id"] == conversation_id and task["phase"] == "assigned"

        view = (await alice.http.get(f"/api/desk/conversations/{conversation_id}")).json()
        assert [m["text"] for m in view["messages"]] == ["My invoice?", "Alice joined the chat."]
        assert view["customer"]["name"] == "Carol"
        assert view["customer"]["attributes"]["email"] == "carol@example.com"
        assert view["customer"]["identities"] == [{"kind": "chat_visitor",
                                                   "value": "web visitor"}]
        [contact] = view["contacts"]
        assert contact["contact_id"] == view["chat"]["contact_id"]
        assert contact["queue"] == "support" and contact["topic"] == "Invoice"

        await customer.send(json.dumps({"type": "typing", "is_typing": True}))
        typing = await receive(desk, "typing")
        assert typing["author_kind"] == "customer" and typing["is_typing"] is True

        sent = await alice.http.post(f"/api/desk/conversations/{conversation_id}/messages",
                                     json={"text": "Let me check.", "id": "k-1"})
        assert sent.status_code == 201
        note = (await alice.http.post(f"/api/desk/conversations/{conversation_id}/messages",
                                      json={"text": "VIP", "internal": True})).json()
        assert note["visibility"] == "internal"
        whisper = await sam.http.post(f"/api/supervisor/conversations/{conversation_id}/whisper",
                                      json={"text": "Offer a refund"})
        assert whisper.status_code in (200, 201)
        heard = await receive(desk, "message.created",
                              where=lambda f: f["visibility"] == "whisper")
        assert heard["author_name"] == "Sam" and heard["text"] == "Offer a refund"

        ended = (await alice.http.post(f"/api/desk/conversations/{conversation_id}/end")).json()
        [task] = ended["tasks"]
        assert task["phase"] == "wrapping" and task["completed_at"] >= task["accepted_at"]
        await receive(desk, "chat.ended")
        done = (await alice.http.post(f"/api/desk/tasks/{task['task_id']}/wrap-up",
                                      json={"code": "solved"})).json()
        assert done["tasks"] == []
        view = (await alice.http.get(f"/api/desk/conversations/{conversation_id}")).json()
        assert view["contacts"][0]["disposition"] == "solved"
        [whispered] = [m for m in view["messages"] if m["visibility"] == "whisper"]
        assert whispered["author_name"] == "Sam"
        history = (await alice.http.get(
            f"/api/desk/customers/{view['customer']['id']}/messages")).json()
        assert "VIP" not in [m["text"] for m in history]
        assert "Let me check." in [m["text"] for m in history]
        await customer.close()
    for browser in (alice, sam):
        await browser.close()


async def test_a_transfer_to_a_colleague(server: LiveServer, seeded: Seeded) -> None:
    alice = await Browser(server, "alice").login()
    bob = await Browser(server, "bob").login()
    for browser in (alice, bob):
        await browser.http.put("/api/desk/status", json={"status": "available"})
    async with alice.socket("/api/desk/ws") as alice_desk, bob.socket("/api/desk/ws") as bob_desk:
        await receive(alice_desk, "state")
        await receive(bob_desk, "state")
        customer, chat = await start_chat(server, seeded.queues["billing"], "Hello")
        conversation_id = chat["conversation_id"]
        offer = await asyncio.wait_for(_first_offer(alice_desk, bob_desk), 10)
        first, second = (alice, bob) if offer[0] is alice_desk else (bob, alice)
        await first.http.post(f"/api/desk/offers/{offer[1]['offer_id']}/accept")
        second_agent = seeded.agents[second.username]
        moved = await first.http.post(f"/api/desk/conversations/{conversation_id}/transfer",
                                      json={"agent_id": second_agent})
        assert moved.status_code == 200 and moved.json()["tasks"] == []
        second_desk = bob_desk if second is bob else alice_desk
        handed = await receive(second_desk, "offer.created")
        offers = (await second.http.get("/api/desk/state")).json()["offers"]
        assert [o["conversation_id"] for o in offers] == [conversation_id]
        assert handed["offer_id"] == offers[0]["offer_id"]
        bad = await first.http.post(f"/api/desk/conversations/{conversation_id}/transfer",
                                    json={"queue_id": seeded.queues["support"],
                                          "agent_id": second_agent})
        assert bad.status_code == 422
        await customer.close()
    for browser in (alice, bob):
        await browser.close()


async def test_the_state_carries_the_offer_and_wrap_up_limits(server: LiveServer,
                                                              seeded: Seeded) -> None:
    """The desk counts the offer down from its full length and wrap-up down to the queue's
    limit; a queue whose wrap-up lasts until done gives no limit."""
    alice = await Browser(server, "alice").login()
    ada = await Browser(server, "ada").login()
    await alice.http.put("/api/desk/status", json={"status": "available"})
    async with alice.socket("/api/desk/ws") as desk:
        await receive(desk, "state")
        customer, _ = await start_chat(server, seeded.queues["support"], "Hi")
        created = await receive(desk, "offer.created")
        [offer] = (await alice.http.get("/api/desk/state")).json()["offers"]
        assert offer["offer_id"] == created["offer_id"]
        assert offer["offer_timeout_s"] == 30.0
        assert offer["expires_at"] - offer["offered_at"] == 30.0
        [task] = (await alice.http.post(
            f"/api/desk/offers/{offer['offer_id']}/accept")).json()["tasks"]
        assert task["wrap_up_s"] == 60.0

        support = (await ada.http.get(f"/api/admin/queues/{seeded.queues['support']}")).json()
        del support["id"]
        changed = await ada.http.put(f"/api/admin/queues/{seeded.queues['support']}",
                                     json={**support, "wrap_up_s": None})
        assert changed.status_code == 200, changed.text
        [task] = (await alice.http.get("/api/desk/state")).json()["tasks"]
        assert task["wrap_up_s"] is None
        await customer.close()
    for browser in (alice, ada):
        await browser.close()


async def _first_offer(*desks: Any) -> tuple[Any, dict[str, Any]]:
    """Whichever agent the router picked: the first desk to see an offer."""
    waits = {asyncio.ensure_future(receive(d, "offer.created")): d for d in desks}
    done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for future in pending:
        future.cancel()
    winner = done.pop()
    return waits[winner], winner.result()

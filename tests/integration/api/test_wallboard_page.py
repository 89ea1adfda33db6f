"""The supervisor's wallboard over real HTTP and WebSockets, on SQLite and PostgreSQL: the page
and who may open it, and the supervision actions the page drives (watch, whisper, barge,
reassign, an agent's status and skills)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from omnicc.store.database import Database
from omnicc.store.repositories import Queues
from omnicc.store.tables import Queue
from tests.integration.api.live import Browser, LiveServer, Seeded, live_server, receive, seed

pytestmark = pytest.mark.anyio


async def seed_with_french_queue(url: str) -> Seeded:
    """The usual tenant plus a queue only French speakers serve (nobody yet)."""
    seeded = await seed(url)
    database = Database(url)
    try:
        async with database.session() as session:
            queue = await Queues(session, seeded.tenant_id).add(Queue(
                name="french", description="En français",
                config={"expression": "skills.french >= 3", "offer_timeout_s": 30.0}))
            seeded.queues["french"] = queue.id
    finally:
        await database.dispose()
    return seeded


@pytest.fixture
def seeded(migrated_database_url: str) -> Seeded:
    return asyncio.run(seed_with_french_queue(migrated_database_url))


@pytest.fixture
def server(migrated_database_url: str, seeded: Seeded, tmp_path: Path) -> Iterator[LiveServer]:
    yield from live_server(migrated_database_url, tmp_path / "data")


async def start_chat(server: LiveServer, queue_id: str, text: str) -> tuple[Any, dict[str, Any]]:
    customer = await websockets.connect(server.ws_url + "/api/chat/ws?tenant=acme")
    await customer.send(json.dumps({"type": "hello", "visitor": None, "name": "Carol"}))
    await receive(customer, "welcome")
    await customer.send(json.dumps({"type": "start", "queue_id": queue_id, "text": text,
                                    "id": "c-1", "name": "Carol"}))
    return customer, await receive(customer, "chat")


def row_of(board: dict[str, Any], conversation_id: str) -> dict[str, Any]:
    rows = [r for r in board["conversations"] if r["conversation_id"] == conversation_id]
    assert len(rows) == 1, board["conversations"]
    return rows[0]


def queue_named(board: dict[str, Any], name: str) -> dict[str, Any]:
    return next(q for q in board["queues"] if q["name"] == name)


async def test_the_page_is_for_supervisors(server: LiveServer) -> None:
    sam = await Browser(server, "sam").login()
    alice = await Browser(server, "alice").login()
    anonymous = Browser(server, "nobody")
    page = await sam.http.get("/wallboard")
    assert page.status_code == 200
    assert '<script type="module" src="/static/wallboard.js' in page.text
    assert 'href="/static/wallboard.css' in page.text
    assert 'role="log"' in page.text and 'aria-current="page"' in page.text
    for path in ("/static/wallboard.js", "/static/wallboard.css"):
        assert (await sam.http.get(path)).status_code == 200, path
    for stranger in (alice, anonymous):
        refused = await stranger.http.get("/wallboard")
        assert refused.status_code == 303
        assert refused.headers["location"] == "/login?next=/wallboard"
    for browser in (sam, alice, anonymous):
        await browser.close()


async def test_the_wallboard_frame_names_what_the_page_draws(server: LiveServer,
                                                             seeded: Seeded) -> None:
    sam = await Browser(server, "sam").login()
    board = (await sam.http.get("/api/supervisor/wallboard")).json()
    support = queue_named(board, "support")
    assert support["sl_threshold_s"] == 20.0 and support["waiting"] == 0
    alice = next(a for a in board["agents"] if a["name"] == "Alice")
    assert alice["skills"] == {"english": 5} and alice["presence"] == "offline"
    assert {"available", "break", "offline"} <= set(board["statuses"])
    assert "no_answer" not in board["statuses"]
    await sam.close()


async def test_a_supervisor_moves_a_waiting_chat_to_another_queue(server: LiveServer,
                                                                  seeded: Seeded) -> None:
    sam = await Browser(server, "sam").login()
    customer, chat = await start_chat(server, seeded.queues["support"], "nobody here?")
    conversation_id = chat["conversation_id"]
    board = (await sam.http.get("/api/supervisor/wallboard")).json()
    assert row_of(board, conversation_id)["phase"] == "waiting"
    assert row_of(board, conversation_id)["handling_s"] is None
    assert queue_named(board, "support")["waiting"] == 1

    moved = await sam.http.post(f"/api/supervisor/conversations/{conversation_id}/reassign",
                                json={"queue_id": seeded.queues["billing"]})
    assert moved.status_code == 204, moved.text
    board = (await sam.http.get("/api/supervisor/wallboard")).json()
    assert row_of(board, conversation_id)["queue_id"] == seeded.queues["billing"]
    assert row_of(board, conversation_id)["phase"] == "waiting"
    assert queue_named(board, "support")["waiting"] == 0
    assert queue_named(board, "billing")["waiting"] == 1
    told = await receive(customer, "message",
                         where=lambda f: "transferred" in f["message"]["text"])
    assert told["message"]["text"] == "The chat was transferred to queue billing."

    both = await sam.http.post(f"/api/supervisor/conversations/{conversation_id}/reassign",
                               json={"queue_id": seeded.queues["support"],
                                     "agent_id": seeded.agents["bob"]})
    assert both.status_code == 422
    await customer.close()
    await sam.close()


async def test_new_skills_route_a_waiting_chat(server: LiveServer, seeded: Seeded) -> None:
    sam = await Browser(server, "sam").login()
    alice = await Browser(server, "alice").login()
    await alice.http.put("/api/desk/status", json={"status": "available"})
    async with alice.socket("/api/desk/ws") as desk:
        await receive(desk, "state")
        customer, chat = await start_chat(server, seeded.queues["french"], "Bonjour")
        board = (await sam.http.get("/api/supervisor/wallboard")).json()
        assert row_of(board, chat["conversation_id"])["phase"] == "waiting"

        changed = await sam.http.put(f"/api/supervisor/agents/{seeded.agents['alice']}/skills",
                                     json={"skills": {"english": 5, "french": 4}})
        assert changed.status_code == 200, changed.text
        offer = await receive(desk, "offer.created")
        assert offer["conversation_id"] == chat["conversation_id"]
        board = (await sam.http.get("/api/supervisor/wallboard")).json()
        mine = next(a for a in board["agents"] if a["agent_id"] == seeded.agents["alice"])
        assert mine["skills"] == {"english": 5, "french": 4}

        refused = await sam.http.put(f"/api/supervisor/agents/{seeded.agents['bob']}/skills",
                                     json={"skills": {"french": 99}})
        assert refused.status_code in (400, 422), refused.text
        await customer.close()
    await alice.close()
    await sam.close()


async def test_a_status_set_by_the_supervisor_reaches_the_agent(server: LiveServer,
                                                                seeded: Seeded) -> None:
    sam = await Browser(server, "sam").login()
    alice = await Browser(server, "alice").login()
    await alice.http.put("/api/desk/status", json={"status": "available"})
    async with alice.socket("/api/desk/ws") as desk, sam.socket("/api/supervisor/ws") as board:
        await receive(desk, "state")
        await receive(board, "wallboard")
        changed = await sam.http.put(f"/api/supervisor/agents/{seeded.agents['alice']}/status",
                                     json={"status": "break"})
        assert changed.status_code == 200, changed.text
        assert changed.json()["status"] == "break"
        seen = await receive(desk, "agent.status_changed")
        assert seen["status"] == "break" and seen["reason"] == "supervisor"
        frame = await receive(board, "wallboard", where=lambda f: any(
            a["name"] == "Alice" and a["presence"] == "break" for a in f["agents"]))
        assert queue_named(frame, "support")["agents_by_presence"].get("break") == 1
    state = (await alice.http.get("/api/desk/state")).json()
    assert state["agent"]["presence"] == "break"
    await alice.close()
    await sam.close()


async def test_watch_whisper_and_barge(server: LiveServer, seeded: Seeded) -> None:
    sam = await Browser(server, "sam").login()
    alice = await Browser(server, "alice").login()
    await alice.http.put("/api/desk/status", json={"status": "available"})
    async with alice.socket("/api/desk/ws") as desk, sam.socket("/api/supervisor/ws") as board:
        await receive(desk, "state")
        await receive(board, "wallboard")
        customer, chat = await start_chat(server, seeded.queues["support"], "help")
        conversation_id = chat["conversation_id"]
        offer = await receive(desk, "offer.created")
        await alice.http.post(f"/api/desk/offers/{offer['offer_id']}/accept")
        await receive(customer, "agent_joined")

        await board.send(json.dumps({"type": "watch", "conversation_id": conversation_id}))
        view = (await sam.http.get(f"/api/supervisor/conversations/{conversation_id}")).json()
        assert [m["text"] for m in view["messages"]][:1] == ["help"]
        frame = await receive(board, "wallboard",
                              where=lambda f: row_of(f, conversation_id)["phase"] == "assigned")
        assert row_of(frame, conversation_id)["agent_id"] == seeded.agents["alice"]
        assert row_of(frame, conversation_id)["handling_s"] is not None

        # Silent: the customer hears nothing of the whisper; agent and supervisor see it.
        whispered = await sam.http.post(
            f"/api/supervisor/conversations/{conversation_id}/whisper", json={"text": "hint"})
        assert whispered.status_code == 201
        seen = await receive(board, "message.created",
                             where=lambda f: f.get("visibility") == "whisper")
        assert seen["text"] == "hint" and seen["author_name"] == "Sam"
        await receive(desk, "message.created", where=lambda f: f["visibility"] == "whisper")

        early = await sam.http.post(f"/api/supervisor/conversations/{conversation_id}/messages",
                                    json={"text": "too soon"})
        assert early.status_code == 409
        assert (await sam.http.post(
            f"/api/supervisor/conversations/{conversation_id}/barge")).status_code == 204
        said = await sam.http.post(f"/api/supervisor/conversations/{conversation_id}/messages",
                                   json={"text": "I am here too", "id": "s-1"})
        assert said.status_code == 201
        heard = []
        while not heard or heard[-1]["text"] != "I am here too":
            heard.append((await receive(customer, "message"))["message"])
        assert [m["text"] for m in heard] == [
            "Alice joined the chat.", "Sam (supervisor) joined the chat.", "I am here too"]
        assert heard[-1]["author_kind"] == "supervisor"

        await board.send(json.dumps({"type": "unwatch", "conversation_id": conversation_id}))
        await customer.close()
    await alice.close()
    await sam.close()

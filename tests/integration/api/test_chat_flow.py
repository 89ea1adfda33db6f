"""A chat from the widget to the agent and back, over real HTTP and WebSockets, on SQLite and
PostgreSQL: routing, replies, notes, whisper, transfer, end, wrap-up and the survey."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from sqlalchemy import select

from omnicc.store.database import Database
from omnicc.store.tables import Contact, Message, WrapUpCode
from tests.integration.api.live import (
    Browser,
    LiveServer,
    Seeded,
    live_server,
    receive,
    seed,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def seeded(migrated_database_url: str) -> Seeded:
    return asyncio.run(seed(migrated_database_url))


@pytest.fixture
def server(migrated_database_url: str, seeded: Seeded, tmp_path: Path) -> Iterator[LiveServer]:
    yield from live_server(migrated_database_url, tmp_path / "data")


async def customer_hello(server: LiveServer, visitor: str | None = None) -> tuple[Any, dict]:
    ws = await websockets.connect(server.ws_url + "/api/chat/ws?tenant=acme")
    await ws.send(json.dumps({"type": "hello", "visitor": visitor}))
    return ws, await receive(ws, "welcome")


async def test_a_chat_from_widget_to_agent_and_back(
        server: LiveServer, seeded: Seeded, migrated_database_url: str) -> None:
    alice = await Browser(server, "alice").login()
    sam = await Browser(server, "sam").login()
    config = (await alice.http.get("/api/chat/config", params={"tenant": "acme"})).json()
    assert {q["name"] for q in config["queues"]} == {"support", "billing"}
    assert not any(q["is_open"] for q in config["queues"])  # nobody logged in yet

    state = (await alice.http.put("/api/desk/status", json={"status": "available"})).json()
    assert state["agent"]["presence"] == "available"

    async with alice.socket("/api/desk/ws") as desk, sam.socket("/api/supervisor/ws") as board:
        assert (await receive(desk, "state"))["agent"]["name"] == "Alice"
        await receive(board, "wallboard")
        customer, welcome = await customer_hello(server)
        assert welcome["history"] == [] and welcome["chat"] is None
        await customer.send(json.dumps({
            "type": "start", "queue_id": seeded.queues["support"], "text": "My <b>bill</b>",
            "id": "m-1", "name": "Carol", "email": "Carol@Example.com", "topic": "support"}))
        chat = await receive(customer, "chat")
        assert chat["is_offline"] is False
        ack = await receive(customer, "ack")
        assert ack["id"] == "m-1" and ack["message"]["text"] == "My <b>bill</b>"

        offer = await receive(desk, "offer.created")
        assert offer["conversation_id"] == chat["conversation_id"]
        accepted = await alice.http.post(f"/api/desk/offers/{offer['offer_id']}/accept")
        assert accepted.status_code == 200, accepted.text
        await receive(customer, "agent_joined")
        joined = await receive(customer, "message")
        assert joined["message"]["text"] == "Alice joined the chat."

        conversation_id = chat["conversation_id"]
        view = (await alice.http.get(f"/api/desk/conversations/{conversation_id}")).json()
        assert view["customer"]["name"] == "Carol"
        assert view["messages"][0]["text"] == "My <b>bill</b>"

        # A reply reaches the customer; an internal note and a whisper do not.
        reply = await alice.http.post(f"/api/desk/conversations/{conversation_id}/messages",
                                      json={"text": "Hello Carol", "id": "a-1"})
        assert reply.status_code == 201
        got = await receive(customer, "message")
        assert got["message"]["text"] == "Hello Carol"
        assert got["message"]["author_name"] == "Alice"
        await alice.http.post(f"/api/desk/conversations/{conversation_id}/messages",
                              json={"text": "VIP, be nice", "internal": True})
        whisper = await sam.http.post(
            f"/api/supervisor/conversations/{conversation_id}/whisper",
            json={"text": "offer the discount"})
        assert whisper.status_code == 201, whisper.text
        seen = await receive(desk, "message.created",
                             where=lambda f: f["visibility"] == "whisper")
        assert seen["text"] == "offer the discount"
        await customer.send(json.dumps({"type": "message", "text": "thanks", "id": "m-2"}))
        await receive(customer, "ack")
        relayed = await receive(desk, "message.created",
                                where=lambda f: f["author_kind"] == "customer")
        assert relayed["text"] == "thanks"

        # The same frame id again is the same message.
        await customer.send(json.dumps({"type": "message", "text": "thanks", "id": "m-2"}))
        again = await receive(customer, "ack")
        assert again["message"]["id"] == relayed["id"]

        # A reply can go over the desk's socket too: acknowledged once committed.
        await desk.send(json.dumps({"type": "message", "conversation_id": conversation_id,
                                    "text": "Anything else?", "id": "a-2"}))
        acked = await receive(desk, "ack")
        assert acked["id"] == "a-2" and acked["message"]["text"] == "Anything else?"
        await receive(customer, "message",
                      where=lambda f: f["message"]["text"] == "Anything else?")
        await desk.send(json.dumps({"type": "message", "conversation_id": "not-mine",
                                    "text": "hello?", "id": "a-3"}))
        assert (await receive(desk, "error"))["status"] == 404

        # The agent ends the chat; the customer is asked for a rating.
        ended = await alice.http.post(f"/api/desk/conversations/{conversation_id}/end")
        assert ended.status_code == 200
        task_id = ended.json()["tasks"][0]["task_id"]
        assert ended.json()["tasks"][0]["phase"] == "wrapping"
        gone = await receive(customer, "chat_ended")
        await customer.send(json.dumps({"type": "rate", "contact_id": gone["contact_id"],
                                        "score": 5, "comment": "great"}))
        await receive(customer, "rated")
        wrapped = await alice.http.post(f"/api/desk/tasks/{task_id}/wrap-up",
                                        json={"code": "solved"})
        assert wrapped.status_code == 200 and wrapped.json()["tasks"] == []

        board_state = (await sam.http.get("/api/supervisor/wallboard")).json()
        support = next(q for q in board_state["queues"] if q["name"] == "support")
        assert support["handled"] == 1
        await customer.close()

    database = Database(migrated_database_url)
    try:
        async with database.session() as session:
            texts = [(m.author_kind, m.visibility, m.text) for m in (await session.execute(
                select(Message).where(Message.conversation_id == conversation_id)
                .order_by(Message.created_at, Message.id))).scalars()]
            contact = (await session.execute(select(Contact))).scalar_one()
            code = (await session.execute(select(WrapUpCode))).scalar_one()
    finally:
        await database.dispose()
    assert ("customer", "public", "thanks") in texts
    assert sum(1 for t in texts if t[2] == "thanks") == 1
    assert ("supervisor", "whisper", "offer the discount") in texts
    assert contact.csat_score == 5 and contact.csat_comment == "great"
    assert contact.wrap_up_code_id == code.id and contact.agent_id == seeded.agents["alice"]
    await alice.close()
    await sam.close()


async def test_a_returning_visitor_sees_the_history(server: LiveServer, seeded: Seeded) -> None:
    customer, welcome = await customer_hello(server)
    token = welcome["visitor"]
    await customer.send(json.dumps({"type": "start", "queue_id": seeded.queues["billing"],
                                    "text": "anyone there?", "id": "x"}))
    chat = await receive(customer, "chat")
    assert chat["is_offline"] is True  # nobody is logged in: answered later
    await customer.close()
    again, welcome = await customer_hello(server, token)
    assert welcome["visitor"] == token
    assert [m["text"] for m in welcome["history"]] == ["anyone there?"]
    assert welcome["chat"]["conversation_id"] == chat["conversation_id"]
    await again.close()


async def test_bad_frames_get_clear_errors(server: LiveServer, seeded: Seeded) -> None:
    customer, _ = await customer_hello(server)
    await customer.send("not json")
    assert (await receive(customer, "error"))["status"] == 400
    await customer.send(json.dumps({"type": "message", "text": "no chat yet", "id": "1"}))
    assert (await receive(customer, "error"))["status"] == 409
    await customer.send(json.dumps({"type": "start", "queue_id": seeded.queues["support"],
                                    "text": "x" * 20_000, "id": "2"}))
    assert (await receive(customer, "error"))["status"] == 413
    await customer.send(json.dumps({"type": "start", "queue_id": "nope", "text": "hi"}))
    assert (await receive(customer, "error"))["status"] == 404
    await customer.close()


async def test_desk_and_wallboard_need_the_right_role(server: LiveServer) -> None:
    alice = await Browser(server, "alice").login()
    assert (await alice.http.get("/api/supervisor/wallboard")).status_code == 403
    anonymous = Browser(server, "nobody")
    assert (await anonymous.http.get("/api/desk/state")).status_code == 401
    no_csrf = await alice.http.put("/api/desk/status", json={"status": "available"},
                                   headers={"X-CSRF-Token": ""})
    assert no_csrf.status_code == 403
    await alice.close()
    await anonymous.close()


async def test_pages_send_strangers_to_the_login_page(server: LiveServer) -> None:
    alice = await Browser(server, "alice").login()
    anonymous = Browser(server, "nobody")
    login = await anonymous.http.get("/login")
    assert login.status_code == 200 and "Log in" in login.text
    assert (await anonymous.http.get("/")).headers["location"] == "/login"
    assert (await alice.http.get("/")).headers["location"] == "/desk"
    assert (await anonymous.http.get("/static/app.css")).status_code == 200
    await alice.close()
    await anonymous.close()

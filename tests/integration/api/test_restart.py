"""Kill the server (SIGKILL) with chats waiting, start it again: every chat is still queued in
the same order, every conversation is intact, nothing is doubled (issue 3, durability).

A real `omnicc serve` process on SQLite and on PostgreSQL; customers over real WebSockets.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import func, select

from omnicc.store.database import Database
from omnicc.store.tables import Message, Task
from tests.integration.api.live import PASSWORD, receive, seed
from tests.integration.api.test_serve import RunningServer, server_environment, start_server

CHATS = 5
READY_TIMEOUT_S = 60.0


def start(tmp_path: Path, database_url: str, run: int, **environment: str) -> RunningServer:
    folder = tmp_path / f"run-{run}"
    folder.mkdir()
    server = start_server(folder, server_environment(tmp_path / "data",
                                                     OMNICC_DATABASE_URL=database_url,
                                                     **environment))
    deadline = time.monotonic() + READY_TIMEOUT_S
    while httpx.get(f"{server.url}/readyz", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, "the server did not become ready"
        time.sleep(0.1)
    return server


def ws_url(server: RunningServer, path: str) -> str:
    return "ws" + server.url[len("http"):] + path


async def open_chats(server: RunningServer, queue_id: str) -> list[dict[str, Any]]:
    chats = []
    for number in range(CHATS):
        async with websockets.connect(ws_url(server, "/api/chat/ws?tenant=acme")) as ws:
            await ws.send(json.dumps({"type": "hello", "visitor": None}))
            visitor = (await receive(ws, "welcome"))["visitor"]
            await ws.send(json.dumps({"type": "start", "queue_id": queue_id,
                                      "text": f"question {number}", "id": f"q{number}",
                                      "name": f"Customer {number}"}))
            chat = await receive(ws, "chat")
            await receive(ws, "ack")
            await ws.send(json.dumps({"type": "message", "text": f"details {number}",
                                      "id": f"d{number}"}))
            await receive(ws, "ack")
            chats.append({"visitor": visitor, **chat})
    return chats


async def after_restart(server: RunningServer, chats: list[dict[str, Any]]) -> list[str]:
    # Every customer comes back to the same chat and history; a resent frame is not doubled.
    for number, chat in enumerate(chats):
        async with websockets.connect(ws_url(server, "/api/chat/ws?tenant=acme")) as ws:
            await ws.send(json.dumps({"type": "hello", "visitor": chat["visitor"]}))
            welcome = await receive(ws, "welcome")
            assert welcome["chat"]["conversation_id"] == chat["conversation_id"]
            assert [m["text"] for m in welcome["history"]] == [f"question {number}",
                                                              f"details {number}"]
            await ws.send(json.dumps({"type": "message", "text": f"details {number}",
                                      "id": f"d{number}"}))
            await receive(ws, "ack")
    # An agent who goes available gets the chats in the order they came.
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as alice:
        me = (await alice.post("/api/auth/login", json={
            "username": "alice", "password": PASSWORD, "tenant": "acme"})).json()
        alice.headers["X-CSRF-Token"] = me["csrf_token"]
        served = []
        state = (await alice.put("/api/desk/status", json={"status": "available"})).json()
        while len(served) < CHATS:
            offer = state["offers"][0]
            served.append(offer["conversation_id"])
            state = (await alice.post(f"/api/desk/offers/{offer['offer_id']}/accept")).json()
            state = (await alice.post(
                f"/api/desk/conversations/{offer['conversation_id']}/end")).json()
            task_id = next(t["task_id"] for t in state["tasks"]
                           if t["conversation_id"] == offer["conversation_id"])
            state = (await alice.post(f"/api/desk/tasks/{task_id}/wrap-up", json={})).json()
            if len(served) < CHATS and not state["offers"]:
                state = await wait_for_offer(alice)
        return served


async def wait_for_offer(client: httpx.AsyncClient) -> dict[str, Any]:
    for _ in range(200):
        state: dict[str, Any] = (await client.get("/api/desk/state")).json()
        if state["offers"]:
            return state
        await asyncio.sleep(0.05)
    raise AssertionError("no offer came")


@pytest.mark.parametrize("signum", [signal.SIGKILL])
def test_chats_survive_kill_9_in_order(migrated_database_url: str, tmp_path: Path,
                                       signum: int) -> None:
    seeded = asyncio.run(seed(migrated_database_url))
    server = start(tmp_path, migrated_database_url, 1)
    try:
        chats = asyncio.run(open_chats(server, seeded.queues["support"]))
    finally:
        server.process.send_signal(signum)
        server.process.wait(timeout=20)
    server = start(tmp_path, migrated_database_url, 2)
    try:
        served = asyncio.run(after_restart(server, chats))
    finally:
        server.stop()
    assert served == [chat["conversation_id"] for chat in chats]

    async def count() -> tuple[int, int]:
        database = Database(migrated_database_url)
        try:
            async with database.session() as session:
                customer_messages = (await session.execute(
                    select(func.count()).select_from(Message)
                    .where(Message.author_kind == "customer"))).scalar_one()
                tasks = (await session.execute(
                    select(func.count()).select_from(Task))).scalar_one()
                return customer_messages, tasks
        finally:
            await database.dispose()

    assert asyncio.run(count()) == (2 * CHATS, CHATS)

"""Kill a real `omnicc serve` (SIGKILL) with one caller talking to alice and one in line, start
it again: alice is in wrap-up instead of busy for ever, the caller who was in line is not
counted as an abandon, both call records are closed by the system (issue 4, restarts).

alice's baresip phone and two callers made of OmniCC's SIP stack, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from omnicc.channels.voice.media.daemon import random_port_window
from omnicc.channels.voice.recovery import LOST_OUTCOME
from omnicc.store.database import Database
from omnicc.store.tables import CallRecord, Task
from tests.integration.api.live import PASSWORD, Seeded, seed
from tests.integration.api.test_restart import start
from tests.integration.voice.harness import (
    PHONE_PASSWORD,
    SUPPORT_LINE,
    Caller,
    free_port,
    open_support_line,
)
from tests.integration.voice.peers import Baresip

pytestmark = pytest.mark.anyio


async def logged_in(url: str, username: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=url, timeout=30)
    me = (await client.post("/api/auth/login", json={
        "username": username, "password": PASSWORD, "tenant": "acme"})).json()
    client.headers["X-CSRF-Token"] = me["csrf_token"]
    return client


async def rows(url: str) -> tuple[list[Task], list[CallRecord]]:
    database = Database(url)
    try:
        async with database.session() as session:
            tasks = list((await session.execute(select(Task).where(
                Task.channel == "voice"))).scalars())
            records = list((await session.execute(select(CallRecord))).scalars())
            return tasks, records
    finally:
        await database.dispose()


async def test_calls_lost_to_kill_9_end_at_the_next_start(migrated_database_url: str,
                                                          tmp_path: Path) -> None:
    url = migrated_database_url
    seeded: Seeded = await seed(url)
    await open_support_line(url, seeded)
    sip_port = free_port(socket.SOCK_DGRAM, socket.SOCK_STREAM)
    low, high = random_port_window()
    voice = {"OMNICC_SIP_PORT": str(sip_port), "OMNICC_MEDIA_PORTS": f"{low}-{high}"}
    server = await asyncio.to_thread(start, tmp_path, url, 1, **voice)
    phone = Baresip(tmp_path / "alice", user="alice", password=PHONE_PASSWORD,
                    registrar=("127.0.0.1", sip_port))
    talking, waiting = Caller(sip_port), Caller(sip_port)
    killed = False
    try:
        await phone.start()
        for _ in range(200):  # registered (the phone says so in its log)
            if "200 OK (OmniCC)" in phone.log():
                break
            await asyncio.sleep(0.05)
        alice = await logged_in(server.url, "alice")
        await alice.put("/api/desk/status", json={"status": "available"})
        await talking.call(SUPPORT_LINE)
        calls: list[dict[str, Any]] = []

        async def alice_talks() -> bool:
            calls[:] = (await alice.get("/api/desk/calls")).json()
            return bool(calls)

        for _ in range(200):
            if await alice_talks():
                break
            await asyncio.sleep(0.1)
        [call] = calls
        await waiting.call(SUPPORT_LINE)
        for _ in range(200):
            tasks, _ = await rows(url)
            if any(task.phase == "waiting" for task in tasks):
                break
            await asyncio.sleep(0.1)
        await alice.aclose()

        server.process.kill()  # SIGKILL: no tear-down runs
        server.process.wait(timeout=20)
        killed = True
        tasks, records = await rows(url)
        assert sorted(task.phase for task in tasks) == ["assigned", "waiting"]
        assert all(record.ended_at is None for record in records)

        server = await asyncio.to_thread(start, tmp_path, url, 2, **voice)
        for _ in range(300):  # the voice service may start after the server is ready
            tasks, records = await rows(url)
            if not any(task.phase in ("assigned", "waiting") for task in tasks):
                break
            await asyncio.sleep(0.1)
        phases = {task.id: (task.phase, task.outcome) for task in tasks}
        assert phases.pop(call["task_id"]) == ("wrapping", None)  # alice's wrap-up
        assert list(phases.values()) == [("ended", "cancelled")]
        assert sorted((r.outcome, r.hangup_side) for r in records) == [
            ("answered", "system"), (LOST_OUTCOME, "system")]
        assert all(record.ended_at is not None for record in records)
        sam = await logged_in(server.url, "sam")
        try:
            board = (await sam.get("/api/supervisor/wallboard")).json()
        finally:
            await sam.aclose()
        support = next(q for q in board["queues"] if q["queue_id"] == seeded.queues["support"])
        assert support["abandoned"] == 0  # our crash is not the caller's abandon
        assert board["calls"] == []
        alice_agent = next(a for a in board["agents"] if a["agent_id"] == seeded.agents["alice"])
        assert alice_agent["presence"] == "wrap_up"
    finally:
        for caller in (talking, waiting):
            await caller.close()
        await phone.stop()
        if not killed:
            server.process.kill()
        server.stop()

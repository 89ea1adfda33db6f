"""Calls in OmniCC's history and views, on SQLite and PostgreSQL: call detail records in the
desk's and the supervisor's conversation view (and in the customer's past contacts), playing a
recording (who may, byte ranges, paths that leave the recordings directory), recording
retention (the function and the server's daily run), and voice on the wallboard."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
import os
import shutil
import struct
import wave
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from fastapi import FastAPI
from playwright.async_api import Page, async_playwright, expect

from omnicc.api.app import create_app
from omnicc.app.recordings import expire_recordings, recording_file, recordings_dir
from omnicc.config import load_settings
from omnicc.core.model import TaskPhase
from omnicc.store.database import Database
from omnicc.store.repositories import CallRecords, Contacts, Conversations, Customers
from omnicc.store.tables import CallRecord, Contact, Conversation, Customer
from tests.integration.api.live import PASSWORD, TEST_PASSWORDS, Seeded, free_port, seed

pytestmark = pytest.mark.anyio


def _wav(seconds: float = 0.25) -> bytes:
    """A stereo 8 kHz tone, as recordings are."""
    frames = int(seconds * 8000)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(2)
        writer.setsampwidth(2)
        writer.setframerate(8000)
        writer.writeframes(b"".join(
            struct.pack("<hh", int(6000 * math.sin(2 * math.pi * 440 * i / 8000)), 0)
            for i in range(frames)))
    return buffer.getvalue()


@dataclass
class Center:
    app: FastAPI
    database: Database
    acme: Seeded
    other: Seeded
    data_dir: Path
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def recordings(self) -> Path:
        return recordings_dir(self.data_dir)

    async def user(self, username: str, tenant: str = "acme") -> httpx.AsyncClient:
        """A client logged in as `username`, with the CSRF header set."""
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
        client = httpx.AsyncClient(transport=transport, base_url="http://omnicc.test")
        self.clients.append(client)
        answer = await client.post("/api/auth/login", json={
            "username": username, "password": PASSWORD, "tenant": tenant})
        assert answer.status_code == 200, answer.text
        client.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
        return client


def _server(url: str, data_dir: Path) -> FastAPI:
    app = create_app(load_settings(data_dir=data_dir, database_url=url))
    app.state.security.passwords = TEST_PASSWORDS
    app.state.security.logins._passwords = TEST_PASSWORDS
    return app


@pytest.fixture
async def center(migrated_database_url: str, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Center]:
    for name in ("OMNICC_CONFIG", "OMNICC_DATABASE_URL", "OMNICC_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    acme = await seed(migrated_database_url)
    other = await seed(migrated_database_url, slug="globex")
    app = _server(migrated_database_url, tmp_path / "data")
    async with app.router.lifespan_context(app):
        while not app.state.center.is_started:
            await asyncio.sleep(0.01)
        center = Center(app, app.state.database, acme, other, tmp_path / "data")
        try:
            yield center
        finally:
            for client in center.clients:
                await client.aclose()


@dataclass
class Call:
    customer_id: str
    conversation_id: str
    contact_id: str
    record_id: str


async def _call(center: Center, *, agent: str | None = "alice", number: str = "+358401234567",
                started_at: datetime | None = None, recording: str | None = None,
                customer_id: str | None = None, seeded: Seeded | None = None,
                outcome: str = "answered", contact_names_agent: bool = True) -> Call:
    """A finished inbound call as the call controller leaves it: a voice contact in its own
    conversation and its call detail record."""
    seeded = seeded or center.acme
    tenant_id = seeded.tenant_id
    at = started_at or datetime.now(UTC) - timedelta(minutes=10)
    agent_id = seeded.agents[agent] if agent else None
    async with center.database.session() as session:
        if customer_id is None:
            customer_id = (await Customers(session, tenant_id).add(Customer(
                name="Carl Caller", attributes={"phone": number}))).id
        conversation = await Conversations(session, tenant_id).add(Conversation(
            customer_id=customer_id, status="closed", created_at=at))
        contact = await Contacts(session, tenant_id).add(Contact(
            conversation_id=conversation.id, customer_id=customer_id, channel="voice",
            queue_id=seeded.queues["support"],
            agent_id=agent_id if contact_names_agent else None, started_at=at,
            ended_at=at + timedelta(seconds=95), attributes={"call_id": "sip-1"}))
        record = await CallRecords(session, tenant_id).add(CallRecord(
            call_id=f"sip-{contact.id}", contact_id=contact.id,
            conversation_id=conversation.id, customer_id=customer_id, from_number=number,
            to_number="1000", queue_id=seeded.queues["support"], agent_id=agent_id,
            ivr_path=[{"node": "menu", "kind": "menu", "input": "1"},
                      {"node": "support", "kind": "queue"}],
            started_at=at, answered_at=at + timedelta(seconds=20) if agent else None,
            ended_at=at + timedelta(seconds=95), queue_s=12.5, talk_s=75.0, hold_s=8.0,
            transfers=1, hangup_side="caller", outcome=outcome, recording_path=recording))
    return Call(customer_id, conversation.id, contact.id, record.id)


def _write(center: Center, relative: str, data: bytes) -> Path:
    path = center.recordings / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


async def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


# --- playing a recording ------------------------------------------------------------------------

async def test_the_agent_who_took_the_call_supervisors_and_admins_hear_its_recording(
    center: Center, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="omnicc.recordings")
    audio = _wav()
    call = await _call(center, recording="acme/call-1.wav")
    _write(center, "acme/call-1.wav", audio)
    for username in ("alice", "sam", "ada"):
        client = await center.user(username)
        answer = await client.get(f"/api/recordings/{call.record_id}")
        assert answer.status_code == 200, (username, answer.text)
        assert answer.headers["content-type"] == "audio/wav"
        assert answer.headers["content-disposition"].startswith("inline")
        assert answer.content == audio
    with wave.open(io.BytesIO(answer.content)) as played:
        assert (played.getnchannels(), played.getframerate()) == (2, 8000)
    # Every play is logged with who listened.
    plays = [r.getMessage() for r in caplog.records if r.name == "omnicc.recordings"]
    alice_user = (await (await center.user("alice")).get("/api/auth/me")).json()["user_id"]
    assert len(plays) == 3
    assert plays[0] == f"recording of call record {call.record_id} played by user {alice_user}"

    # A player seeks with byte ranges.
    alice = await center.user("alice")
    part = await alice.get(f"/api/recordings/{call.record_id}", headers={"Range": "bytes=0-43"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 0-43/{len(audio)}"
    assert part.content == audio[:44]

    # Another agent of the tenant may not; another tenant does not even see the call.
    bob = await center.user("bob")
    forbidden = await bob.get(f"/api/recordings/{call.record_id}")
    assert forbidden.status_code == 403
    assert forbidden.headers["content-type"].startswith("application/problem+json")
    for username in ("ada", "alice"):
        stranger = await center.user(username, tenant="globex")
        assert (await stranger.get(f"/api/recordings/{call.record_id}")).status_code == 404
    anonymous = httpx.AsyncClient(transport=httpx.ASGITransport(app=center.app),
                                  base_url="http://omnicc.test")
    center.clients.append(anonymous)
    assert (await anonymous.get(f"/api/recordings/{call.record_id}")).status_code == 401


async def test_an_agent_who_took_the_call_after_a_transfer_hears_it_too(center: Center) -> None:
    call = await _call(center, recording="transferred.wav")
    _write(center, "transferred.wav", _wav())
    bob = await center.user("bob")
    assert (await bob.get(f"/api/recordings/{call.record_id}")).status_code == 403
    async with center.database.session() as session:
        await Contacts(session, center.acme.tenant_id).add(Contact(
            conversation_id=call.conversation_id, customer_id=call.customer_id,
            channel="voice", agent_id=center.acme.agents["bob"]))
    assert (await bob.get(f"/api/recordings/{call.record_id}")).status_code == 200


async def test_no_recording_a_missing_file_and_paths_outside_the_directory_are_404(
    center: Center, tmp_path: Path,
) -> None:
    secret = tmp_path / "secret.wav"
    secret.write_bytes(_wav())
    _write(center, "inside.wav", _wav())
    center.recordings.joinpath("link.wav").symlink_to(secret)
    sam = await center.user("sam")
    without = await _call(center)
    assert (await sam.get(f"/api/recordings/{without.record_id}")).status_code == 404
    gone = await _call(center, recording="acme/deleted.wav")
    assert (await sam.get(f"/api/recordings/{gone.record_id}")).status_code == 404
    escape = os.path.relpath(secret, center.recordings)
    for path in (escape, str(secret), "link.wav", ".", "acme/../../secret.wav"):
        call = await _call(center, recording=path)
        answer = await sam.get(f"/api/recordings/{call.record_id}")
        assert answer.status_code == 404, path
        assert answer.content != secret.read_bytes()
    assert recording_file(center.recordings, "inside.wav") == (
        center.recordings / "inside.wav").resolve()
    assert recording_file(center.recordings, escape) is None


# --- retention ----------------------------------------------------------------------------------

async def test_retention_deletes_expired_recordings_and_clears_their_rows(
    center: Center, tmp_path: Path,
) -> None:
    now = datetime.now(UTC)
    old = await _call(center, started_at=now - timedelta(days=31), recording="acme/old.wav")
    recent = await _call(center, started_at=now - timedelta(days=29),
                         recording="acme/recent.wav")
    outside = tmp_path / "keep.wav"
    outside.write_bytes(b"not ours")
    astray = await _call(center, started_at=now - timedelta(days=40),
                         recording=os.path.relpath(outside, center.recordings))
    other = await _call(center, started_at=now - timedelta(days=45), recording="globex/a.wav",
                        seeded=center.other)
    for name in ("acme/old.wav", "acme/recent.wav", "globex/a.wav"):
        _write(center, name, _wav())
    month_ago = (now - timedelta(days=31)).timestamp()
    stale_pcap = _write(center, "raw/pcaps/old-call.pcap", b"pcap")
    os.utime(stale_pcap, (month_ago, month_ago))
    fresh_pcap = _write(center, "raw/pcaps/new-call.pcap", b"pcap")

    assert await expire_recordings(center.database, center.recordings, 0, now=now) == 0
    assert (center.recordings / "acme/old.wav").exists()
    assert await expire_recordings(center.database, center.recordings, 30, now=now) == 3

    assert not (center.recordings / "acme/old.wav").exists()
    assert not (center.recordings / "globex/a.wav").exists()
    assert (center.recordings / "acme/recent.wav").exists()
    assert outside.read_bytes() == b"not ours"  # a row never makes us delete elsewhere
    assert not stale_pcap.exists() and fresh_pcap.exists()
    async with center.database.session() as session:
        rows = {r.id: r for r in await CallRecords(session, center.acme.tenant_id).list_all()}
        (other_row,) = await CallRecords(session, center.other.tenant_id).list_all()
    assert rows[old.record_id].recording_path is None
    assert rows[old.record_id].details["recording_expired_at"] == now.isoformat()
    assert rows[astray.record_id].recording_path is None
    assert rows[recent.record_id].recording_path == "acme/recent.wav"
    assert other_row.id == other.record_id and other_row.recording_path is None
    sam = await center.user("sam")
    assert (await sam.get(f"/api/recordings/{old.record_id}")).status_code == 404
    assert (await sam.get(f"/api/recordings/{recent.record_id}")).status_code == 200
    # Nothing left to do: a second run changes nothing.
    assert await expire_recordings(center.database, center.recordings, 30, now=now) == 0


async def test_the_server_expires_recordings_when_it_starts(migrated_database_url: str,
                                                            tmp_path: Path) -> None:
    seeded = await seed(migrated_database_url)
    data_dir = tmp_path / "data"
    database = Database(migrated_database_url)
    try:
        async with database.session() as session:
            record = await CallRecords(session, seeded.tenant_id).add(CallRecord(
                call_id="old", started_at=datetime.now(UTC) - timedelta(days=100),
                recording_path="old.wav"))
        wav = recordings_dir(data_dir) / "old.wav"
        wav.parent.mkdir(parents=True)
        wav.write_bytes(_wav())
        app = _server(migrated_database_url, data_dir)
        assert app.state.settings.recording_retention_days == 90
        async with app.router.lifespan_context(app):
            for _ in range(1000):
                async with database.session() as session:
                    row = await CallRecords(session, seeded.tenant_id).get(record.id)
                if row.recording_path is None:
                    break
                await asyncio.sleep(0.01)
        assert row.recording_path is None and not wav.exists()
    finally:
        await database.dispose()


# --- calls in the history -------------------------------------------------------------------------

def _call_of(view: dict[str, Any], contact_id: str) -> dict[str, Any] | None:
    (entry,) = [c for c in view["contacts"] if c["contact_id"] == contact_id]
    call: dict[str, Any] | None = entry.get("call")
    return call


async def test_the_conversation_view_shows_the_call_and_past_calls_with_their_figures(
    center: Center,
) -> None:
    now = datetime.now(UTC)
    earlier = await _call(center, agent="bob", started_at=now - timedelta(days=2),
                          recording="earlier.wav")
    missed = await _call(center, agent=None, customer_id=earlier.customer_id,
                         started_at=now - timedelta(days=1), outcome="abandoned")
    call = await _call(center, customer_id=earlier.customer_id, recording="now.wav")

    alice = await center.user("alice")
    view = await _ok(await alice.get(f"/api/desk/conversations/{call.conversation_id}"))
    (shown,) = view["calls"]
    assert shown == {
        "id": call.record_id, "direction": "inbound", "from": "+358401234567", "to": "1000",
        "ivr_path": [{"node": "menu", "kind": "menu", "input": "1"},
                     {"node": "support", "kind": "queue"}],
        "queue_id": center.acme.queues["support"], "queue": "support",
        "agent_id": center.acme.agents["alice"], "agent": "Alice",
        "started_at": shown["started_at"], "answered_at": shown["answered_at"],
        "ended_at": shown["ended_at"], "queue_s": 12.5, "talk_s": 75.0, "hold_s": 8.0,
        "transfers": 1, "hangup_side": "caller", "outcome": "answered",
        "recording_url": f"/api/recordings/{call.record_id}"}
    started = datetime.fromisoformat(shown["started_at"])
    assert datetime.fromisoformat(shown["ended_at"]) - started == timedelta(seconds=95)
    assert datetime.fromisoformat(shown["answered_at"]) - started == timedelta(seconds=20)

    # The customer's earlier calls, with their figures; bob's recording is not alice's to hear.
    assert [c["contact_id"] for c in view["contacts"]] == [
        call.contact_id, missed.contact_id, earlier.contact_id]
    assert _call_of(view, call.contact_id) == shown
    past = _call_of(view, earlier.contact_id)
    assert past is not None and past["agent"] == "Bob" and past["talk_s"] == 75.0
    assert past["recording_url"] is None
    abandoned = _call_of(view, missed.contact_id)
    assert abandoned is not None and abandoned["outcome"] == "abandoned"
    assert abandoned["agent_id"] is None and abandoned["answered_at"] is None

    # The supervisor sees the same, with every recording.
    sam = await center.user("sam")
    watched = await _ok(await sam.get(f"/api/supervisor/conversations/{call.conversation_id}"))
    assert watched["calls"] == view["calls"]
    past = _call_of(watched, earlier.contact_id)
    assert past is not None and past["recording_url"] == f"/api/recordings/{earlier.record_id}"

    # Bob took the earlier call, so he sees it with its recording; alice's is not his.
    bob = await center.user("bob")
    assert (await bob.get(f"/api/desk/conversations/{call.conversation_id}")).status_code == 404
    his = await _ok(await bob.get(f"/api/desk/conversations/{earlier.conversation_id}"))
    assert his["calls"][0]["recording_url"] == f"/api/recordings/{earlier.record_id}"
    current = _call_of(his, call.contact_id)
    assert current is not None and current["recording_url"] is None


async def test_an_agent_sees_the_call_they_take_and_took(center: Center) -> None:
    """The voice contact does not name its agent: the live task and the call record do."""
    runtime = await center.app.state.center.tenant(center.acme.tenant_id)
    caller = await runtime.voice.identify_caller("+358404444444", "Live Caller")
    live = await runtime.voice.enqueue(caller, queue_id=center.acme.queues["support"],
                                       call_id="live")
    alice, bob = await center.user("alice"), await center.user("bob")
    path = f"/api/desk/conversations/{live.conversation_id}"
    assert (await alice.get(path)).status_code == 404  # still waiting: nobody's yet
    await _ok(await alice.put("/api/desk/status", json={"status": "available"}))
    engine = runtime.routing.engine
    await _eventually(lambda: engine.task(live.task_id).phase is TaskPhase.OFFERED)
    (offer_id,) = engine.task(live.task_id).offers
    assert await runtime.voice.accept(offer_id)
    view = await _ok(await alice.get(path))
    assert view["customer"]["name"] == "Live Caller" and view["calls"] == []
    assert (await bob.get(path)).status_code == 404
    await runtime.voice.hung_up(live, side="caller")

    took = await _call(center, contact_names_agent=False)
    view = await _ok(await alice.get(f"/api/desk/conversations/{took.conversation_id}"))
    assert view["calls"][0]["agent"] == "Alice"
    (contact,) = view["contacts"]
    assert contact["agent_id"] == center.acme.agents["alice"]
    assert (await bob.get(f"/api/desk/conversations/{took.conversation_id}")).status_code == 404


async def test_a_chat_conversation_has_no_calls(center: Center) -> None:
    async with center.database.session() as session:
        tenant_id = center.acme.tenant_id
        customer = await Customers(session, tenant_id).add(Customer(name="Wendy"))
        conversation = await Conversations(session, tenant_id).add(Conversation(
            customer_id=customer.id))
        await Contacts(session, tenant_id).add(Contact(
            conversation_id=conversation.id, customer_id=customer.id, channel="chat",
            agent_id=center.acme.agents["alice"]))
    alice = await center.user("alice")
    view = await _ok(await alice.get(f"/api/desk/conversations/{conversation.id}"))
    assert view["calls"] == [] and "call" not in view["contacts"][0]


# --- the wallboard -------------------------------------------------------------------------

async def _eventually(check: Callable[[], bool]) -> None:
    for _ in range(1000):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition did not come true")


async def test_the_wallboard_shows_calls_waiting_ringing_and_talking(center: Center) -> None:
    runtime = await center.app.state.center.tenant(center.acme.tenant_id)
    support, billing = center.acme.queues["support"], center.acme.queues["billing"]
    first = await runtime.voice.identify_caller("+358401111111", "First Caller")
    second = await runtime.voice.identify_caller("+358402222222")
    one = await runtime.voice.enqueue(first, queue_id=support, call_id="c1")
    two = await runtime.voice.enqueue(second, queue_id=support, call_id="c2")

    sam = await center.user("sam")
    board = await _ok(await sam.get("/api/supervisor/wallboard"))
    queues = {q["queue_id"]: q for q in board["queues"]}
    assert queues[support]["voice"]["waiting"] == 2
    assert queues[support]["voice"]["in_progress"] == 0
    assert queues[support]["voice"]["longest_wait_s"] >= 0
    assert queues[billing]["voice"] == {"waiting": 0, "longest_wait_s": 0.0,
                                        "ewt_s": queues[billing]["voice"]["ewt_s"],
                                        "in_progress": 0}
    assert {(c["task_id"], c["caller"], c["phone"], c["state"], c["agent_id"])
            for c in board["calls"]} == {
        (one.task_id, "First Caller", "+358401111111", "waiting", None),
        (two.task_id, "", "+358402222222", "waiting", None)}
    assert board["calls"][0]["task_id"] == one.task_id  # the longest first
    assert board["calls"][0]["queue_id"] == support
    assert board["calls"][0]["conversation_id"] == one.conversation_id

    # Alice becomes available: her phone rings for the first call, she answers.
    alice = await center.user("alice")
    await _ok(await alice.put("/api/desk/status", json={"status": "available"}))
    engine = runtime.routing.engine
    await _eventually(lambda: engine.task(one.task_id).phase is TaskPhase.OFFERED)
    board = await _ok(await sam.get("/api/supervisor/wallboard"))
    ringing = next(c for c in board["calls"] if c["task_id"] == one.task_id)
    assert (ringing["state"], ringing["agent_id"]) == ("offered", center.acme.agents["alice"])
    (offer_id,) = engine.task(one.task_id).offers
    assert await runtime.voice.accept(offer_id)
    board = await _ok(await sam.get("/api/supervisor/wallboard"))
    queues = {q["queue_id"]: q for q in board["queues"]}
    assert (queues[support]["voice"]["waiting"], queues[support]["voice"]["in_progress"]) == (1, 1)
    talking = next(c for c in board["calls"] if c["task_id"] == one.task_id)
    assert (talking["state"], talking["agent_id"]) == ("assigned", center.acme.agents["alice"])

    # The live socket carries the same, and the call leaves it when it ends.
    await runtime.voice.hung_up(one, side="caller")
    await runtime.voice.hung_up(two, side="caller")
    board = await _ok(await sam.get("/api/supervisor/wallboard"))
    assert board["calls"] == []
    assert (await alice.get("/api/supervisor/wallboard")).status_code == 403


async def test_the_supervisor_socket_sends_voice_figures(center: Center) -> None:
    """Over a real socket: the first frame and the periodic ones carry the calls."""
    port = free_port()
    config = uvicorn.Config(center.app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="off", ws="websockets-sansio")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        await _eventually(lambda: server.started)
        runtime = await center.app.state.center.tenant(center.acme.tenant_id)
        caller = await runtime.voice.identify_caller("+358403333333", "Third Caller")
        waiting = await runtime.voice.enqueue(caller, queue_id=center.acme.queues["billing"],
                                              call_id="c3")
        sam = await center.user("sam")
        cookie = "; ".join(f"{k}={v}" for k, v in sam.cookies.items())
        async with websockets.connect(
                f"ws://127.0.0.1:{port}/api/supervisor/ws",
                additional_headers={"Cookie": cookie, "Origin": f"http://127.0.0.1:{port}"},
        ) as ws:
            for _ in range(2):  # the first frame, then a periodic one
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                while frame["type"] != "wallboard":
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert [c["task_id"] for c in frame["calls"]] == [waiting.task_id]
                billing = next(q for q in frame["queues"]
                               if q["queue_id"] == center.acme.queues["billing"])
                assert billing["voice"]["waiting"] == 1
        await runtime.voice.hung_up(waiting, side="caller")
    finally:
        server.should_exit = True
        await serving


# --- the pages in Chromium -------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_the_desk_and_the_wallboard_show_the_call(center: Center) -> None:
    """Debian's chromium: alice's desk shows the call she is on (details block, the recording
    player of her earlier call), sam's wallboard the calls in progress; names stay text."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium is not None, "Debian's chromium is needed: apt-get install chromium"
    runtime = await center.app.state.center.tenant(center.acme.tenant_id)
    alice_id = center.acme.agents["alice"]
    name = "<img src=x onerror=alert(1)>Carl"
    caller = await runtime.voice.identify_caller("+358405555555", name)
    earlier = await _call(center, customer_id=caller.id, number="+358405555555",
                          started_at=datetime.now(UTC) - timedelta(days=3),
                          recording="earlier.wav")
    _write(center, "earlier.wav", _wav())
    await runtime.routing.run(lambda engine: engine.set_status(alice_id, "available", ""))
    live = await runtime.voice.enqueue(caller, queue_id=center.acme.queues["support"],
                                       call_id="live")
    engine = runtime.routing.engine
    await _eventually(lambda: engine.task(live.task_id).phase is TaskPhase.OFFERED)
    (offer_id,) = engine.task(live.task_id).offers
    assert await runtime.voice.accept(offer_id)
    async with center.database.session() as session:
        await CallRecords(session, center.acme.tenant_id).add(CallRecord(
            call_id="live", contact_id=live.contact_id, conversation_id=live.conversation_id,
            customer_id=caller.id, from_number="+358405555555", to_number="1000",
            queue_id=center.acme.queues["support"], agent_id=alice_id, queue_s=31.0,
            ivr_path=[{"node": "menu", "kind": "menu", "input": "1"}], outcome="answered",
            answered_at=datetime.now(UTC)))

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(center.app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off",
                                           ws="websockets-sansio"))
    serving = asyncio.create_task(server.serve())
    base = f"http://127.0.0.1:{port}"
    try:
        await _eventually(lambda: server.started)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=chromium, args=["--headless=new", "--no-sandbox"])
            try:
                page = await browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda error: errors.append(str(error)))
                await _log_in(page, base, "alice", "/desk")
                await page.get_by_test_id("chat-item").first.click()
                details = page.get_by_test_id("call-details")
                await expect(details).to_contain_text("Call details · In progress")
                await expect(details).to_contain_text("+358405555555 → 1000")
                await expect(details).to_contain_text("menu (1)")
                await expect(details).to_contain_text("0:31")
                await expect(page.get_by_test_id("customer-name")).to_have_text(name)
                past = page.get_by_test_id("past-call")
                await expect(past).to_have_count(2)
                await expect(past.nth(1)).to_contain_text("talked 1:15 · held 0:08 · 1 transfer")
                await expect(past.nth(1).get_by_role("link", name="Recording")).to_have_attribute(
                    "href", f"/api/recordings/{earlier.record_id}")
                assert errors == []

                board = await browser.new_page()
                await _log_in(board, base, "sam", "/wallboard")
                row = board.get_by_test_id("call")
                await expect(row).to_have_count(1)
                await expect(row).to_contain_text(f"{name} (+358405555555)")
                await expect(row).to_contain_text("Talking")
                await expect(row).to_contain_text("Alice")
                await expect(board.get_by_test_id("voice").first).to_contain_text("Calls: ")
            finally:
                await browser.close()
        await runtime.voice.hung_up(live, side="caller")
    finally:
        server.should_exit = True
        await serving


async def _log_in(page: Page, base: str, username: str, path: str) -> None:
    await page.goto(f"{base}{path}")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_text("Contact center (tenant)").click()
    await page.get_by_label("Tenant").fill("acme")  # two tenants: say which
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(f"{base}{path}")

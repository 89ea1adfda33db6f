"""The desk's call controls over real HTTP, on a real call: a caller (OmniCC's SIP stack and
an RTP endpoint sending a 1 kHz tone) rings the support line of a live server with voice on;
alice's baresip phone (440 Hz) answers; alice holds, resumes and transfers the call to bob's
baresip phone (660 Hz) with the REST API, and bob hangs up from his desk. What the caller
hears proves each step; the other agent's and the wrong-state requests are refused."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from omnicc.channels.voice.media.daemon import random_port_window
from omnicc.channels.voice.service import VoiceService
from tests.integration.api.live import (
    Browser,
    LiveServer,
    Seeded,
    live_server,
    receive,
    seed,
    start_live_server,
)
from tests.integration.voice.harness import (
    CALLER_NAME,
    CALLER_NUMBER,
    SUPPORT_LINE,
    Caller,
    music_instead_of,
    open_support_line,
    start_phone,
    tone,
)

pytestmark = pytest.mark.anyio

WAIT_S = 20.0


def voice_of(server: LiveServer) -> VoiceService:
    """The server's voice service, once it listens (with an external database it starts
    after the server, when the database is reachable)."""
    voice: VoiceService = server.server.config.app.state.voice
    for _ in range(int(WAIT_S / 0.05)):
        try:
            voice.stack.udp  # noqa: B018 - raises until the stack listens
        except ValueError:
            time.sleep(0.05)
            continue
        return voice
    raise AssertionError("the voice service never started")


@pytest.fixture
def seeded(migrated_database_url: str) -> Seeded:
    seeded = asyncio.run(seed(migrated_database_url))
    asyncio.run(open_support_line(migrated_database_url, seeded))
    return seeded


@pytest.fixture
def voice_server(migrated_database_url: str, seeded: Seeded,
                 tmp_path: Path) -> Iterator[LiveServer]:
    low, high = random_port_window()
    server = start_live_server(migrated_database_url, tmp_path / "data", sip_port=0,
                               media_ports=f"{low}-{high}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def plain_server(migrated_database_url: str, seeded: Seeded,
                 tmp_path: Path) -> Iterator[LiveServer]:
    yield from live_server(migrated_database_url, tmp_path / "data")


@pytest.fixture
async def agents(voice_server: LiveServer) -> AsyncIterator[dict[str, Browser]]:
    browsers = {name: await Browser(voice_server, name).login() for name in ("alice", "bob")}
    yield browsers
    for browser in browsers.values():
        await browser.close()


async def eventually(check: Any, what: str) -> Any:
    """Poll `check()` until it returns something truthy."""
    for _ in range(int(WAIT_S / 0.1)):
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def live_calls(agent: Browser) -> list[dict[str, Any]]:
    response = await agent.http.get("/api/desk/calls")
    assert response.status_code == 200, response.text
    calls: list[dict[str, Any]] = response.json()
    return calls


async def test_an_agent_holds_resumes_and_transfers_a_call_and_the_next_one_hangs_up(
        voice_server: LiveServer, agents: dict[str, Browser], seeded: Seeded,
        tmp_path: Path) -> None:
    alice, bob = agents["alice"], agents["bob"]
    voice = voice_of(voice_server)
    phones = [await start_phone(tmp_path, voice, "alice", tone_hz=440),
              await start_phone(tmp_path, voice, "bob", tone_hz=660)]
    caller = Caller(voice.stack.udp.port)
    try:
        (await alice.http.put("/api/desk/status", json={"status": "available"})).raise_for_status()
        await caller.call(SUPPORT_LINE)
        caller.talk()

        [call] = await eventually(lambda: live_calls(alice), "alice's phone to answer")
        assert (call["caller"], call["caller_name"]) == (CALLER_NUMBER, CALLER_NAME)
        assert call["on_hold"] is False and call["since"] is not None
        assert call["queue_id"] == seeded.queues["support"]
        task = call["task_id"]
        await caller.hears(tone(440), "alice")

        # Only the agent on the call controls it.
        assert await live_calls(bob) == []
        for action in ("hold", "resume", "hangup"):
            refused = await bob.http.post(f"/api/desk/calls/{task}/{action}")
            assert refused.status_code == 404, refused.text
            assert refused.headers["content-type"].startswith("application/problem+json")
        assert (await alice.http.post("/api/desk/calls/nope/hold")).status_code == 404

        assert (await alice.http.post(f"/api/desk/calls/{task}/resume")).status_code == 409
        held = await alice.http.post(f"/api/desk/calls/{task}/hold")
        assert held.status_code == 200, held.text
        assert held.json()["on_hold"] is True
        assert (await live_calls(alice))[0]["on_hold"] is True
        await caller.hears(music_instead_of(440), "music on hold")
        assert (await alice.http.post(f"/api/desk/calls/{task}/hold")).status_code == 409
        resumed = await alice.http.post(f"/api/desk/calls/{task}/resume")
        assert resumed.status_code == 200 and resumed.json()["on_hold"] is False
        await caller.hears(tone(440), "alice again")

        both = await alice.http.post(f"/api/desk/calls/{task}/transfer", json={
            "queue_id": seeded.queues["billing"], "agent_id": seeded.agents["bob"]})
        assert both.status_code == 422
        (await bob.http.put("/api/desk/status", json={"status": "available"})).raise_for_status()
        moved = await alice.http.post(f"/api/desk/calls/{task}/transfer",
                                      json={"agent_id": seeded.agents["bob"]})
        assert moved.status_code == 204, moved.text
        await phones[0].wait_for("CALL_CLOSED")
        assert await live_calls(alice) == []
        [bobs] = await eventually(lambda: live_calls(bob), "bob's phone to answer")
        assert bobs["task_id"] == task
        await caller.hears(tone(660), "bob")

        hung_up = await bob.http.post(f"/api/desk/calls/{task}/hangup")
        assert hung_up.status_code == 204, hung_up.text
        await caller.hung_up_on()
        await phones[1].wait_for("CALL_CLOSED")
        assert await live_calls(bob) == []
        # Ended (409) while the call is torn down, then gone (404).
        assert (await bob.http.post(f"/api/desk/calls/{task}/hold")).status_code in (404, 409)
    finally:
        await caller.close()
        for phone in phones:
            await phone.stop()

    # The voice task follows the desk's usual wrap-up.
    async def wrapping() -> bool:
        state = (await bob.http.get("/api/desk/state")).json()
        return any(t["task_id"] == task and t["phase"] == "wrapping" for t in state["tasks"])

    await eventually(wrapping, "bob's wrap-up")
    done = await bob.http.post(f"/api/desk/tasks/{task}/wrap-up", json={"code": "solved"})
    assert done.status_code == 200, done.text
    assert all(t["task_id"] != task for t in done.json()["tasks"])


async def test_the_desk_socket_switches_the_browser_phone_on_and_off(
        voice_server: LiveServer, agents: dict[str, Browser], seeded: Seeded) -> None:
    voice = voice_of(voice_server)
    alice = seeded.agents["alice"]
    tenant = seeded.tenant_id
    async with agents["alice"].socket("/api/desk/ws") as ws:
        await receive(ws, "state")
        await ws.send(json.dumps({"type": "phone.online"}))
        status = await receive(ws, "phone.status")
        assert status["online"] is True
        assert voice.browser_phones.is_online(tenant, alice)
        # A ring that is not there (any more) is answered with call.cancelled.
        await ws.send(json.dumps({"type": "call.answer", "ring_id": "gone", "sdp": "v=0"}))
        assert (await receive(ws, "call.cancelled"))["ring_id"] == "gone"
        await ws.send(json.dumps({"type": "phone.offline"}))
        assert (await receive(ws, "phone.status"))["online"] is False
        assert not voice.browser_phones.is_online(tenant, alice)
        await ws.send(json.dumps({"type": "phone.online"}))
        await receive(ws, "phone.status")
    # Closing the desk switches its phone off.
    for _ in range(100):
        if not voice.browser_phones.is_online(tenant, alice):
            break
        await asyncio.sleep(0.05)
    assert not voice.browser_phones.is_online(tenant, alice)


async def test_every_desk_of_the_agent_rings_and_a_decline_on_one_stops_the_others(
        voice_server: LiveServer, agents: dict[str, Browser]) -> None:
    voice = voice_of(voice_server)
    alice = agents["alice"]
    (await alice.http.put("/api/desk/status", json={"status": "available"})).raise_for_status()
    caller = Caller(voice.stack.udp.port)
    async with alice.socket("/api/desk/ws") as first, alice.socket("/api/desk/ws") as second:
        for ws in (first, second):
            await receive(ws, "state")
            await ws.send(json.dumps({"type": "phone.online"}))
            assert (await receive(ws, "phone.status"))["online"] is True
        try:
            await caller.call(SUPPORT_LINE)
            rings = [await receive(ws, "call.ringing") for ws in (first, second)]
            ring_id = rings[0]["ring_id"]
            assert rings[1]["ring_id"] == ring_id
            assert (rings[0]["caller"], rings[0]["caller_name"]) == (CALLER_NUMBER, CALLER_NAME)
            assert "a=fingerprint:" in rings[0]["sdp"] and "a=ice-ufrag:" in rings[0]["sdp"]
            await first.send(json.dumps({"type": "call.decline", "ring_id": ring_id}))
            stopped = await receive(second, "call.cancelled",
                                    where=lambda f: f["ring_id"] == ring_id)
            assert stopped["ring_id"] == ring_id
        finally:
            with contextlib.suppress(Exception):
                await caller.hang_up()
            await caller.close()


async def test_without_voice_the_calls_api_answers_503_and_the_phone_stays_off(
        plain_server: LiveServer) -> None:
    alice = await Browser(plain_server, "alice").login()
    try:
        listed = await alice.http.get("/api/desk/calls")
        assert listed.status_code == 503
        assert listed.headers["content-type"].startswith("application/problem+json")
        assert "voice is off" in listed.json()["detail"]
        assert (await alice.http.post("/api/desk/calls/x/hold")).status_code == 503
        async with alice.socket("/api/desk/ws") as ws:
            await receive(ws, "state")
            await ws.send(json.dumps({"type": "phone.online"}))
            status = await receive(ws, "phone.status")
            assert status["online"] is False and status["detail"]
    finally:
        await alice.close()
    async with httpx.AsyncClient(base_url=plain_server.url) as anonymous:
        assert (await anonymous.get("/api/desk/calls")).status_code == 401

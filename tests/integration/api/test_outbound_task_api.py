"""An outbound call through the desk's API is the agent's routing task: the 202 names it, the
desk's state and socket show it at once (before any phone rings), the browser softphone is rung
with a WebRTC offer marked outbound, a second call is refused with 409 while it lasts, and so is
a call while the agent talks on an inbound call; a call the agent never answered leaves no task.
(A carrier that is not there: nothing here reaches a customer.)"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.api.live import Browser, LiveServer, Seeded, free_port, receive, seed
from tests.integration.api.test_calls_api import voice_of
from tests.integration.api.test_outbound_calls_api import voice_server
from tests.integration.voice.harness import SUPPORT_LINE, Caller, open_support_line

pytestmark = pytest.mark.anyio

DESK = "/api/desk/ws"
OUTBOUND = "/api/desk/calls/outbound"


@pytest.fixture
def seeded(migrated_database_url: str) -> Seeded:
    seeded = asyncio.run(seed(migrated_database_url))
    asyncio.run(open_support_line(migrated_database_url, seeded))
    return seeded


@pytest.fixture
def server(migrated_database_url: str, seeded: Seeded, tmp_path: Path) -> Iterator[LiveServer]:
    live = voice_server(migrated_database_url, tmp_path / "data",
                        sip_trunk=f"sip:omnicc@127.0.0.1:{free_port()}", phone_region="FI")
    try:
        yield live
    finally:
        live.stop()


def browser_answer(offer: str) -> str:
    """What a browser would answer to rtpengine's WebRTC offer (its own ICE credentials and
    certificate; rtpengine takes it without the media flowing)."""
    answer = offer.replace("a=setup:actpass", "a=setup:active")
    answer = re.sub(r"a=ice-ufrag:\S+", "a=ice-ufrag:desk", answer)
    answer = re.sub(r"a=ice-pwd:\S+", "a=ice-pwd:deskdeskdeskdeskdeskdesk", answer)
    answer = re.sub(r"a=fingerprint:sha-256 \S+", "a=fingerprint:sha-256 " + ":".join(["AB"] * 32),
                    answer)
    return re.sub(r"a=candidate:.*\r\n", "a=candidate:1 1 UDP 2130706431 127.0.0.1 9 typ host\r\n",
                  answer)


async def phone_on(ws: Any) -> None:
    await ws.send(json.dumps({"type": "phone.online"}))
    await receive(ws, "phone.status", where=lambda f: f.get("online") is True)


async def test_the_call_is_the_agents_task_until_it_ends(server: LiveServer,
                                                        seeded: Seeded) -> None:
    voice_of(server)
    support = seeded.queues["support"]
    alice = await Browser(server, "alice").login()
    try:
        async with alice.socket(DESK) as ws:
            await receive(ws, "state")
            await phone_on(ws)
            started = await alice.http.post(OUTBOUND, json={"number": "040 123 4567",
                                                            "queue_id": support})
            assert started.status_code == 202, started.text
            call = started.json()
            assert call["queue_id"] == support and call["task_id"] and call["conversation_id"]
            assigned = await receive(ws, "task.assigned")
            assert (assigned["task_id"], assigned["direction"]) == (call["task_id"], "outbound")
            ringing = await receive(ws, "call.ringing")
            assert ringing["outbound"] is True and ringing["task_id"] == call["task_id"]
            assert "UDP/TLS/RTP/SAVPF" in ringing["sdp"]
            assert ringing["caller_name"] == "Call to +358401234567"

            state = (await alice.http.get("/api/desk/state")).json()
            [task] = state["tasks"]
            assert (task["task_id"], task["channel"], task["phase"], task["conversation_id"]) == (
                call["task_id"], "voice", "assigned", call["conversation_id"])
            assert state["agent"]["presence"] == "offline"  # she never chose a status
            view = await alice.http.get(f"/api/desk/conversations/{call['conversation_id']}")
            assert view.status_code == 200, view.text
            assert view.json()["customer"]["attributes"]["phone"] == "+358401234567"
            again = await alice.http.post(OUTBOUND, json={"number": "040 765 4321"})
            assert again.status_code == 409, again.text

            # She lets it go: no call was made, so no work either (the task is cancelled).
            await ws.send(json.dumps({"type": "call.decline", "ring_id": ringing["ring_id"]}))
            ended = await receive(ws, "call.outbound", where=lambda f: f["state"] == "ended")
            assert ended["outcome"] == "agent_unavailable"
            await receive(ws, "task.ended", where=lambda f: f["task_id"] == call["task_id"])
            assert (await alice.http.get("/api/desk/state")).json()["tasks"] == []
    finally:
        await alice.close()


async def test_an_agent_talking_on_an_inbound_call_cannot_dial(server: LiveServer,
                                                              seeded: Seeded) -> None:
    voice = voice_of(server)
    alice = await Browser(server, "alice").login()
    caller = Caller(voice.stack.udp.port)
    try:
        async with alice.socket(DESK) as ws:
            await receive(ws, "state")
            await phone_on(ws)
            response = await alice.http.put("/api/desk/status", json={"status": "available"})
            assert response.status_code == 200, response.text
            await caller.call(SUPPORT_LINE)
            ringing = await receive(ws, "call.ringing")
            assert ringing["outbound"] is False
            await ws.send(json.dumps({"type": "call.answer", "ring_id": ringing["ring_id"],
                                      "sdp": browser_answer(ringing["sdp"])}))
            await receive(ws, "offer.accepted")
            refused = await alice.http.post(OUTBOUND, json={"number": "040 123 4567"})
            assert refused.status_code == 409, refused.text
            assert refused.json()["detail"] == "you are on a call already: hang up first"
            state = (await alice.http.get("/api/desk/state")).json()
            assert [t["channel"] for t in state["tasks"]] == ["voice"]  # the inbound call only
            await caller.hang_up()
    finally:
        await caller.close()
        await alice.close()

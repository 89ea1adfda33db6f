"""The desk's consult (attended transfer) REST over real HTTP, on a real call: a caller
(OmniCC's SIP stack and an RTP endpoint, 1 kHz) reaches alice's baresip phone (440 Hz); alice
consults bob's baresip phone (660 Hz), her desk socket follows the consult (`call.consult`),
and she completes the transfer: the caller hears bob, bob's desk lists the call, alice's
phone is released. The wrong requests are refused with the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from omnicc.channels.voice.media.tones import tone_share
from tests.integration.api import test_calls_api as calls_api
from tests.integration.api.live import Browser, LiveServer, Seeded, receive
from tests.integration.api.test_calls_api import eventually, live_calls, voice_of
from tests.integration.voice.harness import (
    SUPPORT_LINE,
    Caller,
    music_instead_of,
    start_phone,
    tone,
)

pytestmark = pytest.mark.anyio

# The live server with voice, its seeded database and alice's and bob's desks.
seeded, voice_server, agents = calls_api.seeded, calls_api.voice_server, calls_api.agents


async def test_consult_bob_then_complete_over_the_desk_api(
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
        assert call["consult"] is None
        task = call["task_id"]
        await caller.hears(tone(440), "alice")
        consult_url = f"/api/desk/calls/{task}/consult"

        async def refused(body: dict[str, Any], status: int, detail: str = "") -> None:
            response = await alice.http.post(consult_url, json=body)
            assert response.status_code == status, response.text
            assert response.headers["content-type"].startswith("application/problem+json")
            assert detail in response.json()["detail"], response.json()

        await refused({"agent_id": seeded.agents["bob"], "number": "+358401111111"}, 422)
        await refused({"queue_id": seeded.queues["billing"], "number": "+358401111111"}, 422)
        await refused({"agent_id": "nobody"}, 404, "unknown agent")
        await refused({"queue_id": "nowhere"}, 404, "unknown queue")
        await refused({"queue_id": seeded.queues["billing"]}, 409, "nobody in billing")
        await refused({"agent_id": seeded.agents["alice"]}, 409, "yourself")
        await refused({"agent_id": seeded.agents["bob"]}, 409, "offline")  # bob's status
        await refused({"number": "+358401111111"}, 409, "no carrier trunk")
        assert (await bob.http.post(consult_url, json={
            "agent_id": seeded.agents["alice"]})).status_code == 404  # not bob's call
        no_csrf = await alice.http.post(consult_url, json={"agent_id": seeded.agents["bob"]},
                                        headers={"X-CSRF-Token": "forged"})
        assert no_csrf.status_code == 403
        for action in ("complete", "conference"):
            nothing = await alice.http.post(f"{consult_url}/{action}")
            assert nothing.status_code == 409, nothing.text
        assert (await alice.http.delete(consult_url)).status_code == 409

        (await bob.http.put("/api/desk/status", json={"status": "available"})).raise_for_status()
        async with alice.socket("/api/desk/ws") as ws:
            await receive(ws, "state")
            started = await alice.http.post(consult_url, json={"agent_id": seeded.agents["bob"]})
            assert started.status_code == 202, started.text
            assert started.json()["consult"]["target"]["agent_id"] == seeded.agents["bob"]
            ringing = await receive(ws, "call.consult")
            assert (ringing["task_id"], ringing["state"]) == (task, "ringing")
            consulting = await receive(ws, "call.consult",
                                       where=lambda f: f["state"] == "consulting")
            assert consulting["target"]["kind"] == "agent"
            [listed] = await live_calls(alice)
            assert listed["consult"]["state"] == "consulting" and listed["on_hold"] is True
            await caller.hears(music_instead_of(440), "music while alice consults bob")
            again = await alice.http.post(consult_url, json={"agent_id": seeded.agents["bob"]})
            assert again.status_code == 409 and "already" in again.json()["detail"]
            busy = await alice.http.post(f"/api/desk/calls/{task}/resume")
            assert busy.status_code == 409 and "consult" in busy.json()["detail"]

            done = await alice.http.post(f"{consult_url}/complete")
            assert done.status_code == 204, done.text
            completed = await receive(ws, "call.consult",
                                      where=lambda f: f["state"] == "completed")
            assert completed["task_id"] == task
        await phones[0].wait_for("CALL_CLOSED")
        await caller.hears(tone(660), "bob after the transfer")
        assert await live_calls(alice) == []
        [bobs] = await eventually(lambda: live_calls(bob), "bob to have the call")
        assert bobs["task_id"] == task and bobs["consult"] is None

        hung_up = await bob.http.post(f"/api/desk/calls/{task}/hangup")
        assert hung_up.status_code == 204
        await caller.hung_up_on()
    finally:
        await caller.close()
        for phone in phones:
            await phone.stop()


async def test_cancel_and_conference_over_the_desk_api(
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
        task = call["task_id"]
        consult_url = f"/api/desk/calls/{task}/consult"
        await caller.hears(tone(440), "alice")
        (await bob.http.put("/api/desk/status", json={"status": "available"})).raise_for_status()

        async def consulting() -> bool:
            [listed] = await live_calls(alice)
            return bool(listed["consult"] and listed["consult"]["state"] == "consulting")

        assert (await alice.http.post(consult_url, json={
            "agent_id": seeded.agents["bob"]})).status_code == 202
        await eventually(consulting, "bob to answer")
        cancelled = await alice.http.delete(consult_url)
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["consult"] is None and cancelled.json()["on_hold"] is False
        await phones[1].wait_for("CALL_CLOSED")
        await caller.hears(tone(440), "alice after the cancel")

        # A queue's next free agent: bob (alice is on the call).
        by_queue = await alice.http.post(consult_url, json={"queue_id": seeded.queues["billing"]})
        assert by_queue.status_code == 202, by_queue.text
        assert by_queue.json()["consult"]["target"]["agent_id"] == seeded.agents["bob"]
        assert by_queue.json()["consult"]["target"]["queue_id"] == seeded.queues["billing"]
        await eventually(consulting, "bob to answer again")
        three = await alice.http.post(f"{consult_url}/conference")
        assert three.status_code == 200, three.text
        assert three.json()["consult"]["state"] == "conference"
        assert three.json()["on_hold"] is False
        await caller.hears(lambda s: all(tone_share(s, hz) > 0.3 for hz in (440, 660)),
                           "alice and bob together")
        # Alice hangs up from her desk: she leaves the conference, bob keeps the caller.
        assert (await alice.http.post(f"/api/desk/calls/{task}/hangup")).status_code == 204
        await phones[0].wait_for("CALL_CLOSED")
        await caller.hears(tone(660), "bob alone")
        await caller.hang_up()
        await phones[1].wait_for("CALL_CLOSED", count=2)
    finally:
        await caller.close()
        for phone in phones:
            await phone.stop()

"""The desk's in-call controls and the supervisor's routes on an agent's outbound call, through
a real server: alice (baresip) dials a customer behind the carrier trunk from the desk; the
call is in her live calls (direction outbound) and on the wallboard; hold and resume answer as
for an inbound call (the customer hears music, then alice); a consult of bob, offline, is
refused with why (409); sam whispers (the customer never hears him) and leaves; alice hangs
up by the task. On SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from omnicc.channels.voice.media.tones import tone_share
from tests.integration.api.live import Browser, Seeded
from tests.integration.api.test_calls_api import eventually, live_calls, voice_of
from tests.integration.api.test_outbound_calls_api import voice_server
from tests.integration.api.test_supervision_calls_api import (  # noqa: F401 - its fixture:
    seeded,  # the support line, alice's and bob's phones, sam's agent profile with a phone
)
from tests.integration.voice.harness import CUSTOMER, Customer, music_instead_of, start_phone
from tests.integration.voice.test_outbound_controls import AGENT_HZ, SUPERVISOR_HZ

pytestmark = pytest.mark.anyio


def hears_alice(samples: Any) -> bool:
    """The customer hears alice's tone."""
    return bool(tone_share(samples, AGENT_HZ) > 0.5)


async def test_an_outbound_call_is_held_supervised_and_hung_up_by_its_task(
        migrated_database_url: str, tmp_path: Path,
        seeded: Seeded) -> None:  # noqa: F811 - the imported fixture
    customer = Customer()
    port = await customer.answer_calls()
    server = voice_server(migrated_database_url, tmp_path / "data",
                          sip_trunk=f"sip:omnicc@127.0.0.1:{port}", phone_region="FI")
    phones, browsers = [], []
    try:
        voice = voice_of(server)
        phones = [await start_phone(tmp_path, voice, "alice", tone_hz=AGENT_HZ),
                  await start_phone(tmp_path, voice, "sam", tone_hz=SUPERVISOR_HZ)]
        alice, sam = browsers = [await Browser(server, "alice").login(),
                                 await Browser(server, "sam").login()]
        started = await alice.http.post("/api/desk/calls/outbound",
                                        json={"number": "040 111 2223"})
        assert started.status_code == 202, started.text
        task_id = started.json()["task_id"]

        async def talking() -> list[dict[str, Any]]:
            return await live_calls(alice)

        [call] = await eventually(talking, "the customer to answer")
        assert (call["task_id"], call["direction"], call["caller"], call["on_hold"]) == (
            task_id, "outbound", CUSTOMER, False)
        customer.talk()
        await customer.hears(hears_alice, "alice")
        board = (await sam.http.get("/api/supervisor/wallboard")).json()
        assert [(c["task_id"], c["direction"], c["state"]) for c in board["calls"]] == [
            (task_id, "outbound", "assigned")]

        held = await alice.http.post(f"/api/desk/calls/{task_id}/hold")
        assert held.status_code == 200 and held.json()["on_hold"] is True, held.text
        await customer.hears(music_instead_of(AGENT_HZ), "music on hold")
        again = await alice.http.post(f"/api/desk/calls/{task_id}/hold")
        assert again.status_code == 409, again.text
        resumed = await alice.http.post(f"/api/desk/calls/{task_id}/resume")
        assert resumed.status_code == 200 and resumed.json()["on_hold"] is False, resumed.text
        await customer.hears(hears_alice, "alice after resume")
        consult = await alice.http.post(f"/api/desk/calls/{task_id}/consult",
                                        json={"agent_id": seeded.agents["bob"]})
        # An outbound call is consulted on as an inbound one is: bob, offline, cannot be.
        assert consult.status_code == 409, consult.text
        assert consult.json()["detail"] == "Bob is offline"

        monitor = f"/api/supervisor/calls/{task_id}/monitor"
        whisper = await sam.http.post(monitor, json={"mode": "whisper"})
        assert whisper.status_code == 202, whisper.text

        async def active() -> bool:
            return bool((await sam.http.get(monitor)).json()["state"] == "active")

        await eventually(active, "sam's phone to answer")
        await phones[1].wait_for("CALL_ESTABLISHED")
        for _ in range(3):
            heard = await customer.heard(0.8)
            assert tone_share(heard, SUPERVISOR_HZ) < 0.05 and tone_share(heard, AGENT_HZ) > 0.5
        assert (await sam.http.delete(monitor)).status_code == 204

        hung_up = await alice.http.post(f"/api/desk/calls/{task_id}/hangup")
        assert hung_up.status_code == 204, hung_up.text
        await customer.hung_up_on()
        assert await live_calls(alice) == []
    finally:
        for browser in browsers:
            await browser.close()
        for phone in phones:
            await phone.stop()
        server.stop()
        await customer.close()

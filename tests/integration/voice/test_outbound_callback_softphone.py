"""A callback rings the agent's browser softphone while the desk's Phone is on: the engine
offers the callback's task to alice, whose desk gets `call.ringing` marked outbound with
rtpengine's WebRTC offer ("Callback to ..."); her answer accepts the offer and only then is the
customer dialled (sipp as the carrier, offered plain RTP); the request is done and her wrap-up
follows. (The desk's answer is a browser's SDP without a browser: the signalling is what is
tested here; tests/e2e/test_softphone_outbound.py has the media with Chromium.)"""

from __future__ import annotations

import asyncio

import pytest

from omnicc.channels.voice.devices import agent_topic
from omnicc.channels.voice.outbound import OutboundCalls
from omnicc.channels.voice.trunk import Trunk
from omnicc.core.model import TaskPhase
from tests.integration.api.test_outbound_task_api import browser_answer
from tests.integration.voice.harness import SCENARIOS, Carrier, Exchange
from tests.integration.voice.test_outbound_callbacks import (
    NUMBER,
    new_request,
    request_state,
    wait_for_state,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def exchange(outbound_exchange: Exchange) -> Exchange:
    return outbound_exchange


async def test_a_callback_rings_the_browser_softphone(exchange: Exchange) -> None:
    seeded, voice = exchange.seeded, exchange.voice
    alice = seeded.agents["alice"]
    carrier = Carrier(SCENARIOS / "outbound_customer_answers.xml", exchange.workdir / "carrier")
    outbound = OutboundCalls(voice, Trunk(voice.stack, carrier.trunk_config()))
    runtime = await exchange.runtime()
    desk = exchange.center.bus.subscribe(seeded.tenant_id, agent_topic(alice))
    voice.browser_phones.online(seeded.tenant_id, alice)
    try:
        await carrier.start()
        request = await new_request(exchange)
        await outbound.callbacks.submit(runtime, request)
        await runtime.routing.run(lambda engine: engine.set_status(alice, "available"))
        while (notice := await asyncio.wait_for(desk.get(), 20)) is not None:
            if notice.type == "call.ringing":
                break
        assert notice is not None
        ringing = notice.data
        assert ringing["outbound"] is True
        assert ringing["caller_name"] == f"Callback to {NUMBER}"
        assert "UDP/TLS/RTP/SAVPF" in ringing["sdp"] and "a=fingerprint" in ringing["sdp"]
        task_id = (await request_state(exchange, request.id)).task_id
        assert task_id is not None
        assert runtime.routing.engine.task(task_id).phase is TaskPhase.OFFERED
        assert voice.browser_phones.answer(seeded.tenant_id, alice, ringing["ring_id"],
                                           browser_answer(ringing["sdp"]))
        done = await wait_for_state(exchange, request.id, "done", "failed")
        code, output = await carrier.finish()
        assert code == 0, output
    finally:
        desk.close()
        voice.browser_phones.offline(seeded.tenant_id, alice)
        await outbound.stop()
        await carrier.stop()

    assert done.state == "done" and done.attributes["attempts"][0]["outcome"] == "answered"
    assert done.attributes["attempts"][0]["agent_id"] == alice
    assert runtime.routing.engine.task(task_id).phase is TaskPhase.WRAPPING

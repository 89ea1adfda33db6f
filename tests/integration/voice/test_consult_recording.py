"""A recorded call through a consult transfer: the menu line records the support queue's calls;
the caller (1 kHz) presses 1, alice (440 Hz) answers and consults bob (660 Hz), then completes.
The call's WAV keeps the caller on the left; on the right alice alone, then alice and bob
talking with each other during the consult (the mixer's ports are left out, so nothing twice),
then bob alone."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from omnicc.channels.voice.consult import ConsultState, start_consult
from omnicc.channels.voice.media.tones import Samples, tone_share
from omnicc.store.repositories import CallRecords
from tests.integration.voice.harness import Caller, Exchange, start_phone, tone, wait_until

pytestmark = pytest.mark.anyio

SECOND = 8000


def seconds(samples: Samples) -> list[Samples]:
    return [samples[i:i + SECOND] for i in range(0, len(samples) - SECOND + 1, SECOND)]


async def test_a_recorded_call_keeps_the_consult_and_the_new_agent(exchange: Exchange) -> None:
    seeded, voice = exchange.seeded, exchange.voice
    alice, bob = seeded.agents["alice"], seeded.agents["bob"]
    runtime = await exchange.runtime()
    phones = [await start_phone(exchange.workdir, voice, "alice", tone_hz=440),
              await start_phone(exchange.workdir, voice, "bob", tone_hz=660)]
    caller = Caller(voice.stack.udp.port)
    try:
        await runtime.routing.run(lambda engine: engine.set_status(alice, "available"))
        await caller.call("1000")
        await caller.press("1")
        caller.talk()
        await wait_until(lambda: any(c.connected.is_set() for c in voice.calls.values()),
                         "alice to answer")
        [call] = list(voice.calls.values())
        await caller.hears(tone(440), "alice")
        await runtime.routing.run(lambda engine: engine.set_status(bob, "available"))
        consult = await start_consult(call, agent_id=bob)
        await wait_until(lambda: consult.state is ConsultState.CONSULTING, "bob to answer")
        await caller.heard(3.0)  # alice and bob talk meanwhile
        await consult.complete()
        await caller.hears(tone(660), "bob")
        await caller.heard(2.0)
        await caller.hang_up()
        await phones[1].wait_for("CALL_CLOSED")
    finally:
        await caller.close()
        for phone in phones:
            await phone.stop()
    await wait_until(lambda: not voice.calls, "the call to end")
    async with exchange.database.session() as session:
        record = await CallRecords(session, seeded.tenant_id).get(call.record_id)
    assert record.recording_path is not None
    with wave.open(str(exchange.workdir / "data" / "recordings" / record.recording_path)) as wav:
        assert wav.getnchannels() == 2
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    caller_side, agent_side = frames[:, 0], frames[:, 1]
    assert tone_share(caller_side[4000:12000], 1000) > 0.5
    assert tone_share(agent_side[4000:12000], 440) > 0.5
    # Somewhere in the middle alice and bob are both on the right, each about half of it.
    assert any(tone_share(s, 440) > 0.3 and tone_share(s, 660) > 0.3
               for s in seconds(agent_side))
    # The end: bob alone.
    assert tone_share(agent_side[-7000:-1000], 660) > 0.5
    assert tone_share(agent_side[-7000:-1000], 440) < 0.05

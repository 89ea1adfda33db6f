"""A supervisor on a real call: the caller (OmniCC's SIP stack + an RTP endpoint sending
1 kHz) reaches alice's baresip phone (440 Hz); a supervisor's baresip phone (660 Hz, a
registered `SipPhone`) is rung, answers, and the supervision goes listen -> whisper -> barge
-> leaves. What the caller hears is measured live, what alice and the supervisor heard from
their phones' recordings; the caller's rtpengine port never changes (no re-INVITE to
anyone)."""

from __future__ import annotations

import asyncio

import pytest

from omnicc.channels.voice.calls import InboundCall
from omnicc.channels.voice.devices import SipPhone
from omnicc.channels.voice.media.tones import Samples, tone_share
from omnicc.channels.voice.supervision import Mode, Supervisions, SupervisionState
from tests.integration.voice.harness import (
    PHONE_PASSWORD,
    SUPPORT_LINE,
    Caller,
    Exchange,
    recording,
    registered,
    wait_until,
)
from tests.integration.voice.peers import Baresip

pytestmark = pytest.mark.anyio

CALLER_HZ, AGENT_HZ, SUPERVISOR_HZ = 1000.0, 440.0, 660.0
HEARD, HEARD_IN_A_MIX, NOT_HEARD = 0.5, 0.3, 0.05
PHASE_S = 4.0
SETTLE_S = 1.5  # the start of a phase in the phones' recordings is not judged


@pytest.fixture
def exchange(support_exchange: Exchange) -> Exchange:
    """The caller goes straight to the support queue (no IVR menu)."""
    return support_exchange


def window(samples: Samples, start_s: float, end_s: float) -> Samples:
    return samples[int(start_s * 8000):int(end_s * 8000)]


async def test_listen_whisper_barge_and_leave_on_a_real_call(exchange: Exchange) -> None:
    seeded, voice = exchange.seeded, exchange.voice
    alice, bob = seeded.agents["alice"], seeded.agents["bob"]
    registrar = ("127.0.0.1", voice.stack.udp.port)
    agent_phone = Baresip(exchange.workdir / "alice", user="alice", password=PHONE_PASSWORD,
                          registrar=registrar, tone_hz=AGENT_HZ)
    # The supervisor's desk phone: bob's SIP account (bob stays offline, so no call routes
    # to him); the supervision rings it as a plain `SipPhone`.
    supervisor_phone = Baresip(exchange.workdir / "supervisor", user="bob",
                               password=PHONE_PASSWORD, registrar=registrar,
                               tone_hz=SUPERVISOR_HZ)
    caller = Caller(voice.stack.udp.port, tone_hz=CALLER_HZ)
    supervisions = Supervisions()
    loop = asyncio.get_running_loop()
    try:
        for phone in (agent_phone, supervisor_phone):
            await phone.start()
            await registered(voice, phone.user)
        runtime = await exchange.center.tenant(seeded.tenant_id)
        await runtime.routing.run(lambda engine: engine.set_status(alice, "available"))
        await caller.call(SUPPORT_LINE)
        caller.talk()
        await wait_until(lambda: any(c.connected.is_set() for c in voice.calls.values()),
                         "alice to answer")
        answered_at = loop.time()
        call: InboundCall = next(iter(voice.calls.values()))
        caller_port, caller_remote = call.media.caller_port, caller.rtp.remote
        await caller.hears(lambda s: tone_share(s, AGENT_HZ) > HEARD, "alice")

        device = await voice.agent_device(runtime, bob)
        assert isinstance(device, SipPhone)
        supervision = supervisions.start(call, device, voice.media_client,
                                         supervisor_id="sam",
                                         mode=Mode.LISTEN, host=voice.host)
        await wait_until(lambda: supervision.state is not SupervisionState.RINGING,
                         "the supervisor to answer")
        assert supervision.state is SupervisionState.ACTIVE
        assert call.media.diversion is not None
        phases: dict[str, tuple[float, float]] = {}

        # Listen: the caller hears alice, never the supervisor.
        started = loop.time()
        await caller.hears(lambda s: tone_share(s, AGENT_HZ) > HEARD, "alice while listened to")
        while loop.time() - started < PHASE_S:
            heard = await caller.heard(0.8)
            assert tone_share(heard, SUPERVISOR_HZ) < NOT_HEARD
        phases["listen"] = (started, loop.time())

        # Whisper: still alice only for the caller; alice hears the supervisor (recording).
        supervision.switch(Mode.WHISPER)
        started = loop.time()
        while loop.time() - started < PHASE_S:
            heard = await caller.heard(0.8)
            assert tone_share(heard, SUPERVISOR_HZ) < NOT_HEARD
            assert tone_share(heard, AGENT_HZ) > HEARD
        phases["whisper"] = (started, loop.time())

        # Barge: the caller hears alice and the supervisor, each about half of the sound.
        supervision.switch(Mode.BARGE)
        started = loop.time()
        await caller.hears(lambda s: tone_share(s, SUPERVISOR_HZ) > HEARD_IN_A_MIX
                           and tone_share(s, AGENT_HZ) > HEARD_IN_A_MIX, "a three-way call")
        while loop.time() - started < PHASE_S:
            await asyncio.sleep(0.2)
        phases["barge"] = (started, loop.time())

        # The supervisor leaves: their phone is hung up, the call is direct again.
        await supervision.stop()
        assert supervision.end_reason == "left"
        assert call.media.diversion is None
        await supervisor_phone.wait_for("CALL_CLOSED")
        started = loop.time()
        await caller.hears(lambda s: tone_share(s, AGENT_HZ) > HEARD, "alice after the leave")
        heard = await caller.heard(1.0)
        assert tone_share(heard, SUPERVISOR_HZ) < NOT_HEARD
        assert tone_share(heard, AGENT_HZ) > HEARD
        while loop.time() - started < PHASE_S:
            await asyncio.sleep(0.2)
        phases["after"] = (started, loop.time())

        assert call.media.caller_port == caller_port
        assert caller.rtp.remote == caller_remote
        assert call.connected.is_set() and not call.ended.is_set()
        await caller.hang_up()
        await agent_phone.wait_for("CALL_CLOSED")
    finally:
        await supervisions.stop_all()
        await caller.close()
        for phone in (agent_phone, supervisor_phone):
            await phone.stop()

    # What alice heard, phase by phase (her recording starts when she answered).
    alice_heard = recording(agent_phone.heard()[-1])
    expect_supervisor = {"listen": False, "whisper": True, "barge": True, "after": False}
    for phase, (start, end) in phases.items():
        part = window(alice_heard, start - answered_at + SETTLE_S, end - answered_at - 0.3)
        assert len(part) > 8000, phase
        if expect_supervisor[phase]:
            assert tone_share(part, SUPERVISOR_HZ) > HEARD_IN_A_MIX, phase
            assert tone_share(part, CALLER_HZ) > HEARD_IN_A_MIX, phase
        else:
            assert tone_share(part, SUPERVISOR_HZ) < NOT_HEARD, phase
            assert tone_share(part, CALLER_HZ) > HEARD, phase
    # The supervisor heard both sides throughout.
    supervisor_heard = recording(supervisor_phone.heard()[-1])
    middle = supervisor_heard[8000:-8000]
    assert tone_share(middle, CALLER_HZ) > HEARD_IN_A_MIX
    assert tone_share(middle, AGENT_HZ) > HEARD_IN_A_MIX

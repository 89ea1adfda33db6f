"""Attended (consult) transfer and conference on a real call: the caller (OmniCC's SIP stack and
an RTP endpoint sending 1 kHz) reaches alice's baresip phone (440 Hz); alice consults bob's
baresip phone (660 Hz). What the caller hears is measured live in each phase, what alice and
bob heard from their phones' recordings; the routing task follows the completed transfer, and
the caller's rtpengine port never changes (no re-INVITE to the caller)."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
import pytest

from omnicc.channels.voice import consult as consult_module
from omnicc.channels.voice.calls import InboundCall
from omnicc.channels.voice.consult import ConsultState, start_consult
from omnicc.channels.voice.media.rtp import PayloadType
from omnicc.channels.voice.media.tones import Samples, tone_share
from omnicc.channels.voice.outbound import OutboundCalls
from omnicc.channels.voice.supervision import Mode, Supervisions
from omnicc.channels.voice.trunk import Trunk
from omnicc.core.errors import Conflict, NotFound
from omnicc.core.model import TaskPhase
from omnicc.store.repositories import CallbackRequests, CallRecords
from omnicc.store.tables import CallbackRequest
from tests.integration.voice.harness import (
    SCENARIOS,
    SUPPORT_LINE,
    Caller,
    Carrier,
    Exchange,
    Sound,
    music_instead_of,
    start_phone,
    wait_until,
)
from tests.integration.voice.peers import Baresip

pytestmark = pytest.mark.anyio

CALLER_HZ, ALICE_HZ, BOB_HZ = 1000.0, 440.0, 660.0
HEARD, HEARD_IN_A_MIX, NOT_HEARD = 0.5, 0.3, 0.05
PHASE_S = 3.0
SETTLE_S = 1.0  # the start of a phase in the phones' recordings is not judged
JUDGED_S = 1.5  # how much of a phase the recordings are judged on


@pytest.fixture
def exchange(support_exchange: Exchange) -> Exchange:
    """The caller goes straight to the support queue (no IVR menu)."""
    return support_exchange


def recording(path: Path) -> Samples:
    with wave.open(str(path)) as wav:
        assert wav.getframerate() == 8000
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")


def window(samples: Samples, start_s: float, end_s: float) -> Samples:
    part = samples[int(max(0.0, start_s) * 8000):int(end_s * 8000)]
    assert len(part) > 4000, (start_s, end_s, len(samples))
    return part


def only(hz: float, *others: float) -> Sound:
    def sound(samples: Samples) -> bool:
        return tone_share(samples, hz) > HEARD and all(
            tone_share(samples, other) < NOT_HEARD for other in others)
    return sound


def on_hold(samples: Samples) -> bool:
    return music_instead_of(ALICE_HZ)(samples) and tone_share(samples, BOB_HZ) < NOT_HEARD


async def connected_call(exchange: Exchange, caller: Caller) -> InboundCall:
    """alice and bob available, the caller in line, alice answered and heard."""
    seeded, voice = exchange.seeded, exchange.voice
    runtime = await exchange.runtime()
    for name in ("alice", "bob"):
        agent = seeded.agents[name]
        await runtime.routing.run(lambda engine, a=agent: engine.set_status(a, "available"))
    # bob is free, but the caller must reach alice: bob goes available once alice answered.
    bob = seeded.agents["bob"]
    await runtime.routing.run(lambda engine: engine.set_status(bob, "break"))
    await caller.call(SUPPORT_LINE)
    caller.talk()
    await wait_until(lambda: any(c.connected.is_set() for c in voice.calls.values()),
                     "alice to answer")
    call = next(iter(voice.calls.values()))
    assert call.agent_id == seeded.agents["alice"]
    await caller.hears(only(ALICE_HZ, BOB_HZ), "alice")
    await runtime.routing.run(lambda engine: engine.set_status(bob, "available"))
    return call


async def phase(caller: Caller, loop: asyncio.AbstractEventLoop, sound: Sound,
                what: str) -> tuple[float, float]:
    """The caller hears `sound` for a phase; its (start, end) on the loop's clock."""
    await caller.hears(sound, what)
    started = loop.time()
    while loop.time() - started < PHASE_S:
        heard = await caller.heard(0.8)
        assert sound(heard), what
    return started, loop.time()


async def test_consult_bob_then_complete_the_transfer(exchange: Exchange) -> None:
    seeded, voice = exchange.seeded, exchange.voice
    alice, bob = seeded.agents["alice"], seeded.agents["bob"]
    phones: list[Baresip] = []
    caller = Caller(voice.stack.udp.port, tone_hz=CALLER_HZ)
    loop = asyncio.get_running_loop()
    try:
        phones = [await start_phone(exchange.workdir, voice, "alice", tone_hz=ALICE_HZ),
                  await start_phone(exchange.workdir, voice, "bob", tone_hz=BOB_HZ)]
        alice_phone, bob_phone = phones
        call = await connected_call(exchange, caller)
        alice_answered = loop.time()
        caller_port = call.media.caller_port
        assert call.contact is not None
        task_id = call.contact.task_id

        with pytest.raises(Conflict):
            await start_consult(call, agent_id=alice)  # oneself
        with pytest.raises(NotFound):
            await start_consult(call, agent_id="nobody")
        with pytest.raises(Conflict):
            await start_consult(call, number="+358501234567")  # no carrier trunk here

        consult = await start_consult(call, agent_id=bob)
        assert consult.state is ConsultState.RINGING
        with pytest.raises(Conflict):
            await consult.complete()  # bob has not answered yet
        await wait_until(lambda: consult.state is not ConsultState.RINGING, "bob to answer")
        assert consult.state is ConsultState.CONSULTING, consult.reason
        bob_answered = loop.time()
        consulting = await phase(caller, loop, on_hold, "music on hold, neither agent")
        assert call.media.diversion is not None  # in the mixer

        # Another caller meanwhile: bob's phone is busy with the consult, so the engine's
        # offer to him is declined and that caller keeps waiting (alice is on a call).
        second = Caller(voice.stack.udp.port, tone_hz=CALLER_HZ)
        try:
            await second.call(SUPPORT_LINE)
            engine = (await exchange.runtime()).routing.engine
            waiting = [c for c in voice.calls.values() if c is not call]
            await wait_until(lambda: waiting[0].contact is not None
                             and bob in engine.task(waiting[0].contact.task_id).declined_until,
                             "the offer to bob to be declined")
        finally:
            await second.hang_up()
            await second.close()

        await consult.complete()
        assert consult.state is ConsultState.COMPLETED
        await alice_phone.wait_for("CALL_CLOSED")
        after = await phase(caller, loop, only(BOB_HZ, ALICE_HZ), "bob after the transfer")
        # The task moved to bob by the engine's transfer, and bob's phone did not ring again.
        task = (await exchange.runtime()).routing.engine.task(task_id)
        assert (task.phase, task.agent_id) == (TaskPhase.ASSIGNED, bob)
        assert call.agent_id == bob and call.media.diversion is None
        assert call.media.caller_port == caller_port
        calls = [e for e in bob_phone.events if e.get("type") == "CALL_ESTABLISHED"]
        assert len(calls) == 1

        await caller.hang_up()
        await bob_phone.wait_for("CALL_CLOSED")
        await wait_until(lambda: call.record_id and not voice.calls, "the call to end")
    finally:
        await caller.close()
        for phone in phones:
            await phone.stop()

    async with exchange.database.session() as session:
        record = await CallRecords(session, seeded.tenant_id).get(call.record_id)
    assert record.transfers == 1 and record.agent_id == bob
    [logged] = record.details["transfer_log"]
    assert logged["kind"] == "consult" and logged["agent_id"] == bob

    # alice heard bob (not the caller) while consulting; bob heard alice, then the caller.
    # A phone's recording holds the frames it received, so on a loaded machine it runs short
    # of the wall clock: the phase is judged on its first part, the rest is a margin.
    alice_heard = recording(alice_phone.heard()[-1])
    start = consulting[0] - alice_answered + SETTLE_S
    part = window(alice_heard, start, start + JUDGED_S)
    assert tone_share(part, BOB_HZ) > HEARD and tone_share(part, CALLER_HZ) < NOT_HEARD
    bob_heard = recording(bob_phone.heard()[-1])
    start = consulting[0] - bob_answered + SETTLE_S
    part = window(bob_heard, start, start + JUDGED_S)
    assert tone_share(part, ALICE_HZ) > HEARD and tone_share(part, CALLER_HZ) < NOT_HEARD
    part = window(bob_heard, after[0] - bob_answered + SETTLE_S, after[1] - bob_answered - 0.3)
    assert tone_share(part, CALLER_HZ) > HEARD and tone_share(part, ALICE_HZ) < NOT_HEARD


async def a_callback_is_declined_for(exchange: Exchange, bob: str, bob_phone: Baresip) -> None:
    """A callback task offered to bob while he is consulted is declined without ringing his
    phone (busy with the consult), and it is no attempt on the request."""
    voice, seeded = exchange.voice, exchange.seeded
    runtime = await exchange.runtime()
    carrier = Carrier(SCENARIOS / "outbound_customer_answers.xml", exchange.workdir / "cb")
    outbound = OutboundCalls(voice, Trunk(voice.stack, carrier.trunk_config()))
    try:
        async with exchange.database.session() as session:
            request = await CallbackRequests(session, seeded.tenant_id).add(CallbackRequest(
                number="+358401234567", queue_id=seeded.queues["support"], source="ivr"))
        await outbound.callbacks.submit(runtime, request)
        async with exchange.database.session() as session:
            task_id = (await CallbackRequests(session, seeded.tenant_id).get(request.id)).task_id
        assert task_id is not None
        engine = runtime.routing.engine
        await wait_until(lambda: bob in engine.task(task_id).declined_until,
                         "the callback's offer to bob to be declined")
        async with exchange.database.session() as session:
            kept = await CallbackRequests(session, seeded.tenant_id).get(request.id)
        assert (kept.state, kept.attempts) == ("dialling", 0)
        assert len([e for e in bob_phone.events if e.get("type") == "CALL_ESTABLISHED"]) == 1
        await runtime.routing.run(lambda e: e.cancel(task_id, "the test is done with it"))
    finally:
        await outbound.stop()


async def test_cancel_conference_and_a_consult_nobody_answers(
        exchange: Exchange, monkeypatch: pytest.MonkeyPatch) -> None:
    seeded, voice = exchange.seeded, exchange.voice
    alice, bob = seeded.agents["alice"], seeded.agents["bob"]
    phones: list[Baresip] = []
    caller = Caller(voice.stack.udp.port, tone_hz=CALLER_HZ)
    loop = asyncio.get_running_loop()
    try:
        phones = [await start_phone(exchange.workdir, voice, "alice", tone_hz=ALICE_HZ),
                  await start_phone(exchange.workdir, voice, "bob", tone_hz=BOB_HZ)]
        alice_phone, bob_phone = phones
        call = await connected_call(exchange, caller)
        bob_name = (await exchange.runtime()).routing.engine.agent(bob).name
        caller_port = call.media.caller_port
        assert call.contact is not None
        task_id = call.contact.task_id

        # Cancel: bob is hung up, alice is back with the caller.
        consult = await start_consult(call, agent_id=bob)
        await wait_until(lambda: consult.state is ConsultState.CONSULTING, "bob to answer")
        device = await voice.agent_device(await exchange.runtime(), bob)
        assert device is not None
        with pytest.raises(Conflict, match="consulting"):  # no supervision meanwhile
            Supervisions().start(call, device, voice.media_client, supervisor_id="sam",
                                 mode=Mode.LISTEN)
        await caller.hears(on_hold, "music on hold")
        await a_callback_is_declined_for(exchange, bob, bob_phone)
        await consult.cancel()
        assert (consult.state, consult.reason) == (ConsultState.ENDED, "cancelled")
        await bob_phone.wait_for("CALL_CLOSED")
        await phase(caller, loop, only(ALICE_HZ, BOB_HZ), "alice after the cancel")
        assert call.media.diversion is None and not call.media.on_hold

        # Conference: everyone hears the other two; then bob hangs up and alice stays.
        consult = await start_consult(call, agent_id=bob)
        await wait_until(lambda: consult.state is ConsultState.CONSULTING, "bob to answer")
        await consult.conference()
        await phase(caller, loop, lambda s: tone_share(s, ALICE_HZ) > HEARD_IN_A_MIX
                    and tone_share(s, BOB_HZ) > HEARD_IN_A_MIX, "a three-way call")
        await bob_phone.stop()  # baresip hangs up (BYE) as it quits
        phones.remove(bob_phone)
        await wait_until(lambda: consult.state is ConsultState.ENDED, "the consult to end")
        assert consult.reason == f"{bob_name} hung up"
        await phase(caller, loop, only(ALICE_HZ, BOB_HZ), "alice after bob left")

        # Nobody answers: bob's phone rings until the consult gives up; alice is back.
        bob_phone = await start_phone(exchange.workdir / "2", voice, "bob", tone_hz=BOB_HZ,
                                      auto_answer=False)
        phones.append(bob_phone)
        monkeypatch.setattr(consult_module, "RING_TIMEOUT_S", 2.0)
        consult = await start_consult(call, agent_id=bob)
        await bob_phone.wait_for("CALL_INCOMING")
        await wait_until(lambda: consult.state is ConsultState.ENDED, "the consult to give up")
        assert consult.reason == f"{bob_name} did not answer"
        await phase(caller, loop, only(ALICE_HZ, BOB_HZ), "alice after no answer")

        task = (await exchange.runtime()).routing.engine.task(task_id)
        assert (task.phase, task.agent_id) == (TaskPhase.ASSIGNED, alice)
        assert call.media.caller_port == caller_port
        assert not [e for e in alice_phone.events if e.get("type") == "CALL_CLOSED"]
    finally:
        await caller.close()
        for phone in phones:
            await phone.stop()


async def test_the_caller_hanging_up_during_a_consult_ends_it(exchange: Exchange) -> None:
    seeded, voice = exchange.seeded, exchange.voice
    phones: list[Baresip] = []
    caller = Caller(voice.stack.udp.port, tone_hz=CALLER_HZ)
    try:
        phones = [await start_phone(exchange.workdir, voice, "alice", tone_hz=ALICE_HZ),
                  await start_phone(exchange.workdir, voice, "bob", tone_hz=BOB_HZ)]
        call = await connected_call(exchange, caller)
        consult = await start_consult(call, agent_id=seeded.agents["bob"])
        await wait_until(lambda: consult.state is ConsultState.CONSULTING, "bob to answer")
        await caller.hang_up()
        for phone in phones:
            await phone.wait_for("CALL_CLOSED")
        await wait_until(consult.done.is_set, "the consult to end")
        assert (consult.state, consult.reason) == (ConsultState.ENDED, "the caller hung up")
    finally:
        await caller.close()
        for phone in phones:
            await phone.stop()


async def test_consult_an_external_number_through_the_trunk_then_complete(
        exchange: Exchange) -> None:
    """sipp is the carrier (it answers with A-law only and plays its pcap until BYE); the
    caller speaks A-law too, so caller and carrier talk directly after the completion."""
    seeded, voice = exchange.seeded, exchange.voice
    carrier = Carrier(SCENARIOS / "outbound_customer_talks_until_bye.xml",
                      exchange.workdir / "carrier")
    voice.outbound = OutboundCalls(voice, Trunk(voice.stack, carrier.trunk_config()))
    phones: list[Baresip] = []
    caller = Caller(voice.stack.udp.port, tone_hz=CALLER_HZ, payload_type=PayloadType.PCMA)
    try:
        await carrier.start()
        phones = [await start_phone(exchange.workdir, voice, "alice", tone_hz=ALICE_HZ)]
        call = await connected_call(exchange, caller)
        assert call.contact is not None
        consult = await start_consult(call, number="040 765 4321")
        assert consult.target.number == "+358407654321"
        await wait_until(lambda: consult.state is not ConsultState.RINGING, "the carrier")
        assert consult.state is ConsultState.CONSULTING, consult.reason
        await caller.hears(on_hold, "music while alice talks with the number")
        await consult.complete()
        seen = len(caller.rtp.packets)
        await phones[0].wait_for("CALL_CLOSED")
        assert call.external == "+358407654321" and call.agent_id is None
        # The carrier's pcap reaches the caller (a short burst: counted, not measured).
        await caller.heard(2.0)
        carrier_packets = [p for p in caller.rtp.packets[seen:] if p.payload_type == 8]
        assert len(carrier_packets) >= 10, len(carrier_packets)
        await caller.hang_up()
        code, output = await carrier.finish()
        assert code == 0, output
    finally:
        voice.outbound = None
        await carrier.stop()
        await caller.close()
        for phone in phones:
            await phone.stop()
    await wait_until(lambda: not voice.calls, "the call to end")
    async with exchange.database.session() as session:
        record = await CallRecords(session, seeded.tenant_id).get(call.record_id)
    assert record.details["transferred_to"] == "+358407654321"
    assert record.details["transfer_log"][0]["kind"] == "consult"
    assert record.details["transfer_log"][0]["number"] == "+358407654321"
    # The task completed when the number took the call: alice's wrap-up follows.
    assert (await exchange.runtime()).routing.engine.agent(seeded.agents["alice"]).tasks

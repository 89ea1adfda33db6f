"""Consult (attended) transfer of an agent's outbound call, for real on loopback: alice
(baresip, 440 Hz) dials a customer behind the carrier trunk (OmniCC's SIP stack answering the
trunk's INVITE, an RTP endpoint with a 1000 Hz tone that keeps what it hears), then consults
bob (baresip, 660 Hz). The customer hears music while alice and bob talk; a cancel brings
alice back; the second consult completes: the customer talks with bob, alice's leg ends, the
task is bob's and the call record logs a consult transfer; bob then consults alice and hangs up
while she is on the line, which hands the customer to her. The media starts at alice's leg
(agent first): the consult makes the customer its first leg, and the customer's rtpengine port
never moves (nobody is re-INVITEd). A browser agent's call (the media's first leg a WebRTC one)
goes into the consult's mixer and back on its DTLS session, against rtpengine with RTP
endpoints as the phones."""

from __future__ import annotations

import asyncio

import pytest

from omnicc.channels.voice.consult import ConsultState, start_consult
from omnicc.channels.voice.media.bridge import MediaCall
from omnicc.channels.voice.media.daemon import RtpengineDaemon
from omnicc.channels.voice.media.mixer import AGENT, CALLER, CONSULT, SUPERVISOR, TARGET, Mixer
from omnicc.channels.voice.media.rtp import RtpEndpoint
from omnicc.channels.voice.media.tones import tone_share
from omnicc.core.model import TaskPhase
from omnicc.store.repositories import CallRecords
from tests.integration.voice.harness import (
    CUSTOMER_HZ,
    Customer,
    Exchange,
    Sound,
    start_phone,
    wait_until,
)
from tests.integration.voice.test_consult_transfer import (
    ALICE_HZ,
    BOB_HZ,
    HEARD,
    JUDGED_S,
    NOT_HEARD,
    PHASE_S,
    SETTLE_S,
    on_hold,
    only,
    recording,
    window,
)
from tests.integration.voice.test_outbound_controls import connected_call
from tests.integration.voice.test_supervision_media import TONES, talk

pytestmark = pytest.mark.anyio



@pytest.fixture
def exchange(both_ways_exchange: Exchange) -> Exchange:
    """The support line and its caller ID (conftest's `both_ways_exchange`)."""
    return both_ways_exchange


async def phase(customer: Customer, loop: asyncio.AbstractEventLoop, sound: Sound,
                what: str) -> tuple[float, float]:
    """The customer hears `sound` for a phase; its (start, end) on the loop's clock."""
    await customer.hears(sound, what)
    started = loop.time()
    while loop.time() - started < PHASE_S:
        assert sound(await customer.heard(0.8)), what
    return started, loop.time()


async def test_consult_bob_on_an_outbound_call_cancel_then_complete(
        exchange: Exchange, customer: Customer) -> None:
    voice, seeded = exchange.voice, exchange.seeded
    tenant_id, alice, bob = seeded.tenant_id, seeded.agents["alice"], seeded.agents["bob"]
    runtime = await exchange.runtime()
    await runtime.routing.run(lambda engine: engine.set_status(bob, "available"))
    loop = asyncio.get_running_loop()
    alice_phone = await start_phone(exchange.workdir, voice, "alice", tone_hz=ALICE_HZ)
    bob_phone = await start_phone(exchange.workdir, voice, "bob", tone_hz=BOB_HZ)
    try:
        call = await connected_call(exchange, customer)
        assert call.contact is not None and call.agent_first
        task_id = call.contact.task_id
        await customer.hears(only(ALICE_HZ, BOB_HZ), "alice")

        # Cancel: bob is hung up, alice is back with the customer.
        consult = await start_consult(call, agent_id=bob)
        assert not call.agent_first  # the customer is the media's first leg now
        customer_port = call.media.caller_port
        await wait_until(lambda: consult.state is not ConsultState.RINGING, "bob to answer")
        assert consult.state is ConsultState.CONSULTING, consult.reason
        await customer.hears(on_hold, "music while alice consults bob")
        await consult.cancel()
        assert (consult.state, consult.reason) == (ConsultState.ENDED, "cancelled")
        await bob_phone.wait_for("CALL_CLOSED")
        await phase(customer, loop, only(ALICE_HZ, BOB_HZ), "alice after the cancel")
        assert call.media.diversion is None and not call.media.on_hold

        # Consult again, then complete: the customer talks with bob.
        consult = await start_consult(call, agent_id=bob)
        await wait_until(lambda: consult.state is not ConsultState.RINGING, "bob to answer")
        assert consult.state is ConsultState.CONSULTING, consult.reason
        bob_answered = loop.time()
        consulting = await phase(customer, loop, on_hold, "music on hold, neither agent")
        assert call.media.diversion is not None  # in the mixer
        await consult.complete()
        assert consult.state is ConsultState.COMPLETED
        await alice_phone.wait_for("CALL_CLOSED")
        after = await phase(customer, loop, only(BOB_HZ, ALICE_HZ), "bob after the transfer")
        assert call.agent_id == bob and call.media.diversion is None
        assert call.media.caller_port == customer_port
        assert voice.outbound is not None
        assert voice.outbound.of_agent(tenant_id, bob) is call
        assert voice.outbound.of_agent(tenant_id, alice) is None  # she may dial again
        task = runtime.routing.engine.task(task_id)
        assert (task.phase, task.agent_id) == (TaskPhase.ASSIGNED, bob)
        # bob's phone did not ring again for the hand-over: two consults, two calls.
        assert len([e for e in bob_phone.events if e.get("type") == "CALL_ESTABLISHED"]) == 2

        # bob consults alice and hangs up (his desk's Hang up) while she is on the line: as
        # on a PBX, that completes the transfer, and alice has the customer again.
        await runtime.routing.run(lambda engine: engine.set_status(alice, "available"))
        consult = await start_consult(call, agent_id=alice)
        await wait_until(lambda: consult.state is not ConsultState.RINGING, "alice to answer")
        assert consult.state is ConsultState.CONSULTING, consult.reason
        await customer.hears(on_hold, "music while bob consults alice")
        await call.hang_up_by_agent()
        await bob_phone.wait_for("CALL_CLOSED", count=2)
        await wait_until(lambda: consult.state is not ConsultState.CONSULTING,
                         "the consult to complete")
        assert consult.state is ConsultState.COMPLETED, consult.reason
        await customer.hears(only(ALICE_HZ, BOB_HZ), "alice after bob hung up")
        assert call.agent_id == alice and not call.ended.is_set()
        task = runtime.routing.engine.task(task_id)
        assert (task.phase, task.agent_id) == (TaskPhase.ASSIGNED, alice)

        await call.hang_up_by_agent()  # alice's desk: her leg and the customer's end
        await alice_phone.wait_for("CALL_CLOSED", count=2)
        await customer.hung_up_on()
        await wait_until(lambda: voice.call_of_task(tenant_id, task_id) is None,
                         "the call to end")
    finally:
        if voice.outbound is not None:
            await voice.outbound.stop()
        await alice_phone.stop()
        await bob_phone.stop()

    async with exchange.database.session() as session:
        record = await CallRecords(session, tenant_id).get(call.record_id)
    assert (record.agent_id, record.transfers, record.hangup_side) == (alice, 2, "agent")
    assert [(t["kind"], t["agent_id"]) for t in record.details["transfer_log"]] == [
        ("consult", bob), ("consult", alice)]

    # While consulting, alice heard bob and bob heard alice, neither the customer; then bob
    # heard the customer. alice's first leg ended at the completion: that recording's last
    # part is the consult. A recording holds the frames received, so on a loaded machine it
    # runs short of the wall clock: a phase is judged on part of it, the rest is a margin.
    alice_heard = recording(alice_phone.heard()[0])
    end_s = len(alice_heard) / 8000
    part = window(alice_heard, end_s - 0.3 - JUDGED_S, end_s - 0.3)
    assert tone_share(part, BOB_HZ) > HEARD and tone_share(part, CUSTOMER_HZ) < NOT_HEARD
    bob_heard = recording(bob_phone.heard()[-1])
    start = consulting[0] - bob_answered + SETTLE_S
    part = window(bob_heard, start, start + JUDGED_S)
    assert tone_share(part, ALICE_HZ) > HEARD and tone_share(part, CUSTOMER_HZ) < NOT_HEARD
    part = window(bob_heard, after[0] - bob_answered + SETTLE_S, after[1] - bob_answered - 0.3)
    assert tone_share(part, CUSTOMER_HZ) > HEARD and tone_share(part, ALICE_HZ) < NOT_HEARD


async def test_a_browser_agents_outbound_call_consults_and_cancels_on_its_dtls_session(
        engine: RtpengineDaemon) -> None:
    """alice's browser is the media's first leg (a second rtpengine call plays it: ICE, DTLS
    active), the customer the party; the consult makes the customer the first leg, moves the
    call into the consult's mixer (alice hears the target, the customer nobody) and back (a
    cancel): alice's WebRTC side is re-offered as WebRTC, so her DTLS-SRTP session goes on."""
    phones = {name: await RtpEndpoint().open() for name in TONES}  # SUPERVISOR: the target
    customer, agent, target = phones[CALLER], phones[AGENT], phones[SUPERVISOR]
    ng = engine.client
    call = MediaCall(ng, "outbound-consult")
    try:
        offer = await call.browser_first_offer("alice", payload_type=0)
        plain = {"ICE": "remove", "transport-protocol": "RTP/AVP", "rtcp-mux": ["demux"]}
        agent.connect(await ng.offer("browser-side", "webrtc", offer, plain))
        await call.browser_first_answer("alice", await ng.answer(
            "browser-side", "webrtc", "audio", agent.sdp(),
            {"ICE": "force", "DTLS": "active", "transport-protocol": "UDP/TLS/RTP/SAVPF",
             "rtcp-mux": ["require"]}))
        to_customer = await call.offer_to("customer")
        customer.connect(to_customer)
        await call.answered_by("customer", customer.sdp())
        heard = await talk(phones, CALLER, AGENT)
        assert tone_share(heard[AGENT], TONES[CALLER]) > HEARD
        assert tone_share(heard[CALLER], TONES[AGENT]) > HEARD

        call.party_becomes_caller("customer", customer.sdp(), to_customer)
        async with Mixer() as mixer:
            target_port = await mixer.add(TARGET)
            target.connect(target_port.sdp())
            target_port.connect(target.sdp())
            to_caller, to_agent = await call.divert_offer("mix-caller", "mix-agent")
            for name, sdp in ((CALLER, to_caller), (AGENT, to_agent)):
                (await mixer.add(name)).connect(sdp)
            mixer.set_hears(CONSULT)
            mixer.start()
            await call.divert_answer(mixer.ports[CALLER].sdp(), mixer.ports[AGENT].sdp())
            heard = await talk(phones, SUPERVISOR, AGENT)
            assert tone_share(heard[AGENT], TONES[SUPERVISOR]) > HEARD
            assert tone_share(heard[SUPERVISOR], TONES[AGENT]) > HEARD
            assert tone_share(heard[CALLER], TONES[AGENT]) < NOT_HEARD
            await call.undivert()  # the consult is cancelled
        heard = await talk(phones, CALLER, AGENT)
        assert tone_share(heard[AGENT], TONES[CALLER]) > HEARD
        assert tone_share(heard[CALLER], TONES[AGENT]) > HEARD
        leg = (await ng.query("outbound-consult"))["tags"]["alice"]["medias"][0]
        assert "DTLS fingerprint verified" in leg["streams"][0]["flags"]
    finally:
        await call.delete()
        await ng.delete("browser-side")
        for phone in phones.values():
            await phone.close()

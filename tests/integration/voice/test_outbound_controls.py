"""An agent's outbound call answers the in-call controls an inbound call does, for real on
loopback: alice (baresip, a 440 Hz tone) dials a customer behind the carrier trunk (OmniCC's
SIP stack answering the trunk's INVITE, an RTP endpoint with a 1000 Hz tone that keeps what it
hears). Hold plays music to the customer and resume brings alice back; the call is found by
its task as the desk and the supervisor's API find calls, and is on the wallboard's calls in
progress; a supervisor (bob's baresip as their desk phone) listens, whispers - the customer
never hears them: the mixer's roles follow the agent-first media - then barges in."""

from __future__ import annotations

import asyncio

import pytest

from omnicc.api.supervision import with_calls
from omnicc.channels.voice.devices import SipPhone
from omnicc.channels.voice.media.tones import tone_share
from omnicc.channels.voice.outbound import OutboundCall, OutboundCalls
from omnicc.channels.voice.supervision import Mode, Supervisions, SupervisionState
from omnicc.channels.voice.trunk import Trunk, TrunkConfig
from omnicc.store.repositories import CallRecords
from tests.integration.voice.harness import (
    CUSTOMER,
    Customer,
    Exchange,
    music_instead_of,
    start_phone,
    wait_until,
)

pytestmark = pytest.mark.anyio

AGENT_HZ, SUPERVISOR_HZ = 440.0, 660.0
HEARD, HEARD_IN_A_MIX, NOT_HEARD = 0.5, 0.3, 0.05


@pytest.fixture
def exchange(both_ways_exchange: Exchange) -> Exchange:
    """The support line and its caller ID (conftest's `both_ways_exchange`)."""
    return both_ways_exchange


async def connected_call(exchange: Exchange, customer: Customer) -> OutboundCall:
    """alice's call to the customer, talking (the service's trunk is the customer's)."""
    voice = exchange.voice
    port = await customer.answer_calls()
    voice.outbound = OutboundCalls(voice, Trunk(voice.stack, TrunkConfig(
        uri=f"sip:omnicc@127.0.0.1:{port}", default_region="FI")))
    call = await voice.outbound.dial(await exchange.runtime(),
                                     agent_id=exchange.seeded.agents["alice"],
                                     number=CUSTOMER, queue_id=None)
    await wait_until(call.connected.is_set, "the customer to answer")
    customer.talk()
    return call


async def test_hold_plays_music_to_the_customer_and_resume_brings_the_agent_back(
        exchange: Exchange, customer: Customer) -> None:
    voice, tenant_id = exchange.voice, exchange.seeded.tenant_id
    alice = await start_phone(exchange.workdir, voice, "alice", tone_hz=AGENT_HZ)
    try:
        call = await connected_call(exchange, customer)
        assert call.contact is not None
        task_id = call.contact.task_id
        assert voice.call_of_task(tenant_id, task_id) is call  # as the desk's API finds it
        await customer.hears(lambda s: tone_share(s, AGENT_HZ) > HEARD, "alice")

        await call.hold()
        assert call.media.on_hold
        await customer.hears(music_instead_of(AGENT_HZ), "music on hold")
        await call.resume()
        await customer.hears(lambda s: tone_share(s, AGENT_HZ) > HEARD, "alice after resume")
        first_hold_s = call.figures.hold_s
        assert first_hold_s > 0

        # Hung up on hold: that hold counts too.
        await call.hold()
        await customer.hears(music_instead_of(AGENT_HZ), "music on hold again")
        await call.hang_up_by_agent()
        await customer.hung_up_on()
        await wait_until(lambda: voice.call_of_task(tenant_id, task_id) is None,
                         "the call to end")
        async with exchange.database.session() as session:
            record = await CallRecords(session, tenant_id).get(call.record_id)
        assert (record.outcome, record.hangup_side) == ("answered", "agent")
        assert record.hold_s > first_hold_s
    finally:
        assert voice.outbound is not None
        await voice.outbound.stop()
        await alice.stop()


async def test_a_supervisor_listens_whispers_and_barges_into_an_outbound_call(
        exchange: Exchange, customer: Customer) -> None:
    voice, seeded = exchange.voice, exchange.seeded
    # bob's SIP account is the supervisor's desk phone (bob stays offline: nothing routes to
    # him); the supervision rings it as a plain `SipPhone`.
    alice = await start_phone(exchange.workdir, voice, "alice", tone_hz=AGENT_HZ)
    supervisor = await start_phone(exchange.workdir, voice, "bob", tone_hz=SUPERVISOR_HZ)
    supervisions = Supervisions()
    try:
        call = await connected_call(exchange, customer)
        assert call.contact is not None
        runtime = await exchange.runtime()
        board = with_calls(runtime.wallboard(), runtime)
        assert [(c["task_id"], c["direction"], c["state"], c["agent_id"], c["phone"])
                for c in board["calls"]] == [
            (call.contact.task_id, "outbound", "assigned", seeded.agents["alice"], CUSTOMER)]
        found = voice.call_of_task(seeded.tenant_id, call.contact.task_id)
        assert found is call
        await customer.hears(lambda s: tone_share(s, AGENT_HZ) > HEARD, "alice")

        device = await voice.agent_device(runtime, seeded.agents["bob"])
        assert isinstance(device, SipPhone)
        supervision = supervisions.start(found, device, voice.media_client, supervisor_id="sam",
                                         mode=Mode.LISTEN, host=voice.host)
        await wait_until(lambda: supervision.state is not SupervisionState.RINGING,
                         "the supervisor to answer")
        assert supervision.state is SupervisionState.ACTIVE
        await customer.hears(lambda s: tone_share(s, AGENT_HZ) > HEARD, "alice, listened to")
        for _ in range(3):
            assert tone_share(await customer.heard(0.8), SUPERVISOR_HZ) < NOT_HEARD

        # Whisper: for the customer nothing changes (the whisper is alice's).
        supervision.switch(Mode.WHISPER)
        for _ in range(3):
            heard = await customer.heard(0.8)
            assert tone_share(heard, SUPERVISOR_HZ) < NOT_HEARD
            assert tone_share(heard, AGENT_HZ) > HEARD

        # Barge: a three-way call.
        supervision.switch(Mode.BARGE)
        await customer.hears(lambda s: tone_share(s, SUPERVISOR_HZ) > HEARD_IN_A_MIX
                             and tone_share(s, AGENT_HZ) > HEARD_IN_A_MIX, "a three-way call")

        await supervision.stop()
        assert supervision.end_reason == "left"
        await customer.hears(lambda s: tone_share(s, AGENT_HZ) > HEARD, "alice after the leave")
        await asyncio.wait_for(supervision.done.wait(), 10)
    finally:
        await supervisions.stop_all()
        if voice.outbound is not None:
            await voice.outbound.stop()
        await supervisor.stop()
        await alice.stop()

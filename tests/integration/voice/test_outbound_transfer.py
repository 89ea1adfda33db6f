"""Blind transfer of an agent's outbound call, for real on loopback: alice (baresip, 440 Hz)
dials a customer behind the carrier trunk (OmniCC's SIP stack answering the trunk's INVITE, an
RTP endpoint with a 1000 Hz tone that keeps what it hears), then transfers the call to bob
(baresip, 660 Hz) or to the support queue bob serves. The customer hears music, then bob;
alice's leg ends, her task becomes bob's, and the call record logs the transfer."""

from __future__ import annotations

import asyncio

import pytest

from omnicc.channels.voice.media.tones import tone_share
from omnicc.channels.voice.outbound import OutboundCall, OutboundCalls
from omnicc.channels.voice.sip.stack import IncomingRequest
from omnicc.channels.voice.trunk import Trunk, TrunkConfig
from omnicc.core.engine import Engine
from omnicc.core.errors import Conflict, NotFound
from omnicc.core.model import TaskPhase
from omnicc.store.repositories import CallbackRequests, CallRecords, Contacts
from omnicc.store.tables import CallbackRequest
from tests.integration.voice.harness import (
    CUSTOMER,
    CUSTOMER_HZ,
    Customer,
    Exchange,
    music_instead_of,
    start_phone,
    wait_until,
)
from tests.integration.voice.test_outbound_controls import connected_call

pytestmark = pytest.mark.anyio

ALICE_HZ, BOB_HZ = 440.0, 660.0
HEARD, NOT_HEARD = 0.5, 0.05


@pytest.fixture
def exchange(both_ways_exchange: Exchange) -> Exchange:
    """The support line and its caller ID (conftest's `both_ways_exchange`)."""
    return both_ways_exchange


@pytest.mark.parametrize("target", ["agent", "queue"])
async def test_a_blind_transfer_hands_the_customer_to_bob(
        exchange: Exchange, customer: Customer, target: str) -> None:
    voice, seeded = exchange.voice, exchange.seeded
    tenant_id, alice, bob = seeded.tenant_id, seeded.agents["alice"], seeded.agents["bob"]
    runtime = await exchange.runtime()
    # bob serves the support queue; alice, on her call, is offered nothing meanwhile.
    await runtime.routing.run(lambda engine: engine.set_status(bob, "available"))
    alice_phone = await start_phone(exchange.workdir, voice, "alice", tone_hz=ALICE_HZ)
    bob_phone = await start_phone(exchange.workdir, voice, "bob", tone_hz=BOB_HZ)
    try:
        call = await connected_call(exchange, customer)
        assert call.contact is not None
        task_id = call.contact.task_id
        await customer.hears(lambda s: tone_share(s, ALICE_HZ) > HEARD, "alice")

        if target == "agent":
            await call.transfer(agent_id=bob)
        else:
            await call.transfer(queue_id=seeded.queues["support"])
        await alice_phone.wait_for("CALL_CLOSED")
        assert voice.outbound is not None
        assert voice.outbound.of_agent(tenant_id, alice) is None  # she may dial again

        await wait_until(call.connected.is_set, "bob to answer the transferred call")
        await bob_phone.wait_for("CALL_ESTABLISHED")
        await customer.hears(lambda s: tone_share(s, BOB_HZ) > HEARD
                             and tone_share(s, ALICE_HZ) < NOT_HEARD, "bob, not alice")
        assert call.agent_id == bob
        assert voice.call_of_task(tenant_id, task_id) is call
        assert voice.outbound.of_agent(tenant_id, bob) is call
        task = runtime.routing.engine.task(task_id)
        assert (task.phase, task.agent_id) == (TaskPhase.ASSIGNED, bob)

        # The controls follow bob's leg: hold, resume, hang up.
        await call.hold()
        await customer.hears(music_instead_of(BOB_HZ), "music on hold")
        await call.resume()
        await customer.hears(lambda s: tone_share(s, BOB_HZ) > HEARD, "bob after resume")
        await call.hang_up_by_agent()  # bob's desk: his leg and the customer's end
        await bob_phone.wait_for("CALL_CLOSED")
        await customer.hung_up_on()
        await wait_until(lambda: voice.call_of_task(tenant_id, task_id) is None,
                         "the call to end")

        async with exchange.database.session() as session:
            record = await CallRecords(session, tenant_id).get(call.record_id)
            contact = await Contacts(session, tenant_id).get(call.contact.contact_id)
        assert (record.outcome, record.hangup_side, record.agent_id) == ("answered", "agent",
                                                                          bob)
        assert record.transfers == 1
        [logged] = record.details["transfer_log"]
        assert logged["kind"] == "blind"
        if target == "agent":
            assert logged["agent_id"] == bob
        else:
            assert logged["queue_id"] == seeded.queues["support"]
        assert contact.agent_id == bob
        await wait_until(lambda: _ended(runtime.routing.engine, task_id),
                         "bob's task to complete")
    finally:
        if voice.outbound is not None:
            await voice.outbound.stop()
        await alice_phone.stop()
        await bob_phone.stop()


async def test_the_customer_leaving_while_the_transfer_rings_abandons_the_task(
        exchange: Exchange, customer: Customer) -> None:
    voice, seeded = exchange.voice, exchange.seeded
    tenant_id, bob = seeded.tenant_id, seeded.agents["bob"]
    runtime = await exchange.runtime()
    await runtime.routing.run(lambda engine: engine.set_status(bob, "available"))
    alice_phone = await start_phone(exchange.workdir, voice, "alice", tone_hz=ALICE_HZ)
    bob_phone = await start_phone(exchange.workdir, voice, "bob", tone_hz=BOB_HZ,
                                  auto_answer=False)
    try:
        call: OutboundCall = await connected_call(exchange, customer)
        assert call.contact is not None
        task_id = call.contact.task_id
        await call.transfer(agent_id=bob)
        await customer.hears(music_instead_of(ALICE_HZ), "music while bob's phone rings")
        await bob_phone.wait_for("CALL_INCOMING")
        await customer.hang_up()
        await bob_phone.wait_for("CALL_CLOSED")
        await wait_until(lambda: voice.call_of_task(tenant_id, task_id) is None,
                         "the call to end")
        await wait_until(lambda: _ended(runtime.routing.engine, task_id),
                         "the task to end")
        async with exchange.database.session() as session:
            record = await CallRecords(session, tenant_id).get(call.record_id)
        assert record.hangup_side == "caller"
        assert record.transfers == 1
    finally:
        if voice.outbound is not None:
            await voice.outbound.stop()
        await alice_phone.stop()
        await bob_phone.stop()


def _ended(engine: Engine, task_id: str) -> bool:
    """The task completed or was abandoned (gone from the engine, or past talking)."""
    try:
        task = engine.task(task_id)
    except NotFound:
        return True
    return task.phase not in (TaskPhase.WAITING, TaskPhase.OFFERED, TaskPhase.ASSIGNED)


EXTERNAL, EXTERNAL_HZ, BUSY = "+358409998887", 660.0, "+358409998886"


class CarrierLine(Customer):
    """The trunk's far side for two numbers: the customer's (this object) and an external
    party's (its own RTP endpoint, 660 Hz), told apart by the INVITE's Request-URI."""

    def __init__(self, external: Customer) -> None:
        super().__init__()
        self.external = external

    async def _on_request(self, incoming: IncomingRequest) -> None:
        if incoming.method == "INVITE" and BUSY in incoming.message.uri:
            await incoming.respond(486)
            return
        if incoming.method == "INVITE" and EXTERNAL in incoming.message.uri:
            party = self.external
            await party.rtp.open()
            party.rtp.connect(incoming.message.body.decode())
            await incoming.respond(200, body=party.rtp.sdp().encode(),
                                   content_type="application/sdp")
            party.dialog = incoming.dialog
            party.talk()
            return
        await super()._on_request(incoming)


async def test_a_transfer_to_a_number_hands_the_customer_to_it(exchange: Exchange) -> None:
    voice, seeded = exchange.voice, exchange.seeded
    tenant_id, alice = seeded.tenant_id, seeded.agents["alice"]
    external = Customer()
    external.tone_hz = EXTERNAL_HZ
    customer = CarrierLine(external)
    alice_phone = await start_phone(exchange.workdir, voice, "alice", tone_hz=ALICE_HZ)
    try:
        call = await connected_call(exchange, customer)
        assert call.contact is not None
        task_id = call.contact.task_id
        await customer.hears(lambda s: tone_share(s, ALICE_HZ) > HEARD, "alice")
        # A busy number: 409 with why, and the customer is back with alice.
        with pytest.raises(Conflict, match="486"):
            await call.transfer_to_number(BUSY)
        await customer.hears(lambda s: tone_share(s, ALICE_HZ) > HEARD, "alice again")
        assert call.agent_leg is not None and not call.agent_leg.terminated.is_set()

        await call.transfer_to_number(EXTERNAL)
        await alice_phone.wait_for("CALL_CLOSED")
        assert voice.outbound is not None
        assert voice.outbound.of_agent(tenant_id, alice) is None  # she may dial again
        await customer.hears(lambda s: tone_share(s, EXTERNAL_HZ) > HEARD
                             and tone_share(s, ALICE_HZ) < NOT_HEARD, "the external party")
        await external.hears(lambda s: tone_share(s, CUSTOMER_HZ) > HEARD, "the customer")
        runtime = await exchange.runtime()
        await wait_until(lambda: _ended(runtime.routing.engine, task_id),
                         "alice's task to complete")
        await customer.hang_up()
        await external.hung_up_on()
        await wait_until(lambda: voice.call_of_task(tenant_id, task_id) is None,
                         "the call to end")
        async with exchange.database.session() as session:
            record = await CallRecords(session, tenant_id).get(call.record_id)
        assert (record.hangup_side, record.transfers) == ("caller", 1)  # the busy one: none
        assert record.details["transferred_to"] == EXTERNAL
        assert record.details["transfer_log"][0]["kind"] == "external"
    finally:
        if voice.outbound is not None:
            await voice.outbound.stop()
        await alice_phone.stop()
        await customer.close()
        await external.close()


async def test_a_callbacks_call_is_transferred_like_any_call(
        exchange: Exchange, customer: Customer) -> None:
    """A callback's call (its task routed by the callback scheduler) goes to bob too; the
    request counts one answered attempt, by alice who dialled it."""
    voice, seeded = exchange.voice, exchange.seeded
    tenant_id, alice, bob = seeded.tenant_id, seeded.agents["alice"], seeded.agents["bob"]
    runtime = await exchange.runtime()
    port = await customer.answer_calls()
    voice.outbound = OutboundCalls(voice, Trunk(voice.stack, TrunkConfig(
        uri=f"sip:omnicc@127.0.0.1:{port}", default_region="FI")))
    alice_phone = await start_phone(exchange.workdir, voice, "alice", tone_hz=ALICE_HZ)
    bob_phone = await start_phone(exchange.workdir, voice, "bob", tone_hz=BOB_HZ)
    try:
        await runtime.routing.run(lambda engine: engine.set_status(alice, "available"))
        async with exchange.database.session() as session:
            request = await CallbackRequests(session, tenant_id).add(CallbackRequest(
                number=CUSTOMER, queue_id=seeded.queues["support"], source="ivr"))
        await voice.outbound.callbacks.submit(runtime, request)
        outbound = voice.outbound
        await wait_until(lambda: any(c.connected.is_set() for c in outbound.calls),
                         "the customer to answer alice's callback")
        [call] = outbound.calls
        customer.talk()
        assert call.contact is not None and call.agent_id == alice
        task_id = call.contact.task_id
        await customer.hears(lambda s: tone_share(s, ALICE_HZ) > HEARD, "alice")

        await runtime.routing.run(lambda engine: engine.set_status(bob, "available"))
        await call.transfer(agent_id=bob)
        await alice_phone.wait_for("CALL_CLOSED")
        await wait_until(call.connected.is_set, "bob to answer the transferred callback")
        await customer.hears(lambda s: tone_share(s, BOB_HZ) > HEARD
                             and tone_share(s, ALICE_HZ) < NOT_HEARD, "bob, not alice")
        task = runtime.routing.engine.task(task_id)
        assert (task.phase, task.agent_id) == (TaskPhase.ASSIGNED, bob)
        established = [e for e in bob_phone.events if e.get("type") == "CALL_ESTABLISHED"]
        assert len(established) == 1  # rung once: the transfer is no new callback attempt

        await call.hang_up_by_agent()
        await customer.hung_up_on()
        await wait_until(lambda: _ended(runtime.routing.engine, task_id), "bob's task to end")
        for _ in range(200):
            async with exchange.database.session() as session:
                done = await CallbackRequests(session, tenant_id).get(request.id)
            if done.state != "dialling":
                break
            await asyncio.sleep(0.05)
        assert (done.state, done.attempts) == ("done", 1)
        assert done.attributes["attempts"][0]["agent_id"] == alice
        async with exchange.database.session() as session:
            record = await CallRecords(session, tenant_id).get(call.record_id)
        assert (record.outcome, record.agent_id, record.transfers) == ("answered", bob, 1)
    finally:
        await voice.outbound.stop()
        await alice_phone.stop()
        await bob_phone.stop()

"""An agent's outbound call is their routing task, for real on loopback (issue 4, items 3 and
7): alice dials a customer (her baresip phone first, then sipp as the carrier); while she talks
the engine offers her nothing - a caller on the support line rings bob, a chat waits - and
after she hangs up she wraps the call up with a disposition code, then gets the chat. A call
lost in a restart does not keep its agent busy."""

from __future__ import annotations

import pytest

from omnicc.channels.voice.outbound import OutboundCall, OutboundCalls
from omnicc.channels.voice.trunk import Trunk, TrunkConfig
from omnicc.core.errors import Conflict
from omnicc.core.model import TaskPhase, TaskRequest
from omnicc.store.repositories import CallRecords, Contacts, WrapUpCodes
from tests.integration.voice.harness import (
    SCENARIOS,
    SUPPORT_LINE,
    Caller,
    Carrier,
    Exchange,
    on_both_databases,
    start_phone,
    wait_until,
)

pytestmark = [pytest.mark.anyio, on_both_databases]

CUSTOMER = "+358401112223"


@pytest.fixture
def exchange(both_ways_exchange: Exchange) -> Exchange:
    """The support line and its caller ID (conftest's `both_ways_exchange`)."""
    return both_ways_exchange


async def test_an_agent_on_an_outbound_call_is_offered_nothing_then_wraps_it_up(
        exchange: Exchange) -> None:
    seeded, voice = exchange.seeded, exchange.voice
    alice, bob, support = seeded.agents["alice"], seeded.agents["bob"], seeded.queues["support"]
    runtime = await exchange.runtime()
    routing = runtime.routing
    for agent in (alice, bob):
        await routing.run(lambda engine, agent=agent: engine.set_status(agent, "available"))
    carrier = Carrier(SCENARIOS / "outbound_customer_talks_until_bye.xml",
                      exchange.workdir / "carrier")
    alice_phone = await start_phone(exchange.workdir, voice, "alice", tone_hz=440)
    bob_phone = await start_phone(exchange.workdir, voice, "bob", tone_hz=660)
    caller = Caller(voice.stack.udp.port)
    outbound: OutboundCalls | None = None
    try:
        await carrier.start()
        outbound = OutboundCalls(voice, Trunk(voice.stack, carrier.trunk_config()))
        call = await outbound.dial(runtime, agent_id=alice, number=CUSTOMER, queue_id=None)
        # The task is alice's before her phone rings, in the default caller ID's queue.
        assert call.contact is not None
        task_id = call.contact.task_id
        task = routing.engine.task(task_id)
        assert (task.phase, task.agent_id, task.queue_id) == (TaskPhase.ASSIGNED, alice, support)
        assert task.attributes["direction"] == "outbound"
        with pytest.raises(Conflict):
            await outbound.dial(runtime, agent_id=alice, number=CUSTOMER, queue_id=support)
        await wait_until(call.connected.is_set, "the customer to answer")

        # A caller on the support line rings bob, not alice.
        await caller.call(SUPPORT_LINE)
        await wait_until(lambda: routing.engine.agent(bob).tasks, "bob to take the call")
        inbound = next(iter(routing.engine.agent(bob).tasks))
        assert routing.engine.agent(alice).offers == {}
        # A chat waits: alice is on her call, bob on his.
        created = await routing.create_task(TaskRequest(channel="chat", queue=support))
        chat = created[0].task_id  # type: ignore[attr-defined]
        assert routing.engine.task(chat).phase is TaskPhase.WAITING
        assert routing.engine.agent(alice).offers == {}

        # alice hangs up at the desk: the customer gets BYE, her wrap-up starts.
        await call.hang_up()
        code, output = await carrier.finish()
        assert code == 0, output
        await wait_until(lambda: routing.engine.task(task_id).phase is TaskPhase.WRAPPING,
                         "alice's wrap-up")
        assert routing.engine.agent(alice).presence == "wrap_up"
        assert routing.engine.task(chat).phase is TaskPhase.WAITING
        await runtime.chats.wrap_up(alice, task_id, "solved")
        assert routing.engine.task(chat).agent_id is None
        assert [routing.engine.offer(o).task_id
                for o in routing.engine.agent(alice).offers] == [chat]
        figures = routing.engine.queue_figures(support)
        assert (figures.offered, figures.handled) == (2, 1)  # the inbound call and the chat
        assert routing.engine.task(inbound).agent_id == bob
    finally:
        await caller.close()
        if outbound is not None:
            await outbound.stop()
        await carrier.stop()
        await alice_phone.stop()
        await bob_phone.stop()

    async with exchange.database.session() as session:
        record = await CallRecords(session, seeded.tenant_id).get(call.record_id)
        assert (record.outcome, record.hangup_side, record.queue_id) == (
            "answered", "agent", support)
        contact = await Contacts(session, seeded.tenant_id).get(record.contact_id or "")
        assert (contact.direction, contact.agent_id, contact.queue_id) == (
            "outbound", alice, support)
        codes = await WrapUpCodes(session, seeded.tenant_id).list_all()
        assert contact.wrap_up_code_id == next(c.id for c in codes if c.code == "solved")


async def test_a_call_lost_in_a_restart_does_not_keep_the_agent_busy(exchange: Exchange) -> None:
    seeded, voice = exchange.seeded, exchange.voice
    alice, support = seeded.agents["alice"], seeded.queues["support"]
    runtime = await exchange.runtime()
    engine = runtime.routing.engine
    trunk = Trunk(voice.stack, TrunkConfig(uri="sip:omnicc@127.0.0.1:9"))
    # The call's task and rows are written, then the process dies before anything rings.
    call = OutboundCall(voice, runtime, trunk, agent_id=alice, number=CUSTOMER,
                        queue_id=support)
    await call.start()
    assert call.contact is not None
    task_id = call.contact.task_id
    assert engine.task(task_id).phase is TaskPhase.ASSIGNED

    after = OutboundCalls(voice, trunk)  # the next process's
    assert await after.recover() == 1
    assert engine.task(task_id).phase is TaskPhase.WRAPPING  # her wrap-up, then work again
    assert await after.recover() == 0
    async with exchange.database.session() as session:
        contact = await Contacts(session, seeded.tenant_id).get(call.contact.contact_id)
    assert contact.ended_at is not None and contact.attributes["hangup_side"] == "system"

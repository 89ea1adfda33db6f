"""Callbacks for real on loopback: a customer's request becomes a task in the support queue;
the engine offers it to alice, her baresip phone rings ("Callback to ..."), she answers and
sipp - the carrier - answers for the customer (or says busy, and the request is tried again
until it fails)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from omnicc.app.callbacks import (
    CallbackAttempt,
    CallbackOffer,
    CallbackPolicy,
    CallbackScheduler,
)
from omnicc.app.routing import WallClock
from omnicc.app.runtime import ContactCenter
from omnicc.bus import Bus
from omnicc.channels.voice.outbound import OutboundCalls
from omnicc.channels.voice.trunk import Trunk, TrunkConfig
from omnicc.core.errors import NotFound
from omnicc.core.model import TaskPhase
from omnicc.store.repositories import CallbackRequests, CallRecords, Contacts
from omnicc.store.tables import CallbackRequest
from tests.integration.voice.harness import SCENARIOS, Carrier, Exchange, loudness, start_phone

pytestmark = pytest.mark.anyio


@pytest.fixture
def exchange(outbound_exchange: Exchange) -> Exchange:
    """Callbacks are outbound calls: the exchange with the outbound caller ID."""
    return outbound_exchange

NUMBER = "+358401234567"


async def request_state(exchange: Exchange, request_id: str) -> CallbackRequest:
    async with exchange.database.session() as session:
        return await CallbackRequests(session, exchange.seeded.tenant_id).get(request_id)


async def wait_for_state(exchange: Exchange, request_id: str, *states: str) -> CallbackRequest:
    for _ in range(1200):
        request = await request_state(exchange, request_id)
        if request.state in states:
            return request
        await asyncio.sleep(0.05)
    raise AssertionError(f"callback request never became {states}: {request.state}")


async def new_request(exchange: Exchange) -> CallbackRequest:
    async with exchange.database.session() as session:
        return await CallbackRequests(session, exchange.seeded.tenant_id).add(CallbackRequest(
            number=NUMBER, queue_id=exchange.seeded.queues["support"], source="ivr"))


async def test_a_callback_waits_in_the_queue_then_rings_the_agent_and_dials(
        exchange: Exchange) -> None:
    seeded, voice = exchange.seeded, exchange.voice
    alice, support = seeded.agents["alice"], seeded.queues["support"]
    carrier = Carrier(SCENARIOS / "outbound_customer_answers.xml", exchange.workdir / "carrier")
    phone = await start_phone(exchange.workdir, voice, "alice")
    outbound = OutboundCalls(voice, Trunk(voice.stack, carrier.trunk_config()))
    scheduler = outbound.callbacks
    runtime = await exchange.runtime()
    try:
        request = await new_request(exchange)
        await scheduler.submit(runtime, request)   # "as soon as possible": in line at once
        queued = await request_state(exchange, request.id)
        assert queued.state == "dialling" and queued.task_id is not None
        task = runtime.routing.engine.task(queued.task_id)
        assert task.phase is TaskPhase.WAITING and task.queue_id == support
        assert task.attributes["callback"] is True
        assert task.attributes["callback_number"] == NUMBER
        assert task.attributes["callback_request_id"] == request.id
        assert await scheduler.tick() == 0   # nothing else is due

        await carrier.start()
        await runtime.routing.run(lambda engine: engine.set_status(alice, "available"))
        done = await wait_for_state(exchange, request.id, "done", "failed")
        code, output = await carrier.finish()
        assert code == 0, output
        await phone.wait_for("CALL_CLOSED")
    finally:
        await outbound.stop()
        await carrier.stop()
        await phone.stop()

    assert done.state == "done" and done.attempts == 1 and done.completed_at is not None
    assert done.attributes["attempts"][0]["outcome"] == "answered"
    # Kept when the customer answered, before the call ended (a restart must not redial).
    assert done.attributes["answered_at"] and done.attributes["answered_by"] == alice
    established = await phone.wait_for("CALL_ESTABLISHED")
    assert f"Callback to {NUMBER}" in str(established), established
    for _ in range(200):  # the contact ends in the same breath as the request: give it time
        async with exchange.database.session() as session:
            record = await CallRecords(session, seeded.tenant_id).get(
                done.attributes["attempts"][0]["record_id"])
            contact = await Contacts(session, seeded.tenant_id).get(record.contact_id or "")
        if contact.ended_at is not None:
            break
        await asyncio.sleep(0.05)
    assert (record.direction, record.outcome, record.agent_id) == ("outbound", "answered", alice)
    assert record.details["callback_request_id"] == request.id and record.talk_s > 5
    assert (contact.direction, contact.ended_at is not None) == ("outbound", True)
    assert contact.attributes["callback_request_id"] == request.id
    # The callback's task was the agent's work: it completed, her wrap-up follows.
    assert queued.task_id is not None
    assert runtime.routing.engine.task(queued.task_id).phase is TaskPhase.WRAPPING
    assert loudness(phone.heard()[-1]) > 300


async def test_a_busy_customer_is_tried_again_until_the_request_fails(
        exchange: Exchange) -> None:
    seeded, voice = exchange.seeded, exchange.voice
    alice = seeded.agents["alice"]
    carrier = Carrier(SCENARIOS / "outbound_customer_busy.xml", exchange.workdir / "carrier",
                      calls=2)
    phone = await start_phone(exchange.workdir, voice, "alice")
    outbound = OutboundCalls(voice, Trunk(voice.stack, carrier.trunk_config()),
                             callback_policy=CallbackPolicy(retry_after_s=0, max_attempts=2))
    scheduler = outbound.callbacks
    runtime = await exchange.runtime()
    try:
        await carrier.start()
        await runtime.routing.run(lambda engine: engine.set_status(alice, "available"))
        request = await new_request(exchange)
        assert await scheduler.tick() == 1
        first = await wait_for_state(exchange, request.id, "pending", "failed")
        assert (first.state, first.attempts) == ("pending", 1)
        assert first.attributes["attempts"][0]["sip_status"] == 486
        assert first.due_at is not None and first.task_id is None
        (wrapping,) = runtime.routing.engine.agent(alice).tasks
        await runtime.routing.run(lambda engine: engine.wrap_up(wrapping))
        await phone.wait_for("CALL_CLOSED")

        assert await scheduler.tick() == 1   # due again: a new task, rung and dialled
        failed = await wait_for_state(exchange, request.id, "failed")
        code, output = await carrier.finish()
        assert code == 0, output
        await phone.wait_for("CALL_CLOSED", count=2)
    finally:
        await outbound.stop()
        await carrier.stop()
        await phone.stop()
    assert failed.attempts == 2 and failed.completed_at is not None
    assert [a["outcome"] for a in failed.attributes["attempts"]] == ["busy", "busy"]
    async with exchange.database.session() as session:
        records = await CallRecords(session, seeded.tenant_id).list_all()
    assert sorted(r.outcome for r in records) == ["busy", "busy"]


async def test_callbacks_in_line_at_a_restart_are_put_back_in_line(exchange: Exchange) -> None:
    async def unreachable(offer: CallbackOffer) -> CallbackAttempt:
        raise AssertionError("no agent is available: nothing is offered")

    before = CallbackScheduler(exchange.database, exchange.center, lambda _: unreachable)
    request = await new_request(exchange)
    await before.submit(await exchange.runtime(), request)
    old_task = (await request_state(exchange, request.id)).task_id
    assert old_task is not None
    await before.stop()
    await exchange.center.stop()

    # The server restarts: the engine restores the waiting task from the database.
    center = ContactCenter(exchange.database, WallClock(), Bus())
    await center.start()
    try:
        engine = (await center.tenant(exchange.seeded.tenant_id)).routing.engine
        assert engine.task(old_task).phase is TaskPhase.WAITING
        restarted = CallbackScheduler(exchange.database, center, lambda _: unreachable)
        assert await restarted.recover() == 1
        pending = await request_state(exchange, request.id)
        assert (pending.state, pending.task_id, pending.attempts) == ("pending", None, 0)
        with contextlib.suppress(NotFound):
            assert engine.task(old_task).phase is TaskPhase.ENDED
        # Cancelled, not abandoned: the customer did not leave the line.
        assert engine.queue_figures(request.queue_id, "voice").abandoned == 0
        assert await restarted.tick() == 1
        queued = await request_state(exchange, request.id)
        assert queued.state == "dialling" and queued.task_id not in (None, old_task)
        assert await restarted.recover() == 0   # its own follower is alive
        await restarted.stop()
    finally:
        await center.stop()


async def test_a_callback_answered_before_a_restart_is_not_dialled_again(
        exchange: Exchange) -> None:
    alice = exchange.seeded.agents["alice"]
    talking = asyncio.Event()

    async def answered_then_lost(offer: CallbackOffer) -> CallbackAttempt:
        assert await offer.accept()
        assert offer.customer_answered is not None
        await offer.customer_answered()
        talking.set()
        await asyncio.Event().wait()  # the call is up when the process dies
        raise AssertionError("unreachable")

    before = CallbackScheduler(exchange.database, exchange.center,
                               lambda _: answered_then_lost)
    runtime = await exchange.runtime()
    await runtime.routing.run(lambda engine: engine.set_status(alice, "available"))
    request = await new_request(exchange)
    await before.submit(runtime, request)
    await asyncio.wait_for(talking.wait(), 20)
    task_id = (await request_state(exchange, request.id)).task_id
    assert task_id is not None
    await before.stop()
    await exchange.center.stop()

    async def never(offer: CallbackOffer) -> CallbackAttempt:
        raise AssertionError("the customer was called back already")

    center = ContactCenter(exchange.database, WallClock(), Bus())
    await center.start()
    try:
        engine = (await center.tenant(exchange.seeded.tenant_id)).routing.engine
        assert engine.task(task_id).agent_id == alice
        restarted = CallbackScheduler(exchange.database, center, lambda _: never)
        assert await restarted.recover() == 1
        done = await request_state(exchange, request.id)
        assert (done.state, done.attempts, done.task_id) == ("done", 1, None)
        assert done.attributes["attempts"][0]["outcome"] == "answered"
        assert done.attributes["attempts"][0]["agent_id"] == alice
        # alice talked with the customer: the task completed and her wrap-up follows.
        assert engine.task(task_id).phase is TaskPhase.WRAPPING
        assert await restarted.tick() == 0
        await restarted.stop()
    finally:
        await center.stop()


async def test_a_number_that_cannot_be_dialled_fails_the_request_at_once(
        exchange: Exchange) -> None:
    seeded, voice = exchange.seeded, exchange.voice
    alice = seeded.agents["alice"]
    outbound = OutboundCalls(voice, Trunk(voice.stack, TrunkConfig(uri="sip:omnicc@127.0.0.1:9")))
    runtime = await exchange.runtime()
    try:
        async with exchange.database.session() as session:
            request = await CallbackRequests(session, seeded.tenant_id).add(CallbackRequest(
                number="anonymous", queue_id=seeded.queues["support"], source="ivr"))
        await outbound.callbacks.submit(runtime, request)
        task_id = (await request_state(exchange, request.id)).task_id
        await runtime.routing.run(lambda engine: engine.set_status(alice, "available"))
        failed = await wait_for_state(exchange, request.id, "failed")
    finally:
        await outbound.stop()
    assert failed.attempts == 1 and failed.attributes["last_outcome"] == "invalid_number"
    assert task_id is not None
    with contextlib.suppress(NotFound):
        assert runtime.routing.engine.task(task_id).phase is TaskPhase.ENDED
    assert not runtime.routing.engine.agent(alice).tasks   # alice is free for the next one
    async with exchange.database.session() as session:
        assert await CallRecords(session, seeded.tenant_id).list_all() == []

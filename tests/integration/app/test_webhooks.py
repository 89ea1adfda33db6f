"""Outgoing webhooks against a real HTTP receiver on 127.0.0.1, on SQLite and PostgreSQL:
signed, retried with backoff, one idempotency key per (subscription, event), and nothing lost
or doubled across a restart (issue 3, part 8)."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import select

from omnicc.app.routing import WallClock
from omnicc.app.webhooks import DeliveryPolicy, WebhookDispatcher, new_client, send_test
from omnicc.bus import Bus, Notice
from omnicc.core.clock import ManualClock
from omnicc.store.database import Database
from omnicc.store.repositories import Tenants
from omnicc.store.repositories.events import Events, NewEvent, WebhookSubscriptions
from omnicc.store.tables import WebhookDelivery, WebhookSubscription
from tests.integration.webhook_receiver import Receiver, running_receiver

pytestmark = pytest.mark.anyio

START_S = 1_780_000_000.0
SECRET = "whsec_test-secret"
POLICY = DeliveryPolicy(backoff_s=(10, 30), max_attempts=4, jitter=0, poll_s=30)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from running_receiver(SECRET)


async def set_up(database: Database, url: str, event_types: list[str] | None = None,
                 ) -> tuple[str, str]:
    async with database.session() as session:
        tenant = (await Tenants(session).create("acme", "Acme")).id
        subscription = await WebhookSubscriptions(session, tenant).add(WebhookSubscription(
            url=url, secret=SECRET, event_types=event_types or ["*"]))
    return tenant, subscription.id


async def append(database: Database, tenant: str, *types: str) -> list[int]:
    async with database.session() as session:
        rows = await Events(session, tenant).append(
            [NewEvent(type=t, payload={"task_id": f"t{i}"}) for i, t in enumerate(types)])
        return [row.seq for row in rows]


async def deliveries(database: Database) -> list[WebhookDelivery]:
    async with database.session() as session:
        statement = select(WebhookDelivery).order_by(WebhookDelivery.event_seq)
        return list((await session.execute(statement)).scalars())


async def test_signed_deliveries_are_retried_with_backoff_under_one_key(
        database: Database, receiver: Receiver) -> None:
    tenant, subscription = await set_up(database, receiver.url, ["task.*"])
    seqs = await append(database, tenant, "task.created", "agent.status_changed", "task.ended")
    receiver.fail_first = 2
    clock = ManualClock(START_S)
    dispatcher = WebhookDispatcher(database, tenant, "acme", clock, policy=POLICY)
    keys = {f"{subscription}.{seqs[0]}", f"{subscription}.{seqs[2]}"}
    async with new_client(POLICY) as client:
        await dispatcher.step(client)
        rows = await deliveries(database)
        assert {row.idempotency_key for row in rows} == keys  # the filter left one out
        assert all((r.state, r.attempts, r.last_status_code) == ("pending", 1, 503) for r in rows)
        assert {r.next_attempt_at for r in rows} == {datetime.fromtimestamp(START_S + 10, UTC)}

        await dispatcher.step(client)  # nothing is due yet
        assert len(receiver.requests) == 2
        clock.advance(10)
        await dispatcher.step(client)
        assert {r.next_attempt_at for r in await deliveries(database)} == {
            datetime.fromtimestamp(START_S + 40, UTC)}
        clock.advance(30)
        await dispatcher.step(client)
        clock.advance(3600)
        await dispatcher.step(client)

    rows = await deliveries(database)
    assert [(r.state, r.attempts, r.last_error) for r in rows] == [("delivered", 3, None)] * 2
    assert receiver.bad_signatures == 0
    assert {key: receiver.tries(key) for key in keys} == dict.fromkeys(keys, 3)
    assert receiver.accepted == Counter(dict.fromkeys(keys, 1))
    bodies = {key: envelope for key, envelope in receiver.requests}
    first = bodies[f"{subscription}.{seqs[0]}"]
    assert first["type"] == "task.created" and first["seq"] == seqs[0]
    assert first["tenant"] == "acme" and first["data"] == {"task_id": "t0"}
    assert datetime.fromisoformat(first["at"]).tzinfo is not None


async def test_an_unreachable_or_redirecting_receiver_ends_failed(
        database: Database, receiver: Receiver) -> None:
    tenant, _ = await set_up(database, receiver.url.replace("/hook", "/moved"))
    await append(database, tenant, "task.created")
    clock = ManualClock(START_S)
    dispatcher = WebhookDispatcher(database, tenant, "acme", clock, policy=POLICY)
    async with new_client(POLICY) as client:
        for _ in range(POLICY.max_attempts + 2):
            await dispatcher.step(client)
            clock.advance(3600)
    (row,) = await deliveries(database)
    assert (row.state, row.attempts, row.last_status_code) == ("failed", 4, 302)
    assert receiver.requests == []  # the redirect was not followed


async def test_a_restart_loses_nothing_and_makes_no_new_key(
        database: Database, receiver: Receiver) -> None:
    tenant, subscription = await set_up(database, receiver.url)
    seqs = await append(database, tenant, *["task.created"] * 5)
    clock = ManualClock(START_S)
    receiver.fail_first = 1
    first = WebhookDispatcher(database, tenant, "acme", clock, policy=POLICY)
    async with new_client(POLICY) as client:
        await first.fan_out()
        await first.deliver_due(client)  # every first attempt fails
    # The process dies here; a new one starts from the store alone, and more events follow.
    seqs += await append(database, tenant, "task.ended", "task.ended")
    clock.advance(10)
    second = WebhookDispatcher(database, tenant, "acme", clock, policy=POLICY)
    async with new_client(POLICY) as client:
        await second.step(client)
        clock.advance(30)
        await second.step(client)
    keys = {f"{subscription}.{seq}" for seq in seqs}
    rows = await deliveries(database)
    assert sorted(r.idempotency_key for r in rows) == sorted(keys)
    assert all(r.state == "delivered" for r in rows)
    assert receiver.accepted == Counter(dict.fromkeys(keys, 1))
    async with database.session() as session:
        assert (await WebhookSubscriptions(session, tenant).get(subscription)).cursor_seq == 7


async def test_a_crash_during_a_post_resends_under_the_same_key(
        database: Database, receiver: Receiver) -> None:
    tenant, subscription = await set_up(database, receiver.url)
    (seq,) = await append(database, tenant, "task.created")
    clock = ManualClock(START_S)
    receiver.hold = threading.Event()
    first = WebhookDispatcher(database, tenant, "acme", clock, policy=POLICY)
    async with new_client(POLICY) as client:
        step = asyncio.create_task(first.step(client))
        assert await asyncio.to_thread(receiver.arrived.wait, 10)
        step.cancel()  # killed while the receiver works on the event
        with pytest.raises(asyncio.CancelledError):
            await step
    receiver.hold.set()
    second = WebhookDispatcher(database, tenant, "acme", clock, policy=POLICY)
    async with new_client(POLICY) as client:
        await second.step(client)
    (row,) = await deliveries(database)
    assert (row.state, row.idempotency_key) == ("delivered", f"{subscription}.{seq}")
    # At least once: the receiver saw the event twice, under one key it can drop repeats by.
    assert [key for key, _ in receiver.requests] == [row.idempotency_key] * 2


async def test_a_disabled_subscription_pauses_and_resumes_where_it_was(
        database: Database, receiver: Receiver) -> None:
    tenant, subscription = await set_up(database, receiver.url)
    async with database.session() as session:
        (await WebhookSubscriptions(session, tenant).get(subscription)).is_enabled = False
    seqs = await append(database, tenant, "task.created", "task.ended")
    dispatcher = WebhookDispatcher(database, tenant, "acme", ManualClock(START_S), policy=POLICY)
    async with new_client(POLICY) as client:
        await dispatcher.step(client)
        assert await deliveries(database) == []
        async with database.session() as session:
            (await WebhookSubscriptions(session, tenant).get(subscription)).is_enabled = True
        await dispatcher.step(client)
    assert receiver.accepted == Counter({f"{subscription}.{seq}": 1 for seq in seqs})


async def test_the_running_dispatcher_wakes_on_a_committed_event(
        database: Database, receiver: Receiver) -> None:
    tenant, subscription = await set_up(database, receiver.url)
    bus = Bus()
    policy = DeliveryPolicy(poll_s=60)  # far longer than the wait below: only the bus wakes it
    running = asyncio.create_task(
        WebhookDispatcher(database, tenant, "acme", WallClock(), bus, policy=policy).run())
    try:
        while not bus.followers(tenant, "events"):
            await asyncio.sleep(0.01)
        (seq,) = await append(database, tenant, "task.created")
        bus.publish(tenant, ["events"], Notice("task.created", {"seq": seq}))
        assert await asyncio.to_thread(receiver.arrived.wait, 10)
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    assert [key for key, _ in receiver.requests] == [f"{subscription}.{seq}"]


async def test_a_test_event_is_signed_and_reported(
        database: Database, receiver: Receiver) -> None:
    tenant, subscription = await set_up(database, receiver.url)
    async with database.session() as session:
        row = await WebhookSubscriptions(session, tenant).get(subscription)
    key, attempt = await send_test(row, "acme", WallClock())
    assert (attempt.is_delivered, attempt.status_code) == (True, 200)
    ((seen, envelope),) = receiver.requests
    assert seen == key and envelope["type"] == "webhook.test"
    receiver.status = 500
    assert (await send_test(row, "acme", WallClock()))[1].error == "HTTP 500"
    assert await deliveries(database) == []


async def test_a_refused_connection_is_retried(database: Database) -> None:
    tenant, _ = await set_up(database, "http://127.0.0.1:9/hook")
    await append(database, tenant, "task.created")
    dispatcher = WebhookDispatcher(database, tenant, "acme", ManualClock(START_S), policy=POLICY)
    async with httpx.AsyncClient(timeout=5) as client:
        await dispatcher.step(client)
    (row,) = await deliveries(database)
    assert (row.state, row.attempts, row.last_status_code) == ("pending", 1, None)
    assert row.last_error and row.last_error.startswith("ConnectError")

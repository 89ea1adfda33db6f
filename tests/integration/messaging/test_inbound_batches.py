"""Inbound messages group-committed on a real database (SQLite and PostgreSQL): messages
received at the same moment share a transaction and an engine command, copies of one message
in a batch are stored once, a message refused alone or failing in the store fails alone, and
a batch whose commit fails acknowledges nothing (the provider's retry stores it once)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from omnicc.app.messaging import MessagingDesk, Received
from omnicc.app.routing import RoutingService, WallClock
from omnicc.bus import Bus
from omnicc.channels.messaging.shape import InboundMessage
from omnicc.core.errors import InvalidConfiguration
from omnicc.store.database import Database
from omnicc.store.repositories import MessagingAccounts, Queues, RoutingPolicies, Tenants
from omnicc.store.tables import (
    Customer,
    Message,
    MessagingAccount,
    MessagingMessage,
    MessagingThread,
    Queue,
    RoutingPolicy,
    Task,
)

pytestmark = pytest.mark.anyio


@dataclass
class Desk:
    desk: MessagingDesk
    routing: RoutingService
    database: Database
    sms: str
    """A Twilio SMS account with a queue."""
    unrouted: str
    """A Telegram account without one."""


@pytest.fixture
async def desk(database: Database) -> AsyncIterator[Desk]:
    async with database.session() as session:
        tenant = await Tenants(session).create("acme", "Acme")
        queue = await Queues(session, tenant.id).add(Queue(name="sms", config={}))
        accounts = MessagingAccounts(session, tenant.id)
        sms = await accounts.add(MessagingAccount(
            name="SMS", provider="twilio", channel="sms", queue_id=queue.id,
            address="+15005550006"))
        unrouted = await accounts.add(MessagingAccount(
            name="Bot", provider="telegram", channel="telegram", queue_id=None,
            address="bot"))
    routing = RoutingService(database, tenant.id, WallClock())
    await routing.start()
    yield Desk(MessagingDesk(database, tenant.id, routing, Bus()), routing, database, sms.id,
               unrouted.id)


def sms(number: int, peer: int) -> InboundMessage:
    return InboundMessage(provider_message_id=f"SM{number}", peer=f"+35840{peer:07d}",
                          text=f"message {number}")


async def count(database: Database, table: Any, *where: Any) -> int:
    async with database.session() as session:
        statement = select(func.count()).select_from(table)
        return int((await session.execute(statement.where(*where) if where else statement))
                   .scalar_one())


async def test_a_burst_shares_transactions_and_copies_are_stored_once(desk: Desk) -> None:
    # 30 messages from 10 customers, each sent twice at once (a provider's quick retry).
    messages = [sms(number, number % 10) for number in range(30)]
    received = await asyncio.gather(*(desk.desk.receive(desk.sms, message)
                                      for message in messages for _ in range(2)))
    firsts, copies = received[0::2], received[1::2]
    assert all(r.is_new for r in firsts) and not any(r.is_new for r in copies)
    assert [r.message_id for r in firsts] == [r.message_id for r in copies]
    assert desk.desk._inbox.commits < len(received) / 4  # batches, not one commit each
    database = desk.database
    assert await count(database, MessagingMessage) == 30
    assert await count(database, Message) == 30
    assert await count(database, Customer) == 10
    assert await count(database, MessagingThread) == 10
    # One task per customer: a customer's later messages join the task their first opened,
    # in the same batch or a later one.
    assert await count(database, Task) == 10
    assert len({r.task_id for r in firsts if r.task_id}) == 10
    by_peer: dict[str, set[str]] = {}
    for message, result in zip(messages, firsts, strict=True):
        by_peer.setdefault(message.peer, set()).add(result.conversation_id)
    assert all(len(conversations) == 1 for conversations in by_peer.values())
    async with database.session() as session:
        threads = (await session.execute(select(MessagingThread))).scalars().all()
        tasks = {t.id: t for t in (await session.execute(select(Task))).scalars()}
    assert all(tasks[t.task_id or ""].conversation_id == t.conversation_id for t in threads)
    assert {t.id for t in desk.routing.engine.waiting_tasks(tasks[threads[0].task_id or ""]
                                                            .queue_id or "")} == set(tasks)
    # The provider sends one again much later: stored before, nothing new.
    again = await desk.desk.receive(desk.sms, messages[7])
    assert (again.is_new, again.message_id) == (False, firsts[7].message_id)
    assert await count(database, MessagingMessage) == 30
    # A customer writes again: their thread's last message time moves, its open task stays.
    thread = next(t for t in threads if t.peer == messages[3].peer)
    later = await desk.desk.receive(desk.sms, sms(99, 3))
    assert later.is_new and later.task_id is None
    assert later.conversation_id == thread.conversation_id
    async with database.session() as session:
        moved = await session.get(MessagingThread, thread.id, populate_existing=True)
    assert moved is not None and moved.task_id == thread.task_id
    assert moved.last_inbound_at is not None and thread.last_inbound_at is not None
    assert moved.last_inbound_at > thread.last_inbound_at


async def test_a_message_without_a_queue_fails_alone(desk: Desk) -> None:
    telegram = InboundMessage(provider_message_id="1:1", peer="1", text="hello")
    outcomes = await asyncio.gather(
        desk.desk.receive(desk.sms, sms(1, 1)), desk.desk.receive(desk.unrouted, telegram),
        desk.desk.receive(desk.sms, sms(2, 2)), return_exceptions=True)
    assert isinstance(outcomes[1], InvalidConfiguration)
    assert isinstance(outcomes[0], Received) and isinstance(outcomes[2], Received)
    assert await count(desk.database, MessagingMessage) == 2
    assert await count(desk.database, Task) == 2


async def test_a_message_the_store_refuses_fails_alone(desk: Desk) -> None:
    """Another process stored one of the batch's messages after the batch read the store:
    the unique provider id fails the transaction, the batch is written again one message at
    a time, and that message is answered as the duplicate it is."""
    await desk.desk.receive(desk.sms, sms(5, 5))
    read = desk.desk._prefetch

    async def stale(*args: Any) -> Any:  # as if read before the other process wrote
        inbox = await read(*args)
        inbox.stored = {key: value for key, value in inbox.stored.items() if key[1] != "SM5"}
        return inbox

    desk.desk._prefetch = stale  # type: ignore[method-assign]
    outcomes = await asyncio.gather(*(desk.desk.receive(desk.sms, sms(number, number))
                                      for number in (4, 5, 6)))
    assert [o.is_new for o in outcomes] == [True, False, True]
    assert await count(desk.database, MessagingMessage) == 3
    assert await count(desk.database, Task) == 3
    assert len(list(desk.routing.engine.tasks())) == 3  # memory as the store has it


@contextmanager
def commits_fail() -> Iterator[None]:
    """Every transaction that wrote fails at its commit (the disk went away)."""
    def wrote(session: Session, _context: Any) -> None:
        session.info["wrote"] = True

    def refuse(session: Session) -> None:
        if session.info.pop("wrote", False):
            raise OSError("the disk went away")

    event.listen(Session, "after_flush", wrote)
    event.listen(Session, "before_commit", refuse)
    try:
        yield
    finally:
        event.remove(Session, "before_commit", refuse)
        event.remove(Session, "after_flush", wrote)


async def test_nothing_is_acknowledged_unless_committed(desk: Desk) -> None:
    messages = [sms(number, number) for number in range(5)]
    with commits_fail():
        outcomes = await asyncio.gather(*(desk.desk.receive(desk.sms, message)
                                          for message in messages), return_exceptions=True)
    assert all(isinstance(outcome, OSError) for outcome in outcomes)
    assert await count(desk.database, MessagingMessage) == 0
    assert list(desk.routing.engine.tasks()) == []
    # The provider retries (it got no 200): each is stored and routed once.
    outcomes = await asyncio.gather(*(desk.desk.receive(desk.sms, message)
                                      for message in messages))
    assert all(outcome.is_new for outcome in outcomes)
    assert await count(desk.database, MessagingMessage) == 5
    assert await count(desk.database, Task) == 5


async def test_a_batch_follows_the_queues_routing_policy(desk: Desk) -> None:
    """Tasks made together (`RoutingService.create_tasks`) follow their queue's policy as a
    task made alone does."""
    async with desk.database.session() as session:
        tenant_id = desk.desk.tenant_id
        account = await MessagingAccounts(session, tenant_id).get(desk.sms)
        queue = await Queues(session, tenant_id).get(account.queue_id or "")
        policy = await RoutingPolicies(session, tenant_id).add(RoutingPolicy(
            name="account manager first",
            steps=[{"queue": queue.id, "agents": ["preferred"], "timeout_s": 60.0},
                   {"queue": queue.id}]))
        queue.policy_id = policy.id
        await Queues(session, tenant_id).save(queue)
    await desk.routing.reload()
    await asyncio.gather(*(desk.desk.receive(desk.sms, sms(number, number))
                           for number in range(3)))
    async with desk.database.session() as session:
        tasks = (await session.execute(select(Task))).scalars().all()
    assert [task.policy_id for task in tasks] == [policy.id] * 3
    assert desk.desk._inbox.commits == 1

"""The routing use case on a real database: committed before acknowledged, continued after a
restart in the same order, nothing lost or doubled (issue 3, item 2)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from omnicc.app.routing import RoutingService
from omnicc.core import events as ev
from omnicc.core.clock import ManualClock
from omnicc.core.errors import NotFound
from omnicc.core.model import QueueConfig, TaskRequest
from omnicc.store.database import Database
from omnicc.store.repositories import Agents, Queues, Tasks, Tenants
from omnicc.store.repositories.events import Events
from omnicc.store.tables import Agent, Event, Queue, Task

pytestmark = pytest.mark.anyio

START_S = 1_780_000_000.0


async def set_up(database: Database) -> tuple[str, str, str]:
    async with database.session() as session:
        tenant = (await Tenants(session).create("acme", "Acme")).id
        queue = await Queues(session, tenant).add(Queue(name="support", config={"wrap_up_s": 30}))
        agent = await Agents(session, tenant).add(Agent(name="Ann", capacity={"voice": 1}))
    return tenant, queue.id, agent.id


async def test_a_restart_continues_every_task_in_order(database: Database) -> None:
    tenant, queue, ann = await set_up(database)
    clock = ManualClock(START_S)
    service = RoutingService(database, tenant, clock)
    await service.start()
    await service.run(lambda engine: engine.set_status(ann, "available"))
    created = []
    for priority in (0, 0, 5, 0):
        clock.advance(1)
        events = await service.create_task(
            TaskRequest(channel="voice", queue=queue, priority=priority))
        created.append(events[0].task_id)  # type: ignore[attr-defined]
    first = created[0]
    (offer_id,) = service.engine.agent(ann).offers
    await service.run(lambda engine: engine.accept(offer_id))
    expected = [t.id for t in service.engine.waiting_tasks(queue)]
    assert expected == [created[2], created[1], created[3]]
    figures = service.engine.queue_figures(queue)
    assert (figures.offered, figures.handled) == (4, 1)

    clock.advance(5)
    after = RoutingService(database, tenant, clock)  # the process was killed and started again
    await after.start()
    assert [t.id for t in after.engine.waiting_tasks(queue)] == expected
    assert after.engine.task(first).agent_id == ann
    assert after.engine.agent(ann).status.name == "available"
    restored = after.engine.queue_figures(queue)
    assert (restored.offered, restored.handled, restored.asa_s) == (4, 1, figures.asa_s)

    events = await after.run(lambda engine: engine.complete(first))
    offered = [e for e in events if isinstance(e, ev.OfferCreated)]
    assert [e.task_id for e in offered] == []  # wrap-up holds the agent for 30 s
    clock.advance(30)
    events = await after.advance()
    assert [e.task_id for e in events if isinstance(e, ev.OfferCreated)] == [created[2]]

    async with database.session() as session:
        seqs = list((await session.execute(
            select(Event.seq).where(Event.tenant_id == tenant).order_by(Event.seq))).scalars())
        assert seqs == list(range(1, len(seqs) + 1))
        assert len(await Tasks(session, tenant).list_all()) == 4
        row = await Tasks(session, tenant).get(first)
        assert (row.phase, row.outcome) == ("ended", "completed")
        assert await Events(session, tenant).last_seq() == seqs[-1]


async def test_a_failed_commit_leaves_memory_as_the_store_has_it(database: Database) -> None:
    tenant, queue, _ = await set_up(database)
    clock = ManualClock(START_S)
    service = RoutingService(database, tenant, clock)
    await service.start()
    async with database.session() as session:
        before = (await session.execute(select(func.count()).select_from(Task))).scalar_one()
    # A task on a queue the store does not know cannot be committed (foreign key in the tenant).
    with pytest.raises(NotFound, match="ghost"):
        await service.run(lambda engine: (
            engine.configure_queue(QueueConfig(id="ghost"))
            + engine.create_task(TaskRequest(channel="voice", queue="ghost", id="x"))))
    assert [q.config.id for q in service.engine.queues()] == [queue]
    async with database.session() as session:
        after = (await session.execute(select(func.count()).select_from(Task))).scalar_one()
    assert after == before
    await service.create_task(TaskRequest(channel="voice", queue=queue))


async def test_timers_fire_on_the_wall_clock(database: Database) -> None:
    import anyio

    from omnicc.app.routing import RoutingTimers, WallClock

    async with database.session() as session:
        tenant = (await Tenants(session).create("wall", "Wall")).id
        queue = await Queues(session, tenant).add(
            Queue(name="fast", config={"offer_timeout_s": 0.2, "reoffer_delay_s": 0}))
        for name in ("Ann", "Bo"):
            await Agents(session, tenant).add(Agent(name=name, capacity={"voice": 1},
                                                    status="available"))
    clock = WallClock()
    service = RoutingService(database, tenant, clock)
    await service.start()
    events = await service.create_task(TaskRequest(channel="voice", queue=queue.id))
    task_id = events[0].task_id  # type: ignore[attr-defined]
    first = set(service.engine.task(task_id).offers)
    assert first
    async def stored_types() -> list[str]:
        async with database.session() as session:
            return list((await session.execute(
                select(Event.type).where(Event.tenant_id == tenant).order_by(Event.seq)
            )).scalars())

    async with anyio.create_task_group() as group:
        group.start_soon(RoutingTimers(service, clock, max_sleep_s=0.05).run)
        with anyio.fail_after(10):  # generous: the offer times out after 0.2 s
            # Wait for the re-offer to be committed, not just decided: the engine changes
            # before its events are stored, and cancelling then would cut the commit short.
            while set(service.engine.task(task_id).offers) in (first, set()) or \
                    (await stored_types()).count("offer.created") < 2:
                await anyio.sleep(0.05)
        group.cancel_scope.cancel()
    stored = await stored_types()
    assert "offer.timed_out" in stored
    assert stored.count("offer.created") >= 2


async def test_commands_run_together_share_a_commit_and_a_bad_one_fails_alone(
        database: Database) -> None:
    import asyncio

    tenant, queue, _ = await set_up(database)
    service = RoutingService(database, tenant, ManualClock(START_S))
    await service.start()
    ids = [f"t{n:02}" for n in range(12)]
    commits = service.commits
    await asyncio.gather(*(service.create_task(TaskRequest(channel="voice", queue=queue, id=i))
                           for i in ids))
    assert service.commits - commits < len(ids)  # grouped: one transaction for many commands
    assert [t.id for t in service.engine.waiting_tasks(queue)] == ids

    # A command whose rows cannot be stored (a queue the store does not know), among good ones:
    # the batch fails, is run again one command per transaction, and only the bad one fails.
    later = [f"u{n:02}" for n in range(6)]
    results = await asyncio.gather(
        *(service.create_task(TaskRequest(channel="voice", queue=queue, id=i)) for i in later[:3]),
        service.run(lambda engine: (
            engine.configure_queue(QueueConfig(id="ghost"))
            + engine.create_task(TaskRequest(channel="voice", queue="ghost", id="x")))),
        *(service.create_task(TaskRequest(channel="voice", queue=queue, id=i)) for i in later[3:]),
        return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["list"] * 3 + ["NotFound"] + ["list"] * 3
    assert [q.config.id for q in service.engine.queues()] == [queue]
    assert [t.id for t in service.engine.waiting_tasks(queue)] == ids + later

    restarted = RoutingService(database, tenant, ManualClock(START_S))
    await restarted.start()
    assert [t.id for t in restarted.engine.waiting_tasks(queue)] == ids + later
    async with database.session() as session:
        seqs = list((await session.execute(
            select(Event.seq).where(Event.tenant_id == tenant).order_by(Event.seq))).scalars())
        assert seqs == list(range(1, len(seqs) + 1))
        assert {t.id for t in await Tasks(session, tenant).list_all()} == set(ids + later)

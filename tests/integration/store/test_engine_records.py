"""A routing engine rebuilt from the store continues every open task in the same order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from omnicc.core.clock import ManualClock
from omnicc.core.engine import Engine
from omnicc.core.model import FinalAction, Strategy, TaskPhase
from omnicc.store.database import Database
from omnicc.store.engine_records import load_routing
from omnicc.store.repositories import Agents, Queues, RoutingPolicies, Tasks, Tenants
from omnicc.store.tables import Agent, Queue, RoutingPolicy, Task

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


async def test_an_engine_is_rebuilt_from_the_store(database: Database) -> None:
    async with database.session() as session:
        tenant = (await Tenants(session).create("acme", "Acme")).id
        support = await Queues(session, tenant).add(
            Queue(
                name="support",
                config={
                    "strategy": "most_proficient",
                    "offer_timeout_s": 30,
                    "proficiency_skills": ["finnish"],
                },
            )
        )
        await Queues(session, tenant).add(Queue(name="closed", is_enabled=False))
        policy = await RoutingPolicies(session, tenant).add(
            RoutingPolicy(
                name="vip",
                steps=[
                    {"queue": support.id, "timeout_s": 60},
                    {"queue": support.id, "relax_proficiency": 1},
                ],
                final_action="callback",
            )
        )
        ann = await Agents(session, tenant).add(
            Agent(name="Ann", skills={"finnish": 4}, capacity={"chat": 2})
        )
        await Agents(session, tenant).add(Agent(name="Bo"))
        tasks = Tasks(session, tenant)
        # Created in this order; enqueued in another (a later task may have waited longer).
        for task_id, waited_s in [("a", 50), ("b", 70), ("c", 10), ("d", 30)]:
            await tasks.add(
                Task(
                    id=task_id,
                    channel="chat",
                    queue_id=support.id,
                    created_at=T0,
                    enqueued_at=T0 - timedelta(seconds=waited_s),
                )
            )
        await tasks.add(
            Task(
                id="e",
                channel="chat",
                policy_id=policy.id,
                phase="offered",
                agent_id=ann.id,
                step_index=1,
                step_entered_at=T0 - timedelta(seconds=5),
                enqueued_at=T0 - timedelta(seconds=90),
            )
        )
        await tasks.add(
            Task(
                id="f",
                channel="chat",
                queue_id=support.id,
                phase="assigned",
                agent_id=ann.id,
                accepted_at=T0 - timedelta(seconds=20),
            )
        )
        await tasks.add(
            Task(id="g", channel="chat", queue_id=support.id, phase="ended", outcome="completed")
        )

    async with database.session() as session:
        snapshot = await load_routing(session, tenant)

    assert [queue.name for queue in snapshot.queues] == ["support"]
    assert snapshot.queues[0].strategy is Strategy.MOST_PROFICIENT
    assert snapshot.queues[0].proficiency_skills == ("finnish",)
    assert snapshot.policies[0].final_action is FinalAction.CALLBACK
    assert snapshot.policies[0].steps[1].relax_proficiency == 1
    assert {agent.name: dict(agent.capacity) for agent in snapshot.agents}["Ann"] == {"chat": 2}
    assert [task.request.id for task in snapshot.tasks] == ["a", "b", "c", "d", "e", "f"]
    assert snapshot.tasks[4].phase is TaskPhase.WAITING  # its pending offer is not restored
    assert snapshot.tasks[4].agent_id is None

    engine = Engine(ManualClock(T0.timestamp()))
    for queue in snapshot.queues:
        engine.configure_queue(queue)
    for routing_policy in snapshot.policies:
        engine.configure_policy(routing_policy)
    for agent in snapshot.agents:
        engine.configure_agent(agent)
    engine.restore(snapshot.tasks)
    waiting = [task.id for task in engine.waiting_tasks(support.id)]
    assert waiting == ["e", "b", "a", "d", "c"]  # longest waiting first
    assert engine.task("f").agent_id == ann.id

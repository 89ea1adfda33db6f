"""Agent-initiated work (an outbound call) on a real database: the task row is assigned at
once, and a restarted engine gives it back to its agent with the same capacity rules."""

from __future__ import annotations

import pytest

from omnicc.app.routing import RoutingService
from omnicc.core import events as ev
from omnicc.core.clock import ManualClock
from omnicc.core.errors import Conflict
from omnicc.core.model import TaskPhase, TaskRequest
from omnicc.store.database import Database
from omnicc.store.repositories import Tasks

from .test_routing_service import START_S, set_up

pytestmark = pytest.mark.anyio


async def test_the_outbound_task_is_stored_and_restored(database: Database) -> None:
    tenant, queue, ann = await set_up(database)
    clock = ManualClock(START_S)
    service = RoutingService(database, tenant, clock)
    await service.start()
    await service.run(lambda engine: engine.set_status(ann, "available"))
    events = await service.create_task(TaskRequest(channel="voice", queue=queue, agent_id=ann,
                                                   attributes={"number": "+358401234567"}))
    task_id = events[0].task_id  # type: ignore[attr-defined]
    assert [e.type for e in events][:2] == ["task.created", "task.assigned"]
    async with database.session() as session:
        row = await Tasks(session, tenant).get(task_id)
        assert (row.phase, row.agent_id, row.queue_id) == ("assigned", ann, queue)
        assert row.attributes["direction"] == "outbound"
        assert row.accepted_at is not None

    clock.advance(20)
    after = RoutingService(database, tenant, clock)  # the process was killed and started again
    await after.start()
    task = after.engine.task(task_id)
    assert (task.phase, task.agent_id, task.initiated_by) == (TaskPhase.ASSIGNED, ann, ann)
    inbound = await after.create_task(TaskRequest(channel="voice", queue=queue))
    assert not [e for e in inbound if isinstance(e, ev.OfferCreated)]
    with pytest.raises(Conflict):
        await after.create_task(TaskRequest(channel="voice", queue=queue, agent_id=ann))
    figures = after.engine.queue_figures(queue)
    assert (figures.offered, figures.handled) == (1, 0)  # the waiting call only

    completed = await after.run(lambda engine: engine.complete(task_id))
    assert [e.type for e in completed] == ["task.completed", "agent.status_changed"]
    ended = await after.run(lambda engine: engine.wrap_up(task_id, "sale"))
    assert any(isinstance(e, ev.OfferCreated) and e.agent_id == ann for e in ended)
    async with database.session() as session:
        row = await Tasks(session, tenant).get(task_id)
        assert (row.phase, row.outcome) == ("ended", "completed")

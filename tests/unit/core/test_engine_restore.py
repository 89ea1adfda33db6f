"""Restart: an engine rebuilt from the open tasks continues in the same order (issue 3, item 2)."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from omnicc.core import events as ev
from omnicc.core.engine import Engine
from omnicc.core.errors import Conflict, NotFound
from omnicc.core.model import (
    INITIATED_BY,
    AgentConfig,
    RestoredTask,
    TaskPhase,
    TaskRequest,
)

from .conftest import Desk
from .test_engine_figures_events import busy_desk
from .test_engine_figures_events import configure_center as configure


def open_tasks_of(engine: Engine) -> list[RestoredTask]:
    """What the store keeps of each open task; a pending offer is not kept."""
    restored = []
    for task in engine.tasks():
        phase = TaskPhase.WAITING if task.phase is TaskPhase.OFFERED else task.phase
        restored.append(RestoredTask(
            request=TaskRequest(channel=task.channel, policy=task.policy.id, id=task.id,
                                priority=task.priority, attributes=task.attributes,
                                required_skills=task.required_skills,
                                conversation_id=task.conversation_id,
                                agent_id=_text(task.attributes.get(INITIATED_BY))),
            seq=task.seq,
            created_at=task.created_at,
            enqueued_at=task.enqueued_at,
            phase=phase,
            step_index=task.step_index,
            agent_id=task.agent_id if phase is not TaskPhase.WAITING else None,
            accepted_at=task.accepted_at,
            completed_at=task.completed_at,
            transferred=task.transferred,
        ))
    return restored


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def restarted(desk: Desk, agents_status: str = "break") -> Desk:
    """A new engine on the same clock and configuration, rebuilt from `desk`'s open tasks."""
    after = Desk(max_missed_offers=2)
    after.clock = desk.clock
    after.engine = Engine(after.clock, keep_log=True, max_missed_offers=2,
                          last_event_seq=(desk.engine.log or [])[-1].seq)
    configure(after)
    for agent in desk.engine.agents():
        after.engine.configure_agent(AgentConfig(
            id=agent.id, skills=agent.skills, attributes=agent.attributes,
            capacity=agent.capacity, status=agents_status))
    after.engine.restore(open_tasks_of(desk.engine))
    return after


@pytest.mark.parametrize("seed", range(8))
def test_waiting_tasks_keep_their_order_and_assigned_tasks_their_agents(seed: int) -> None:
    before = busy_desk(seed, 300)
    expected_waiting = {
        q.config.id: [t.id for t in before.engine.waiting_tasks(q.config.id)
                      if t.phase is TaskPhase.WAITING]
        for q in before.engine.queues()
    }
    after = restarted(before)
    for queue_id, order in expected_waiting.items():
        rebuilt = [t.id for t in after.engine.waiting_tasks(queue_id)]
        # tasks that had a pending offer wait again, each at its own place in line
        assert [t for t in rebuilt if t in order] == order
    for task in before.engine.tasks():
        if task.phase in (TaskPhase.ASSIGNED, TaskPhase.WRAPPING):
            assert after.engine.task(task.id).agent_id == task.agent_id
            assert task.id in after.engine.agent(task.agent_id or "").tasks
    assert not any(isinstance(e, ev.TaskCreated) for e in after.engine.log or [])


def test_restored_work_holds_capacity_and_pending_offers_are_made_again() -> None:
    before = Desk()
    configure(before)
    before.agent("a", capacity={"voice": 1})
    before.agent("b", capacity={"voice": 1})
    first = before.task()
    before.accept("a")
    second = before.task()  # offered to b, not answered before the restart
    third = before.task()
    after = restarted(before, agents_status="available")
    assert after.engine.task(first).agent_id == "a"
    assert after.offered_task("b") == second
    assert after.engine.task(third).phase == "waiting"
    offers = [e for e in after.engine.log or [] if isinstance(e, ev.OfferCreated)]
    old_offer_ids = {e.offer_id for e in before.events(ev.OfferCreated)}  # type: ignore[attr-defined]
    assert not old_offer_ids & {e.offer_id for e in offers}


def test_event_numbering_continues_after_a_restart() -> None:
    before = Desk()
    configure(before)
    before.agent("a")
    before.task()
    last = (before.engine.log or [])[-1].seq
    after = restarted(before)
    log = after.engine.log or []
    assert [e.seq for e in log] == list(range(last + 1, last + 1 + len(log)))


def test_policy_step_timer_continues_where_it_was() -> None:
    before = Desk()
    configure(before)
    before.agent("q_agent", status="break")
    task = before.task(queue=None, policy="escalate")
    before.tick(15)
    after = restarted(before)
    assert after.engine.task(task).queue_id == "chat_q"
    after.tick(5)
    assert after.engine.task(task).queue_id == "q"


def test_wrap_up_timer_continues_where_it_was() -> None:
    before = Desk()
    configure(before)
    before.agent("a")
    task = before.task()
    before.accept("a")
    before.engine.complete(task)
    before.tick(10)
    after = restarted(before, agents_status="available")
    assert after.engine.agent("a").presence == "wrap_up"
    after.tick(5)
    assert [e.task_id for e in after.events(ev.TaskEnded)] == [task]  # type: ignore[attr-defined]


def test_bad_restore_is_refused_before_anything_is_placed() -> None:
    before = Desk()
    configure(before)
    before.agent("a", status="break")
    task = before.task()
    good = open_tasks_of(before.engine)
    unknown_queue = RestoredTask(
        request=TaskRequest(channel="voice", queue="nope", id="X"), seq=99,
        created_at=0, enqueued_at=0, phase=TaskPhase.WAITING)
    after = Desk()
    configure(after)
    with pytest.raises(NotFound, match="unknown queue 'nope'"):
        after.engine.restore([*good, unknown_queue])
    assert list(after.engine.tasks()) == []
    after.engine.restore(good)
    with pytest.raises(Conflict, match="exists already"):
        after.engine.restore(good)
    assert after.engine.task(task).phase == "waiting"


@pytest.mark.parametrize("seed", range(6))
def test_todays_figures_are_counted_again_after_a_restart(seed: int) -> None:
    before = busy_desk(seed, 300)
    after = restarted(before)
    after.engine.restore_figures(before.engine.log or [])
    for queue in before.engine.queues():
        assert asdict(after.engine.queue(queue.config.id).stats) == asdict(queue.stats)


def test_yesterdays_events_do_not_count_today() -> None:
    before = Desk()
    configure(before)
    before.agent("a")
    before.task()
    before.tick(86_400)
    after = restarted(before)
    after.engine.restore_figures(before.engine.log or [])
    assert after.engine.queue_figures("q").offered == 0

"""A waiting task's priority changes in place (an email nearing its first-response deadline)."""

from __future__ import annotations

import pytest

from omnicc.core import events as ev
from omnicc.core.errors import Conflict, NotFound
from omnicc.core.model import TaskPhase
from omnicc.core.projection import Projection, snapshot_of

from .conftest import Desk
from .test_engine_restore import restarted


def test_a_raised_task_gets_the_next_free_agent_and_keeps_its_id_and_arrival(desk: Desk) -> None:
    desk.agent("a", status="break", capacity={"email": 1})
    first = desk.task(channel="email")
    desk.tick(10)
    second = desk.task(channel="email")
    arrived = desk.engine.task(second).enqueued_at
    events = desk.engine.reprioritise(second, 5)
    assert [type(e) for e in events] == [ev.TaskReprioritised]
    (changed,) = events
    assert isinstance(changed, ev.TaskReprioritised)
    assert (changed.task_id, changed.priority, changed.previous) == (second, 5, 0)
    assert [t.id for t in desk.engine.waiting_tasks("q")] == [second, first]
    desk.engine.set_status("a", "available")
    assert desk.offered_task("a") == second
    task = desk.engine.task(second)
    assert (task.priority, task.enqueued_at, task.queue_id) == (5, arrived, "q")
    assert not desk.events(ev.TaskCancelled)
    assert len(desk.events(ev.TaskCreated)) == 2


def test_a_lowered_task_goes_behind_equal_work_it_was_ahead_of(desk: Desk) -> None:
    desk.agent("a", status="break")
    first = desk.task(channel="email", priority=3)
    second = desk.task(channel="email", priority=1)
    desk.engine.reprioritise(first, 0)
    assert [t.id for t in desk.engine.waiting_tasks("q")] == [second, first]


def test_a_waiting_task_with_a_free_agent_is_offered_at_once() -> None:
    desk = Desk()
    desk.queue("q")
    desk.agent("a", capacity={"email": 1})
    desk.task(channel="email")
    desk.accept("a")
    waiting = desk.task(channel="email")
    # the agent's second slot opens: the change itself routes the task
    desk.agent("a", capacity={"email": 2})
    assert desk.offered_task("a") == waiting
    assert desk.engine.reprioritise(waiting, 2)[0].type == "task.reprioritised"


def test_an_offered_task_keeps_its_offer_and_returns_at_its_new_place(desk: Desk) -> None:
    desk.agent("a", capacity={"email": 1})
    offered = desk.task(channel="email")
    waiting = desk.task(channel="email", priority=2)
    assert desk.offered_task("a") == offered
    desk.engine.reprioritise(offered, 9)
    assert desk.engine.task(offered).phase is TaskPhase.OFFERED
    assert not desk.events(ev.OfferRescinded)
    desk.engine.set_status("a", "break")  # the offer is withdrawn: back in line
    assert desk.engine.task(offered).phase is TaskPhase.WAITING
    assert [t.id for t in desk.engine.waiting_tasks("q")] == [offered, waiting]


def test_the_same_priority_is_no_event(desk: Desk) -> None:
    desk.agent("a", status="break")
    task = desk.task(channel="email", priority=2)
    assert desk.engine.reprioritise(task, 2) == []


def test_assigned_or_unknown_work_is_refused(desk: Desk) -> None:
    desk.agent("a")
    task = desk.task(channel="email")
    desk.accept("a")
    with pytest.raises(Conflict):
        desk.engine.reprioritise(task, 3)
    with pytest.raises(NotFound):
        desk.engine.reprioritise("nope", 3)


def test_vip_and_aging_still_count_after_the_change() -> None:
    desk = Desk()
    desk.queue("q", vip_score=10, aging_per_s=1)
    desk.agent("a", status="break")
    vip = desk.task(channel="email", attributes={"vip": True})
    desk.tick(1)
    raised = desk.task(channel="email")
    desk.engine.reprioritise(raised, 10)  # 10 + 0 s of age < 0 + 10 (VIP) + 1 s of age
    assert [t.id for t in desk.engine.waiting_tasks("q")] == [vip, raised]
    desk.engine.reprioritise(raised, 12)
    assert [t.id for t in desk.engine.waiting_tasks("q")] == [raised, vip]


def test_the_event_log_and_a_restart_keep_the_new_order(desk: Desk) -> None:
    from .test_engine_figures_events import configure_center

    desk = Desk(max_missed_offers=2)
    configure_center(desk)
    desk.agent("a", status="break")
    first = desk.task(channel="voice")
    second = desk.task(channel="voice")
    desk.engine.reprioritise(second, 4)
    rebuilt = Projection().apply_all(desk.engine.log or []).snapshot()
    assert rebuilt == snapshot_of(desk.engine)
    assert rebuilt.waiting["q"] == (second, first)
    after = restarted(desk)
    assert [t.id for t in after.engine.waiting_tasks("q")] == [second, first]
    assert after.engine.task(second).priority == 4


def test_the_event_survives_its_wire_form(desk: Desk) -> None:
    desk.agent("a", status="break")
    task = desk.task(channel="email")
    (event,) = desk.engine.reprioritise(task, 1)
    payload = ev.encode_payload(event)
    assert payload == {"task_id": task, "priority": 1, "previous": 0}
    assert ev.decode_event(event.type, event.at, event.seq, payload) == event

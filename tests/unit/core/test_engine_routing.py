"""Task ordering (5), routing policies (6), offers (7) and transfers (8)."""

from __future__ import annotations

import pytest

from omnicc.core import events as ev
from omnicc.core.errors import Conflict, NotFound
from omnicc.core.model import FinalAction, PolicyStep, RoutingPolicy, TaskRequest

from .conftest import Desk


def backlog_desk(**queue_options: object) -> Desk:
    """One agent, busy, so that new tasks wait and their order can be observed."""
    desk = Desk()
    desk.queue("q", **queue_options)
    desk.agent("a")
    desk.task()
    desk.accept("a")
    return desk


def serve_order(desk: Desk, count: int) -> list[str]:
    order = []
    current = next(iter(desk.engine.agent("a").tasks))
    for _ in range(count):
        desk.engine.complete(current)
        current = desk.accept("a")
        order.append(current)
    return order


class TestOrdering:
    def test_priority_first_then_age(self) -> None:
        desk = backlog_desk()
        low_old = desk.task(priority=0)
        desk.tick(1)
        high = desk.task(priority=5)
        desk.tick(1)
        low_new = desk.task(priority=0)
        assert serve_order(desk, 3) == [high, low_old, low_new]

    def test_fifo_within_equal_priority(self) -> None:
        desk = backlog_desk()
        tasks = []
        for _ in range(5):
            tasks.append(desk.task())
            desk.tick(1)
        assert serve_order(desk, 5) == tasks

    def test_vip_base_score(self) -> None:
        desk = backlog_desk(vip_score=10)
        regular = desk.task(priority=5)
        desk.tick(1)
        vip = desk.task(priority=0, attributes={"vip": True})
        assert serve_order(desk, 2) == [vip, regular]

    def test_aging_boost_prevents_starvation(self) -> None:
        desk = backlog_desk(aging_per_s=0.1)
        low = desk.task(priority=0)
        desk.tick(100)  # low has gained 10 points
        high_recent = desk.task(priority=5)
        assert serve_order(desk, 2) == [low, high_recent]

    def test_aging_not_yet_enough(self) -> None:
        desk = backlog_desk(aging_per_s=0.1)
        low = desk.task(priority=0)
        desk.tick(20)  # only 2 points
        high = desk.task(priority=5)
        assert serve_order(desk, 2) == [high, low]

    def test_position_and_ewt(self) -> None:
        desk = backlog_desk(expected_handle_s=120)
        first = desk.task()
        desk.tick(1)
        second = desk.task()
        position = desk.engine.task_position(second)
        assert (position.position, position.waited_s) == (2, 0)
        assert position.ewt_s == pytest.approx(2 * 120)
        assert desk.engine.task_position(first).position == 1


class TestPolicies:
    def test_preferred_agent_first_then_the_team(self) -> None:
        desk = Desk()
        desk.queue("team")
        desk.engine.configure_policy(RoutingPolicy(id="vip", steps=(
            PolicyStep(queue="team", agents=("preferred",), timeout_s=30),
            PolicyStep(queue="team"),
        )))
        desk.agent("manager", status="break")
        desk.agent("colleague")
        task = desk.task(queue=None, policy="vip", attributes={"preferred_agents": ["manager"]})
        assert desk.offers_to("colleague") == []
        desk.tick(29)
        desk.engine.set_status("manager", "available")
        assert desk.offered_task("manager") == task

    def test_preferred_step_times_out_to_the_team(self) -> None:
        desk = Desk()
        desk.queue("team")
        desk.engine.configure_policy(RoutingPolicy(id="vip", steps=(
            PolicyStep(queue="team", agents=("preferred",), timeout_s=30),
            PolicyStep(queue="team"),
        )))
        desk.agent("manager", status="break")
        desk.agent("colleague")
        task = desk.task(queue=None, policy="vip", attributes={"preferred_agents": "manager"})
        desk.tick(30)
        assert desk.offered_task("colleague") == task

    def test_no_preferred_agent_skips_the_step(self) -> None:
        desk = Desk()
        desk.queue("team")
        desk.engine.configure_policy(RoutingPolicy(id="vip", steps=(
            PolicyStep(queue="team", agents=("preferred",), timeout_s=30),
            PolicyStep(queue="team"),
        )))
        desk.agent("colleague")
        task = desk.task(queue=None, policy="vip")
        assert desk.offered_task("colleague") == task

    def test_bullseye_relaxes_required_proficiency(self) -> None:
        desk = Desk()
        desk.queue("support")
        desk.engine.configure_policy(RoutingPolicy(id="bullseye", steps=(
            PolicyStep(queue="support", timeout_s=60),
            PolicyStep(queue="support", relax_proficiency=2),
        )))
        desk.agent("junior", {"finnish": 2})
        task = desk.task(queue=None, policy="bullseye", required_skills={"finnish": 4})
        desk.tick(59)
        assert desk.offers_to("junior") == []
        desk.tick(1)
        assert desk.offered_task("junior") == task

    def test_step_expression_reads_the_task(self) -> None:
        desk = Desk()
        desk.queue("support")
        desk.engine.configure_policy(RoutingPolicy(id="lang", steps=(
            PolicyStep(queue="support", expression="languages contains task.language"),
        )))
        desk.agent("fi", languages=["fi"])
        desk.agent("sv", languages=["sv"])
        task = desk.task(queue=None, policy="lang", attributes={"language": "sv"})
        assert desk.offered_task("sv") == task

    def test_overflow_to_another_queue_counts_there(self) -> None:
        desk = Desk()
        desk.queue("sales", expression='team == "sales"')
        desk.queue("service", expression='team == "service"')
        desk.engine.configure_policy(RoutingPolicy(id="overflow", steps=(
            PolicyStep(queue="sales", timeout_s=45),
            PolicyStep(queue="service"),
        )))
        desk.agent("s1", team="service")
        task = desk.task(queue=None, policy="overflow")
        desk.tick(45)
        assert desk.offered_task("s1") == task
        assert desk.engine.queue_figures("service").offered == 1
        assert desk.engine.queue("sales").stats.overflowed_out == 1

    def test_final_action_after_last_step(self) -> None:
        desk = Desk()
        desk.queue("q")
        desk.engine.configure_policy(RoutingPolicy(
            id="cb", steps=(PolicyStep(queue="q", timeout_s=120),),
            final_action=FinalAction.CALLBACK, final_reason="all agents busy"))
        task = desk.task(queue=None, policy="cb")
        events = desk.tick(120)
        timed_out = [e for e in events if isinstance(e, ev.TaskTimedOut)]
        assert [(e.task_id, e.action, e.reason) for e in timed_out] == [
            (task, "callback", "all agents busy")]
        assert [e.outcome for e in events if isinstance(e, ev.TaskEnded)] == ["timed_out"]

    def test_step_expiring_during_an_offer_applies_after_the_offer(self) -> None:
        desk = Desk()
        desk.queue("a_team", expression='team == "a"', offer_timeout_s=20)
        desk.queue("b_team", expression='team == "b"')
        desk.engine.configure_policy(RoutingPolicy(id="p", steps=(
            PolicyStep(queue="a_team", timeout_s=10),
            PolicyStep(queue="b_team"),
        )))
        desk.agent("a1", team="a")
        desk.agent("b1", team="b")
        task = desk.task(queue=None, policy="p")
        desk.tick(10)
        assert desk.offered_task("a1") == task
        desk.engine.reject(desk.offers_to("a1")[0])
        assert desk.offered_task("b1") == task

    def test_unknown_policy_queue_is_an_error(self) -> None:
        desk = Desk()
        with pytest.raises(NotFound, match="unknown queue 'nope'"):
            desk.engine.configure_policy(RoutingPolicy(id="p", steps=(PolicyStep(queue="nope"),)))


class TestOffers:
    def test_default_timeout_is_20_seconds(self, desk: Desk) -> None:
        desk.agent("a")
        desk.agent("b")
        task = desk.task()
        offered = desk.events(ev.OfferCreated)[0]
        assert offered.expires_at - offered.at == 20  # type: ignore[attr-defined]
        desk.tick(19.9)
        assert desk.offered_task("a") == task
        desk.tick(0.1)
        assert desk.offered_task("b") == task
        assert len(desk.events(ev.OfferTimedOut)) == 1

    def test_rejected_task_keeps_its_place_in_line(self) -> None:
        desk = Desk()
        desk.queue("q")
        desk.agent("a")
        desk.agent("b")
        first = desk.task()
        desk.accept("a")
        second = desk.task()
        desk.accept("b")
        desk.tick(1)
        older = desk.task()
        desk.tick(1)
        newer = desk.task()
        desk.engine.complete(first)
        assert desk.offered_task("a") == older
        desk.engine.reject(desk.offers_to("a")[0], "not now")
        # a declined it, so a gets the next one; older stays first in line for b
        assert desk.offered_task("a") == newer
        desk.engine.complete(second)
        assert desk.offered_task("b") == older

    def test_same_agent_is_offered_again_after_the_reoffer_delay(self, desk: Desk) -> None:
        desk.queue("q", reoffer_delay_s=10)
        desk.agent("a")
        task = desk.task()
        desk.engine.reject(desk.offers_to("a")[0])
        assert desk.offers_to("a") == []
        desk.tick(10)
        assert desk.offered_task("a") == task

    def test_missed_offers_set_the_agent_not_ready(self) -> None:
        desk = Desk(max_missed_offers=2)
        desk.queue("q", offer_timeout_s=10, reoffer_delay_s=0)
        desk.agent("a")
        desk.task()
        desk.tick(10)
        assert desk.engine.agent("a").status.name == "available"
        desk.tick(10)
        assert desk.engine.agent("a").status.name == "no_answer"
        changed = [e for e in desk.events(ev.AgentStatusChanged) if e.status == "no_answer"]  # type: ignore[attr-defined]
        assert changed[0].reason == "2 offers missed"  # type: ignore[attr-defined]

    def test_accepting_a_withdrawn_offer_is_a_conflict(self, desk: Desk) -> None:
        desk.agent("a")
        task = desk.task()
        (offer_id,) = desk.offers_to("a")
        desk.engine.abandon(task)
        with pytest.raises(Conflict, match="not pending"):
            desk.engine.accept(offer_id)

    def test_abandon_while_offered_frees_the_agent(self, desk: Desk) -> None:
        desk.agent("a")
        first = desk.task()
        second = desk.task()
        desk.engine.abandon(first)
        assert desk.offered_task("a") == second
        abandoned = desk.events(ev.TaskAbandoned)
        assert [e.task_id for e in abandoned] == [first]  # type: ignore[attr-defined]


class TestTransfers:
    def test_transfer_to_a_queue_keeps_the_task_and_history(self) -> None:
        desk = Desk()
        desk.queue("tier1")
        desk.queue("tier2", expression="skills.tier2 >= 1")
        desk.agent("t1")
        desk.agent("t2", {"tier2": 3}, status="break")
        task = desk.task("tier1", attributes={"topic": "billing"}, conversation_id="C1")
        desk.accept("t1")
        desk.engine.set_status("t2", "available")
        desk.engine.transfer(task, queue_id="tier2")
        assert desk.offered_task("t2") == task
        desk.accept("t2")
        state = desk.engine.task(task)
        assert (state.conversation_id, state.attributes, state.agents_served) == (
            "C1", {"topic": "billing"}, ["t1"])
        assert desk.engine.queue_figures("tier2").offered == 1
        assert desk.engine.queue("tier2").stats.offered_by_transfer == 1

    def test_transfer_to_an_agent(self, desk: Desk) -> None:
        desk.agent("a")
        desk.agent("b", capacity={"voice": 1})
        task = desk.task()
        who = "a" if desk.offers_to("a") else "b"
        desk.accept(who)
        other = "b" if who == "a" else "a"
        events = desk.engine.transfer(task, agent_id=other)
        assert any(isinstance(e, ev.TaskTransferred) for e in events)
        assert desk.offered_task(other) == task

    def test_a_supervisor_moves_a_waiting_task_to_another_queue(self) -> None:
        desk = Desk()
        desk.queue("tier1")
        desk.queue("tier2", expression="skills.tier2 >= 1")
        desk.agent("t2", {"tier2": 3}, status="break")
        task = desk.task("tier1")
        events = desk.engine.transfer(task, queue_id="tier2")
        moved = [e for e in events if isinstance(e, ev.TaskTransferred)]
        assert [(e.from_agent_id, e.to_queue_id) for e in moved] == [("", "tier2")]
        assert desk.engine.waiting_tasks("tier1") == []
        assert [t.id for t in desk.engine.waiting_tasks("tier2")] == [task]
        desk.engine.set_status("t2", "available")
        assert desk.offered_task("t2") == task

    def test_moving_an_offered_task_rescinds_its_offer(self, desk: Desk) -> None:
        desk.queue("other")
        desk.agent("a")
        task = desk.task()
        (offer_id,) = desk.offers_to("a")
        events = desk.engine.transfer(task, queue_id="other")
        assert [e.offer_id for e in events if isinstance(e, ev.OfferRescinded)] == [offer_id]
        assert desk.offered_task("a") == task  # "a" serves "other" too: a fresh offer

    def test_transfer_of_a_task_in_wrap_up_is_a_conflict(self) -> None:
        desk = Desk()
        desk.queue("q", wrap_up_s=60.0)
        desk.agent("a")
        task = desk.task()
        desk.accept("a")
        desk.engine.complete(task)
        with pytest.raises(Conflict, match="cannot be transferred"):
            desk.engine.transfer(task, queue_id="q")


class TestTaskValidation:
    def test_unknown_queue(self, desk: Desk) -> None:
        with pytest.raises(NotFound, match="unknown queue"):
            desk.engine.create_task(TaskRequest(channel="chat", queue="missing"))

    def test_duplicate_task_id(self, desk: Desk) -> None:
        desk.engine.create_task(TaskRequest(channel="chat", queue="q", id="X"))
        with pytest.raises(Conflict, match="exists already"):
            desk.engine.create_task(TaskRequest(channel="chat", queue="q", id="X"))


class TestRequeue:
    def test_a_lost_agent_puts_the_task_back_at_its_place_for_the_next_agent(self) -> None:
        desk = Desk()
        desk.queue("q")
        desk.agent("a")
        first = desk.task()
        desk.accept("a")
        desk.tick(5)
        second = desk.task()  # waits behind the first: nobody is free
        desk.tick(5)
        events = desk.engine.requeue(first)
        assert [e.type for e in events][:1] == ["task.requeued"]
        # The first caller is ahead of the second again, and the freed agent gets them.
        offers = [e for e in events if isinstance(e, ev.OfferCreated)]
        assert [(o.task_id, o.agent_id) for o in offers] == [(first, "a")]
        assert desk.engine.task(second).phase.value == "waiting"
        assert desk.engine.task(first).agent_id is None

    def test_only_an_assigned_task_can_be_requeued(self) -> None:
        desk = Desk()
        desk.queue("q")
        waiting = desk.task()
        with pytest.raises(Conflict):
            desk.engine.requeue(waiting)


def test_a_task_that_arrived_earlier_takes_its_place_in_line() -> None:
    """A callback replacing a call that waited keeps that call's place."""
    desk = backlog_desk()
    desk.tick(10)
    later = desk.task()
    desk.tick(10)
    earlier = desk.engine.create_task(TaskRequest(
        channel="voice", queue="q", arrived_at=desk.clock.now() - 15))
    created = earlier[0]
    assert isinstance(created, ev.TaskCreated)
    assert created.enqueued_at == desk.clock.now() - 15
    assert serve_order(desk, 2) == [created.task_id, later]

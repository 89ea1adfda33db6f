"""Agent-initiated work (issue 4, item 7): an outbound call is the agent's task from the start.

It is assigned at once, holds the agent's capacity so the channel rules keep other offers
away, ends with complete and wrap-up like any task, survives a restart, and counts in none of
the queue's inbound figures (METRICS.md: outbound contacts are not offered contacts).
"""

from __future__ import annotations

import pytest

from omnicc.core import events as ev
from omnicc.core.errors import Conflict, NotFound
from omnicc.core.model import (
    INITIATED_BY,
    OUTBOUND,
    CapacityRules,
    PolicyStep,
    RestoredTask,
    RoutingPolicy,
    StatusDefinition,
    TaskPhase,
    TaskRequest,
)
from omnicc.core.projection import Projection, snapshot_of

from .conftest import Desk
from .test_engine_restore import restarted


def dial(desk: Desk, agent_id: str, channel: str = "voice", queue: str = "q",
         **options: object) -> str:
    """The agent starts a task (an outbound call); its id."""
    events = desk.engine.create_task(TaskRequest(channel=channel, queue=queue,
                                                 agent_id=agent_id, **options))  # type: ignore[arg-type]
    created = events[0]
    assert isinstance(created, ev.TaskCreated)
    return created.task_id


def types(events: list[ev.Event]) -> list[str]:
    return [e.type for e in events]


class TestStarting:
    def test_the_task_is_assigned_at_once_without_queue_or_offer(self, desk: Desk) -> None:
        desk.agent("a")
        events = desk.engine.create_task(TaskRequest(channel="voice", queue="q", agent_id="a",
                                                     id="call-1"))
        assert types(events) == ["task.created", "task.assigned", "agent.status_changed"]
        created, assigned, status = events
        assert isinstance(created, ev.TaskCreated) and isinstance(assigned, ev.TaskAssigned)
        assert created.attributes["direction"] == OUTBOUND
        assert created.attributes[INITIATED_BY] == "a"
        assert (assigned.task_id, assigned.agent_id, assigned.queue_id, assigned.channel,
                assigned.direction) == ("call-1", "a", "q", "voice", "outbound")
        assert isinstance(status, ev.AgentStatusChanged) and status.presence == "busy"
        task = desk.engine.task("call-1")
        assert (task.phase, task.agent_id, task.queue_id, task.initiated_by) == (
            TaskPhase.ASSIGNED, "a", "q", "a")
        assert task.accepted_at == desk.clock.now()
        assert desk.engine.agent_figures("a").task_ids == ("call-1",)

    def test_a_policy_names_the_queue_of_its_first_step(self, desk: Desk) -> None:
        desk.queue("other")
        desk.engine.configure_policy(RoutingPolicy(id="p", steps=(
            PolicyStep(queue="other", timeout_s=5), PolicyStep(queue="q"))))
        desk.agent("a")
        task = dial(desk, "a", queue=None, policy="p")  # type: ignore[arg-type]
        assert desk.engine.task(task).queue_id == "other"
        desk.tick(30)  # no policy step runs for it
        assert desk.engine.task(task).queue_id == "other"

    def test_no_chat_or_call_is_offered_while_it_lasts(self, desk: Desk) -> None:
        desk.agent("a", capacity={"voice": 1, "chat": 3})
        call = dial(desk, "a")
        chat = desk.task(channel="chat")
        inbound = desk.task()
        assert desk.offers_to("a") == []
        assert desk.engine.task(chat).phase is TaskPhase.WAITING
        desk.engine.complete(call)
        offered = {desk.engine.offer(o).task_id for o in desk.offers_to("a")}
        assert offered and offered <= {chat, inbound}

    def test_an_inbound_call_rings_the_next_agent(self, desk: Desk) -> None:
        desk.agent("a")
        desk.tick(10)
        desk.agent("b")  # idle for less time: a would be chosen first
        dial(desk, "a")
        task = desk.task()
        assert desk.offered_task("b") == task

    def test_pending_offers_it_blocks_go_to_the_next_agent(self, desk: Desk) -> None:
        desk.agent("a", capacity={"voice": 1, "chat": 3})
        chat = desk.task(channel="chat")
        assert desk.offered_task("a") == chat
        desk.agent("b", capacity={"voice": 1, "chat": 3})
        events = desk.engine.create_task(TaskRequest(channel="voice", queue="q", agent_id="a"))
        rescinded = [e for e in events if isinstance(e, ev.OfferRescinded)]
        assert [(e.task_id, e.agent_id) for e in rescinded] == [(chat, "a")]
        assert desk.offered_task("b") == chat
        assert desk.offers_to("a") == []

    def test_a_chat_started_by_the_agent_keeps_other_chat_offers(self, desk: Desk) -> None:
        desk.agent("a", capacity={"voice": 1, "chat": 3})
        chat = desk.task(channel="chat")
        dial(desk, "a", channel="chat")
        assert desk.offered_task("a") == chat

    def test_blocked_by_rules_withdraw_offers_on_the_blocked_channel(self) -> None:
        desk = Desk(capacity_rules=CapacityRules(exclusive=frozenset(),
                                                 blocked_by={"chat": frozenset({"voice"})}))
        desk.queue("q")
        desk.agent("a", capacity={"voice": 1, "chat": 3})
        chat = desk.task(channel="chat")
        assert desk.offered_task("a") == chat
        dial(desk, "a")
        assert desk.offers_to("a") == []


class TestRefusals:
    def test_unknown_agent(self, desk: Desk) -> None:
        with pytest.raises(NotFound):
            dial(desk, "nobody")

    def test_an_agent_on_a_call_cannot_dial_again(self, desk: Desk) -> None:
        desk.agent("a")
        dial(desk, "a")
        with pytest.raises(Conflict, match="on a voice task"):
            dial(desk, "a")
        desk.task()
        desk.agent("b")
        assert len(list(desk.engine.tasks())) == 2  # the refused one left nothing behind

    def test_an_agent_on_an_inbound_call_cannot_dial(self, desk: Desk) -> None:
        desk.agent("a")
        desk.task()
        desk.accept("a")
        with pytest.raises(Conflict, match="on a voice task"):
            dial(desk, "a")
        with pytest.raises(Conflict, match="on a voice task"):
            dial(desk, "a", channel="email")

    def test_an_offline_agent_may_dial_and_is_logged_in_while_on_it(self, desk: Desk) -> None:
        desk.agent("a", status="offline")
        task = dial(desk, "a")
        assert desk.engine.agent("a").presence == "offline"
        desk.tick(60)
        desk.engine.complete(task)
        desk.tick(60)
        figures = desk.engine.agent_figures("a")
        assert (figures.utilisation, figures.occupancy) == (1.0, 1.0)

    def test_no_capacity_on_the_channel(self, desk: Desk) -> None:
        desk.agent("a", capacity={"chat": 3})
        with pytest.raises(Conflict, match="takes no voice work"):
            dial(desk, "a")

    def test_every_slot_taken(self, desk: Desk) -> None:
        desk.agent("a", capacity={"chat": 1})
        dial(desk, "a", channel="chat")
        with pytest.raises(Conflict, match="no free chat slot"):
            dial(desk, "a", channel="chat")

    def test_an_agent_on_a_break_may_dial_and_stays_on_the_break(self, desk: Desk) -> None:
        desk.agent("a", status="break")
        task = dial(desk, "a")
        assert desk.engine.agent("a").presence == "break"
        desk.engine.complete(task)
        assert desk.engine.agent("a").presence == "break"

    def test_an_agent_who_is_ringing_may_dial_and_the_call_moves_on(self, desk: Desk) -> None:
        desk.engine.define_status(StatusDefinition("outbound", accepts_work=False))
        desk.agent("a")
        inbound = desk.task()
        assert desk.offered_task("a") == inbound
        dial(desk, "a")
        assert desk.engine.task(inbound).phase is TaskPhase.WAITING
        desk.agent("b")
        assert desk.offered_task("b") == inbound

    def test_an_agent_in_wrap_up_may_call_the_customer_back(self, desk: Desk) -> None:
        desk.queue("q", wrap_up_s=60)
        desk.agent("a")
        inbound = desk.task()
        desk.accept("a")
        desk.engine.complete(inbound)
        back = dial(desk, "a")
        assert desk.engine.task(back).phase is TaskPhase.ASSIGNED
        desk.engine.wrap_up(inbound, "callback")
        assert desk.engine.agent("a").presence == "busy"
        assert desk.offers_to("a") == []


class TestEnding:
    def test_complete_then_wrap_up_with_a_disposition(self, desk: Desk) -> None:
        desk.queue("q", wrap_up_s=60)
        desk.agent("a")
        task = dial(desk, "a")
        desk.tick(40)
        completed = [e for e in desk.engine.complete(task) if isinstance(e, ev.TaskCompleted)]
        assert completed[0].talk_s == 40 and completed[0].queue_id == "q"
        assert desk.engine.agent("a").presence == "wrap_up"
        inbound = desk.task()
        assert desk.offers_to("a") == []  # wrap-up holds the slot
        events = desk.engine.wrap_up(task, "sale")
        wrapped = [e for e in events if isinstance(e, ev.TaskWrappedUp)]
        assert (wrapped[0].disposition, wrapped[0].timed_out) == ("sale", False)
        assert [e.outcome for e in events if isinstance(e, ev.TaskEnded)] == ["completed"]
        assert desk.offered_task("a") == inbound

    def test_wrap_up_times_out_as_the_queue_says(self, desk: Desk) -> None:
        desk.queue("q", wrap_up_s=30)
        desk.agent("a")
        task = dial(desk, "a")
        desk.engine.complete(task)
        events = desk.tick(30)
        assert any(isinstance(e, ev.TaskWrappedUp) and e.timed_out for e in events)

    def test_cancel_frees_the_agent(self, desk: Desk) -> None:
        desk.agent("a")
        task = dial(desk, "a")
        inbound = desk.task()
        desk.engine.cancel(task, "the call failed")
        assert desk.offered_task("a") == inbound

    def test_no_line_to_go_back_to(self, desk: Desk) -> None:
        desk.agent("a")
        task = dial(desk, "a")
        with pytest.raises(Conflict, match="started by its agent"):
            desk.engine.requeue(task)
        with pytest.raises(Conflict):
            desk.engine.abandon(task)

    def test_a_transfer_makes_it_a_routed_task(self, desk: Desk) -> None:
        desk.queue("billing")
        desk.agent("a")
        desk.agent("b")
        task = dial(desk, "a")
        desk.engine.transfer(task, queue_id="billing")
        assert desk.offered_task("b") == task
        desk.accept("b")
        assert desk.engine.task(task).initiated_by is None
        figures = desk.engine.queue_figures("billing")
        assert (figures.offered, figures.handled) == (1, 1)


class TestFigures:
    def test_it_counts_in_no_inbound_figure_of_its_queue(self, desk: Desk) -> None:
        desk.queue("q", expected_handle_s=100)
        desk.agent("a")
        desk.agent("b")
        task = dial(desk, "a")
        desk.tick(500)
        desk.engine.wrap_up(task, "done")
        figures = desk.engine.queue_figures("q")
        assert (figures.offered, figures.handled, figures.abandoned) == (0, 0, 0)
        assert figures.service_level_1 is None and figures.asa_s is None
        assert desk.engine.queue("q").handle_s_ewma == 0.0  # EWT knows only inbound work
        assert desk.engine.agent_figures("a").contacts_handled == 0

    def test_it_is_handling_time_for_occupancy(self, desk: Desk) -> None:
        desk.agent("a")
        task = dial(desk, "a")
        desk.tick(60)
        desk.engine.complete(task)
        desk.tick(60)
        assert desk.engine.agent_figures("a").occupancy == pytest.approx(0.5)

    def test_the_event_log_rebuilds_the_state(self, desk: Desk) -> None:
        desk.agent("a", capacity={"voice": 1, "chat": 2})
        desk.agent("b", capacity={"voice": 1, "chat": 2})
        dial(desk, "a")
        desk.task(channel="chat")
        done = dial(desk, "b", channel="chat")
        desk.engine.complete(done)
        rebuilt = Projection().apply_all(desk.engine.log or []).snapshot()
        assert rebuilt == snapshot_of(desk.engine)

    def test_stored_events_read_back(self, desk: Desk) -> None:
        desk.agent("a")
        dial(desk, "a")
        (assigned,) = desk.events(ev.TaskAssigned)
        again = ev.decode_event(assigned.type, assigned.at, assigned.seq,
                                ev.encode_payload(assigned))
        assert again == assigned


class TestRestore:
    def test_a_restarted_engine_keeps_the_call_and_its_rules(self) -> None:
        desk = Desk()
        desk.queue("q", wrap_up_s=30)
        desk.queue("chat_q")
        desk.agent("a", capacity={"voice": 1, "chat": 3})
        task = dial(desk, "a")
        desk.tick(20)
        after = restarted(desk, agents_status="available")
        restored = after.engine.task(task)
        assert (restored.phase, restored.agent_id, restored.initiated_by) == (
            TaskPhase.ASSIGNED, "a", "a")
        after.task("chat_q", channel="chat")
        assert after.offers_to("a") == []
        with pytest.raises(Conflict):
            after.engine.requeue(task)
        after.tick(10)
        completed = [e for e in after.engine.complete(task) if isinstance(e, ev.TaskCompleted)]
        assert completed[0].talk_s == 30
        after.engine.wrap_up(task, "sale")
        assert after.engine.queue("q").handle_s_ewma == 0.0
        assert after.engine.queue_figures("q").offered == 0

    def test_a_transferred_one_is_restored_as_routed(self) -> None:
        desk = Desk()
        desk.queue("q")
        desk.queue("chat_q")
        desk.agent("a")
        desk.agent("b")
        task = dial(desk, "a")
        desk.engine.transfer(task, queue_id="q")
        desk.accept("b")
        after = restarted(desk, agents_status="available")
        assert after.engine.task(task).initiated_by is None

    def test_restored_wrap_up(self) -> None:
        desk = Desk()
        desk.queue("q", wrap_up_s=30)
        desk.queue("chat_q")
        desk.agent("a")
        task = dial(desk, "a")
        desk.engine.complete(task)
        after = restarted(desk, agents_status="available")
        assert after.engine.task(task).phase is TaskPhase.WRAPPING
        assert any(isinstance(e, ev.TaskWrappedUp) and e.timed_out for e in after.tick(30))


def test_a_restored_task_names_its_starter_only_while_it_is_theirs() -> None:
    request = TaskRequest(channel="voice", queue="q", id="t", agent_id="a")
    item = RestoredTask(request=request, seq=1, created_at=0.0, enqueued_at=0.0,
                        phase=TaskPhase.ASSIGNED, agent_id="b")
    desk = Desk()
    desk.queue("q")
    desk.agent("a")
    desk.agent("b")
    desk.engine.restore([item])
    assert desk.engine.task("t").initiated_by is None

"""Presence (1) and per-channel capacity with cross-channel rules (2)."""

from __future__ import annotations

import pytest

from omnicc.core import events as ev
from omnicc.core.errors import Conflict, InvalidConfiguration, NotFound
from omnicc.core.model import CapacityRules, StatusDefinition

from .conftest import Desk


class TestPresence:
    def test_one_call_changes_status_and_emits_an_event(self, desk: Desk) -> None:
        desk.agent("a", status="offline")
        events = desk.engine.set_status("a", "available")
        (changed,) = [e for e in events if isinstance(e, ev.AgentStatusChanged)]
        assert (changed.status, changed.presence, changed.previous_presence) == (
            "available", "available", "offline")

    def test_time_in_status_is_tracked(self, desk: Desk) -> None:
        desk.agent("a")
        desk.tick(30)
        assert desk.engine.agent_figures("a").time_in_presence_s == 30
        desk.engine.set_status("a", "break")
        desk.tick(12)
        figures = desk.engine.agent_figures("a")
        assert (figures.presence, figures.time_in_presence_s) == ("break", 12)

    def test_busy_and_wrap_up_are_derived_from_work(self, desk: Desk) -> None:
        desk.queue("q", wrap_up_s=60)
        desk.agent("a")
        task = desk.task()
        desk.accept("a")
        assert desk.engine.agent("a").presence == "busy"
        desk.engine.complete(task)
        assert desk.engine.agent("a").presence == "wrap_up"
        desk.engine.wrap_up(task, "sale")
        assert desk.engine.agent("a").presence == "available"

    def test_derived_presences_cannot_be_chosen(self, desk: Desk) -> None:
        desk.agent("a")
        with pytest.raises(InvalidConfiguration, match="set by the engine"):
            desk.engine.set_status("a", "busy")

    def test_unknown_status_is_a_clear_error(self, desk: Desk) -> None:
        desk.agent("a")
        with pytest.raises(NotFound, match="unknown status 'lunch'"):
            desk.engine.set_status("a", "lunch")

    def test_custom_statuses_say_whether_they_accept_work(self, desk: Desk) -> None:
        desk.engine.define_status(StatusDefinition("training", accepts_work=False))
        desk.engine.define_status(StatusDefinition("back_office", accepts_work=True))
        desk.agent("a", status="training")
        desk.agent("b", status="back_office")
        task = desk.task()
        assert desk.offered_task("b") == task
        assert desk.offers_to("a") == []

    def test_going_on_break_withdraws_pending_offers(self, desk: Desk) -> None:
        desk.agent("a")
        desk.agent("b", status="break")
        task = desk.task()
        desk.engine.set_status("a", "break")
        assert desk.engine.task(task).phase == "waiting"
        desk.engine.set_status("b", "available")
        assert desk.offered_task("b") == task
        assert [e.reason for e in desk.events(ev.OfferRescinded)] == ["agent is break"]  # type: ignore[attr-defined]

    def test_occupancy_counts_handling_over_available_or_handling(self, desk: Desk) -> None:
        desk.agent("a")
        desk.tick(60)
        task = desk.task()
        desk.accept("a")
        desk.tick(180)
        desk.engine.complete(task)
        desk.engine.set_status("a", "break")
        desk.tick(600)
        figures = desk.engine.agent_figures("a")
        assert figures.occupancy == pytest.approx(180 / 240)
        assert figures.utilisation == pytest.approx(180 / 840)
        assert figures.contacts_handled == 1


class TestCapacity:
    def test_chat_capacity_three_then_no_more(self, desk: Desk) -> None:
        desk.agent("a", capacity={"chat": 3})
        tasks = [desk.task(channel="chat") for _ in range(4)]
        assert len(desk.offers_to("a")) == 3
        assert desk.engine.task(tasks[3]).phase == "waiting"

    def test_voice_blocks_every_other_offer(self, desk: Desk) -> None:
        desk.agent("a", capacity={"voice": 1, "chat": 3, "email": 5})
        call = desk.task(channel="voice")
        chat = desk.task(channel="chat")
        assert desk.offered_task("a") == call
        desk.accept("a")
        assert desk.engine.task(chat).phase == "waiting"
        desk.engine.complete(call)
        assert desk.offered_task("a") == chat

    def test_pending_voice_offer_already_blocks(self, desk: Desk) -> None:
        desk.agent("a", capacity={"voice": 1, "chat": 3})
        desk.task(channel="voice")
        desk.task(channel="chat")
        assert len(desk.offers_to("a")) == 1

    def test_chats_do_not_block_voice_by_default(self, desk: Desk) -> None:
        desk.agent("a", capacity={"voice": 1, "chat": 3})
        desk.task(channel="chat")
        desk.accept("a")
        call = desk.task(channel="voice")
        assert desk.offered_task("a") == call

    def test_rule_chats_in_progress_block_voice(self) -> None:
        desk = Desk(capacity_rules=CapacityRules(blocked_by={"voice": frozenset({"chat"})}))
        desk.queue("q")
        desk.agent("a", capacity={"voice": 1, "chat": 3})
        chat = desk.task(channel="chat")
        desk.accept("a")
        call = desk.task(channel="voice")
        assert desk.offers_to("a") == []
        desk.engine.complete(chat)
        assert desk.offered_task("a") == call

    def test_capacity_frees_after_wrap_up_not_before(self, desk: Desk) -> None:
        desk.queue("q", wrap_up_s=30)
        desk.agent("a")
        first = desk.task()
        second = desk.task()
        desk.accept("a")
        desk.engine.complete(first)
        assert desk.offers_to("a") == []
        desk.tick(30)
        assert desk.offered_task("a") == second
        wrapped = desk.events(ev.TaskWrappedUp)
        assert [(e.task_id, e.timed_out) for e in wrapped] == [(first, True)]  # type: ignore[attr-defined]

    def test_capacity_frees_at_completion_without_wrap_up(self, desk: Desk) -> None:
        desk.agent("a")
        first = desk.task()
        second = desk.task()
        desk.accept("a")
        desk.engine.complete(first)
        assert desk.offered_task("a") == second

    def test_unlimited_wrap_up_waits_for_the_agent(self, desk: Desk) -> None:
        desk.queue("q", wrap_up_s=float("inf"))
        desk.agent("a")
        first = desk.task()
        desk.task()
        desk.accept("a")
        desk.engine.complete(first)
        desk.tick(3600)
        assert desk.offers_to("a") == []
        desk.engine.wrap_up(first, "resolved")
        assert len(desk.offers_to("a")) == 1

    def test_agent_without_capacity_for_a_channel_gets_none(self, desk: Desk) -> None:
        desk.agent("a", capacity={"voice": 1})
        email = desk.task(channel="email")
        assert desk.offers_to("a") == []
        assert desk.engine.task(email).phase == "waiting"

    def test_wrap_up_of_a_task_not_in_wrap_up_is_a_conflict(self, desk: Desk) -> None:
        desk.agent("a")
        task = desk.task()
        with pytest.raises(Conflict):
            desk.engine.wrap_up(task)

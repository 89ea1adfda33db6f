"""The fold without a store: a visit per queue stay, counted once when final, in the interval it
entered; agent time split at interval boundaries; FCR repeats corrected after the fact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from omnicc.reports.fold import (
    LoggedEvent,
    QueueRules,
    VisitFold,
    interval_start,
    period_slices,
    presence_measures,
)

T0 = datetime(2026, 11, 24, 8, 10, tzinfo=UTC)
HELSINKI = ZoneInfo("Europe/Helsinki")


class Log:
    def __init__(self) -> None:
        self.seq = 0
        self.fold = VisitFold(zone=HELSINKI, visits={}, facts={}, periods={},
                              rules={"q1": QueueRules(threshold_s=20.0, short_abandon_s=5.0),
                                     "q2": QueueRules(threshold_s=30.0)},
                              teams={"ann": "north"}, hold_s={"contact-1": 12.0})

    def __call__(self, at_s: float, kind: str, **payload: Any) -> None:
        self.seq += 1
        self.fold.apply(LoggedEvent(self.seq, kind, T0 + timedelta(seconds=at_s), payload))

    def interval(self, dimension: str, key: str, at: datetime = T0) -> dict[str, float]:
        return self.fold.deltas.intervals.get((dimension, interval_start(at), key), {})


def created(log: Log, at_s: float, task: str, customer: str = "cust", **attributes: Any) -> None:
    log(at_s, "task.created", task_id=task, channel="voice", priority=0, policy_id="queue:q1",
        conversation_id=f"conv-{task}", required_skills={},
        attributes={"customer_id": customer, **attributes})
    log(at_s, "task.queued", task_id=task, queue_id="q1", step_index=0, reason="created")


def test_a_handled_contact_counts_once_when_wrapped_up_in_the_interval_it_entered() -> None:
    log = Log()
    created(log, 0, "t1", segment="gold", contact_id="contact-1")
    log(15, "offer.accepted", task_id="t1", agent_id="ann", queue_id="q1", offer_id="o",
        wait_s=15.0)
    log(1000, "task.completed", task_id="t1", agent_id="ann", queue_id="q1", talk_s=985.0)
    assert log.fold.deltas.intervals == {}  # not final before its wrap-up
    log(1030, "task.wrapped_up", task_id="t1", agent_id="ann", disposition="sale",
        wrap_up_s=30.0, timed_out=False)
    log(1030, "task.ended", task_id="t1", outcome="completed")
    total = log.interval("total", "")
    assert (total["offered"], total["handled"], total["handled_within_threshold"]) == (1, 1, 1)
    assert (total["talk_s"], total["hold_s"], total["wrap_s"]) == (973.0, 12.0, 30.0)
    assert log.interval("team", "north")["handled"] == 1
    assert log.interval("disposition", "sale")["handled"] == 1
    assert log.interval("segment", "gold")["offered"] == 1
    assert len(log.fold.deltas.intervals) == 7  # total, queue, channel, segment, agent, ...
    [visit] = log.fold.changed_visits.values()
    assert (visit.outcome, visit.is_final, visit.conversation_id) == ("handled", True, "conv-t1")


def test_abandons_and_moves_count_where_they_were_offered() -> None:
    log = Log()
    created(log, 0, "short")
    log(4, "task.abandoned", task_id="short", queue_id="q1", wait_s=4.0)
    created(log, 10, "long")
    log(10 + 25, "task.queued", task_id="long", queue_id="q1", step_index=1,
        reason="step_timeout")  # the same queue: the same visit
    log(10 + 40, "task.queued", task_id="long", queue_id="q2", step_index=2,
        reason="step_timeout")  # overflow: offered in q2 too
    log(10 + 70, "task.abandoned", task_id="long", queue_id="q2", wait_s=70.0)
    q1, q2 = log.interval("queue", "q1"), log.interval("queue", "q2")
    assert (q1["offered"], q1["abandoned"]) == (2, 1)
    assert q1["short_abandoned"] == 1 and q1["abandoned_after_threshold"] == 0
    assert (q2["offered"], q2["abandoned"], q2["abandoned_after_threshold"]) == (1, 1, 1)
    assert q2["abandon_wait_s"] == 70.0
    assert log.interval("total", "")["offered"] == 3


def test_a_transfer_ends_the_first_visit_and_counts_again_in_the_next_queue() -> None:
    log = Log()
    created(log, 0, "t")
    log(5, "offer.accepted", task_id="t", agent_id="ann", queue_id="q1", offer_id="o", wait_s=5.0)
    log(65, "task.transferred", task_id="t", from_agent_id="ann", to_queue_id="q2",
        to_agent_id=None)
    log(65, "task.queued", task_id="t", queue_id="q2", step_index=0, reason="transfer")
    first = log.interval("queue", "q1")
    assert (first["handled"], first["transfers"], first["talk_s"]) == (1, 1, 60.0)
    assert first["fcr_contacts"] == 0  # the customer's issue went on
    log(100, "task.cancelled", task_id="t", reason="gone")
    second = log.interval("queue", "q2")
    assert (second["offered"], second["transfers_in"], second.get("handled", 0)) == (1, 1, 0)


def test_a_new_contact_within_seven_days_corrects_first_contact_resolution() -> None:
    log = Log()
    created(log, 0, "first", customer="c9")
    log(5, "offer.accepted", task_id="first", agent_id="ann", queue_id="q1", offer_id="o",
        wait_s=5.0)
    log(50, "task.completed", task_id="first", agent_id="ann", queue_id="q1", talk_s=45.0)
    log(50, "task.ended", task_id="first", outcome="completed")
    assert log.interval("total", "")["fcr_contacts"] == 1
    assert log.interval("total", "").get("fcr_repeats", 0) == 0
    created(log, 3 * 86400, "again", customer="c9")
    assert log.interval("total", "")["fcr_repeats"] == 1  # corrected where it was counted
    created(log, 9 * 86400, "much-later", customer="c9")
    assert log.interval("total", "")["fcr_repeats"] == 1


def test_agent_time_is_split_at_interval_boundaries() -> None:
    log = Log()
    log(0, "agent.status_changed", agent_id="ann", status="available", presence="available",
        previous_presence="offline")
    log(600, "agent.status_changed", agent_id="ann", status="available", presence="busy",
        previous_presence="available")
    log(1400, "agent.status_changed", agent_id="ann", status="break", presence="break",
        previous_presence="busy", reason="lunch")
    first = log.interval("agent", "ann")  # 08:10-08:15: 5 min available
    second = log.interval("agent", "ann", T0 + timedelta(minutes=5))  # 08:15-08:30
    assert (first["logged_in_s"], first["available_s"]) == (300.0, 300.0)
    assert second == {"logged_in_s": 900.0, "available_s": 300.0, "handling_s": 600.0}
    assert log.interval("team", "north", T0 + timedelta(minutes=20))["handling_s"] == 200.0
    assert "ann" in log.fold.periods and log.fold.periods["ann"].status == "break"


@pytest.mark.parametrize(("presence", "measures"), [
    ("offline", ()), ("available", ("logged_in_s", "available_s")),
    ("busy", ("logged_in_s", "handling_s")),
    ("wrap_up", ("logged_in_s", "handling_s", "wrap_up_status_s")),
    ("training", ("logged_in_s", "break_s")),
])
def test_presences_map_to_agent_time(presence: str, measures: tuple[str, ...]) -> None:
    assert presence_measures(presence) == measures


def test_period_slices_cover_the_period_exactly() -> None:
    start = T0 + timedelta(seconds=7)
    slices = list(period_slices(start, start + timedelta(hours=2)))
    assert sum(seconds for _, seconds in slices) == 7200.0
    assert len(slices) == 9 and slices[0][1] == 293.0

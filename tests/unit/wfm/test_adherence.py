"""Schedule adherence and conformance on a day worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from omnicc.reports.queries import StatusInterval
from omnicc.wfm.adherence import OutOfAdherence, actual_activity, adherence
from omnicc.wfm.schedule import Break, Shift


def span(agent_id: str, presence: str, start: datetime, end: datetime) -> StatusInterval:
    """A status period as the reports fold them (status and presence alike here)."""
    return StatusInterval(agent_id, presence, presence, "", start, end)


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 1, 5, hour, minute, tzinfo=UTC)


SHIFT = Shift("alice", at(0).date(), at(9), at(13), (Break(at(11), at(11, 30)),))
# Late by 10 minutes, 15 minutes over the break, gone half an hour early.
STATUSES = [
    span("alice", "offline", at(0), at(9, 10)),
    span("alice", "available", at(9, 10), at(10)),
    span("alice", "busy", at(10), at(11)),
    span("alice", "break", at(11), at(11, 45)),
    span("alice", "wrap_up", at(11, 45), at(12, 30)),
    span("alice", "offline", at(12, 30), at(23)),
    span("bob", "available", at(9), at(17)),  # no shift: not reported
]


def test_adherence_conformance_and_out_of_adherence_periods() -> None:
    (alice,) = adherence([SHIFT], STATUSES, at(0), at(23))
    assert alice.agent_id == "alice"
    assert alice.scheduled_s == 4 * 3600
    assert alice.in_adherence_s == 4 * 3600 - 600 - 900 - 1800
    assert alice.adherence == pytest.approx(11_100 / 14_400)
    assert alice.planned_work_s == 3.5 * 3600
    assert alice.worked_s == 50 * 60 + 3600 + 45 * 60
    assert alice.conformance == pytest.approx(9_300 / 12_600)
    assert alice.out_of_adherence == (
        OutOfAdherence(at(9), at(9, 10), "work", "off"),
        OutOfAdherence(at(11, 30), at(11, 45), "work", "break"),
        OutOfAdherence(at(12, 30), at(13), "work", "off"),
    )


def test_grace_forgives_short_stretches_and_the_window_clips() -> None:
    (alice,) = adherence([SHIFT], STATUSES, at(0), at(23), grace_s=700)
    assert alice.in_adherence_s == 14_400 - 900 - 1800
    assert len(alice.out_of_adherence) == 2
    (morning,) = adherence([SHIFT], STATUSES, at(9), at(10))
    assert morning.scheduled_s == 3600 and morning.in_adherence_s == 3000


def test_working_through_a_planned_break_is_out_of_adherence() -> None:
    always = [span("alice", "available", at(8), at(14))]
    (alice,) = adherence([SHIFT], always, at(8), at(14))
    assert alice.out_of_adherence == (OutOfAdherence(at(11), at(11, 30), "break", "work"),)
    assert alice.worked_s == 6 * 3600  # conformance counts work outside the shift too


def test_presences_map_to_activities() -> None:
    assert [actual_activity(p) for p in ("available", "busy", "wrap_up", "offline", "break",
                                         "no_answer", "lunch")] == [
        "work", "work", "work", "off", "break", "break", "break"]

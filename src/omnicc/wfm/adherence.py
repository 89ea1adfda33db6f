"""Schedule adherence: the plan (shifts and breaks) against what agents did (their statuses).

At each moment the plan says work (on shift, not on a break), break (a scheduled break) or off;
the agent's presence says work (available, busy, wrap-up), off (offline) or break (any other
logged-in status: break, no_answer, custom pauses). Over the scheduled time, adherence is the
share of it where the two agree; conformance is the time actually worked over the time planned
for work in the window, wherever it happened. Out-of-adherence periods are the stretches of
scheduled time where they disagree; those shorter than a grace period count as adherent.
"""

from __future__ import annotations

import bisect
import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from omnicc.core.model import BUSY, WRAP_UP
from omnicc.wfm.schedule import Shift

Activity = Literal["work", "break", "off"]
WORKING_PRESENCES = frozenset({"available", BUSY, WRAP_UP})


class StatusPeriod(Protocol):
    """An agent's presence from `start` to `end`, like the reports' `StatusInterval`
    (`omnicc.reports.queries.agent_status_intervals`, folded from the event log)."""

    @property
    def agent_id(self) -> str: ...
    @property
    def presence(self) -> str: ...
    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class OutOfAdherence:
    start: datetime
    end: datetime
    planned: Activity
    actual: Activity


@dataclass(frozen=True, slots=True)
class AgentAdherence:
    """Figures of one agent in the window; ratios are None when nothing was planned."""

    agent_id: str
    scheduled_s: float
    in_adherence_s: float
    planned_work_s: float
    worked_s: float
    out_of_adherence: tuple[OutOfAdherence, ...]

    @property
    def adherence(self) -> float | None:
        return self.in_adherence_s / self.scheduled_s if self.scheduled_s else None

    @property
    def conformance(self) -> float | None:
        return self.worked_s / self.planned_work_s if self.planned_work_s else None


def actual_activity(presence: str) -> Activity:
    if presence in WORKING_PRESENCES:
        return "work"
    return "off" if presence == "offline" else "break"


def _planned(shifts: Sequence[Shift], at: datetime) -> Activity:
    for shift in shifts:
        if shift.start <= at < shift.end:
            if any(b.start <= at < b.end for b in shift.breaks):
                return "break"
            return "work"
    return "off"


def _actual(periods: Sequence[StatusPeriod], starts: list[datetime], at: datetime) -> Activity:
    """The activity at `at`; periods sorted by start and not overlapping."""
    index = bisect.bisect_right(starts, at) - 1
    if index >= 0 and at < periods[index].end:
        return actual_activity(periods[index].presence)
    return "off"


def adherence(shifts: Iterable[Shift], statuses: Iterable[StatusPeriod], start: datetime,
              end: datetime, grace_s: float = 0.0) -> list[AgentAdherence]:
    """Per agent with a shift in the window (sorted by id), the plan against the statuses."""
    planned: dict[str, list[Shift]] = defaultdict(list)
    for shift in shifts:
        if shift.start < end and shift.end > start:
            planned[shift.agent_id].append(shift)
    actual: dict[str, list[StatusPeriod]] = defaultdict(list)
    for period in statuses:
        if period.agent_id in planned:
            actual[period.agent_id].append(period)
    return [_agent(agent_id, planned[agent_id], actual[agent_id], start, end, grace_s)
            for agent_id in sorted(planned)]


def _agent(agent_id: str, shifts: list[Shift], periods: list[StatusPeriod], start: datetime,
           end: datetime, grace_s: float) -> AgentAdherence:
    cuts = {start, end}
    for shift in shifts:
        cuts.update((shift.start, shift.end))
        for brk in shift.breaks:
            cuts.update((brk.start, brk.end))
    for period in periods:
        cuts.update((period.start, period.end))
    points = sorted(at for at in cuts if start <= at <= end)
    periods = sorted(periods, key=lambda period: period.start)
    starts = [period.start for period in periods]
    scheduled_s = in_adherence_s = planned_work_s = worked_s = 0.0
    stretches: list[OutOfAdherence] = []
    for begin, finish in itertools.pairwise(points):
        seconds = (finish - begin).total_seconds()
        plan, did = _planned(shifts, begin), _actual(periods, starts, begin)
        if plan == "work":
            planned_work_s += seconds
        if did == "work":
            worked_s += seconds
        if plan == "off":
            continue
        scheduled_s += seconds
        if plan == did:
            in_adherence_s += seconds
            continue
        last = stretches[-1] if stretches else None
        if last is not None and last.end == begin and (last.planned, last.actual) == (plan, did):
            stretches[-1] = OutOfAdherence(last.start, finish, plan, did)
        else:
            stretches.append(OutOfAdherence(begin, finish, plan, did))
    kept = []
    for stretch in stretches:
        if (stretch.end - stretch.start).total_seconds() < grace_s:
            in_adherence_s += (stretch.end - stretch.start).total_seconds()
        else:
            kept.append(stretch)
    return AgentAdherence(agent_id, scheduled_s, in_adherence_s, planned_work_s, worked_s,
                          tuple(kept))


"""The pure fold of engine events into queue visits and agent status periods.

A visit is METRICS.md's offered contact: a task entering a queue (created, transferred, or moved
to another queue by a policy step). It is *final* - counted in the totals, once - when the task
left that queue for good: abandoned, timed out, cancelled, moved on, transferred, or handled
and wrapped up. A status period is an agent's time in one status and presence, final when the
next `agent.status_changed` ends it. Both are plain dataclasses so the builder can keep them in
the store between batches and the unit tests can drive the fold without one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from omnicc.store.tables.reports import MEASURES

INTERVAL_S = 900
"""The base interval: every coarser interval (30, 60 minutes, day) is a sum of these."""
FCR_WINDOW = timedelta(days=7)
"""METRICS.md's first-contact resolution window (N days, default 7)."""
DEFAULT_THRESHOLD_S = 20.0
DEFAULT_SHORT_ABANDON_S = 5.0


@dataclass(frozen=True, slots=True)
class QueueRules:
    """What a queue's configuration says about its figures (the engine's `QueueConfig`)."""

    threshold_s: float = DEFAULT_THRESHOLD_S
    short_abandon_s: float = DEFAULT_SHORT_ABANDON_S


@dataclass(slots=True)
class TaskFacts:
    """What a task brings to each of its visits (from `task.created` or the task row)."""

    channel: str
    conversation_id: str | None = None
    contact_id: str | None = None
    customer_key: str | None = None
    segment: str = ""


@dataclass(slots=True)
class Visit:
    """One task's stay in one queue; the fields of a `report_contacts` row."""

    task_id: str
    visit: int
    queue_id: str
    channel: str
    entered_reason: str
    entered_at: datetime
    threshold_s: float
    conversation_id: str | None = None
    contact_id: str | None = None
    customer_key: str | None = None
    segment: str = ""
    agent_id: str | None = None
    team: str = ""
    disposition: str = ""
    accepted_at: datetime | None = None
    ended_at: datetime | None = None
    outcome: str | None = None
    wait_s: float = 0.0
    talk_s: float = 0.0
    hold_s: float = 0.0
    wrap_s: float = 0.0
    transferred: bool = False
    fcr_repeat: bool = False
    csat_score: int | None = None
    is_final: bool = False

    def is_open(self) -> bool:
        """Still in its queue, or handled with the wrap-up to come."""
        return not self.is_final

    def counts_for_fcr(self) -> bool:
        """A handled contact that ended the customer's visit (not transferred on)."""
        return self.outcome == "handled" and not self.transferred


@dataclass(slots=True)
class StatusPeriod:
    """An agent's time in one status; a `report_agent_statuses` row."""

    seq: int
    agent_id: str
    status: str
    presence: str
    reason: str
    started_at: datetime
    ended_at: datetime | None = None


Key = tuple[str, str]
"""(dimension, key) of a total; the `total` dimension's key is ""."""


@dataclass(slots=True)
class Deltas:
    """What a batch adds to the totals: per 15-minute interval and per local day."""

    zone: ZoneInfo
    intervals: dict[tuple[str, datetime, str], dict[str, float]] = field(default_factory=dict)
    days: dict[tuple[str, date, str], dict[str, float]] = field(default_factory=dict)

    def add(self, at: datetime, keys: list[Key], measures: Mapping[str, float]) -> None:
        start = interval_start(at)
        day = at.astimezone(self.zone).date()
        for dimension, key in keys:
            for row in (self.intervals.setdefault((dimension, start, key), {}),
                        self.days.setdefault((dimension, day, key), {})):
                for name, value in measures.items():
                    row[name] = row.get(name, 0) + value

    def __bool__(self) -> bool:
        return bool(self.intervals)


def interval_start(at: datetime) -> datetime:
    """The start of the 15-minute interval (UTC) that holds `at`."""
    seconds = int(at.timestamp()) // INTERVAL_S * INTERVAL_S
    return datetime.fromtimestamp(seconds, UTC)


def visit_keys(visit: Visit) -> list[Key]:
    """The totals a visit counts in: the whole, its queue, channel and segment, and its agent,
    the agent's team and its disposition when an agent handled it."""
    keys: list[Key] = [("total", ""), ("queue", visit.queue_id), ("channel", visit.channel),
                       ("segment", visit.segment)]
    if visit.agent_id is not None and visit.outcome == "handled":
        keys += [("agent", visit.agent_id), ("team", visit.team),
                 ("disposition", visit.disposition)]
    return keys


def visit_measures(visit: Visit, rules: QueueRules) -> dict[str, float]:
    """A final visit's contribution to the totals (METRICS.md)."""
    measures: dict[str, float] = {"offered": 1,
                                  "transfers_in": int(visit.entered_reason == "transfer")}
    if visit.outcome == "handled":
        measures.update(
            handled=1, handled_within_threshold=int(visit.wait_s <= visit.threshold_s),
            wait_s=visit.wait_s, talk_s=visit.talk_s, hold_s=visit.hold_s, wrap_s=visit.wrap_s,
            transfers=int(visit.transferred), fcr_contacts=int(visit.counts_for_fcr()),
            fcr_repeats=int(visit.counts_for_fcr() and visit.fcr_repeat),
        )
        if visit.csat_score is not None:
            measures.update(csat_answers=1, csat_good=int(visit.csat_score >= 4))
    elif visit.outcome == "abandoned":
        measures.update(
            abandoned=1, abandon_wait_s=visit.wait_s,
            short_abandoned=int(visit.wait_s <= rules.short_abandon_s),
            abandoned_after_threshold=int(visit.wait_s > visit.threshold_s),
        )
    elif visit.outcome == "timed_out":
        measures["timed_out"] = 1
    return measures


def presence_measures(presence: str) -> tuple[str, ...]:
    """The agent-time measures one second in `presence` adds to (METRICS.md: occupancy is
    handling / (available + handling), utilisation is handling / logged in)."""
    if presence == "offline":
        return ()
    if presence == "available":
        return ("logged_in_s", "available_s")
    if presence == "busy":
        return ("logged_in_s", "handling_s")
    if presence == "wrap_up":
        return ("logged_in_s", "handling_s", "wrap_up_status_s")
    return ("logged_in_s", "break_s")


def period_slices(started_at: datetime, ended_at: datetime) -> Iterator[tuple[datetime, float]]:
    """(a moment in the slice, seconds) for each 15-minute interval the period passes through."""
    at = started_at
    while at < ended_at:
        end = min(interval_start(at) + timedelta(seconds=INTERVAL_S), ended_at)
        yield at, (end - at).total_seconds()
        at = end


def add_period(deltas: Deltas, period: StatusPeriod, team: str) -> None:
    """A finished status period's seconds, interval by interval, to the agent's totals."""
    names = presence_measures(period.presence)
    if not names or period.ended_at is None:
        return
    keys: list[Key] = [("total", ""), ("agent", period.agent_id), ("team", team)]
    for at, seconds in period_slices(period.started_at, period.ended_at):
        deltas.add(at, keys, dict.fromkeys(names, seconds))


def empty_totals() -> dict[str, float]:
    return dict.fromkeys(MEASURES, 0)


def task_facts(attributes: Mapping[str, Any], channel: str,
               conversation_id: str | None) -> TaskFacts:
    """The report facts of a task from its attributes (as every channel writes them: the
    customer's `customer_id` and `segment`, the contact's `contact_id`)."""
    customer = attributes.get("customer_id")
    contact = attributes.get("contact_id")
    segment = attributes.get("segment")
    return TaskFacts(
        channel=channel, conversation_id=conversation_id,
        contact_id=contact if isinstance(contact, str) else None,
        customer_key=customer if isinstance(customer, str) else conversation_id,
        segment=str(segment)[:64] if segment not in (None, "") else "",
    )


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """An event as the log stores it."""

    seq: int
    type: str
    at: datetime
    payload: Mapping[str, Any]


class VisitFold:
    """Applies a batch of events to the visits and status periods the builder loaded for it.

    `visits` holds each task's latest visit, `periods` each agent's open status period; the
    fold adds what becomes final to `deltas` and remembers what changed for the builder to
    write. `new_contacts` lists (customer, time) of tasks created, for the FCR look-back the
    builder makes in the store for visits not in memory.
    """

    def __init__(self, *, zone: ZoneInfo, visits: dict[str, Visit],
                 facts: dict[str, TaskFacts], periods: dict[str, StatusPeriod],
                 rules: Mapping[str, QueueRules], teams: Mapping[str, str],
                 hold_s: Mapping[str, float]) -> None:
        self.deltas = Deltas(zone)
        self.visits = visits
        self.facts = facts
        self.periods = periods
        self.rules = rules
        self.teams = teams
        self.hold_s = hold_s
        self.changed_visits: dict[tuple[str, int], Visit] = {}
        self.changed_periods: dict[int, StatusPeriod] = {}
        self.new_contacts: list[tuple[str, datetime]] = []
        self._by_customer: dict[str, list[Visit]] = {}
        for visit in visits.values():
            self._index(visit)

    def apply(self, event: LoggedEvent) -> None:  # one branch per event type
        payload, at = event.payload, event.at
        task_id = str(payload.get("task_id", ""))
        match event.type:
            case "task.created":
                self.facts[task_id] = task_facts(payload.get("attributes") or {},
                                                 str(payload["channel"]),
                                                 payload.get("conversation_id"))
                if self.facts[task_id].customer_key is not None:
                    self._repeat_contact(self.facts[task_id].customer_key or "", at)
            case "task.queued":
                self._queued(task_id, str(payload["queue_id"]), str(payload["reason"]), at)
            case "offer.accepted":
                visit = self._open(task_id)
                if visit is not None:
                    visit.agent_id = str(payload["agent_id"])
                    visit.team = self.teams.get(visit.agent_id, "")
                    visit.accepted_at, visit.wait_s = at, float(payload["wait_s"])
                    visit.outcome = "handled"
                    self._changed(visit)
            case "task.transferred":
                visit = self._open(task_id)
                if visit is not None and visit.outcome == "handled":
                    visit.transferred, visit.ended_at = True, at
                    visit.talk_s = (at - (visit.accepted_at or at)).total_seconds()
                    self._finish(visit)
            case "task.completed":
                visit = self._open(task_id)
                if visit is not None and visit.outcome == "handled":
                    visit.ended_at, visit.talk_s = at, float(payload["talk_s"])
                    self._changed(visit)
            case "task.wrapped_up":
                visit = self._open(task_id)
                if visit is not None and visit.outcome == "handled":
                    visit.wrap_s = float(payload["wrap_up_s"])
                    visit.disposition = str(payload.get("disposition") or "")[:64]
                    self._finish(visit)
            case "task.abandoned" | "task.timed_out":
                visit = self._open(task_id)
                if visit is not None:
                    visit.outcome = event.type.removeprefix("task.")
                    visit.wait_s, visit.ended_at = float(payload["wait_s"]), at
                    self._finish(visit)
            case "task.cancelled" | "task.ended":
                # A handled task ending without wrap-up (the queue has none, or it was
                # cancelled while assigned) is final as it stands.
                visit = self._open(task_id)
                if visit is not None:
                    if visit.outcome is None:
                        visit.outcome = "cancelled"
                    visit.ended_at = visit.ended_at or at
                    self._finish(visit)
            case "agent.status_changed":
                self._status(event)

    def _queued(self, task_id: str, queue_id: str, reason: str, at: datetime) -> None:
        previous = self.visits.get(task_id)
        if previous is not None and previous.is_open():
            if reason == "step_timeout" and previous.queue_id == queue_id:
                return  # a policy step within the same queue: the same visit goes on
            if previous.outcome is None:
                previous.outcome, previous.ended_at = "moved", at
            self._finish(previous)
        facts = self.facts.get(task_id) or TaskFacts(channel="unknown")
        visit = Visit(
            task_id=task_id, visit=1 if previous is None else previous.visit + 1,
            queue_id=queue_id, channel=facts.channel, entered_reason=reason, entered_at=at,
            threshold_s=self.rules.get(queue_id, QueueRules()).threshold_s,
            conversation_id=facts.conversation_id, contact_id=facts.contact_id,
            customer_key=facts.customer_key, segment=facts.segment,
        )
        self.visits[task_id] = visit
        self._index(visit)
        self._changed(visit)

    def _index(self, visit: Visit) -> None:
        if visit.customer_key is not None:
            self._by_customer.setdefault(visit.customer_key, []).append(visit)

    def _open(self, task_id: str) -> Visit | None:
        visit = self.visits.get(task_id)
        return visit if visit is not None and visit.is_open() else None

    def _finish(self, visit: Visit) -> None:
        if visit.outcome == "handled" and not visit.transferred and not visit.is_final:
            # The call's record (hold time) is saved when the call ends, before the wrap-up
            # that makes the visit final: talk is the engine's talk time minus hold.
            visit.hold_s = self.hold_s.get(visit.contact_id or "", 0.0)
            visit.talk_s = max(0.0, visit.talk_s - visit.hold_s)
        if not visit.is_final:
            visit.is_final = True
            self.deltas.add(visit.entered_at, visit_keys(visit),
                            visit_measures(visit, self.rules.get(visit.queue_id, QueueRules())))
        self._changed(visit)

    def _changed(self, visit: Visit) -> None:
        self.changed_visits[(visit.task_id, visit.visit)] = visit

    def _repeat_contact(self, customer_key: str, at: datetime) -> None:
        """A new contact of the customer: their handled contacts that ended within the FCR
        window before it were not resolved at first contact."""
        self.new_contacts.append((customer_key, at))
        for visit in self._by_customer.get(customer_key, ()):
            if mark_repeat(visit, at, self.deltas):
                self._changed(visit)

    def _status(self, event: LoggedEvent) -> None:
        payload = event.payload
        agent_id = str(payload["agent_id"])
        previous = self.periods.get(agent_id)
        if previous is not None:
            previous.ended_at = event.at
            add_period(self.deltas, previous, self.teams.get(agent_id, ""))
            self.changed_periods[previous.seq] = previous
        period = StatusPeriod(seq=event.seq, agent_id=agent_id, status=str(payload["status"]),
                              presence=str(payload["presence"]),
                              reason=str(payload.get("reason") or "")[:200],
                              started_at=event.at)
        self.periods[agent_id] = period
        self.changed_periods[period.seq] = period


def mark_repeat(visit: Visit, at: datetime, deltas: Deltas) -> bool:
    """Mark `visit` as followed by another contact at `at` when that falls in its FCR window;
    a visit already counted gets its correction in `deltas`. True when it changed."""
    if (not visit.counts_for_fcr() or visit.fcr_repeat or visit.ended_at is None
            or not visit.ended_at <= at <= visit.ended_at + FCR_WINDOW):
        return False
    visit.fcr_repeat = True
    if visit.is_final:
        deltas.add(visit.entered_at, visit_keys(visit), {"fcr_repeats": 1})
    return True

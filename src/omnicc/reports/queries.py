"""Reading the report tables: totals per period and key with their figures, the contacts behind
a total, agent status intervals and a queue's volume and handle time per interval.

Interval grains (15, 30, 60 minutes) read the 15-minute totals; day, week and month read the
daily ones, so a month's report reads about 30 rows per key whatever the traffic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.core.errors import InvalidConfiguration
from omnicc.reports.fold import INTERVAL_S, empty_totals
from omnicc.store.tables import (
    Agent,
    Queue,
    ReportAgentStatus,
    ReportContact,
    ReportDay,
    ReportInterval,
    Tenant,
    WrapUpCode,
)
from omnicc.store.tables.reports import DIMENSIONS, MEASURES
from omnicc.wfm.series import IntervalSeries

GRAINS = ("15min", "30min", "60min", "day", "week", "month", "all")
INTERVAL_GRAINS = {"15min": 15, "30min": 30, "60min": 60}
DRILL_OUTCOMES = ("handled", "abandoned", "timed_out", "cancelled", "moved")
DRILL_LIMIT = 1000
EARLIEST, LATEST = date(2000, 1, 1), date(2999, 12, 31)

FIGURES = (
    "offered", "handled", "abandoned", "abandonment_rate", "short_abandoned",
    "avg_abandon_wait_s", "service_level_sl1", "service_level_sl2", "service_level_sl3",
    "asa_s", "aht_s", "avg_talk_s", "avg_hold_s", "avg_wrap_s", "transfers", "transfers_in",
    "timed_out", "fcr_rate", "csat", "csat_answers", "occupancy", "utilisation",
    "logged_in_s", "available_s", "break_s",
)
"""The columns of a report, in order (METRICS.md names and definitions)."""


class ReportError(InvalidConfiguration):
    """A report asked for something that does not exist (grain, dimension, range)."""


@dataclass(frozen=True, slots=True)
class ReportRequest:
    """Days `start`..`end` inclusive in the tenant's time zone, cut by `grain`, one row per
    key of `dimension` (optionally only `keys`)."""

    start: date
    end: date
    grain: str = "day"
    dimension: str = "total"
    keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.grain not in GRAINS:
            raise ReportError(f"grain must be one of {', '.join(GRAINS)}")
        if self.dimension not in DIMENSIONS:
            raise ReportError(f"dimension must be one of {', '.join(DIMENSIONS)}")
        if self.end < self.start:
            raise ReportError("end is before start")
        if (self.end - self.start).days > 400:
            raise ReportError("a report covers at most 400 days")
        if self.grain in INTERVAL_GRAINS and (self.end - self.start).days > 31:
            raise ReportError("a report per 15, 30 or 60 minutes covers at most 31 days")
        if self.start < EARLIEST or self.end > LATEST:
            raise ReportError(f"days from {EARLIEST} to {LATEST}")


@dataclass(frozen=True, slots=True)
class ReportRow:
    period: str
    """ISO start of the period (an interval's local time, a day, a week's Monday, a month)."""
    key: str
    totals: Mapping[str, float]
    figures: Mapping[str, float | None]


@dataclass(frozen=True, slots=True)
class Report:
    request: ReportRequest
    timezone: str
    rows: list[ReportRow]
    total: ReportRow
    """All rows together (their key is "")."""


@dataclass(frozen=True, slots=True)
class StatusInterval:
    """An agent's time in one status, clipped to the window asked for."""

    agent_id: str
    status: str
    presence: str
    reason: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class DrillContact:
    """One contact behind a total: the task, its conversation and what was measured."""

    task_id: str
    visit: int
    conversation_id: str | None
    contact_id: str | None
    queue_id: str
    channel: str
    agent_id: str | None
    team: str
    disposition: str
    segment: str
    entered_at: datetime
    outcome: str | None
    wait_s: float
    talk_s: float
    hold_s: float
    wrap_s: float
    transferred: bool
    csat_score: int | None


def figures(totals: Mapping[str, float]) -> dict[str, float | None]:
    """The report's figures from summed measures (METRICS.md; None where undefined)."""

    def ratio(numerator: float, denominator: float) -> float | None:
        return numerator / denominator if denominator else None

    offered, handled = totals["offered"], totals["handled"]
    abandoned, within = totals["abandoned"], totals["handled_within_threshold"]
    handling_s = totals["handling_s"]
    return {
        "offered": offered,
        "handled": handled,
        "abandoned": abandoned,
        "abandonment_rate": ratio(abandoned, offered),
        "short_abandoned": totals["short_abandoned"],
        "avg_abandon_wait_s": ratio(totals["abandon_wait_s"], abandoned),
        "service_level_sl1": ratio(within, handled),
        "service_level_sl2": ratio(within, handled + totals["abandoned_after_threshold"]),
        "service_level_sl3": ratio(within, offered),
        "asa_s": ratio(totals["wait_s"], handled),
        "aht_s": ratio(totals["talk_s"] + totals["hold_s"] + totals["wrap_s"], handled),
        "avg_talk_s": ratio(totals["talk_s"], handled),
        "avg_hold_s": ratio(totals["hold_s"], handled),
        "avg_wrap_s": ratio(totals["wrap_s"], handled),
        "transfers": totals["transfers"],
        "transfers_in": totals["transfers_in"],
        "timed_out": totals["timed_out"],
        "fcr_rate": ratio(totals["fcr_contacts"] - totals["fcr_repeats"], totals["fcr_contacts"]),
        "csat": ratio(totals["csat_good"], totals["csat_answers"]),
        "csat_answers": totals["csat_answers"],
        "occupancy": ratio(handling_s, totals["available_s"] + handling_s),
        "utilisation": ratio(handling_s, totals["logged_in_s"]),
        "logged_in_s": totals["logged_in_s"],
        "available_s": totals["available_s"],
        "break_s": totals["break_s"],
    }


async def tenant_zone(session: AsyncSession, tenant_id: str) -> ZoneInfo:
    name = (await session.execute(select(Tenant.timezone).where(
        Tenant.id == tenant_id))).scalar_one()
    return ZoneInfo(name or "UTC")


def day_window(start: date, end: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """UTC bounds of local days `start`..`end` inclusive."""
    first = datetime.combine(start, time(), zone).astimezone(UTC)
    last = datetime.combine(end + timedelta(days=1), time(), zone).astimezone(UTC)
    return first, last


async def build_report(session: AsyncSession, tenant_id: str, request: ReportRequest) -> Report:
    """The totals and figures of `request`, from the report tables as they stand."""
    zone = await tenant_zone(session, tenant_id)
    grouped: dict[tuple[str, str], dict[str, float]] = {}
    measures = [getattr(ReportDay, name) for name in MEASURES]
    if request.grain in INTERVAL_GRAINS:
        first, last = day_window(request.start, request.end, zone)
        statement: Any = select(ReportInterval.start, ReportInterval.key, *[
            getattr(ReportInterval, name) for name in MEASURES]).where(
            ReportInterval.tenant_id == tenant_id,
            ReportInterval.dimension == request.dimension,
            ReportInterval.start >= first, ReportInterval.start < last)
        if request.keys:
            statement = statement.where(ReportInterval.key.in_(request.keys))
        minutes = INTERVAL_GRAINS[request.grain]
        for start, key, *values in (await session.execute(statement)).all():
            local = start.astimezone(zone)
            period = local.replace(minute=local.minute // minutes * minutes)
            _add(grouped, (period.isoformat(timespec="minutes"), key), values)
    else:
        statement = select(ReportDay.day, ReportDay.key, *measures).where(
            ReportDay.tenant_id == tenant_id, ReportDay.dimension == request.dimension,
            ReportDay.day >= request.start, ReportDay.day <= request.end)
        if request.keys:
            statement = statement.where(ReportDay.key.in_(request.keys))
        for day, key, *values in (await session.execute(statement)).all():
            _add(grouped, (_day_period(day, request), key), values)
    rows = [ReportRow(period, key, totals, figures(totals))
            for (period, key), totals in sorted(grouped.items())]
    whole = empty_totals()
    for row in rows:
        for name in MEASURES:
            whole[name] += row.totals[name]
    return Report(request=request, timezone=str(zone), rows=rows,
                  total=ReportRow("", "", whole, figures(whole)))


def _add(grouped: dict[tuple[str, str], dict[str, float]], group: tuple[str, str],
         values: Sequence[float]) -> None:
    totals = grouped.get(group)
    if totals is None:
        totals = grouped[group] = empty_totals()
    for name, value in zip(MEASURES, values, strict=True):
        totals[name] += value


def _day_period(day: date, request: ReportRequest) -> str:
    if request.grain == "week":
        return (day - timedelta(days=day.weekday())).isoformat()
    if request.grain == "month":
        return day.replace(day=1).isoformat()
    if request.grain == "all":
        return request.start.isoformat()
    return day.isoformat()


async def drill_down(session: AsyncSession, tenant_id: str, request: ReportRequest, *,
                     period: str | None = None, key: str | None = None,
                     outcome: str | None = None,
                     limit: int = DRILL_LIMIT) -> list[DrillContact]:
    """The contacts behind a total of `request`: those of `period` (a row's period, or the
    whole range) and `key` (of the request's dimension), optionally of one outcome."""
    zone = await tenant_zone(session, tenant_id)
    first, last = _period_window(request, period, zone)
    statement = select(ReportContact).where(
        ReportContact.tenant_id == tenant_id, ReportContact.is_final.is_(True),
        ReportContact.entered_at >= first, ReportContact.entered_at < last)
    if key is not None and request.dimension != "total":
        column = {"queue": ReportContact.queue_id, "channel": ReportContact.channel,
                  "agent": ReportContact.agent_id, "team": ReportContact.team,
                  "disposition": ReportContact.disposition,
                  "segment": ReportContact.segment}[request.dimension]
        statement = statement.where(column == key)
        if request.dimension in ("agent", "team", "disposition"):
            statement = statement.where(ReportContact.outcome == "handled")
    if outcome is not None:
        if outcome not in DRILL_OUTCOMES:
            raise ReportError(f"outcome must be one of {', '.join(DRILL_OUTCOMES)}")
        statement = statement.where(ReportContact.outcome == outcome)
    statement = statement.order_by(ReportContact.entered_at, ReportContact.task_id).limit(limit)
    return [DrillContact(
        task_id=row.task_id, visit=row.visit, conversation_id=row.conversation_id,
        contact_id=row.contact_id, queue_id=row.queue_id, channel=row.channel,
        agent_id=row.agent_id, team=row.team, disposition=row.disposition, segment=row.segment,
        entered_at=row.entered_at, outcome=row.outcome, wait_s=row.wait_s, talk_s=row.talk_s,
        hold_s=row.hold_s, wrap_s=row.wrap_s, transferred=row.transferred,
        csat_score=row.csat_score) for row in (await session.execute(statement)).scalars()]


def _period_window(request: ReportRequest, period: str | None,
                   zone: ZoneInfo) -> tuple[datetime, datetime]:
    if period is None or request.grain == "all":
        return day_window(request.start, request.end, zone)
    try:
        return _window_of(request, period, zone)
    except (ValueError, OverflowError) as error:
        raise ReportError(f"period {period!r} is not a {request.grain} start") from error


def _window_of(request: ReportRequest, period: str, zone: ZoneInfo) -> tuple[datetime, datetime]:
    if request.grain in INTERVAL_GRAINS:
        start = datetime.fromisoformat(period)
        start = start.replace(tzinfo=zone) if start.tzinfo is None else start
        return (start.astimezone(UTC),
                (start + timedelta(minutes=INTERVAL_GRAINS[request.grain])).astimezone(UTC))
    day = date.fromisoformat(period)
    if not EARLIEST <= day <= LATEST:
        raise ValueError(f"{day} is out of range")
    if request.grain == "week":
        return day_window(day, day + timedelta(days=6), zone)
    if request.grain == "month":
        following = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
        return day_window(day, following - timedelta(days=1), zone)
    return day_window(day, day, zone)


async def agent_status_intervals(session: AsyncSession, tenant_id: str, start: datetime,
                                 end: datetime, agent_ids: Sequence[str] = (),
                                 now: datetime | None = None) -> list[StatusInterval]:
    """Each agent's statuses between `start` and `end`, clipped to them (a status still lasting
    ends at `now`). What schedule adherence compares the plan with."""
    now = now or datetime.now(UTC)
    statement = select(ReportAgentStatus).where(
        ReportAgentStatus.tenant_id == tenant_id, ReportAgentStatus.started_at < end,
        (ReportAgentStatus.ended_at.is_(None)) | (ReportAgentStatus.ended_at > start))
    if agent_ids:
        statement = statement.where(ReportAgentStatus.agent_id.in_(agent_ids))
    intervals = []
    for row in (await session.execute(statement.order_by(
            ReportAgentStatus.agent_id, ReportAgentStatus.started_at))).scalars():
        until = min(end, row.ended_at or now)
        begin = max(start, row.started_at)
        if until > begin:
            intervals.append(StatusInterval(row.agent_id, row.status, row.presence, row.reason,
                                            begin, until))
    return intervals


async def queue_interval_series(session: AsyncSession, tenant_id: str, queue_id: str,
                                start: datetime, end: datetime) -> IntervalSeries:
    """A queue's offered contacts and AHT per 15-minute interval from `start` (aligned down)
    to `end`: the history a forecast learns from (`omnicc.wfm.series.IntervalSeries`)."""
    first = datetime.fromtimestamp(int(start.timestamp()) // INTERVAL_S * INTERVAL_S, UTC)
    count = max(0, -(-int((end - first).total_seconds()) // INTERVAL_S))
    volume = [0.0] * count
    handled = [0.0] * count
    handle_s = [0.0] * count
    rows = (await session.execute(select(
        ReportInterval.start, ReportInterval.offered, ReportInterval.handled,
        ReportInterval.talk_s, ReportInterval.hold_s, ReportInterval.wrap_s).where(
        ReportInterval.tenant_id == tenant_id, ReportInterval.dimension == "queue",
        ReportInterval.key == queue_id, ReportInterval.start >= first,
        ReportInterval.start < end))).all()
    for at, offered, served, talk_s, hold_s, wrap_s in rows:
        index = int((at - first).total_seconds()) // INTERVAL_S
        volume[index] += offered
        handled[index] += served
        handle_s[index] += talk_s + hold_s + wrap_s
    aht = tuple(h / n if n else 0.0 for h, n in zip(handle_s, handled, strict=True))
    return IntervalSeries(start=first, interval_s=INTERVAL_S, volume=tuple(volume), aht_s=aht)


async def key_names(session: AsyncSession, tenant_id: str, dimension: str) -> dict[str, str]:
    """Display names of a dimension's keys (queues and agents by name, codes by label); keys
    that are names already (channel, team, segment) are left as they are."""
    statement: Any
    if dimension == "queue":
        statement = select(Queue.id, Queue.name).where(Queue.tenant_id == tenant_id)
    elif dimension == "agent":
        statement = select(Agent.id, Agent.name).where(Agent.tenant_id == tenant_id)
    elif dimension == "disposition":
        statement = select(WrapUpCode.code, WrapUpCode.label).where(
            WrapUpCode.tenant_id == tenant_id)
    else:
        return {}
    return {str(key): str(name) for key, name in (await session.execute(statement)).all()}

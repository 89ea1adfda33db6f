"""Report totals reconcile exactly with the raw events (issue 6, proof): a generated day is
played through the real routing service, the report tables are built incrementally while it
runs, and every total of every dimension, per 15-minute interval and per day, equals what a
plain count over the `events` table (and the contacts' survey answers) gives. Rebuilding from
scratch gives the same tables. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from omnicc.reports.builder import ReportBuilder
from omnicc.reports.queries import (
    ReportRequest,
    agent_status_intervals,
    build_report,
    drill_down,
    queue_interval_series,
)
from omnicc.store.database import Database
from omnicc.store.tables import CallRecord, Contact, Event, ReportDay, ReportInterval
from omnicc.store.tables.reports import MEASURES
from tests.integration.reports.day import DAY_START_S, Center, run_day, set_up

pytestmark = pytest.mark.anyio

ZONE = ZoneInfo("Europe/Helsinki")
Totals = dict[tuple[str, Any, str], dict[str, float]]


def _interval(at: datetime) -> datetime:
    return datetime.fromtimestamp(int(at.timestamp()) // 900 * 900, UTC)


def expected_totals(events: list[Event], teams: dict[str, str], thresholds: dict[str, float],
                    csat: dict[str, int], holds: dict[str, float]) -> tuple[Totals, Totals]:
    """The totals, counted straight from the log by rules read off METRICS.md."""
    intervals: Totals = defaultdict(lambda: dict.fromkeys(MEASURES, 0.0))
    days: Totals = defaultdict(lambda: dict.fromkeys(MEASURES, 0.0))

    def add(at: datetime, keys: list[tuple[str, str]], **measures: float) -> None:
        for dimension, key in keys:
            for table, when in ((intervals, _interval(at)), (days, at.astimezone(ZONE).date())):
                for name, value in measures.items():
                    table[(dimension, when, key)][name] += value

    created: dict[str, dict[str, Any]] = {}
    entered: dict[str, tuple[datetime, str, str]] = {}  # task -> (at, queue, reason)
    accepted: dict[str, tuple[str, float, datetime]] = {}
    completed: dict[str, float] = {}
    status_since: dict[str, tuple[datetime, str]] = {}
    arrivals: dict[str, list[datetime]] = defaultdict(list)  # customer -> task creations
    resolved: list[tuple[str, datetime, list[tuple[str, str]], datetime]] = []
    """Handled, not transferred on: (customer, conversation end, keys, entered)."""

    def close_handled(task: str, at: datetime, talk_s: float, wrap_s: float, code: str,
                      transferred: bool) -> None:
        agent, wait_s, _ = accepted.pop(task)
        when, queue, reason = entered.pop(task)
        keys = [*base_keys_of(created[task], queue), ("agent", agent),
                ("team", teams[agent]), ("disposition", code)]
        contact = created[task]["attributes"].get("contact_id")
        survey = {} if transferred or contact not in csat else {
            "csat_answers": 1, "csat_good": int(csat[contact] >= 4)}
        hold_s = 0.0 if transferred else holds.get(contact, 0.0)  # talk = engine's - hold
        add(when, keys, offered=1, transfers_in=int(reason == "transfer"), handled=1,
            handled_within_threshold=int(wait_s <= thresholds[queue]), wait_s=wait_s,
            talk_s=max(0.0, talk_s - hold_s), hold_s=hold_s, wrap_s=wrap_s,
            transfers=int(transferred),
            fcr_contacts=int(not transferred), **survey)
        if not transferred:
            customer = created[task]["attributes"]["customer_id"]
            resolved.append((customer, completed_at[task], keys, when))

    completed_at: dict[str, datetime] = {}
    for event in events:
        p, at = event.payload, event.at
        task = p.get("task_id", "")
        match event.type:
            case "task.created":
                created[task] = p
                arrivals[p["attributes"]["customer_id"]].append(at)
            case "task.queued":
                if task in entered and task not in accepted and entered[task][1] != p["queue_id"]:
                    when, queue, reason = entered[task]
                    add(when, base_keys_of(created[task], queue), offered=1,
                        transfers_in=int(reason == "transfer"))
                if not (task in entered and p["reason"] == "step_timeout"
                        and entered[task][1] == p["queue_id"]):
                    entered[task] = (at, p["queue_id"], p["reason"])
            case "offer.accepted":
                accepted[task] = (p["agent_id"], p["wait_s"], at)
            case "task.transferred":
                if task in accepted:
                    talk_s = (at - accepted[task][2]).total_seconds()
                    close_handled(task, at, talk_s, 0.0, "", transferred=True)
                else:  # moved while waiting: offered there, nothing else
                    when, queue, reason = entered.pop(task)
                    add(when, base_keys_of(created[task], queue), offered=1,
                        transfers_in=int(reason == "transfer"))
            case "task.completed":
                completed[task] = p["talk_s"]
                completed_at[task] = at
            case "task.wrapped_up":
                close_handled(task, at, completed.pop(task), p["wrap_up_s"],
                              p["disposition"] or "", transferred=False)
            case "task.abandoned":
                when, queue, reason = entered.pop(task)
                wait_s = p["wait_s"]
                add(when, base_keys_of(created[task], queue), offered=1,
                    transfers_in=int(reason == "transfer"), abandoned=1, abandon_wait_s=wait_s,
                    short_abandoned=int(wait_s <= 5), abandoned_after_threshold=int(
                        wait_s > thresholds[queue]))
            case "agent.status_changed":
                agent = p["agent_id"]
                if agent in status_since:
                    since, presence = status_since[agent]
                    names = {"available": ("logged_in_s", "available_s"),
                             "busy": ("logged_in_s", "handling_s"),
                             "wrap_up": ("logged_in_s", "handling_s", "wrap_up_status_s"),
                             "offline": ()}.get(presence, ("logged_in_s", "break_s"))
                    moment = since
                    while moment < at:
                        end = min(_interval(moment) + timedelta(seconds=900), at)
                        seconds = (end - moment).total_seconds()
                        add(moment, [("total", ""), ("agent", agent), ("team", teams[agent])],
                            **dict.fromkeys(names, seconds))
                        moment = end
                status_since[agent] = (at, p["presence"])
    for customer, end, keys, when in resolved:  # FCR: no new contact within 7 days
        if any(end <= at <= end + timedelta(days=7) for at in arrivals[customer]):
            add(when, keys, fcr_repeats=1)
    return intervals, days


def base_keys_of(facts: dict[str, Any], queue: str) -> list[tuple[str, str]]:
    return [("total", ""), ("queue", queue), ("channel", facts["channel"]),
            ("segment", str(facts["attributes"].get("segment", "")))]


async def stored_totals(database: Database, tenant_id: str) -> tuple[Totals, Totals]:
    async with database.session() as session:
        intervals = {(r.dimension, r.start, r.key): {m: getattr(r, m) for m in MEASURES}
                     for r in (await session.execute(select(ReportInterval).where(
                         ReportInterval.tenant_id == tenant_id))).scalars()}
        days = {(r.dimension, r.day, r.key): {m: getattr(r, m) for m in MEASURES}
                for r in (await session.execute(select(ReportDay).where(
                    ReportDay.tenant_id == tenant_id))).scalars()}
    return intervals, days


def assert_same(actual: Totals, expected: Totals) -> None:
    expected = {k: v for k, v in expected.items() if any(v.values())}
    actual = {k: v for k, v in actual.items() if any(v.values())}
    assert sorted(actual, key=str) == sorted(expected, key=str)
    for key, measures in expected.items():
        for name, value in measures.items():
            assert actual[key][name] == pytest.approx(value, abs=1e-6), (key, name)


async def test_a_day_of_events_reconciles_exactly(database: Database) -> None:
    center: Center = await set_up(database)
    builder = ReportBuilder(database, center.tenant_id)
    await run_day(database, center, between=builder.catch_up)  # incremental, while it runs
    async with database.session() as session:  # surveys answered after their contacts
        for contact in center.contacts[::3]:
            await session.execute(update(Contact).where(Contact.id == contact).values(
                csat_score=5 if contact[-1] < "8" else 2))
    await builder.catch_up()

    async with database.session() as session:
        events = list((await session.execute(select(Event).where(
            Event.tenant_id == center.tenant_id).order_by(Event.seq))).scalars())
        csat = {c.id: c.csat_score or 0 for c in (await session.execute(select(Contact).where(
            Contact.csat_score.is_not(None)))).scalars()}
        holds = {r.contact_id: r.hold_s for r in (await session.execute(select(CallRecord).where(
            CallRecord.tenant_id == center.tenant_id))).scalars() if r.contact_id}
    teams = {agent: "north" if n % 2 else "south" for n, agent in enumerate(center.agents)}
    thresholds = dict(zip(center.queues, (20.0, 30.0), strict=True))
    types = {e.type for e in events}
    assert {"task.abandoned", "task.transferred", "task.wrapped_up", "offer.rejected",
            "agent.status_changed"} <= types  # the day exercises what the totals count
    want_intervals, want_days = expected_totals(events, teams, thresholds, csat, holds)
    got_intervals, got_days = await stored_totals(database, center.tenant_id)
    assert_same(got_intervals, want_intervals)
    assert_same(got_days, want_days)
    total = want_days[("total", datetime.fromtimestamp(DAY_START_S, ZONE).date(), "")]
    assert total["offered"] > 150 and total["abandoned"] > 0 and total["fcr_repeats"] > 0
    assert total["csat_answers"] > 0 and total["transfers"] > 0 and total["hold_s"] > 0

    await builder.rebuild()
    rebuilt_intervals, rebuilt_days = await stored_totals(database, center.tenant_id)
    assert_same(rebuilt_intervals, got_intervals)
    assert_same(rebuilt_days, got_days)

    day = datetime.fromtimestamp(DAY_START_S, ZONE).date()
    async with database.session() as session:
        request = ReportRequest(start=day, end=day, grain="60min", dimension="queue")
        report = await build_report(session, center.tenant_id, request)
        assert report.total.totals["offered"] == total["offered"]
        abandoned = await drill_down(session, center.tenant_id, request, outcome="abandoned")
        assert len(abandoned) == total["abandoned"]
        row = report.rows[0]
        behind = await drill_down(session, center.tenant_id, request, period=row.period,
                                  key=row.key)
        assert len(behind) == row.totals["offered"]
        start = datetime.fromtimestamp(DAY_START_S, UTC)
        series = await queue_interval_series(session, center.tenant_id, center.queues[0],
                                             start, start + timedelta(hours=10))
        assert sum(series.volume) == sum(
            v["offered"] for (d, _, k), v in want_intervals.items()
            if d == "queue" and k == center.queues[0])
        statuses = await agent_status_intervals(session, center.tenant_id, start,
                                                start + timedelta(hours=11))
        logged = sum((s.end - s.start).total_seconds() for s in statuses
                     if s.presence != "offline")
        assert logged == pytest.approx(total["logged_in_s"])


async def test_two_processes_folding_at_once_count_everything_once(
        database: Database, database_url: str) -> None:
    center = await set_up(database)
    await run_day(database, center, length_s=2 * 3600.0)
    other = Database(database_url)  # another process's connections to the same database
    try:
        await asyncio.gather(
            ReportBuilder(database, center.tenant_id).catch_up(batch_events=40),
            ReportBuilder(other, center.tenant_id).catch_up(batch_events=40))
    finally:
        await other.dispose()
    together = await stored_totals(database, center.tenant_id)
    await ReportBuilder(database, center.tenant_id).rebuild()
    alone = await stored_totals(database, center.tenant_id)
    assert_same(together[0], alone[0])
    assert_same(together[1], alone[1])
    assert alone[1][("total", datetime.fromtimestamp(DAY_START_S, ZONE).date(), "")][
        "offered"] > 50

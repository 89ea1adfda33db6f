"""The reports benchmark (issue 6, "Speed"): a month's report of a 200-agent, 1-million-contact
center on SQLite and PostgreSQL, the fold's speed, and staffing a 96-interval day.

    .venv/bin/python bench/reports.py [--backend sqlite|postgresql|both] [--contacts N]
        [--agents N] [--days N] [--fold-contacts N] [--seed N]

What is measured:

- **A month's reports.** A month (30 days, November 2026, Europe/Helsinki) of a center with
  200 agents in 20 teams, 10 queues, 4 channels, 3 customer segments and 8 disposition codes is
  generated with numpy (seeded): 1,000,000 contacts (88 % handled, 10 % abandoned, 2 % timed out;
  waits, talk, hold for voice, wrap-up, transfers, FCR repeats, survey answers) and each agent's
  8-hour shift with a break. They are bulk-inserted as the fold would leave them: one
  `report_contacts` row per contact, the 15-minute and daily totals of every dimension
  (`report_intervals`, `report_days`, aggregated with numpy from the same contacts), the agent
  time per interval. Then the reports a supervisor asks for over the month are timed through
  `reports.queries.build_report` (what `GET /api/reports` runs): per day by queue, per day by
  agent, the month by agent, per week by team, per hour for the whole center, per 15 minutes by
  queue, plus a drill-down (one day's abandoned contacts of a queue). Each is run 3 times; the
  median counts. Goal: every one < 2 s, on SQLite and on PostgreSQL.
- **The survey scan** (`ReportBuilder.take_surveys`, the keeper's once-a-minute look for CSAT
  answers given since: the last week's handled contacts joined with `contacts`; the generated
  contacts have no `contacts` rows, so it finds none, but scans as much).
- **The fold.** `--fold-contacts` contacts' engine events (task.created, task.queued,
  offer.created, offer.accepted, task.completed, task.wrapped_up, task.ended; 10 % abandoned;
  agent status changes) are bulk-inserted into `events` as `app/routing.py` writes them and
  `ReportBuilder.catch_up()` folds them from the start: events/s.
- **Staffing a day.** `wfm.erlang.required_agents` for 96 intervals (an intraday profile of a
  500-call peak hour, AHT 240 s, 80/20, max occupancy 0.85). Goal < 100 ms.
- If `bench/wfm_plan.py` exists, its `measure()` (forecast + schedule for 100 agents and a week)
  is called and its figures included.

The last printed line is one JSON object with every figure and the goals.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Table, insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from omnicc.reports.builder import ReportBuilder
from omnicc.reports.queries import ReportRequest, build_report, drill_down
from omnicc.store.database import Database, migrate, sqlite_url
from omnicc.store.repositories import Tenants
from omnicc.store.tables import (
    Event,
    ReportContact,
    ReportDay,
    ReportInterval,
)
from omnicc.store.tables.reports import MEASURES
from omnicc.wfm.erlang import required_agents

ZONE = ZoneInfo("Europe/Helsinki")
MONTH_START = date(2026, 11, 1)
INTERVAL_S = 900
QUEUES, CHANNELS, SEGMENTS, CODES, TEAMS = 10, ("voice", "chat", "email", "whatsapp"), (
    "", "gold", "silver"), 8, 20
REPORT_GOAL_S = 2.0
STAFFING_GOAL_S = 0.1
DIMENSIONS = ("total", "queue", "channel", "agent", "team", "disposition", "segment")


@dataclass
class Month:
    """The generated contacts (one array per column) and the agents' time per interval."""

    entered_s: NDArray[np.int64]
    queue: NDArray[np.int64]
    channel: NDArray[np.int64]
    segment: NDArray[np.int64]
    agent: NDArray[np.int64]
    disposition: NDArray[np.int64]
    outcome: NDArray[np.int64]  # 0 handled, 1 abandoned, 2 timed out
    wait_s: NDArray[np.float64]
    talk_s: NDArray[np.float64]
    hold_s: NDArray[np.float64]
    wrap_s: NDArray[np.float64]
    transferred: NDArray[np.bool_]
    repeat: NDArray[np.bool_]
    csat: NDArray[np.int64]  # 0: no answer
    shift_intervals: NDArray[np.int64]  # (agent, interval start s) of worked intervals
    shift_break: NDArray[np.bool_]
    shift_occupancy: NDArray[np.float64]


def generate(contacts: int, agents: int, days: int, seed: int) -> Month:
    rng = np.random.default_rng(seed)
    day_starts = np.array([int(datetime.combine(MONTH_START + timedelta(days=d),
                                                datetime.min.time(), ZONE).timestamp())
                           for d in range(days)], dtype=np.int64)
    day = rng.integers(0, days, contacts)
    # Intraday: 08:00-20:00, busiest late morning and early afternoon.
    second = np.clip(rng.normal(13.0 * 3600, 2.6 * 3600, contacts), 8 * 3600, 20 * 3600 - 1)
    entered = day_starts[day] + second.astype(np.int64)
    outcome = rng.choice(3, contacts, p=[0.88, 0.10, 0.02])
    handled = outcome == 0
    wait = np.where(handled, rng.exponential(25.0, contacts), rng.exponential(60.0, contacts))
    channel = rng.choice(len(CHANNELS), contacts, p=[0.5, 0.25, 0.15, 0.10])
    talk = np.where(handled, rng.gamma(2.0, 90.0, contacts), 0.0)
    hold = np.where(handled & (channel == 0), rng.exponential(8.0, contacts), 0.0)
    wrap = np.where(handled, rng.gamma(2.0, 15.0, contacts), 0.0)
    answered = handled & (rng.random(contacts) < 0.2)
    shifts_start = rng.integers(8 * 4, 12 * 4 + 1, (agents, days))  # 15-min index of the day
    worked: list[tuple[int, int]] = []
    breaks: list[bool] = []
    for a in range(agents):
        for d in range(days):
            if (d + a) % 7 in (5, 6):
                continue  # two days off a week
            first = int(shifts_start[a, d])
            for slot in range(first, first + 32):
                worked.append((a, int(day_starts[d]) + slot * INTERVAL_S))
                breaks.append(slot == first + 16)
    shift_intervals = np.array(worked, dtype=np.int64)
    return Month(
        entered_s=entered, queue=rng.integers(0, QUEUES, contacts), channel=channel,
        segment=rng.choice(3, contacts, p=[0.6, 0.1, 0.3]),
        agent=np.where(handled, rng.integers(0, agents, contacts), -1),
        disposition=np.where(handled, rng.integers(0, CODES, contacts), -1),
        outcome=outcome, wait_s=wait, talk_s=talk, hold_s=hold, wrap_s=wrap,
        transferred=handled & (rng.random(contacts) < 0.03),
        repeat=handled & (rng.random(contacts) < 0.15),
        csat=np.where(answered, rng.choice([1, 2, 3, 4, 5], contacts,
                                           p=[0.05, 0.05, 0.1, 0.3, 0.5]), 0),
        shift_intervals=shift_intervals, shift_break=np.array(breaks),
        shift_occupancy=rng.uniform(0.7, 0.92, len(worked)))


def _contact_measures(month: Month, queue_threshold_s: float = 20.0) -> dict[str, NDArray[Any]]:
    handled = month.outcome == 0
    abandoned = month.outcome == 1
    final_handled = handled & ~month.transferred
    zero = np.zeros(len(month.outcome))
    return {
        "offered": np.ones(len(month.outcome)), "transfers_in": zero,
        "handled": handled * 1.0,
        "handled_within_threshold": (handled & (month.wait_s <= queue_threshold_s)) * 1.0,
        "abandoned": abandoned * 1.0, "short_abandoned": (abandoned & (month.wait_s <= 5)) * 1.0,
        "abandoned_after_threshold": (abandoned & (month.wait_s > queue_threshold_s)) * 1.0,
        "timed_out": (month.outcome == 2) * 1.0, "transfers": month.transferred * 1.0,
        "fcr_contacts": final_handled * 1.0, "fcr_repeats": (final_handled & month.repeat) * 1.0,
        "csat_answers": (month.csat > 0) * 1.0, "csat_good": (month.csat >= 4) * 1.0,
        "wait_s": np.where(handled, month.wait_s, 0.0),
        "abandon_wait_s": np.where(abandoned, month.wait_s, 0.0),
        "talk_s": month.talk_s, "hold_s": month.hold_s, "wrap_s": month.wrap_s,
    }


def _agent_measures(month: Month) -> dict[str, NDArray[Any]]:
    worked = np.full(len(month.shift_break), float(INTERVAL_S))
    on_break = month.shift_break
    handling = np.where(on_break, 0.0, worked * month.shift_occupancy)
    return {"logged_in_s": worked, "available_s": np.where(on_break, 0.0, worked - handling),
            "handling_s": handling, "wrap_up_status_s": handling * 0.1,
            "break_s": np.where(on_break, worked, 0.0)}


def _local_day_index(seconds: NDArray[np.int64]) -> NDArray[np.int64]:
    # Europe/Helsinki in November is UTC+2 all month.
    return ((seconds + 2 * 3600) // 86400).astype(np.int64)


def aggregate(month: Month, names: dict[str, list[str]], tenant_id: str
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The 15-minute and daily totals of every dimension, as the fold would have added them."""
    contact_keys = {"total": np.zeros(len(month.queue), dtype=np.int64), "queue": month.queue,
                    "channel": month.channel, "segment": month.segment}
    handled = month.outcome == 0
    team_of = np.arange(len(names["agent"])) % TEAMS
    handled_keys = {"agent": month.agent, "team": np.where(handled, team_of[month.agent], -1),
                    "disposition": month.disposition}
    agent_of = month.shift_intervals[:, 0]
    agent_keys = {"total": np.zeros(len(agent_of), dtype=np.int64), "agent": agent_of,
                  "team": team_of[agent_of]}
    interval_rows: dict[tuple[str, int, int], dict[str, float]] = {}
    day_rows: dict[tuple[str, int, int], dict[str, float]] = {}

    def add(dimension: str, keys: NDArray[np.int64], seconds: NDArray[np.int64],
            measures: dict[str, NDArray[Any]], mask: NDArray[np.bool_] | None = None) -> None:
        if mask is not None:
            keys, seconds = keys[mask], seconds[mask]
            measures = {n: v[mask] for n, v in measures.items()}
        for rows, slot in ((interval_rows, seconds // INTERVAL_S * INTERVAL_S),
                           (day_rows, _local_day_index(seconds))):
            code = slot * 1000 + keys
            groups, inverse = np.unique(code, return_inverse=True)
            sums = {n: np.bincount(inverse, weights=v, minlength=len(groups))
                    for n, v in measures.items()}
            for index, group in enumerate(groups.tolist()):
                row = rows.setdefault((dimension, group // 1000, group % 1000), {})
                for name, column in sums.items():
                    row[name] = row.get(name, 0.0) + float(column[index])

    contact_measures = _contact_measures(month)
    for dimension, keys in contact_keys.items():
        add(dimension, keys, month.entered_s, contact_measures)
    for dimension, keys in handled_keys.items():
        add(dimension, keys, month.entered_s, contact_measures, handled)
    for dimension, keys in agent_keys.items():
        add(dimension, keys, month.shift_intervals[:, 1], _agent_measures(month))

    def row(dimension: str, key: int) -> dict[str, Any]:
        return {"tenant_id": tenant_id, "dimension": dimension,
                "key": "" if dimension == "total" else names[dimension][key]}

    intervals = [{**row(d, k), "start": datetime.fromtimestamp(s, UTC),
                  **{m: _integral(m, v.get(m, 0.0)) for m in MEASURES}}
                 for (d, s, k), v in interval_rows.items()]
    days = [{**row(d, k), "day": date(1970, 1, 1) + timedelta(days=s),
             **{m: _integral(m, v.get(m, 0.0)) for m in MEASURES}}
            for (d, s, k), v in day_rows.items()]
    return intervals, days


def _integral(name: str, value: float) -> float | int:
    return value if name.endswith("_s") else round(value)


def contact_rows(month: Month, names: dict[str, list[str]], tenant_id: str
                 ) -> Iterator[tuple[Any, ...]]:
    """`report_contacts` rows in the table's column order."""
    outcomes = ("handled", "abandoned", "timed_out")
    team_of = [f"team{n % TEAMS:02d}" for n in range(len(names["agent"]))]
    for i in range(len(month.queue)):
        handled = month.outcome[i] == 0
        agent = names["agent"][month.agent[i]] if handled else None
        entered = datetime.fromtimestamp(int(month.entered_s[i]), UTC)
        wait = float(month.wait_s[i])
        yield (tenant_id, f"t{i:07d}", 1, None, None, f"c{i % 150_000:06d}",
               names["queue"][month.queue[i]], CHANNELS[month.channel[i]],
               SEGMENTS[month.segment[i]], agent, team_of[month.agent[i]] if handled else "",
               names["disposition"][month.disposition[i]] if handled else "", "created",
               entered, entered + timedelta(seconds=wait) if handled else None,
               entered + timedelta(seconds=wait + float(month.talk_s[i])),
               outcomes[month.outcome[i]], 20.0, wait, float(month.talk_s[i]),
               float(month.hold_s[i]), float(month.wrap_s[i]), bool(month.transferred[i]),
               bool(month.repeat[i]), int(month.csat[i]) or None, True)


CONTACT_COLUMNS = [c.name for c in ReportContact.__table__.columns]
INTERVALS = Table("report_intervals", ReportInterval.metadata)
DAYS = Table("report_days", ReportDay.metadata)


# --- loading -------------------------------------------------------------------------------

async def create_tenant(url: str, slug: str) -> str:
    database = Database(url)
    try:
        async with database.session() as session:
            return (await Tenants(session).create(slug, slug.capitalize(), str(ZONE))).id
    finally:
        await database.dispose()


def load_sqlite(path: Path, intervals: list[dict[str, Any]], days: list[dict[str, Any]],
                contacts: Iterator[tuple[Any, ...]]) -> None:
    import sqlite3

    connection = sqlite3.connect(path)
    try:
        for table, rows in ((INTERVALS, intervals), (DAYS, days)):
            columns = [c.name for c in table.columns]
            connection.executemany(
                f"INSERT INTO {table.name} ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' * len(columns))})",
                ([_sqlite(r[c]) for c in columns] for r in rows))
        connection.executemany(
            f"INSERT INTO report_contacts ({', '.join(CONTACT_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(CONTACT_COLUMNS))})",
            ([_sqlite(v) for v in row] for row in contacts))
        connection.commit()
        connection.execute("ANALYZE")
    finally:
        connection.close()


def _sqlite(value: Any) -> Any:
    # As `UtcDateTime` stores them on SQLite: naive UTC in SQLAlchemy's text form.
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    return value


async def load_postgresql(url: str, intervals: list[dict[str, Any]], days: list[dict[str, Any]],
                          contacts: Iterator[tuple[Any, ...]]) -> None:
    import asyncpg

    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(dsn)
    try:
        for table, rows in ((INTERVALS, intervals), (DAYS, days)):
            columns = [c.name for c in table.columns]
            await connection.copy_records_to_table(
                table.name, records=[tuple(r[c] for c in columns) for r in rows],
                columns=columns)
        await connection.copy_records_to_table("report_contacts", records=list(contacts),
                                               columns=CONTACT_COLUMNS)
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


# --- measuring -----------------------------------------------------------------------------

REPORTS: tuple[tuple[str, str, str], ...] = (
    ("month_per_day_by_queue", "day", "queue"),
    ("month_per_day_by_agent", "day", "agent"),
    ("month_by_agent", "all", "agent"),
    ("month_per_week_by_team", "week", "team"),
    ("month_per_hour_total", "60min", "total"),
    ("month_per_15min_by_queue", "15min", "queue"),
)


async def time_reports(url: str, tenant_id: str, days: int, names: dict[str, list[str]]
                       ) -> dict[str, Any]:
    database = Database(url)
    figures: dict[str, Any] = {}
    end = MONTH_START + timedelta(days=days - 1)
    try:
        for name, grain, dimension in REPORTS:
            request = ReportRequest(start=MONTH_START, end=end, grain=grain, dimension=dimension)
            runs, rows = [], 0
            for _ in range(3):
                started = time.perf_counter()
                async with database.session() as session:
                    report = await build_report(session, tenant_id, request)
                runs.append(time.perf_counter() - started)
                rows = len(report.rows)
            figures[name] = {"s": round(statistics.median(runs), 4), "rows": rows,
                             "offered": int(report.total.totals["offered"])}
        request = ReportRequest(start=MONTH_START + timedelta(days=14),
                                end=MONTH_START + timedelta(days=14), grain="day",
                                dimension="queue")
        runs, found = [], 0
        for _ in range(3):
            started = time.perf_counter()
            async with database.session() as session:
                found = len(await drill_down(session, tenant_id, request,
                                             key=names["queue"][3], outcome="abandoned"))
            runs.append(time.perf_counter() - started)
        figures["drill_down_day_queue_abandoned"] = {"s": round(statistics.median(runs), 4),
                                                     "rows": found}
        started = time.perf_counter()
        taken = await ReportBuilder(database, tenant_id).take_surveys()
        figures["survey_scan"] = {"s": round(time.perf_counter() - started, 4), "rows": taken}
    finally:
        await database.dispose()
    return figures


def fold_events(tenant_id: str, contacts: int, agents: int, seed: int
                ) -> list[dict[str, Any]]:
    """Engine events for `contacts` contacts over a day, in seq order, as the log stores them."""
    rng = np.random.default_rng(seed)
    start = datetime.combine(MONTH_START, datetime.min.time(), ZONE).astimezone(UTC)
    at_s = np.sort(rng.uniform(8 * 3600, 20 * 3600, contacts))
    timeline: list[tuple[float, str, dict[str, Any]]] = []
    for a in range(agents):
        for when, status in ((7.5 * 3600, "available"), (12 * 3600, "break"),
                             (12.5 * 3600, "available"), (20.5 * 3600, "offline")):
            timeline.append((when, "agent.status_changed", {
                "agent_id": f"agent{a:03d}", "status": status,
                "presence": status, "previous_presence": "", "reason": ""}))
    for i, arrived in enumerate(at_s.tolist()):
        task = f"task{i:07d}"
        queue = f"queue{i % QUEUES:02d}"
        agent = f"agent{int(rng.integers(agents)):03d}"
        wait = float(rng.exponential(25.0))
        timeline.append((arrived, "task.created", {
            "task_id": task, "channel": "voice", "priority": 0,
            "attributes": {"customer_id": f"c{i % 5000:05d}", "segment": "gold"},
            "required_skills": {}, "policy_id": f"queue:{queue}", "conversation_id": None,
            "enqueued_at": None}))
        timeline.append((arrived, "task.queued", {"task_id": task, "queue_id": queue,
                                                  "step_index": 0, "reason": "created"}))
        if i % 10 == 9:
            timeline.append((arrived + wait, "task.abandoned", {
                "task_id": task, "queue_id": queue, "wait_s": wait}))
            timeline.append((arrived + wait, "task.ended", {"task_id": task,
                                                            "outcome": "abandoned"}))
            continue
        talk, wrap = float(rng.gamma(2.0, 90.0)), float(rng.gamma(2.0, 15.0))
        timeline.append((arrived + wait - 2, "offer.created", {
            "offer_id": f"o{i}", "task_id": task, "agent_id": agent, "queue_id": queue,
            "channel": "voice", "expires_at": 0.0}))
        timeline.append((arrived + wait, "offer.accepted", {
            "offer_id": f"o{i}", "task_id": task, "agent_id": agent, "queue_id": queue,
            "wait_s": wait}))
        timeline.append((arrived + wait + talk, "task.completed", {
            "task_id": task, "agent_id": agent, "queue_id": queue, "talk_s": talk}))
        timeline.append((arrived + wait + talk + wrap, "task.wrapped_up", {
            "task_id": task, "agent_id": agent, "disposition": "sale", "wrap_up_s": wrap,
            "timed_out": False}))
        timeline.append((arrived + wait + talk + wrap, "task.ended", {
            "task_id": task, "outcome": "completed"}))
    timeline.sort(key=lambda item: item[0])
    return [{"tenant_id": tenant_id, "seq": seq, "type": kind,
             "at": start + timedelta(seconds=when), "payload": payload}
            for seq, (when, kind, payload) in enumerate(timeline, start=1)]


async def time_fold(url: str, tenant_id: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    database = Database(url)
    try:
        async with database.session() as session:
            for first in range(0, len(events), 20_000):
                await session.execute(insert(Event), events[first:first + 20_000])
        started = time.perf_counter()
        folded = await ReportBuilder(database, tenant_id).catch_up()
        elapsed_s = time.perf_counter() - started
    finally:
        await database.dispose()
    return {"events": folded, "s": round(elapsed_s, 2),
            "events_per_s": round(folded / elapsed_s) if elapsed_s else None}


def staffing_day() -> dict[str, Any]:
    """Required agents for each of 96 intervals of a day (Erlang C, 80/20, occupancy <= 0.85)."""
    hours = np.arange(96) / 4.0
    profile = np.exp(-((hours - 12.5) / 3.2) ** 2)
    arrivals = 500.0 * profile + 2.0
    runs = []
    required: list[int] = []
    for _ in range(5):
        started = time.perf_counter()
        required = [required_agents(float(a), 240.0, target_service_level=0.8, threshold_s=20.0,
                                    max_occupancy=0.85) for a in arrivals]
        runs.append(time.perf_counter() - started)
    return {"s": round(statistics.median(runs), 4), "intervals": 96,
            "peak_required": max(required), "goal_s": STAFFING_GOAL_S,
            "meets_goal": statistics.median(runs) < STAFFING_GOAL_S}


def wfm_plan() -> dict[str, Any] | None:
    path = Path(__file__).with_name("wfm_plan.py")
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("bench_wfm_plan", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    measure: Callable[[], dict[str, Any]] = module.measure
    return measure()


@contextlib.contextmanager
def backend_url(backend: str) -> Iterator[tuple[str, Path | None]]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="omnicc-bench-reports-") as folder:
            path = Path(folder) / "omnicc.db"
            yield sqlite_url(path), path
        return
    from bench.chat_load import postgres_database

    with postgres_database() as url:
        yield url, None


def run_backend(backend: str, args: argparse.Namespace, month: Month,
                names: dict[str, list[str]]) -> dict[str, Any]:
    with backend_url(backend) as (url, path):
        migrate(url)
        tenant_id = asyncio.run(create_tenant(url, "month"))
        started = time.perf_counter()
        intervals, days = aggregate(month, names, tenant_id)
        contacts = contact_rows(month, names, tenant_id)
        if path is not None:
            load_sqlite(path, intervals, days, contacts)
        else:
            asyncio.run(load_postgresql(url, intervals, days, contacts))
        build_s = time.perf_counter() - started
        print(f"{backend}: {len(month.queue):,} contacts, {len(intervals):,} interval rows, "
              f"{len(days):,} day rows loaded in {build_s:.0f} s", file=sys.stderr, flush=True)
        reports = asyncio.run(time_reports(url, tenant_id, args.days, names))
        fold_tenant = asyncio.run(create_tenant(url, "fold"))
        events = fold_events(fold_tenant, args.fold_contacts, args.agents, args.seed)
        fold = asyncio.run(time_fold(url, fold_tenant, events))
    slowest = max(figure["s"] for name, figure in reports.items() if name != "survey_scan")
    return {"build_s": round(build_s, 1), "interval_rows": len(intervals),
            "day_rows": len(days), "reports": reports, "slowest_report_s": slowest,
            "meets_goal": slowest < REPORT_GOAL_S, "fold": fold}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--fold-contacts", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=6)
    args = parser.parse_args()
    started = time.perf_counter()
    month = generate(args.contacts, args.agents, args.days, args.seed)
    names = {"queue": [f"queue{n:02d}" for n in range(QUEUES)],
             "channel": list(CHANNELS), "segment": list(SEGMENTS),
             "agent": [uuid.UUID(int=n).hex for n in range(args.agents)],
             "team": [f"team{n:02d}" for n in range(TEAMS)],
             "disposition": [f"code{n}" for n in range(CODES)], "total": [""]}
    print(f"generated in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    result: dict[str, Any] = {
        "contacts": args.contacts, "agents": args.agents, "days": args.days,
        "goal_report_s": REPORT_GOAL_S,
        "staffing_96_intervals": staffing_day(),
    }
    for backend in backends:
        result[backend] = run_backend(backend, args, month, names)
    plan = wfm_plan()
    if plan is not None:
        result["wfm_plan"] = plan
    for backend in backends:
        print(f"\n{backend}: loaded in {result[backend]['build_s']} s "
              f"({result[backend]['interval_rows']:,} interval rows)")
        for name, figure in result[backend]["reports"].items():
            print(f"  {name:34s} {figure['s'] * 1000:8.1f} ms  {figure['rows']:>7,} rows")
        fold = result[backend]["fold"]
        print(f"  fold: {fold['events']:,} events in {fold['s']} s "
              f"({fold['events_per_s']:,} events/s)")
    staffing = result["staffing_96_intervals"]
    print(f"staffing a 96-interval day: {staffing['s'] * 1000:.1f} ms "
          f"(peak {staffing['peak_required']} agents)")
    if plan is not None:
        print(f"wfm plan (bench/wfm_plan.py: forecast + schedule, {plan.get('agents')} agents, "
              f"{plan.get('days')} days): {plan.get('total_s')} s")
    print(json.dumps(result, separators=(",", ":")))


if __name__ == "__main__":
    main()

"""`omnicc wfm schedule` and `omnicc wfm simulate`: from a forecast to shifts, and from shifts
to the service level they should give.

Forecasts are read as CSV (`start,volume,aht_s`, what `omnicc wfm forecast --out` writes) or
JSON (what `omnicc wfm forecast --json` prints); `--forecast billing=file.csv` names the queue
(and the skill its contacts need), otherwise the file's stem does. The schedule is written as
one JSON document (`--out`) that `simulate` reads back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from omnicc.sim.scenario import ScenarioError, load_scenario
from omnicc.wfm.commands import wfm_app
from omnicc.wfm.commands.forecasting import parse_duration_s
from omnicc.wfm.commands.queueing import fail
from omnicc.wfm.forecast_history import HistoryError, load_history_csv
from omnicc.wfm.plans import (
    agent_from_dict,
    iso,
    parse_time,
    requirement_from_list,
    schedule_document,
    shift_from_dict,
)
from omnicc.wfm.schedule import (
    AgentPlan,
    BreakRule,
    Schedule,
    ScheduleError,
    ScheduleRules,
    ShiftRule,
    build_schedule,
)
from omnicc.wfm.series import IntervalSeries
from omnicc.wfm.staffing import QueueDemand, ServiceTarget, staffing_requirement
from omnicc.wfm.whatif import WhatIf, duty_by_skills, what_if

ForecastOption = Annotated[list[str], typer.Option(
    "--forecast", help="[QUEUE=]FILE: a forecast as CSV (start,volume,aht_s) or JSON; "
    "repeat for several queues. QUEUE is also the skill its contacts need "
    "(default: the file's stem).", show_default=False)]
IntervalOption = Annotated[str | None, typer.Option(
    "--interval", help="Plan on this interval ('15m', '30m', '1h'), adding up finer "
    "forecast intervals (default: the forecast's).", show_default=False)]
AhtOption = Annotated[float, typer.Option(
    "--aht-s", help="AHT for forecasts without handle times.")]
ServiceLevelOption = Annotated[float, typer.Option(
    "--service-level", help="Target share answered within --threshold-s.")]
ThresholdOption = Annotated[float, typer.Option("--threshold-s", help="Service-level threshold.")]
PatienceOption = Annotated[float | None, typer.Option(
    "--patience-s", help="Mean patience: customers abandon (Erlang A, and in simulations).",
    show_default=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _read_series(path: Path, aht_s: float) -> IntervalSeries:
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            aht = data.get("aht_s") or [aht_s] * len(data["volume"])
            return IntervalSeries(parse_time(data["start"]), int(data["interval_s"]),
                                  tuple(float(v) for v in data["volume"]),
                                  tuple(float(a) or aht_s for a in aht))
        except FileNotFoundError:
            fail(f"forecast file not found: {path}")
        except (OSError, ValueError, KeyError, TypeError) as error:
            fail(f"{path}: not a forecast (start, interval_s, volume, aht_s): {error}")
    try:
        series = load_history_csv(path, None, aht_s)
    except HistoryError as error:
        fail(str(error))
    return series


def _resample(series: IntervalSeries, interval_s: int | None) -> IntervalSeries:
    """Series on a coarser interval: volumes added, AHT weighted by volume."""
    if interval_s is None or interval_s == series.interval_s:
        return series
    factor, remainder = divmod(interval_s, series.interval_s)
    if remainder or factor < 1 or 86_400 % interval_s:
        fail(f"--interval must divide a day and be a multiple of the forecast's "
             f"{series.interval_s} s")
    volumes: list[float] = []
    ahts: list[float] = []
    for first in range(0, len(series) - factor + 1, factor):
        chunk = range(first, first + factor)
        volume = sum(series.volume[i] for i in chunk)
        work = sum(series.volume[i] * series.aht_s[i] for i in chunk)
        volumes.append(volume)
        ahts.append(work / volume if volume else max(series.aht_s[i] for i in chunk))
    return IntervalSeries(series.start, interval_s, tuple(volumes), tuple(ahts))


def _demands(forecasts: list[str], interval: str | None, aht_s: float,
             target: ServiceTarget) -> list[QueueDemand]:
    if not forecasts:
        fail("give at least one --forecast")
    interval_s = None if interval is None else parse_duration_s("--interval", interval, "mh")
    demands = []
    for option in forecasts:
        queue, _, file = option.rpartition("=")
        path = Path(file)
        name = queue or path.stem
        if not name.isidentifier():
            fail(f"--forecast {option!r}: the queue name must be a plain word (letters, digits, _)")
        series = _resample(_read_series(path, aht_s), interval_s)
        demands.append(QueueDemand(name, name, series, target))
    return demands


def _parse_clock(option: str, text: str) -> int:
    try:
        hours, minutes = text.split(":")
        value = int(hours) * 60 + int(minutes)
    except ValueError:
        fail(f"{option} must be a time of day like 06:30, got {text!r}")
    return value


def parse_shift(text: str) -> ShiftRule:
    """`8h` or `8h:30m@3h-5h,15m@6h-7h` (length, then breaks: length@earliest-latest start
    after the shift's start)."""
    length, _, breaks = text.partition(":")
    rules = []
    for part in filter(None, breaks.split(",")):
        size, _, window = part.partition("@")
        earliest, _, latest = window.partition("-")
        if not (size and earliest and latest):
            fail(f"--shift {text!r}: a break is LENGTH@EARLIEST-LATEST, like 30m@3h-5h")
        rules.append(BreakRule(parse_duration_s("--shift", size, "mh") // 60,
                               parse_duration_s("--shift", earliest, "mh") // 60,
                               parse_duration_s("--shift", latest, "mh") // 60))
    return ShiftRule(parse_duration_s("--shift", length, "mh") // 60, tuple(rules))


def _agents(count: int | None, agents_file: Path | None, skills: list[str],
            min_hours: float, max_hours: float) -> list[AgentPlan]:
    if agents_file is not None:
        try:
            data = yaml.safe_load(agents_file.read_text(encoding="utf-8"))
            return [agent_from_dict(item) for item in data]
        except FileNotFoundError:
            fail(f"agents file not found: {agents_file}")
        except (OSError, yaml.YAMLError, ValueError, KeyError, TypeError) as error:
            fail(f"{agents_file}: not a list of agents (id, skills, ...): {error}")
    if not count or count < 1:
        fail("give --agents N or --agents-file FILE")
    return [AgentPlan(f"agent-{n:03d}", skills=frozenset(skills),
                      min_minutes=round(min_hours * 60), max_minutes=round(max_hours * 60))
            for n in range(1, count + 1)]


@contextmanager
def _progress(enabled: bool) -> Iterator[Progress | None]:
    if not enabled:
        yield None
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as progress:
        yield progress


def _step(progress: Progress | None, description: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    task = progress.add_task(description, total=None)

    def advance(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    return advance


def _print_schedule(schedule: Schedule) -> None:
    console = Console(highlight=False)
    requirement = schedule.requirement
    days = sorted({s.day for s in schedule.shifts}) or [requirement.start.date()]
    first, last = days[0], days[-1]
    span = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    table = Table(title="Shifts (UTC)")
    table.add_column("Agent")
    for day in span:
        table.add_column(day.strftime("%a %d"), overflow="fold")
    table.add_column("Paid h", justify="right")
    by_agent = {a.id: {} for a in schedule.agents}  # type: dict[str, dict[date, str]]
    paid: dict[str, int] = {}
    for shift in schedule.shifts:
        text = f"{shift.start:%H:%M}-{shift.end:%H:%M}"
        if shift.breaks:
            text += " (" + ", ".join(f"{b.start:%H:%M}" for b in shift.breaks) + ")"
        by_agent[shift.agent_id][shift.day] = text
        paid[shift.agent_id] = paid.get(shift.agent_id, 0) + shift.paid_minutes
    for agent_id, cells in by_agent.items():
        table.add_row(agent_id, *(cells.get(day, "off") for day in span),
                      f"{paid.get(agent_id, 0) / 60:g}")
    console.print(table)
    hours = requirement.interval_s / 3600
    cover = Table(title="Coverage")
    for column in ("Group", "Method", "Needed agent-h", "Scheduled agent-h", "Under agent-h",
                   "Over agent-h", "Intervals short"):
        cover.add_column(column, justify="left" if column in ("Group", "Method") else "right")
    for group in requirement.groups:
        given = schedule.coverage[group.id]
        under = sum(max(0.0, n - g) for n, g in zip(group.scheduled, given, strict=True))
        over = sum(max(0.0, g - n) for n, g in zip(group.scheduled, given, strict=True))
        short = sum(1 for n, g in zip(group.scheduled, given, strict=True) if g < n - 1e-9)
        cover.add_row(group.id, group.method, f"{sum(group.scheduled) * hours:.1f}",
                      f"{sum(given) * hours:.1f}", f"{under * hours:.1f}",
                      f"{over * hours:.1f}", str(short))
    console.print(cover)
    console.print(f"{len(schedule.shifts)} shifts, solver {schedule.status} in "
                  f"{schedule.wall_s:.1f} s ({schedule.variables} variables)")


@wfm_app.command("schedule")
def schedule_command(
    forecast: ForecastOption,
    agents: Annotated[int | None, typer.Option(
        "--agents", help="Schedule N alike agents holding every queue's skill.",
        show_default=False)] = None,
    agents_file: Annotated[Path | None, typer.Option(
        "--agents-file", help="YAML/JSON list of agents: id, name, skills, unavailable (dates), "
        "window (from, to: minutes of the day), min_minutes, max_minutes, max_days.",
        show_default=False)] = None,
    days: Annotated[int | None, typer.Option(
        "--days", help="Plan only the forecast's first N days.", show_default=False)] = None,
    interval: IntervalOption = None,
    shift: Annotated[list[str] | None, typer.Option(
        "--shift", help="Shift length and breaks, e.g. 8h:30m@3h-5h (a 30-minute break "
        "starting 3 to 5 hours in); repeat for several lengths (default: 8h:30m@3h-5h).",
        show_default=False)] = None,
    earliest: Annotated[str, typer.Option("--earliest", help="Earliest shift start (UTC).")] =
    "06:00",
    latest: Annotated[str, typer.Option("--latest", help="Latest shift start (UTC).")] = "14:00",
    start_step: Annotated[str, typer.Option("--start-step", help="Shift starts grid.")] = "30m",
    max_days: Annotated[int, typer.Option("--max-days", help="Days worked per week at most.")] = 5,
    min_rest: Annotated[str, typer.Option(
        "--min-rest", help="Rest between two shifts at least.")] = "11h",
    min_hours: Annotated[float, typer.Option(
        "--min-hours", help="Paid hours a week at least (with --agents).")] = 0.0,
    max_hours: Annotated[float, typer.Option(
        "--max-hours", help="Paid hours a week at most (with --agents).")] = 40.0,
    service_level: ServiceLevelOption = 0.8,
    threshold_s: ThresholdOption = 20.0,
    max_occupancy: Annotated[float, typer.Option(
        "--max-occupancy", help="Occupancy ceiling (1 for none).")] = 0.85,
    shrinkage: Annotated[float, typer.Option(
        "--shrinkage", help="Absence not placed by the schedule (breaks are).")] = 0.0,
    patience_s: PatienceOption = None,
    aht_s: AhtOption = 180.0,
    time_limit: Annotated[float, typer.Option(
        "--time-limit", help="Solver time limit in seconds.")] = 50.0,
    json_output: JsonOption = False,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write the schedule document (JSON) for `omnicc wfm simulate`.",
        show_default=False)] = None,
) -> None:
    """Staff every interval of a forecast and build shifts that cover it."""
    target = ServiceTarget(service_level=service_level, threshold_s=threshold_s,
                           max_occupancy=None if max_occupancy >= 1 else max_occupancy,
                           shrinkage=shrinkage, patience_s=patience_s)
    demands = _demands(forecast, interval, aht_s, target)
    if days is not None:
        demands = [QueueDemand(d.queue, d.skill, _first_days(d.series, days), d.target)
                   for d in demands]
    staff = _agents(agents, agents_file, [d.skill for d in demands], min_hours, max_hours)
    rules = ScheduleRules(
        shifts=tuple(parse_shift(text) for text in (shift or ["8h:30m@3h-5h"])),
        earliest_start_min=_parse_clock("--earliest", earliest),
        latest_start_min=_parse_clock("--latest", latest),
        start_step_min=parse_duration_s("--start-step", start_step, "mh") // 60,
        max_days=max_days,
        min_rest_min=parse_duration_s("--min-rest", min_rest, "mh") // 60,
        time_limit_s=time_limit,
    )
    try:
        with _progress(not json_output) as progress:
            requirement = staffing_requirement(
                demands, [a.skills for a in staff], progress=_step(progress, "Staffing"))
            if progress is not None:
                progress.add_task("Solving the schedule (HiGHS)", total=None)
            schedule = build_schedule(requirement, staff, rules)
    except (ScheduleError, ValueError, ScenarioError) as error:
        fail(str(error))
    document = schedule_document(schedule, rules)
    if out is not None:
        out.write_text(json.dumps(document), encoding="utf-8")
    if json_output:
        typer.echo(json.dumps(document))
    else:
        _print_schedule(schedule)


def _first_days(series: IntervalSeries, days: int) -> IntervalSeries:
    count = days * 86_400 // series.interval_s
    return IntervalSeries(series.start, series.interval_s, series.volume[:count],
                          series.aht_s[:count])


def _day_slice(series: IntervalSeries, first: int, count: int) -> IntervalSeries:
    return IntervalSeries(series.start + timedelta(seconds=first * series.interval_s),
                          series.interval_s, series.volume[first:first + count],
                          series.aht_s[first:first + count])


def whatif_json(day: date, result: WhatIf) -> dict[str, Any]:
    return {
        "day": day.isoformat(),
        "service_level": result.service_level(),
        "simulations": result.simulations,
        "intervals": [
            {"start": iso(o.start), "offered_per_hour": round(o.offered_per_hour, 3),
             "agents": o.agents, "service_level": o.service_level, "asa_s": o.asa_s,
             "p_abandon": o.p_abandon, "occupancy": o.occupancy, "queues": o.queues}
            for o in result.intervals
        ],
    }


def _print_whatif(day: date, result: WhatIf) -> None:
    table = Table(title=f"What-if {day.isoformat()} (UTC)")
    for column in ("Interval", "Offered/h", "Agents", "Service level", "ASA (s)",
                   "Abandoned", "Occupancy"):
        table.add_column(column, justify="left" if column == "Interval" else "right")

    def share(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    for o in result.intervals:
        if o.offered_per_hour == 0 and o.agents == 0:
            continue
        table.add_row(f"{o.start:%H:%M}", f"{o.offered_per_hour:.0f}", str(o.agents),
                      share(o.service_level), "-" if o.asa_s is None else f"{o.asa_s:.1f}",
                      share(o.p_abandon), share(o.occupancy))
    console = Console(highlight=False)
    console.print(table)
    console.print(f"Day's service level: {share(result.service_level())} "
                  f"({result.simulations} simulations)")


@wfm_app.command("simulate")
def simulate_command(
    forecast: ForecastOption,
    schedule_file: Annotated[Path, typer.Option(
        "--schedule", help="A schedule document (`omnicc wfm schedule --out`).",
        show_default=False)],
    day: Annotated[str | None, typer.Option(
        "--day", help="The day to simulate, YYYY-MM-DD (default: the schedule's first).",
        show_default=False)] = None,
    scenario: Annotated[Path | None, typer.Option(
        "--scenario", help="A simulation scenario (YAML) whose queues, routing policies and "
        "traffic settings to use; each traffic stream takes the forecast of the queue of the "
        "same name.", show_default=False)] = None,
    threshold_s: ThresholdOption = 20.0,
    patience_s: PatienceOption = None,
    aht_s: AhtOption = 180.0,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 1,
    json_output: JsonOption = False,
) -> None:
    """Simulate a forecast day with a schedule's agents: service level per interval."""
    try:
        document = json.loads(schedule_file.read_text(encoding="utf-8"))
        requirement = requirement_from_list(parse_time(document["start"]),
                                            int(document["interval_s"]),
                                            document["requirement"])
        shifts = [shift_from_dict(s) for s in document["shifts"]]
        skills = {a["id"]: frozenset(a["skills"]) for a in document["agents"]}
    except FileNotFoundError:
        fail(f"schedule file not found: {schedule_file}")
    except (OSError, ValueError, KeyError, TypeError) as error:
        fail(f"{schedule_file}: not a schedule document: {error}")
    base = None
    if scenario is not None:
        try:
            base = load_scenario(scenario)
        except ScenarioError as error:
            fail(str(error))
    interval = f"{requirement.interval_s // 60}m"
    target = ServiceTarget(threshold_s=threshold_s, patience_s=patience_s)
    demands = _demands(forecast, interval, aht_s, target)
    chosen = date.fromisoformat(day) if day else requirement.start.date()
    day_start = datetime.combine(chosen, datetime.min.time(), requirement.start.tzinfo)
    per_day = 86_400 // requirement.interval_s
    duty_first = int((day_start - requirement.start).total_seconds()) // requirement.interval_s
    if not 0 <= duty_first < len(requirement):
        fail(f"--day {chosen} is not in the schedule")
    day_demands = []
    for d in demands:
        first = int((day_start - d.series.start).total_seconds()) // d.series.interval_s
        if first < 0 or first + per_day > len(d.series):
            fail(f"the forecast of {d.queue!r} does not cover {chosen}")
        day_demands.append(QueueDemand(d.queue, d.skill, _day_slice(d.series, first, per_day),
                                       d.target))
    duty = {held: counts[duty_first:duty_first + per_day]
            for held, counts in duty_by_skills(requirement, shifts, skills).items()}
    try:
        with _progress(not json_output) as progress:
            result = what_if(day_demands, duty, base, seed=seed,
                             progress=_step(progress, f"Simulating {chosen}"))
    except (ScenarioError, ValueError) as error:
        fail(str(error))
    if json_output:
        typer.echo(json.dumps(whatif_json(chosen, result)))
    else:
        _print_whatif(chosen, result)

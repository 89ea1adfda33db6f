"""Shift scheduling: who works when, so that the staffing requirement is covered.

Mixed-integer programs solved by HiGHS (`scipy.optimize.milp`), in two phases. Phase one counts,
per class of alike agents (same skills, availability and contract), day and shift (start and
length), how many of them work it; breaks are placed implicitly (Aykin's model) by integers
counting how many of those shifts take each break at each allowed start; the agents on duty in
an interval are shared between the skill groups they can serve by continuous allocations.
Phase two deals each class's shifts to named agents, one binary per agent and shift. Rules:
one shift a day, at most `max_days` days, weekly paid minutes within the agent's contract, a
minimum rest between consecutive shifts, the agent's availability. The objective is
under-staffing first (weighted), paid time second.

Times are UTC, days counted from the requirement's start.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array

from omnicc.wfm.staffing import Requirement

MINUTES_PER_DAY = 1440
UNDER_STAFFING_WEIGHT = 1000.0
"""Cost of one agent missing for one interval, against 1 per paid agent-interval."""


class ScheduleError(ValueError):
    """The rules cannot be met (or do not fit the requirement's intervals); the message says
    which."""


@dataclass(frozen=True, slots=True)
class BreakRule:
    """A break of `minutes` that starts between `earliest_min` and `latest_min` after the
    shift's start."""

    minutes: int
    earliest_min: int
    latest_min: int


@dataclass(frozen=True, slots=True)
class ShiftRule:
    """A shift length with its breaks (in order, their windows must not overlap)."""

    minutes: int
    breaks: tuple[BreakRule, ...] = ()


@dataclass(frozen=True, slots=True)
class ScheduleRules:
    """What every shift respects. Starts are minutes of the day (UTC) on a `start_step_min`
    grid between `earliest_start_min` and `latest_start_min`; a shift may run past midnight."""

    shifts: tuple[ShiftRule, ...]
    earliest_start_min: int = 6 * 60
    latest_start_min: int = 14 * 60
    start_step_min: int = 30
    max_days: int = 5
    min_rest_min: int = 11 * 60
    time_limit_s: float = 50.0
    mip_gap: float = 0.01


@dataclass(frozen=True, slots=True)
class AgentPlan:
    """An agent to schedule: the skills (skill groups they can serve), the days they cannot
    work, the part of the day they can work (minutes, end may pass 1440), and their contract
    (paid minutes a week, breaks excluded). `max_days` overrides the rules'."""

    id: str
    name: str = ""
    skills: frozenset[str] = frozenset()
    unavailable: frozenset[date] = frozenset()
    window: tuple[int, int] = (0, 2 * MINUTES_PER_DAY)
    min_minutes: int = 0
    max_minutes: int = 40 * 60
    max_days: int | None = None


@dataclass(frozen=True, slots=True)
class Break:
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class Shift:
    agent_id: str
    day: date
    start: datetime
    end: datetime
    breaks: tuple[Break, ...] = ()

    @property
    def paid_minutes(self) -> int:
        worked = self.end - self.start - sum((b.end - b.start for b in self.breaks), timedelta())
        return int(worked.total_seconds() // 60)


@dataclass(frozen=True, slots=True)
class Schedule:
    """Shifts per agent, and per skill group and interval the agents on duty serving it
    (`coverage`: fractional where a multi-skilled agent's time is shared)."""

    requirement: Requirement
    shifts: tuple[Shift, ...]
    coverage: dict[str, tuple[float, ...]]
    status: str
    objective: float
    wall_s: float
    variables: int = 0
    agents: tuple[AgentPlan, ...] = field(default=())

    def under_staffed(self) -> float:
        """Agent-intervals missing, summed over groups and intervals."""
        return sum(max(0.0, need - got)
                   for g in self.requirement.groups
                   for need, got in zip(g.scheduled, self.coverage[g.id], strict=True))

    def over_staffed(self) -> float:
        return sum(max(0.0, got - need)
                   for g in self.requirement.groups
                   for need, got in zip(g.scheduled, self.coverage[g.id], strict=True))


@dataclass(frozen=True, slots=True)
class _Pattern:
    """One shift a day may hold: start (minutes from the horizon's start), rule, and where in
    the horizon's interval grid it lies."""

    day: int
    start_min: int
    rule: int
    first: int
    last: int  # exclusive
    break_starts: tuple[tuple[int, ...], ...]  # per break rule: allowed first intervals


def _minutes(value: int, step: int, what: str) -> int:
    if value % step:
        raise ScheduleError(f"{what} ({value} min) is not a multiple of the interval ({step} min)")
    return value // step


def _patterns(rules: ScheduleRules, days: int, interval_min: int) -> list[_Pattern]:
    if not rules.shifts:
        raise ScheduleError("the rules name no shift length")
    if rules.start_step_min <= 0:
        raise ScheduleError("start_step_min must be positive")
    _minutes(rules.start_step_min, interval_min, "start_step_min")
    per_rule: list[tuple[int, tuple[tuple[int, ...], ...]]] = []
    for rule in rules.shifts:
        length = _minutes(rule.minutes, interval_min, "a shift length")
        starts: list[tuple[int, ...]] = []
        previous_end = 0
        for brk in rule.breaks:
            size = _minutes(brk.minutes, interval_min, "a break")
            if brk.earliest_min < previous_end or brk.latest_min < brk.earliest_min:
                raise ScheduleError("break windows must be in order and must not overlap")
            if brk.latest_min + brk.minutes > rule.minutes or size == 0:
                raise ScheduleError(f"a {brk.minutes}-minute break does not fit in its window "
                                    f"of a {rule.minutes}-minute shift")
            first = -(-brk.earliest_min // interval_min)
            starts.append(tuple(range(first, brk.latest_min // interval_min + 1)))
            if not starts[-1]:
                raise ScheduleError("a break window holds no interval start")
            previous_end = brk.latest_min + brk.minutes
        per_rule.append((length, tuple(starts)))
    per_day = MINUTES_PER_DAY // interval_min
    patterns: list[_Pattern] = []
    for day in range(days):
        for start in range(rules.earliest_start_min, rules.latest_start_min + 1,
                           rules.start_step_min):
            if start % interval_min:
                continue
            for r, (length, windows) in enumerate(per_rule):
                first = day * per_day + start // interval_min
                patterns.append(_Pattern(day, day * MINUTES_PER_DAY + start, r, first,
                                         first + length, windows))
    return patterns


class _Model:
    """Columns and rows of the program, built as sparse triplets."""

    def __init__(self) -> None:
        self.cost: list[float] = []
        self.upper: list[float] = []
        self.integer: list[int] = []
        self.rows: list[int] = []
        self.cols: list[int] = []
        self.vals: list[float] = []
        self.low: list[float] = []
        self.high: list[float] = []

    def column(self, cost: float, upper: float, integer: bool) -> int:
        self.cost.append(cost)
        self.upper.append(upper)
        self.integer.append(1 if integer else 0)
        return len(self.cost) - 1

    def row(self, terms: Iterable[tuple[int, float]], low: float, high: float) -> None:
        index = len(self.low)
        for col, val in terms:
            self.rows.append(index)
            self.cols.append(col)
            self.vals.append(val)
        self.low.append(low)
        self.high.append(high)


@dataclass(slots=True)
class _Class:
    """Agents alike in all the program looks at (skills, availability, contract): the first
    phase counts their shifts, the second deals the shifts out to them."""

    members: list[int]
    plan: AgentPlan
    patterns: list[int]
    max_days: int


def _classes(agents: Sequence[AgentPlan], patterns: list[_Pattern], rules: ScheduleRules,
             day_zero: date) -> list[_Class]:
    alike: dict[tuple[object, ...], list[int]] = {}
    for a, agent in enumerate(agents):
        key = (agent.skills, agent.unavailable, agent.window, agent.min_minutes,
               agent.max_minutes, agent.max_days)
        alike.setdefault(key, []).append(a)
    classes: list[_Class] = []
    for members in alike.values():
        plan = agents[members[0]]
        off = {(d - day_zero).days for d in plan.unavailable}
        allowed = []
        for p, pattern in enumerate(patterns):
            rule = rules.shifts[pattern.rule]
            offset = pattern.start_min - pattern.day * MINUTES_PER_DAY
            if (pattern.day not in off and plan.window[0] <= offset
                    and offset + rule.minutes <= plan.window[1]
                    and _paid(rule) <= plan.max_minutes):
                allowed.append(p)
        if not allowed and plan.min_minutes > 0:
            raise ScheduleError(f"agent {plan.id!r} has a minimum of {plan.min_minutes} "
                                "minutes but no shift fits their availability")
        max_days = rules.max_days if plan.max_days is None else plan.max_days
        classes.append(_Class(members, plan, allowed, max_days))
    return classes


def _paid(rule: ShiftRule) -> int:
    return rule.minutes - sum(b.minutes for b in rule.breaks)


def _end(pattern: _Pattern, rules: ScheduleRules) -> int:
    return pattern.start_min + rules.shifts[pattern.rule].minutes


def _agent_rows(model: _Model, columns: dict[int, int], patterns: list[_Pattern],
                rules: ScheduleRules, days: int, size: int, max_days: int,
                minutes: tuple[int, int], shortfall: int | None = None) -> None:
    """One shift a day, at most max_days, paid minutes within the contract and the rest
    between days, for `size` agents counted by `columns` (pattern -> column)."""
    by_day: dict[int, list[int]] = defaultdict(list)
    for p in columns:
        by_day[patterns[p].day].append(p)
    for day_patterns in by_day.values():
        if len(day_patterns) > 1:
            model.row(((columns[p], 1.0) for p in day_patterns), 0, size)
    model.row(((c, 1.0) for c in columns.values()), 0, max_days * size)
    paid_terms = [(columns[p], float(_paid(rules.shifts[patterns[p].rule]))) for p in columns]
    model.row(paid_terms, -np.inf, minutes[1] * size)
    if minutes[0] > 0:
        extra = [] if shortfall is None else [(shortfall, 1.0)]
        model.row([*paid_terms, *extra], minutes[0] * size, np.inf)
    for d in range(days - 1):
        today, tomorrow = by_day.get(d, []), by_day.get(d + 1, [])
        if not today or not tomorrow:
            continue
        for end in sorted({_end(patterns[p], rules) for p in today}):
            early = [p for p in tomorrow if patterns[p].start_min < end + rules.min_rest_min]
            if early:
                late = [p for p in today if _end(patterns[p], rules) >= end]
                model.row(((columns[p], 1.0) for p in (*late, *early)), 0, size)


def _solve(model: _Model, rules: ScheduleRules, time_limit_s: float) -> tuple[np.ndarray, bool]:
    if not model.cost:
        return np.zeros(0), True
    matrix = coo_array((model.vals, (model.rows, model.cols)),
                       shape=(len(model.low), len(model.cost))).tocsr()
    result = milp(
        c=np.asarray(model.cost),
        integrality=np.asarray(model.integer),
        bounds=Bounds(np.zeros(len(model.cost)), np.asarray(model.upper)),
        constraints=LinearConstraint(matrix, np.asarray(model.low), np.asarray(model.high)),
        options={"time_limit": max(time_limit_s, 1.0), "mip_rel_gap": rules.mip_gap},
    )
    if result.x is None:
        raise ScheduleError(f"no schedule meets the rules: {result.message}")
    return np.rint(result.x), result.status == 0


def build_schedule(requirement: Requirement, agents: Sequence[AgentPlan],
                   rules: ScheduleRules) -> Schedule:
    """Solve the shift-scheduling program and return the shifts and their coverage.

    Phase one decides how many agents of each class work each shift and where their breaks go
    (coverage is decided here); phase two, per class, gives the shifts to named agents under
    the same per-agent rules. Agents alike make phase one small whatever the headcount.
    """
    started = time.perf_counter()
    interval_min, remainder = divmod(requirement.interval_s, 60)
    if remainder or interval_min == 0:
        raise ScheduleError("the requirement's interval must be whole minutes")
    horizon = len(requirement)
    days = -(-horizon // (MINUTES_PER_DAY // interval_min))
    if not agents:
        raise ScheduleError("no agent to schedule")
    if len({a.id for a in agents}) != len(agents):
        raise ScheduleError("agent ids must be unique")
    patterns = _patterns(rules, days, interval_min)
    groups = requirement.groups
    classes = _classes(agents, patterns, rules, requirement.start.date())

    model = _Model()
    counts: list[dict[int, int]] = []
    on_duty_terms: dict[tuple[frozenset[str], int], list[tuple[int, float]]] = defaultdict(list)
    breaks: dict[tuple[int, int], list[list[tuple[int, int]]]] = {}
    for c, cls in enumerate(classes):
        size = len(cls.members)
        columns: dict[int, int] = {}
        for p in cls.patterns:
            pattern = patterns[p]
            covered = max(min(pattern.last, horizon) - pattern.first, 0)
            columns[p] = model.column(float(covered), size, True)
            for t in range(pattern.first, min(pattern.last, horizon)):
                on_duty_terms[cls.plan.skills, t].append((columns[p], 1.0))
            per_break: list[list[tuple[int, int]]] = []
            for brk, starts in zip(rules.shifts[pattern.rule].breaks, pattern.break_starts,
                                   strict=True):
                options = [(model.column(0.0, size, True), offset) for offset in starts]
                for column, offset in options:
                    for t in range(pattern.first + offset,
                                   min(pattern.first + offset + brk.minutes // interval_min,
                                       horizon)):
                        on_duty_terms[cls.plan.skills, t].append((column, -1.0))
                model.row([(col, 1.0) for col, _ in options] + [(columns[p], -1.0)], 0, 0)
                per_break.append(options)
            breaks[c, p] = per_break
        counts.append(columns)
        _agent_rows(model, columns, patterns, rules, days, size, cls.max_days,
                    (cls.plan.min_minutes, cls.plan.max_minutes))

    # The agents on duty are shared between the groups they serve; what is missing is costly.
    allocations: dict[tuple[frozenset[str], int], list[int]] = defaultdict(list)
    kinds = {cls.plan.skills for cls in classes}
    for group in groups:
        for t, need in enumerate(group.scheduled):
            if need <= 0:
                continue
            terms = []
            for kind in kinds:
                if set(group.skills) & kind and on_duty_terms.get((kind, t)):
                    column = model.column(0.0, np.inf, False)
                    allocations[kind, t].append(column)
                    terms.append((column, 1.0))
            under = model.column(UNDER_STAFFING_WEIGHT, np.inf, False)
            model.row([*terms, (under, 1.0)], need, np.inf)
    for (kind, t), columns_kt in allocations.items():
        model.row([(col, 1.0) for col in columns_kt]
                  + [(col, -v) for col, v in on_duty_terms[kind, t]], -np.inf, 0)
    # A multi-skill group's floors: enough agents holding each of its skills.
    for group in groups:
        for skill, needs in group.floors:
            for t, need in enumerate(needs):
                holding = [term for kind in kinds if skill in kind
                           for term in on_duty_terms.get((kind, t), [])]
                if need > 0:
                    short = model.column(UNDER_STAFFING_WEIGHT, np.inf, False)
                    model.row([*holding, (short, 1.0)], need, np.inf)

    values, optimal = _solve(model, rules, rules.time_limit_s)
    shifts: list[Shift] = []
    for c, cls in enumerate(classes):
        wanted = {p: int(values[col]) for p, col in counts[c].items() if values[col] > 0.5}
        left_s = rules.time_limit_s - (time.perf_counter() - started)
        dealt, exact = _deal(cls, wanted, patterns, rules, days, left_s)
        optimal = optimal and exact
        shifts += _shifts(requirement, agents, rules, patterns, dealt, values,
                          {p: breaks[c, p] for p in wanted}, interval_min)
    shifts.sort(key=lambda s: (s.agent_id, s.start))
    return Schedule(
        requirement=requirement,
        shifts=tuple(shifts),
        coverage=_coverage(requirement, shifts, agents),
        status="optimal" if optimal else "time_limit",
        objective=float(np.dot(model.cost, values)),
        wall_s=time.perf_counter() - started,
        variables=len(model.cost),
        agents=tuple(agents),
    )


def _deal(cls: _Class, wanted: dict[int, int], patterns: list[_Pattern],
          rules: ScheduleRules, days: int, time_limit_s: float
          ) -> tuple[dict[int, list[int]], bool]:
    """Phase two: pattern -> the agents (indexes) who work it, each agent within the rules.
    Every wanted shift is dealt when possible; a shift no agent can take is left out."""
    if len(cls.members) == 1:
        return {p: list(cls.members) for p in wanted}, True
    model = _Model()
    cells: dict[tuple[int, int], int] = {}
    for a in cls.members:
        columns = {p: model.column(-UNDER_STAFFING_WEIGHT, 1, True) for p in wanted}
        cells.update({(a, p): col for p, col in columns.items()})
        shortfall = model.column(1.0, np.inf, False) if cls.plan.min_minutes else None
        _agent_rows(model, columns, patterns, rules, days, 1, cls.max_days,
                    (cls.plan.min_minutes, cls.plan.max_minutes), shortfall)
    for p, count in wanted.items():
        model.row(((cells[a, p], 1.0) for a in cls.members), 0, count)
    values, optimal = _solve(model, rules, time_limit_s)
    dealt: dict[int, list[int]] = {p: [] for p in wanted}
    for (a, p), col in cells.items():
        if values[col] > 0.5:
            dealt[p].append(a)
    return dealt, optimal


def _shifts(requirement: Requirement, agents: Sequence[AgentPlan], rules: ScheduleRules,
            patterns: list[_Pattern], dealt: dict[int, list[int]], values: np.ndarray,
            breaks: dict[int, list[list[tuple[int, int]]]], interval_min: int) -> list[Shift]:
    """Named shifts; the class's break counts of each shift dealt out in turn."""
    origin = requirement.start
    shifts: list[Shift] = []
    for p, members in dealt.items():
        pattern = patterns[p]
        rule = rules.shifts[pattern.rule]
        start = origin + timedelta(minutes=pattern.start_min)
        offsets = [[offset for column, offset in options for _ in range(int(values[column]))]
                   for options in breaks[p]]
        for n, a in enumerate(sorted(members, key=lambda i: agents[i].id)):
            shift_breaks = tuple(
                Break(start + timedelta(minutes=starts[n] * interval_min),
                      start + timedelta(minutes=starts[n] * interval_min + brk.minutes))
                for brk, starts in zip(rule.breaks, offsets, strict=True)
            )
            shifts.append(Shift(agents[a].id, (origin + timedelta(days=pattern.day)).date(),
                                start, start + timedelta(minutes=rule.minutes), shift_breaks))
    return shifts


def on_duty(requirement: Requirement, shifts: Iterable[Shift]) -> dict[str, list[int]]:
    """Per agent, 1 for each interval they are on shift and not on a break."""
    origin, step = requirement.start, requirement.interval_s
    horizon = len(requirement)
    result: dict[str, list[int]] = {}
    for shift in shifts:
        row = result.setdefault(shift.agent_id, [0] * horizon)
        for t in _span(origin, step, horizon, shift.start, shift.end):
            row[t] = 1
        for brk in shift.breaks:
            for t in _span(origin, step, horizon, brk.start, brk.end):
                row[t] = 0
    return result


def _span(origin: datetime, step: int, horizon: int, start: datetime,
          end: datetime) -> range:
    first = int((start - origin).total_seconds() // step)
    last = int(-((origin - end).total_seconds() // step))
    return range(max(first, 0), min(last, horizon))


def _coverage(requirement: Requirement, shifts: Sequence[Shift],
              agents: Sequence[AgentPlan]) -> dict[str, tuple[float, ...]]:
    """Agents on duty per group and interval. A multi-skilled agent's interval is shared
    between their groups by what each still misses (water-filling), then evenly."""
    skills = {agent.id: agent.skills for agent in agents}
    duty = on_duty(requirement, shifts)
    groups = requirement.groups
    horizon = len(requirement)
    coverage = {group.id: [0.0] * horizon for group in groups}
    for t in range(horizon):
        present = [agent_id for agent_id, row in duty.items() if row[t]]
        flexible: list[list[int]] = []
        for agent_id in present:
            mine = [g for g, group in enumerate(groups) if set(group.skills) & skills[agent_id]]
            if len(mine) == 1:
                coverage[groups[mine[0]].id][t] += 1
            elif mine:
                flexible.append(mine)
        for mine in flexible:
            left = 1.0
            missing = sorted(mine, key=lambda g: coverage[groups[g].id][t]
                             - groups[g].scheduled[t])
            for g in missing:
                gap = groups[g].scheduled[t] - coverage[groups[g].id][t]
                if gap > 0 and left > 0:
                    given = min(gap, left)
                    coverage[groups[g].id][t] += given
                    left -= given
            for g in mine:
                coverage[groups[g].id][t] += left / len(mine)
    return {group_id: tuple(values) for group_id, values in coverage.items()}

"""Staffing: how many agents each interval needs, per skill group.

Queues whose skill no agent shares with another queue are single-skill: Erlang C (or Erlang A
when customers abandon) gives their requirement directly. Queues linked by agents who hold
several of their skills form one multi-skill group: pooling makes a group need fewer agents
than the sum of its queues' Erlang figures, and how many fewer depends on the routing, so the
simulator (the real routing engine) finds the smallest pool that meets every queue's target,
between the pooled Erlang figure (a lower bound) and the sum of the queues' (an upper bound).

Figures follow METRICS.md: service level is the Erlang convention (answered within T over all
arrivals), AHT includes wrap-up, shrinkage turns required into scheduled agents.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from omnicc.sim.scenario import Scenario, parse_scenario
from omnicc.sim.simulation import simulate
from omnicc.wfm.erlang import required_agents, scheduled_agents
from omnicc.wfm.series import IntervalSeries

Method = Literal["erlang_c", "erlang_a", "simulation"]
StaffingProgress = Callable[[int, int], None]
"""Called with (intervals done, intervals in all) as a requirement is computed."""

SIMULATED_HOURS = 12.0
"""Steady-state hours simulated per candidate staffing of a multi-skill interval."""


@dataclass(frozen=True, slots=True)
class ServiceTarget:
    """What a queue promises: service level at a threshold, an optional ASA, a ceiling on
    occupancy; patience_s (mean, exponential) switches Erlang C to Erlang A. Shrinkage is the
    share of paid time lost to absence that the schedule does not place itself (breaks are
    placed explicitly by the scheduler, so they are not part of it)."""

    service_level: float = 0.8
    threshold_s: float = 20.0
    max_occupancy: float | None = 0.85
    shrinkage: float = 0.0
    patience_s: float | None = None
    asa_s: float | None = None


@dataclass(frozen=True, slots=True)
class QueueDemand:
    """The forecast of one queue, the skill its contacts need and its target."""

    queue: str
    skill: str
    series: IntervalSeries
    target: ServiceTarget = ServiceTarget()


@dataclass(frozen=True, slots=True)
class GroupRequirement:
    """Agents needed per interval by a skill group: `required` on the phones, `scheduled` once
    shrinkage is added. An agent with any of `skills` counts towards the group.

    `floors` (multi-skill groups): per skill, the agents holding it to schedule in each
    interval - the mix of the pool the simulation found enough, so the group's total is not
    met by agents without a queue's skill."""

    id: str
    skills: tuple[str, ...]
    method: Method
    required: tuple[int, ...]
    scheduled: tuple[int, ...]
    floors: tuple[tuple[str, tuple[int, ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class Requirement:
    """The staffing requirement of every skill group over the same intervals."""

    start: datetime
    interval_s: int
    groups: tuple[GroupRequirement, ...]

    def __len__(self) -> int:
        return len(self.groups[0].scheduled) if self.groups else 0

    def group(self, group_id: str) -> GroupRequirement:
        for group in self.groups:
            if group.id == group_id:
                return group
        raise KeyError(group_id)


@dataclass(frozen=True, slots=True)
class CoverageRow:
    """One interval of one group: scheduled agents needed, agents the schedule gives, and the
    difference (positive: over-staffed, negative: under-staffed)."""

    interval: int
    start: datetime
    group: str
    required: int
    covered: float

    @property
    def difference(self) -> float:
        return self.covered - self.required


def skill_groups(skills: Iterable[str], roster: Iterable[frozenset[str]]) -> list[list[str]]:
    """The skills cut into groups: two skills are in one group when an agent holds both
    (directly or through a chain of agents). Sorted, so results do not depend on input order."""
    parent = {skill: skill for skill in skills}

    def find(skill: str) -> str:
        while parent[skill] != skill:
            parent[skill] = parent[parent[skill]]
            skill = parent[skill]
        return skill

    for held in roster:
        known = sorted(skill for skill in held if skill in parent)
        for other in known[1:]:
            parent[find(other)] = find(known[0])
    groups: dict[str, list[str]] = {}
    for skill in sorted(parent):
        groups.setdefault(find(skill), []).append(skill)
    return sorted(groups.values())


def _erlang_required(demand: QueueDemand, index: int) -> int:
    series, target = demand.series, demand.target
    volume = series.volume[index]
    if volume <= 0 or series.aht_s[index] <= 0:
        return 0
    return required_agents(
        series.arrivals_per_hour(index),
        series.aht_s[index],
        target_service_level=target.service_level,
        threshold_s=target.threshold_s,
        target_asa_s=target.asa_s,
        patience_s=target.patience_s,
        max_occupancy=target.max_occupancy,
    )


def _check_aligned(demands: Sequence[QueueDemand]) -> None:
    first = demands[0].series
    for demand in demands[1:]:
        series = demand.series
        if (series.start, series.interval_s, len(series)) != (
            first.start, first.interval_s, len(first)
        ):
            raise ValueError(f"queue {demand.queue!r}: its forecast covers other intervals than "
                             f"queue {demands[0].queue!r}'s")


class _PoolSimulator:
    """Finds the smallest pool of a multi-skill group meeting every queue's target, by
    simulation; intervals with the same load share one answer."""

    def __init__(self, demands: Sequence[QueueDemand], mix: dict[frozenset[str], int],
                 seed: int) -> None:
        self._demands = demands
        self._mix = sorted(mix.items(), key=lambda item: sorted(item[0]))
        self._seed = seed
        self._cache: dict[tuple[float, ...], int] = {}

    def required(self, index: int, low: int, high: int) -> int:
        rates = [d.series.arrivals_per_hour(index) for d in self._demands]
        ahts = [d.series.aht_s[index] for d in self._demands]
        key = tuple(round(value, 1) for value in (*rates, *ahts))
        if key not in self._cache:
            self._cache[key] = self._search(rates, ahts, low, high)
        return self._cache[key]

    def _search(self, rates: list[float], ahts: list[float], low: int, high: int) -> int:
        # Common random numbers (one seed) keep the answer monotone enough for a bisection;
        # the sum of the queues' Erlang figures is kept when even it falls short.
        low = max(low, 1)
        if low >= high or not self._meets(rates, ahts, high):
            return high
        while high - low > 1:
            middle = (low + high) // 2
            if self._meets(rates, ahts, middle):
                high = middle
            else:
                low = middle
        return high if not self._meets(rates, ahts, low) else low

    def _meets(self, rates: list[float], ahts: list[float], agents: int) -> bool:
        scenario = self._scenario(rates, ahts, agents)
        result = simulate(scenario)
        for demand, kpis in zip(self._demands, result.queues, strict=True):
            if kpis.contacts and kpis.service_level.mean < demand.target.service_level:
                return False
        return True

    def holders(self, agents: int) -> dict[str, int]:
        """Per skill, the agents holding it in a pool of `agents` split like the roster."""
        counts: dict[str, int] = {}
        for (held, _), count in zip(self._mix, self._split(agents), strict=True):
            for skill in held:
                counts[skill] = counts.get(skill, 0) + count
        return counts

    def _split(self, agents: int) -> list[int]:
        """Agents shared between the skill sets in the roster's proportions (largest
        remainders), at least one per skill set while there are enough agents."""
        total = sum(count for _, count in self._mix)
        exact = [agents * count / total for _, count in self._mix]
        counts = [math.floor(share) for share in exact]
        order = sorted(range(len(exact)), key=lambda i: counts[i] - exact[i])
        for i in order[: agents - sum(counts)]:
            counts[i] += 1
        for i, count in enumerate(counts):
            if count == 0 and agents >= len(counts):
                donor = max(range(len(counts)), key=lambda j: counts[j])
                counts[donor] -= 1
                counts[i] = 1
        return counts

    def _scenario(self, rates: list[float], ahts: list[float], agents: int) -> Scenario:
        demands = self._demands
        threshold_s = min(d.target.threshold_s for d in demands)
        groups = [
            {"group": f"set{i}", "count": count, "skills": {skill: 1 for skill in held},
             "capacity": {"voice": 1}}
            for i, ((held, _), count) in enumerate(zip(self._mix, self._split(agents),
                                                       strict=True))
            if count
        ]
        return parse_scenario({
            "name": "staffing",
            "seed": self._seed,
            "hours": SIMULATED_HOURS,
            "warmup_hours": 1.0,
            "batches": 10,
            "threshold_s": threshold_s,
            "queues": [{"id": d.queue, "expression": f"skills.{d.skill} >= 1",
                        "expected_handle_s": aht or 1.0}
                       for d, aht in zip(demands, ahts, strict=True)],
            "traffic": [{"id": d.queue, "queue": d.queue, "arrivals_per_hour": rate,
                         "handle": {"mean_s": aht or 1.0}, "patience_s": d.target.patience_s,
                         "threshold_s": d.target.threshold_s}
                        for d, rate, aht in zip(demands, rates, ahts, strict=True)],
            "agents": groups,
        }, "staffing scenario")


def _pooled_required(demands: Sequence[QueueDemand], index: int) -> int:
    """Erlang figure of all the group's traffic in one queue with the strictest target."""
    rates = [d.series.arrivals_per_hour(index) for d in demands]
    total_rate = sum(rates)
    if total_rate <= 0:
        return 0
    aht_s = sum(r * d.series.aht_s[index] for r, d in zip(rates, demands, strict=True)) / total_rate
    if aht_s <= 0:
        return 0
    targets = [d.target for d in demands]
    occupancies = [t.max_occupancy for t in targets if t.max_occupancy is not None]
    asas = [t.asa_s for t in targets if t.asa_s is not None]
    patiences = [t.patience_s for t in targets]
    return required_agents(
        total_rate, aht_s,
        target_service_level=max(t.service_level for t in targets),
        threshold_s=min(t.threshold_s for t in targets),
        target_asa_s=min(asas) if asas else None,
        patience_s=None if None in patiences else min(p for p in patiences if p is not None),
        max_occupancy=min(occupancies) if occupancies else None,
    )


def staffing_requirement(
    demands: Sequence[QueueDemand],
    roster: Sequence[frozenset[str]] = (),
    *,
    seed: int = 1,
    progress: StaffingProgress | None = None,
) -> Requirement:
    """Required and scheduled agents per interval for each skill group.

    `roster` gives the skill sets of the agents who will be scheduled (one entry per agent); it
    decides which queues form multi-skill groups and the mix of agents simulated in them.
    Without it every skill is its own group.
    """
    if not demands:
        raise ValueError("staffing needs at least one queue's forecast")
    _check_aligned(demands)
    by_skill: dict[str, list[QueueDemand]] = {}
    for demand in demands:
        by_skill.setdefault(demand.skill, []).append(demand)
    first = demands[0].series
    intervals = len(first)
    groups: list[GroupRequirement] = []
    partition = skill_groups(by_skill, roster)
    total_work = intervals * len(partition)
    done = 0
    for skills in partition:
        members = [d for skill in skills for d in by_skill[skill]]
        shrinkage = max(d.target.shrinkage for d in members)
        required: list[int] = []
        floors: dict[str, list[int]] = {skill: [] for skill in skills}
        pool: _PoolSimulator | None = None
        if len(skills) > 1:
            mix: dict[frozenset[str], int] = {}
            for held in roster:
                inside = frozenset(held & set(skills))
                if inside:
                    mix[inside] = mix.get(inside, 0) + 1
            pool = _PoolSimulator(members, mix, seed)
        for index in range(intervals):
            split = sum(_erlang_required(d, index) for d in members)
            if pool is None or split == 0:
                required.append(split)
            else:
                required.append(pool.required(index, _pooled_required(members, index), split))
            holders = pool.holders(required[-1]) if pool is not None and split else {}
            for skill in skills:
                busy = any(d.series.volume[index] > 0 for d in by_skill[skill])
                floors[skill].append(scheduled_agents(holders.get(skill, 0), shrinkage)
                                     if busy else 0)
            done += 1
            if progress is not None:
                progress(done, total_work)
        method: Method = ("simulation" if pool is not None else
                          "erlang_a" if any(d.target.patience_s for d in members) else
                          "erlang_c")
        groups.append(GroupRequirement(
            id="+".join(skills),
            skills=tuple(skills),
            method=method,
            required=tuple(required),
            scheduled=tuple(scheduled_agents(n, shrinkage) for n in required),
            floors=tuple((skill, tuple(floors[skill])) for skill in skills) if pool else (),
        ))
    return Requirement(first.start, first.interval_s, tuple(groups))


def coverage_rows(requirement: Requirement,
                  covered: dict[str, Sequence[float]]) -> list[CoverageRow]:
    """Requirement against what a schedule gives, per interval and group."""
    rows: list[CoverageRow] = []
    for group in requirement.groups:
        given = covered.get(group.id, ())
        for index, needed in enumerate(group.scheduled):
            rows.append(CoverageRow(
                interval=index,
                start=requirement.start + timedelta(seconds=index * requirement.interval_s),
                group=group.id,
                required=needed,
                covered=float(given[index]) if index < len(given) else 0.0,
            ))
    return rows


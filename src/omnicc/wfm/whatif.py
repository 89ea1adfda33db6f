"""What-if: the service level a proposed schedule and routing policy should give, per interval,
before the day happens.

Each interval is simulated on its own by the real routing engine (`omnicc.sim`): the forecast's
arrival rate and handle time, the agents the schedule has on duty then (by skill set), and the
queues and routing policies of a base scenario when one is given. An interval is run long enough
to be in steady state (the stationary-independent-period approach of WFM tools); a backlog
carried over from the interval before is not modelled, so a badly under-staffed interval makes
the next one look better than it will be. Intervals alike share one run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from omnicc.sim.scenario import Scenario, parse_scenario
from omnicc.sim.simulation import SimulationResult, simulate
from omnicc.wfm.schedule import Shift, on_duty
from omnicc.wfm.staffing import QueueDemand, Requirement

CONTACTS_PER_RUN = 20_000
"""Contacts simulated per interval (between 4 and 24 hours of steady state, after a one-hour
warm-up): enough for a service level within about two points."""

WhatIfProgress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class IntervalOutcome:
    """Expected figures of one interval (METRICS.md definitions): service level in the Erlang
    convention, ASA of answered contacts, share abandoned, occupancy of agents on duty. None
    when nothing arrives; with contacts but no agent, nothing is answered."""

    start: datetime
    offered_per_hour: float
    agents: int
    service_level: float | None
    asa_s: float | None
    p_abandon: float | None
    occupancy: float | None
    queues: dict[str, float | None]


@dataclass(frozen=True, slots=True)
class WhatIf:
    intervals: tuple[IntervalOutcome, ...]
    simulations: int

    def service_level(self) -> float | None:
        """The day's service level, intervals weighted by their offered contacts."""
        weighted = [(o.offered_per_hour, o.service_level) for o in self.intervals
                    if o.service_level is not None and o.offered_per_hour > 0]
        total = sum(weight for weight, _ in weighted)
        return sum(w * sl for w, sl in weighted) / total if total else None


def duty_by_skills(requirement: Requirement, shifts: Iterable[Shift],
                   skills: Mapping[str, frozenset[str]]) -> dict[frozenset[str], list[int]]:
    """Agents on duty (on shift, not on a break) per skill set and interval."""
    duty: dict[frozenset[str], list[int]] = {}
    for agent_id, row in on_duty(requirement, shifts).items():
        held = skills.get(agent_id, frozenset())
        counts = duty.setdefault(held, [0] * len(requirement))
        for index, present in enumerate(row):
            counts[index] += present
    return duty


def _scenario(demands: Sequence[QueueDemand], index: int, agents: dict[frozenset[str], int],
              base: Scenario | None, seed: int) -> Scenario:
    # The schedule knows who serves which queue, not how well: every skill at the top level.
    groups = [
        {"group": f"set{n}", "count": count, "skills": {skill: 5 for skill in sorted(held)},
         "capacity": {"voice": 1}}
        for n, (held, count) in enumerate(sorted(agents.items(), key=lambda i: sorted(i[0])))
        if count
    ]
    rates = {d.queue: d.series.arrivals_per_hour(index) for d in demands}
    ahts = {d.queue: d.series.aht_s[index] or 1.0 for d in demands}
    data: dict[str, Any]
    if base is None:
        data = {
            "threshold_s": min(d.target.threshold_s for d in demands),
            "queues": [{"id": d.queue, "expression": f"skills.{d.skill} >= 1",
                        "expected_handle_s": ahts[d.queue]} for d in demands],
            "traffic": [{"id": d.queue, "queue": d.queue, "arrivals_per_hour": rates[d.queue],
                         "handle": {"mean_s": ahts[d.queue]}, "patience_s": d.target.patience_s,
                         "threshold_s": d.target.threshold_s} for d in demands],
        }
    else:
        data = base.model_dump(mode="json", exclude={"agents", "hours", "warmup_hours",
                                                     "batches", "seed", "name"})
        wrap_up_s = {queue.id: queue.wrap_up_s or 0.0 for queue in base.queues}
        first_queue = {policy.id: policy.steps[0].queue for policy in base.policies}
        for stream in data["traffic"]:
            # The forecast of the queue named like the stream sets its rate and handle time
            # (AHT includes wrap-up, which the queue adds: the talk is the rest); a stream
            # without a forecast is left out of the day.
            target = stream["queue"] or first_queue[stream["policy"]]
            stream["arrivals_per_hour"] = rates.get(stream["id"], 0.0)
            stream["profile"] = None
            if stream["id"] in ahts:
                stream["handle"]["mean_s"] = max(1.0, ahts[stream["id"]] - wrap_up_s[target])
    hours = min(24.0, max(4.0, CONTACTS_PER_RUN / max(sum(rates.values()), 1e-9)))
    data.update({"name": "what-if", "seed": seed, "hours": hours + 1.0,
                 "warmup_hours": 1.0, "batches": 10, "agents": groups})
    return parse_scenario(data, "what-if scenario")


def _outcome(start: datetime, offered: float, agents: int,
             result: SimulationResult | None, queues: Sequence[str]) -> IntervalOutcome:
    if offered <= 0:
        return IntervalOutcome(start, 0.0, agents, None, None, None, None,
                               dict.fromkeys(queues))
    if result is None:  # contacts and nobody to answer them
        return IntervalOutcome(start, offered, 0, 0.0, None, 1.0, None, dict.fromkeys(queues, 0.0))
    overall = result.overall

    def mean(value: float) -> float | None:
        return None if value != value else value  # NaN: no batch had data

    return IntervalOutcome(
        start=start,
        offered_per_hour=offered,
        agents=agents,
        service_level=mean(overall.service_level.mean),
        asa_s=mean(overall.asa_s.mean),
        p_abandon=mean(overall.p_abandon.mean),
        occupancy=mean(result.occupancy.mean),
        queues={q.id: mean(q.service_level.mean) for q in result.queues},
    )


def what_if(demands: Sequence[QueueDemand], duty: Mapping[frozenset[str], Sequence[int]],
            base: Scenario | None = None, *, seed: int = 1,
            progress: WhatIfProgress | None = None) -> WhatIf:
    """Simulate every interval of the demands' forecast with the agents on duty in `duty`."""
    if not demands:
        raise ValueError("a what-if needs at least one queue's forecast")
    first = demands[0].series
    queue_ids = [d.queue for d in demands]
    cache: dict[tuple[Any, ...], SimulationResult] = {}
    patient = any(d.target.patience_s for d in demands) if base is None else any(
        t.patience_s for t in base.traffic)
    outcomes: list[IntervalOutcome] = []
    for index in range(len(first)):
        agents = {held: int(counts[index]) for held, counts in duty.items() if counts[index]}
        offered = sum(d.series.arrivals_per_hour(index) for d in demands)
        start = first.start + timedelta(seconds=index * first.interval_s)
        load_erl = sum(d.series.arrivals_per_hour(index) * d.series.aht_s[index]
                       for d in demands) / 3600.0
        if offered > 0 and agents and load_erl >= sum(agents.values()) and not patient:
            # No steady state: nobody leaves and the line grows without end, so in the long
            # run nobody is answered within the threshold and every agent is busy.
            outcomes.append(IntervalOutcome(start, offered, sum(agents.values()), 0.0, None,
                                            0.0, 1.0, dict.fromkeys(queue_ids, 0.0)))
        elif offered > 0 and agents:
            key = (tuple(round(d.series.arrivals_per_hour(index), 1) for d in demands),
                   tuple(round(d.series.aht_s[index]) for d in demands),
                   tuple(sorted((tuple(sorted(h)), n) for h, n in agents.items())))
            if key not in cache:
                cache[key] = simulate(_scenario(demands, index, agents, base, seed))
            outcomes.append(_outcome(start, offered, sum(agents.values()), cache[key],
                                     queue_ids))
        else:
            outcomes.append(_outcome(start, offered, sum(agents.values()), None, queue_ids))
        if progress is not None:
            progress(index + 1, len(first))
    return WhatIf(tuple(outcomes), len(cache))

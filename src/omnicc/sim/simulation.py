"""The discrete-event simulation: the real routing engine on a virtual clock.

The simulator plays customers and agents. It keeps a heap of its own events (arrivals, hang-ups,
ends of conversations, log-ins and log-outs, an agent picking up after a delay) and merges it
with the engine's timers (`Engine.next_deadline`); every engine command returns the events it
caused and the simulator reacts to them as people would: an offered agent accepts, an accepted
contact ends after its handle time, an ended task is counted.

Contacts are counted in the batch in which they arrived (METRICS.md: "in the interval" means
entered the queue in the interval); occupancy is the engine's own accounting, read at batch
boundaries.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields

from omnicc.core import events as ev
from omnicc.core.clock import ManualClock
from omnicc.core.engine import Engine
from omnicc.core.errors import NotFound, OmniccError
from omnicc.core.model import TaskRequest
from omnicc.sim.scenario import (
    SECONDS_PER_HOUR,
    HandleTimeSpec,
    Scenario,
    ScenarioError,
    TrafficSpec,
)
from omnicc.sim.statistics import Estimate, ratio_batch_means

DRAIN_LIMIT_S = 24 * SECONDS_PER_HOUR
"""After the last arrival, contacts still open are followed this long at most, then dropped."""

PROGRESS_STEPS = 200

# Kinds of the simulator's own events; ties at one instant go in the order they were scheduled.
_ARRIVAL, _ACCEPT, _COMPLETE, _ABANDON, _LOGIN, _LOGOUT, _BOUNDARY, _TICK = range(8)

ProgressCallback = Callable[[float], None]
"""Called with the share of simulated time done, from 0 to 1."""


@dataclass(frozen=True, slots=True)
class QueueKpis:
    """Figures of one traffic stream (or of all together), each with its confidence interval.

    Definitions are METRICS.md's, over contacts that arrived after the warm-up and ended:
    `service_level` is the Erlang convention (answered within T / all, abandoners count
    against), `p_wait` the share not offered to an agent on arrival. `ewt_mae_s` and
    `ewt_bias_s` (EWT minus wait) compare the engine's EWT at arrival with the realised wait
    of contacts that queued and were answered; an abandoner's would-be wait is unknown.
    """

    id: str
    threshold_s: float | None
    contacts: int
    handled: int
    abandoned: int
    timed_out: int
    service_level: Estimate
    service_level_1: Estimate
    service_level_2: Estimate
    asa_s: Estimate
    p_wait: Estimate
    p_abandon: Estimate
    ewt_mae_s: Estimate
    ewt_bias_s: Estimate


@dataclass(frozen=True, slots=True)
class GroupKpis:
    group: str
    agents: int
    occupancy: Estimate


@dataclass(frozen=True, slots=True)
class SimulationResult:
    scenario: str
    seed: int
    warmup_hours: float
    batch_hours: float
    batches: int
    queues: tuple[QueueKpis, ...]
    overall: QueueKpis
    groups: tuple[GroupKpis, ...]
    occupancy: Estimate
    arrivals: int
    unfinished: int
    wall_s: float

    @property
    def simulated_hours(self) -> float:
        return self.warmup_hours + self.batches * self.batch_hours

    @property
    def arrivals_per_wall_s(self) -> float:
        return self.arrivals / self.wall_s if self.wall_s > 0 else math.inf


class _Contact:
    """What the simulator knows about one customer's contact."""

    __slots__ = ("accepted", "batch", "ewt_s", "handle_s", "offered", "stream", "wait_s",
                 "waited")

    def __init__(self, stream: int, batch: int, handle_s: float) -> None:
        self.stream = stream
        self.batch = batch
        self.handle_s = handle_s
        self.offered = False
        self.accepted = False
        self.waited = False
        self.wait_s = 0.0
        self.ewt_s: float | None = None


@dataclass(slots=True)
class _Tally:
    """Counters of one stream, one slot per batch (counts kept as floats, exact below 2**53)."""

    finished: list[float]
    handled: list[float]
    within: list[float]
    abandoned: list[float]
    abandoned_after: list[float]
    timed_out: list[float]
    waited: list[float]
    wait_handled_s: list[float]
    ewt_count: list[float]
    ewt_abs_error_s: list[float]
    ewt_error_s: list[float]

    @classmethod
    def empty(cls, batches: int) -> _Tally:
        return cls(**{f.name: [0.0] * batches for f in fields(cls)})

    def add(self, other: _Tally) -> None:
        for f in fields(self):
            mine: list[float] = getattr(self, f.name)
            for index, value in enumerate(getattr(other, f.name)):
                mine[index] += value


@dataclass(slots=True)
class _Stream:
    index: int
    spec: TrafficSpec
    request: TaskRequest
    threshold_s: float
    peak_rate_per_s: float
    profile: tuple[float, ...] | None
    profile_peak: float
    draw_handle_s: Callable[[], float]
    arrivals: random.Random
    thinning: random.Random
    patience: random.Random
    tally: _Tally


@dataclass(slots=True)
class _Group:
    name: str
    agent_ids: list[str]
    handling_s: list[float] = field(default_factory=list)
    ready_s: list[float] = field(default_factory=list)


def _random(seed: int, purpose: str, name: str) -> random.Random:
    # A separate generator per stream and purpose keeps runs comparable (common random
    # numbers): changing the agents does not change who calls when, nor for how long.
    return random.Random(f"omnicc-sim:{seed}:{purpose}:{name}")


def _handle_sampler(spec: HandleTimeSpec, rng: random.Random) -> Callable[[], float]:
    mean_s = spec.mean_s
    if spec.distribution == "exponential":
        rate = 1.0 / mean_s
        return lambda: rng.expovariate(rate)
    cv = 1.0 if spec.cv is None else spec.cv
    sigma = math.sqrt(math.log1p(cv * cv))
    mu = math.log(mean_s) - sigma * sigma / 2
    return lambda: rng.lognormvariate(mu, sigma)


class Simulation:
    """One run of a scenario. `run()` may be called once."""

    def __init__(self, scenario: Scenario, progress: ProgressCallback | None = None) -> None:
        self._scenario = scenario
        self._progress = progress
        self._clock = ManualClock(0.0)
        self._engine = Engine(
            self._clock,
            capacity_rules=scenario.capacity_rules.to_rules(),
            seed=scenario.seed,
            keep_log=False,
        )
        self._warmup_s = scenario.warmup_hours_used() * SECONDS_PER_HOUR
        self._batch_s = scenario.batch_hours() * SECONDS_PER_HOUR
        self._batches = scenario.batches
        self._horizon_s = self._warmup_s + self._batches * self._batch_s
        self._heap: list[tuple[float, int, int, str]] = []
        self._seq = 0
        self._contacts: dict[str, _Contact] = {}
        self._arrivals = 0
        self._answer_delay_s: dict[str, float] = {}
        self._handlers: dict[type[ev.Event], Callable[[ev.Event], None]] = {
            ev.OfferCreated: self._on_offer_created,  # type: ignore[dict-item]
            ev.OfferAccepted: self._on_offer_accepted,  # type: ignore[dict-item]
            ev.TaskAbandoned: self._on_task_abandoned,  # type: ignore[dict-item]
            ev.TaskTimedOut: self._on_task_timed_out,  # type: ignore[dict-item]
            ev.TaskEnded: self._on_task_ended,  # type: ignore[dict-item]
        }
        try:
            self._configure()
        except OmniccError as error:
            raise ScenarioError(f"the engine refused the scenario: {error}") from None
        self._streams = [self._stream(i, spec) for i, spec in enumerate(scenario.traffic)]
        self._groups = [_Group(g.group, g.agent_ids()) for g in scenario.agents]
        self._ran = False

    def _configure(self) -> None:
        scenario, engine = self._scenario, self._engine
        for queue in scenario.queues:
            engine.configure_queue(queue.to_config(scenario.threshold_s))
        for policy in scenario.policies:
            engine.configure_policy(policy.to_policy())
        for group in scenario.agents:
            for config in group.to_configs():
                engine.configure_agent(config)
                self._answer_delay_s[config.id] = group.answer_delay_s

    def _stream(self, index: int, spec: TrafficSpec) -> _Stream:
        seed = self._scenario.seed
        profile = spec.profile
        profile_peak = max(profile) if profile else 1.0
        return _Stream(
            index=index,
            spec=spec,
            request=TaskRequest(
                channel=spec.channel,
                queue=spec.queue,
                policy=spec.policy,
                priority=spec.priority,
                attributes=spec.attributes,
                required_skills=spec.required_skills,
            ),
            threshold_s=self._scenario.threshold_of(spec),
            peak_rate_per_s=spec.arrivals_per_hour * profile_peak / SECONDS_PER_HOUR,
            profile=profile,
            profile_peak=profile_peak,
            draw_handle_s=_handle_sampler(spec.handle, _random(seed, "handle", spec.id)),
            arrivals=_random(seed, "arrivals", spec.id),
            thinning=_random(seed, "thinning", spec.id),
            patience=_random(seed, "patience", spec.id),
            tally=_Tally.empty(self._batches),
        )

    # --- the event loop ---------------------------------------------------------------------

    def run(self) -> SimulationResult:
        if self._ran:
            raise RuntimeError("a Simulation runs once; make a new one")
        self._ran = True
        started = time.perf_counter()
        self._schedule_start()
        clock, engine, heap = self._clock, self._engine, self._heap
        horizon_s = self._horizon_s
        stop_s = horizon_s + DRAIN_LIMIT_S
        contacts = self._contacts
        streams = {stream.spec.id: stream for stream in self._streams}
        while True:
            deadline = engine.next_deadline()
            own_s = heap[0][0] if heap else math.inf
            at = own_s if deadline is None or own_s < deadline else deadline
            if at == math.inf or at > stop_s or (at > horizon_s and not contacts):
                break
            if at > clock.now():
                clock.set(at)
            if deadline is not None and deadline <= own_s:
                self._handle(engine.advance())
                continue
            _, _, kind, ref = heapq.heappop(heap)
            if kind == _ARRIVAL:
                self._arrive(streams[ref])
            elif kind == _COMPLETE:
                if ref in contacts:
                    self._handle(engine.complete(ref))
            elif kind == _ABANDON:
                contact = contacts.get(ref)
                if contact is not None and not contact.accepted:
                    self._handle(engine.abandon(ref))
            elif kind == _ACCEPT:
                self._accept(ref)
            elif kind == _LOGIN:
                self._handle(engine.set_status(ref, "available", "shift start"))
            elif kind == _LOGOUT:
                self._handle(engine.set_status(ref, "offline", "shift end"))
            elif kind == _BOUNDARY:
                self._snapshot_occupancy()
            elif kind == _TICK and self._progress is not None:
                self._progress(min(1.0, clock.now() / horizon_s))
        if self._progress is not None:
            self._progress(1.0)
        return self._result(time.perf_counter() - started)

    def _push(self, at_s: float, kind: int, ref: str) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at_s, self._seq, kind, ref))

    def _schedule_start(self) -> None:
        for index in range(self._batches + 1):
            self._push(self._warmup_s + index * self._batch_s, _BOUNDARY, "")
        for step in range(1, PROGRESS_STEPS):
            self._push(self._horizon_s * step / PROGRESS_STEPS, _TICK, "")
        end_s = self._horizon_s + DRAIN_LIMIT_S
        for spec, group in zip(self._scenario.agents, self._groups, strict=True):
            if spec.shifts is None:
                continue
            cycle_s = (spec.shift_cycle_h or math.inf) * SECONDS_PER_HOUR
            offset_s = 0.0
            while offset_s <= end_s:
                for shift in spec.shifts:
                    login_s = offset_s + shift.login_h * SECONDS_PER_HOUR
                    logout_s = offset_s + shift.logout_h * SECONDS_PER_HOUR
                    for agent_id in group.agent_ids:
                        self._push(login_s, _LOGIN, agent_id)
                        self._push(logout_s, _LOGOUT, agent_id)
                offset_s += cycle_s
        for stream in self._streams:
            self._schedule_arrival(stream, 0.0)

    def _schedule_arrival(self, stream: _Stream, after_s: float) -> None:
        if stream.peak_rate_per_s <= 0:
            return
        at_s = after_s + stream.arrivals.expovariate(stream.peak_rate_per_s)
        if at_s < self._horizon_s:
            self._push(at_s, _ARRIVAL, stream.spec.id)

    # --- what customers and agents do -------------------------------------------------------

    def _arrive(self, stream: _Stream) -> None:
        now = self._clock.now()
        self._schedule_arrival(stream, now)
        profile = stream.profile
        if profile is not None:
            # Thinning: candidates come at the peak rate, each kept with the hour's share of it.
            share = profile[int(now // SECONDS_PER_HOUR) % len(profile)] / stream.profile_peak
            if stream.thinning.random() >= share:
                return
        self._arrivals += 1
        batch = int((now - self._warmup_s) // self._batch_s) if now >= self._warmup_s else -1
        contact = _Contact(stream.index, min(batch, self._batches - 1), stream.draw_handle_s())
        patience_s = (stream.patience.expovariate(1.0 / stream.spec.patience_s)
                      if stream.spec.patience_s is not None else None)
        engine = self._engine
        events = engine.create_task(stream.request)
        created = events[0]
        assert isinstance(created, ev.TaskCreated)
        task_id = created.task_id
        contacts = self._contacts
        contacts[task_id] = contact
        self._handle(events)
        if task_id in contacts and not contact.offered:
            deadline = engine.next_deadline()
            if deadline is not None and deadline <= now:
                # A policy step with a zero timeout is due now: let it fire before the query.
                self._handle(engine.advance())
            if task_id in contacts and not contact.offered:
                contact.waited = True
                contact.ewt_s = engine.task_position(task_id).ewt_s
        if patience_s is not None and task_id in contacts and not contact.accepted:
            self._push(now + patience_s, _ABANDON, task_id)

    def _accept(self, offer_id: str) -> None:
        try:
            self._engine.offer(offer_id)
        except NotFound:
            return  # withdrawn meanwhile: another agent took it, or the customer left
        self._handle(self._engine.accept(offer_id))

    def _handle(self, events: list[ev.Event]) -> None:
        handlers = self._handlers
        for event in events:
            handler = handlers.get(type(event))
            if handler is not None:
                handler(event)

    def _on_offer_created(self, event: ev.OfferCreated) -> None:
        contact = self._contacts.get(event.task_id)
        if contact is not None:
            contact.offered = True
        delay_s = self._answer_delay_s[event.agent_id]
        if delay_s > 0:
            self._push(self._clock.now() + delay_s, _ACCEPT, event.offer_id)
        else:
            self._accept(event.offer_id)

    def _on_offer_accepted(self, event: ev.OfferAccepted) -> None:
        contact = self._contacts.get(event.task_id)
        if contact is None:
            return
        contact.accepted = True
        contact.wait_s = event.wait_s
        self._push(self._clock.now() + contact.handle_s, _COMPLETE, event.task_id)

    def _on_task_abandoned(self, event: ev.TaskAbandoned) -> None:
        contact = self._contacts.get(event.task_id)
        if contact is not None:
            contact.wait_s = event.wait_s

    def _on_task_timed_out(self, event: ev.TaskTimedOut) -> None:
        contact = self._contacts.get(event.task_id)
        if contact is not None:
            contact.wait_s = event.wait_s

    def _on_task_ended(self, event: ev.TaskEnded) -> None:
        contact = self._contacts.pop(event.task_id, None)
        if contact is None or contact.batch < 0:
            return
        stream = self._streams[contact.stream]
        tally, batch = stream.tally, contact.batch
        outcome = event.outcome
        if outcome == "completed":
            tally.handled[batch] += 1
            tally.wait_handled_s[batch] += contact.wait_s
            if contact.wait_s <= stream.threshold_s:
                tally.within[batch] += 1
            if contact.ewt_s is not None:
                error_s = contact.ewt_s - contact.wait_s
                tally.ewt_count[batch] += 1
                tally.ewt_error_s[batch] += error_s
                tally.ewt_abs_error_s[batch] += abs(error_s)
        elif outcome == "abandoned":
            tally.abandoned[batch] += 1
            if contact.wait_s > stream.threshold_s:
                tally.abandoned_after[batch] += 1
        elif outcome == "timed_out":
            tally.timed_out[batch] += 1
        else:
            return  # cancelled: the simulator never cancels, so nothing to count
        tally.finished[batch] += 1
        if contact.waited:
            tally.waited[batch] += 1

    def _snapshot_occupancy(self) -> None:
        engine = self._engine
        # A query fires due timers but drops their events, so fire them through advance() first.
        self._handle(engine.advance())
        for group in self._groups:
            handling_s = ready_s = 0.0
            for agent_id in group.agent_ids:
                engine.agent_figures(agent_id)  # brings the agent's time accounting up to now
                agent = engine.agent(agent_id)
                handling_s += agent.handling_s
                ready_s += agent.ready_s
            group.handling_s.append(handling_s)
            group.ready_s.append(ready_s)

    # --- results ----------------------------------------------------------------------------

    def _result(self, wall_s: float) -> SimulationResult:
        queues = tuple(
            _queue_kpis(s.spec.id, s.threshold_s, s.tally) for s in self._streams
        )
        total = _Tally.empty(self._batches)
        for stream in self._streams:
            total.add(stream.tally)
        thresholds = {s.threshold_s for s in self._streams}
        overall = _queue_kpis("all", thresholds.pop() if len(thresholds) == 1 else None, total)
        groups = tuple(
            GroupKpis(group.name, len(group.agent_ids),
                      _occupancy([group.handling_s], [group.ready_s]))
            for group in self._groups
        )
        occupancy = _occupancy([g.handling_s for g in self._groups],
                               [g.ready_s for g in self._groups])
        return SimulationResult(
            scenario=self._scenario.name,
            seed=self._scenario.seed,
            warmup_hours=self._warmup_s / SECONDS_PER_HOUR,
            batch_hours=self._batch_s / SECONDS_PER_HOUR,
            batches=self._batches,
            queues=queues,
            overall=overall,
            groups=groups,
            occupancy=occupancy,
            arrivals=self._arrivals,
            unfinished=len(self._contacts),
            wall_s=wall_s,
        )


def _queue_kpis(queue_id: str, threshold_s: float | None, tally: _Tally) -> QueueKpis:
    sl2_base = [h + a for h, a in zip(tally.handled, tally.abandoned_after, strict=True)]
    return QueueKpis(
        id=queue_id,
        threshold_s=threshold_s,
        contacts=round(sum(tally.finished)),
        handled=round(sum(tally.handled)),
        abandoned=round(sum(tally.abandoned)),
        timed_out=round(sum(tally.timed_out)),
        service_level=ratio_batch_means(tally.within, tally.finished),
        service_level_1=ratio_batch_means(tally.within, tally.handled),
        service_level_2=ratio_batch_means(tally.within, sl2_base),
        asa_s=ratio_batch_means(tally.wait_handled_s, tally.handled),
        p_wait=ratio_batch_means(tally.waited, tally.finished),
        p_abandon=ratio_batch_means(tally.abandoned, tally.finished),
        ewt_mae_s=ratio_batch_means(tally.ewt_abs_error_s, tally.ewt_count),
        ewt_bias_s=ratio_batch_means(tally.ewt_error_s, tally.ewt_count),
    )


def _occupancy(handling_s: list[list[float]], ready_s: list[list[float]]) -> Estimate:
    """Batch means of handling time / ready time from cumulative snapshots at boundaries."""
    handling = [math.fsum(values) for values in zip(*handling_s, strict=True)]
    ready = [math.fsum(values) for values in zip(*ready_s, strict=True)]
    return ratio_batch_means(
        [b - a for a, b in itertools.pairwise(handling)],
        [b - a for a, b in itertools.pairwise(ready)],
    )


def simulate(scenario: Scenario, progress: ProgressCallback | None = None) -> SimulationResult:
    """Run a scenario once and return its KPIs."""
    return Simulation(scenario, progress).run()


__all__ = [
    "GroupKpis",
    "QueueKpis",
    "Simulation",
    "SimulationResult",
    "simulate",
]

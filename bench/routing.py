"""The routing benchmark: how fast the engine decides, how much memory it holds, against a baseline.

    .venv/bin/python bench/routing.py [--scenarios S,M,L] [--decisions N] [--seed N]
        [--rounds N] [--naive-seconds S] [--timer wall|cpu] [--profile]

What is measured (issue 2, "Speed"):

- A loaded contact center in steady state. The backlog is built while agents are offline, then
  agents log in and take work until every one is full and a backlog remains. Then, over and over:
  a busy agent is picked (seeded), one of its tasks completes (`Engine.complete`), the engine
  offers that agent its next task(s) from the backlog, the offers are accepted and the backlog
  is topped up with one new task per offer, so its size never changes. A new task has the routing
  attributes (queue, channel, priority, VIP, required skills) of the one just offered: the
  backlog's composition is stationary, so no queue drains or floods during the run.
- A *decision* is one offer the engine creates. Only the call that makes it (`complete`) is
  timed: decisions/s = decisions / time spent in those calls, measured in rounds and reported as
  the median round's rate (`cpu_share` < 1 says the machine was busy with other work; `--timer
  cpu` then times calls by this thread's CPU time); p50/p99 is the latency of one such call.
  The full cycle (complete + accept + create) per decision is reported as well, and the other
  path, a task arriving while eligible agents are idle (`create_task` -> immediate offer), on a
  second engine with the same agents and queues, all idle, no backlog.
- Memory: tracemalloc's growth while the agents are configured (offline, no work) and while the
  backlog is created, per agent and per waiting task. Pools and idle indexes are built lazily by
  the first tasks, so they count as task memory.
- A naive router in this file, with the same semantics on the measured path (when an agent frees
  up, scan every waiting task for the best one it may take: queue membership by the same
  compiled expressions, required skills, per-channel capacity and the cross-channel rules,
  queue priority, then task score, then age), runs the same operations from the same state. Its
  decisions are compared with the engine's: they must be the same.

Scenarios (see `SCENARIOS`): queue i serves the skills j with j % queues == i (one skill per queue
in M and L, two in S) at proficiency >= 2; agents have one or two "language" skills (the first
skills) and three to five others, proficiency 1-5; 40 % voice only (capacity 1), 40 % chat (2-3)
and email (3-5), 20 % all three; chats and emails in progress block calls, a call blocks all.
Tasks: voice 40 %, chat 35 %, email 25 %; priority 0/1/2 (70/20/10 %), 5 % VIP; 20 % require a
language at level 2-3. One queue in ten has priority 1. Aging is off (score = priority + VIP).

The last printed line is one JSON object with every figure, per scenario, and the goals.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import math
import platform
import pstats
import random
import statistics
import sys
import time
import tracemalloc
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from omnicc.core.clock import ManualClock
from omnicc.core.engine import Engine
from omnicc.core.events import OfferCreated
from omnicc.core.expression import Expression, compile_expression
from omnicc.core.model import (
    AgentConfig,
    CapacityRules,
    Channel,
    QueueConfig,
    TaskPhase,
    TaskRequest,
)

START_S = 1_700_000_000.0
STEP_S = 0.01
"""Virtual time between two operations; offer timers (20 s) go stale and are popped as in life."""

RULES = CapacityRules(
    exclusive=frozenset({"voice"}),
    blocked_by={"voice": frozenset({"chat", "email"})},
)

TIMERS = {"wall": time.perf_counter_ns, "cpu": time.thread_time_ns}
"""`wall` (default) is what a caller waits; `cpu` counts only the time this thread ran, for a
machine shared with other work (it costs about 1 µs per reading, which it includes)."""
timer_ns = TIMERS["wall"]

GOAL_DECISIONS_PER_S = 50_000
GOAL_P99_US = 1_000.0
GOAL_GROWTH = 2.0
GOAL_SPEEDUP = 20.0


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    agents: int
    skills: int
    queues: int
    waiting: int
    languages: int
    """The first `languages` skills; tasks may require one of them on top of their queue."""


SCENARIOS: dict[str, Scenario] = {
    "S": Scenario("S", agents=100, skills=10, queues=5, waiting=1_000, languages=2),
    "M": Scenario("M", agents=1_000, skills=50, queues=50, waiting=10_000, languages=4),
    "L": Scenario("L", agents=10_000, skills=200, queues=200, waiting=100_000, languages=8),
}


# --- the workload --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """What routing needs to know of a task; a top-up task copies the one just offered."""

    queue: str
    channel: Channel
    priority: int
    vip: bool
    required: tuple[tuple[str, int], ...]

    def request(self, task_id: str) -> TaskRequest:
        return TaskRequest(
            channel=self.channel,
            queue=self.queue,
            id=task_id,
            priority=self.priority,
            attributes={"vip": True} if self.vip else {},
            required_skills=dict(self.required),
        )


class Workload:
    """Queues, agents and tasks of a scenario, drawn from one seeded generator."""

    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.scenario = scenario
        self.rng = random.Random(seed)
        self.queues = [self._queue(i) for i in range(scenario.queues)]

    def _queue(self, index: int) -> QueueConfig:
        skills = range(index, self.scenario.skills, self.scenario.queues)
        expression = " or ".join(f"skills.s{j} >= 2" for j in skills)
        return QueueConfig(id=f"q{index}", expression=expression, priority=int(index % 10 == 0))

    def agents(self, status: str) -> list[AgentConfig]:
        rng = random.Random(self.rng.random())
        scenario = self.scenario
        others = range(scenario.languages, scenario.skills)
        configs = []
        for n in range(scenario.agents):
            mix = rng.random()
            capacity: dict[str, int] = {}
            if mix < 0.4 or mix >= 0.8:
                capacity["voice"] = 1
            if mix >= 0.4:
                capacity["chat"] = rng.randint(2, 3)
                capacity["email"] = rng.randint(3, 5)
            languages = rng.sample(range(scenario.languages), 1 + (rng.random() < 0.5))
            chosen = [*languages, *rng.sample(others, rng.randint(3, 5))]
            skills = {f"s{j}": rng.randint(1, 5) for j in chosen}
            configs.append(AgentConfig(id=f"a{n}", skills=skills, capacity=capacity,
                                       status=status))
        return configs

    def task(self) -> TaskSpec:
        rng = self.rng
        roll = rng.random()
        channel = "voice" if roll < 0.4 else "chat" if roll < 0.75 else "email"
        roll = rng.random()
        priority = 0 if roll < 0.7 else 1 if roll < 0.9 else 2
        required: tuple[tuple[str, int], ...] = ()
        if rng.random() < 0.2:
            required = ((f"s{rng.randrange(self.scenario.languages)}", rng.randint(2, 3)),)
        return TaskSpec(queue=f"q{rng.randrange(len(self.queues))}", channel=channel,
                        priority=priority, vip=rng.random() < 0.05, required=required)

    def pool_keys(self) -> list[TaskSpec]:
        """One task per (queue, required skills, channel): warms every pool and idle index."""
        requirements: list[tuple[tuple[str, int], ...]] = [()]
        requirements += [((f"s{j}", level),) for j in range(self.scenario.languages)
                         for level in (2, 3)]
        return [TaskSpec(queue.id, channel, 0, False, required) for queue in self.queues
                for required in requirements for channel in ("voice", "chat", "email")]


# --- routers: the engine, and the naive baseline --------------------------------------------


class Offered(NamedTuple):
    offer_id: str
    task_id: str
    agent_id: str


class Router(Protocol):
    """What the driver needs; each call returns the nanoseconds spent inside the router."""

    def advance(self, seconds: float) -> None: ...

    def create(self, task_id: str, spec: TaskSpec) -> tuple[int, list[Offered]]: ...

    def accept(self, offer: Offered) -> tuple[int, list[Offered]]: ...

    def complete(self, task_id: str) -> tuple[int, list[Offered]]: ...

    def cancel(self, task_id: str) -> None: ...


def _offers(events: Iterable[object]) -> list[Offered]:
    return [Offered(e.offer_id, e.task_id, e.agent_id) for e in events
            if type(e) is OfferCreated]


class EngineRouter:
    """The real engine on a manual clock; only the engine call is inside the timer."""

    def __init__(self, workload: Workload) -> None:
        self.clock = ManualClock(START_S)
        self.engine = Engine(self.clock, capacity_rules=RULES)
        for queue in workload.queues:
            self.engine.configure_queue(queue)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def create(self, task_id: str, spec: TaskSpec) -> tuple[int, list[Offered]]:
        request = spec.request(task_id)
        start = timer_ns()
        events = self.engine.create_task(request)
        elapsed = timer_ns() - start
        return elapsed, _offers(events)

    def accept(self, offer: Offered) -> tuple[int, list[Offered]]:
        start = timer_ns()
        events = self.engine.accept(offer.offer_id)
        elapsed = timer_ns() - start
        return elapsed, _offers(events)

    def complete(self, task_id: str) -> tuple[int, list[Offered]]:
        start = timer_ns()
        events = self.engine.complete(task_id)
        elapsed = timer_ns() - start
        return elapsed, _offers(events)

    def cancel(self, task_id: str) -> None:
        self.engine.cancel(task_id)

    def set_available(self, agent_id: str) -> list[Offered]:
        return _offers(self.engine.set_status(agent_id, "available"))


@dataclass(slots=True, eq=False)
class NaiveAgent:
    id: str
    ordinal: int
    skills: dict[str, int]
    attributes: dict[str, object]
    capacity: dict[Channel, int]
    accepts_work: bool
    idle_since: float
    in_progress: dict[Channel, int] = field(default_factory=dict)
    open_channels: frozenset[Channel] = frozenset()


@dataclass(slots=True, eq=False)
class NaiveTask:
    id: str
    seq: int
    queue: str
    channel: Channel
    score: float
    """As the engine keeps it: aging_per_s * enqueued_at - (priority + VIP score)."""
    enqueued_at: float
    required: tuple[tuple[str, int], ...]
    agent_id: str = ""


class NaiveRouter:
    """The obvious router: no indexes, a linear scan of every waiting task per decision.

    Deliberately simple, not deliberately slow: a scan evaluates each queue's expression for the
    agent at most once, and agents who can take work are kept in a set so that arrivals (not the
    measured path) do not scan all agents. Offer rejection and timeouts are not modelled: the
    benchmark never rejects.
    """

    def __init__(self, queues: Sequence[QueueConfig], rules: CapacityRules, now: float) -> None:
        self.now = now
        self.rules = rules
        self.queues: dict[str, QueueConfig] = {q.id: q for q in queues}
        self.expressions: dict[str, Expression] = {
            q.id: compile_expression(q.expression) for q in queues
        }
        self.agents: dict[str, NaiveAgent] = {}
        self.ready: set[str] = set()
        self.waiting: dict[str, NaiveTask] = {}
        self.tasks: dict[str, NaiveTask] = {}
        self.offers: dict[str, NaiveTask] = {}
        self.seq = 0
        self.offer_seq = 0

    @classmethod
    def from_engine(cls, engine: Engine, queues: Sequence[QueueConfig], now: float,
                    rules: CapacityRules = RULES) -> NaiveRouter:
        """The same state as `engine` (no pending offers), copied from its records."""
        naive = cls(queues, rules, now)
        for agent in sorted(engine.agents(), key=lambda a: a.ordinal):
            naive.agents[agent.id] = NaiveAgent(
                id=agent.id, ordinal=agent.ordinal, skills=dict(agent.skills),
                attributes=dict(agent.attributes), capacity=dict(agent.capacity),
                accepts_work=agent.status.accepts_work, idle_since=agent.idle_since,
                in_progress={k: v for k, v in agent.in_progress.items() if v},
            )
            naive._refresh(naive.agents[agent.id])
        for state in sorted(engine.tasks(), key=lambda t: t.seq):
            if state.phase not in (TaskPhase.WAITING, TaskPhase.ASSIGNED):
                raise ValueError(f"task {state.id} is {state.phase}; settle offers first")
            task = naive._task(state.id, state.seq, state.queue_id, state.channel, state.priority,
                               bool(state.attributes.get("vip")), state.enqueued_at,
                               tuple(sorted(state.required_skills.items())))
            naive.tasks[task.id] = task
            if state.phase is TaskPhase.WAITING:
                naive.waiting[task.id] = task
            else:
                task.agent_id = state.agent_id or ""
            naive.seq = max(naive.seq, state.seq)
        return naive

    def add_agent(self, config: AgentConfig, accepts_work: bool) -> None:
        agent = NaiveAgent(id=config.id, ordinal=len(self.agents), skills=dict(config.skills),
                           attributes=dict(config.attributes), capacity=dict(config.capacity),
                           accepts_work=accepts_work, idle_since=self.now)
        self.agents[agent.id] = agent
        self._refresh(agent)

    def _task(self, task_id: str, seq: int, queue_id: str, channel: Channel, priority: int,
              vip: bool, enqueued_at: float,
              required: tuple[tuple[str, int], ...]) -> NaiveTask:
        queue = self.queues[queue_id]
        base = priority + (queue.vip_score if vip else 0.0)
        return NaiveTask(task_id, seq, queue_id, channel, queue.aging_per_s * enqueued_at - base,
                         enqueued_at, required)

    # -- state ----------------------------------------------------------------------------

    def _refresh(self, agent: NaiveAgent) -> None:
        agent.open_channels = self._open_channels(agent)
        if agent.open_channels:
            self.ready.add(agent.id)
        else:
            self.ready.discard(agent.id)

    def _open_channels(self, agent: NaiveAgent) -> frozenset[Channel]:
        if not agent.accepts_work:
            return frozenset()
        in_progress = agent.in_progress
        for channel in self.rules.exclusive:
            if in_progress.get(channel):
                return frozenset()
        open_now = []
        for channel, slots in agent.capacity.items():
            if slots > in_progress.get(channel, 0):
                blockers = self.rules.blocked_by.get(channel)
                if blockers and any(in_progress.get(b) for b in blockers):
                    continue
                open_now.append(channel)
        return frozenset(open_now)

    def _eligible(self, agent: NaiveAgent, task: NaiveTask) -> bool:
        if not self.expressions[task.queue].evaluate(agent.attributes, agent.skills):
            return False
        skills = agent.skills
        return all(skills.get(skill, 0) >= level for skill, level in task.required)

    def _offer(self, task: NaiveTask, agent: NaiveAgent) -> Offered:
        self.offer_seq += 1
        offer = Offered(f"N{self.offer_seq}", task.id, agent.id)
        self.offers[offer.offer_id] = task
        task.agent_id = agent.id
        agent.in_progress[task.channel] = agent.in_progress.get(task.channel, 0) + 1
        self._refresh(agent)
        return offer

    def _serve(self, agent: NaiveAgent) -> list[Offered]:
        """Offer the agent the best waiting tasks it may take, while it has a channel open."""
        offers: list[Offered] = []
        queues = self.queues
        while agent.open_channels:
            open_now = agent.open_channels
            skills = agent.skills
            membership: dict[str, bool] = {}
            now = self.now
            best: NaiveTask | None = None
            best_key: tuple[float, float, float, int] | None = None
            for task in self.waiting.values():
                if task.channel not in open_now:
                    continue
                member = membership.get(task.queue)
                if member is None:
                    member = membership[task.queue] = self.expressions[task.queue].evaluate(
                        agent.attributes, skills)
                if not member:
                    continue
                if task.required and any(skills.get(s, 0) < lvl for s, lvl in task.required):
                    continue
                queue = queues[task.queue]
                key = (-queue.priority, task.score - queue.aging_per_s * now, task.enqueued_at,
                       task.seq)
                if best_key is None or key < best_key:
                    best_key = key
                    best = task
            if best is None:
                break
            del self.waiting[best.id]
            offers.append(self._offer(best, agent))
        return offers

    # -- commands ---------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def create(self, task_id: str, spec: TaskSpec) -> tuple[int, list[Offered]]:
        start = timer_ns()
        self.seq += 1
        task = self._task(task_id, self.seq, spec.queue, spec.channel, spec.priority, spec.vip,
                          self.now, spec.required)
        self.tasks[task_id] = task
        best: NaiveAgent | None = None
        for agent_id in self.ready:
            agent = self.agents[agent_id]
            if task.channel in agent.open_channels and self._eligible(agent, task) and (
                best is None
                or (agent.idle_since, agent.ordinal, agent.id)
                < (best.idle_since, best.ordinal, best.id)
            ):
                best = agent
        offers = [self._offer(task, best)] if best is not None else []
        if best is None:
            self.waiting[task_id] = task
        return timer_ns() - start, offers

    def accept(self, offer: Offered) -> tuple[int, list[Offered]]:
        start = timer_ns()
        del self.offers[offer.offer_id]
        offers = self._serve(self.agents[offer.agent_id])
        return timer_ns() - start, offers

    def complete(self, task_id: str) -> tuple[int, list[Offered]]:
        start = timer_ns()
        task = self.tasks.pop(task_id)
        agent = self.agents[task.agent_id]
        agent.in_progress[task.channel] -= 1
        agent.idle_since = self.now
        self._refresh(agent)
        offers = self._serve(agent)
        return timer_ns() - start, offers

    def cancel(self, task_id: str) -> None:
        del self.tasks[task_id]
        del self.waiting[task_id]


# --- the driver: the same operations for either router -------------------------------------


@dataclass(slots=True)
class Ledger:
    """The driver's own view (who holds which task, what waits), the same for both routers."""

    agent_ids: list[str]
    agent_tasks: dict[str, list[str]]
    specs: dict[str, TaskSpec] = field(default_factory=dict)
    waiting: set[str] = field(default_factory=set)
    next_id: int = 0

    @classmethod
    def for_agents(cls, agent_ids: Sequence[str]) -> Ledger:
        return cls(list(agent_ids), {a: [] for a in agent_ids})

    def copy(self) -> Ledger:
        return Ledger(list(self.agent_ids), {a: list(t) for a, t in self.agent_tasks.items()},
                      dict(self.specs), set(self.waiting), self.next_id)

    def new_task(self, spec: TaskSpec) -> str:
        self.next_id += 1
        task_id = f"t{self.next_id}"
        self.specs[task_id] = spec
        self.waiting.add(task_id)
        return task_id

    def end_task(self, agent_id: str | None, task_id: str) -> None:
        if agent_id is not None:
            self.agent_tasks[agent_id].remove(task_id)
        self.waiting.discard(task_id)
        del self.specs[task_id]

    def pick(self, rng: random.Random) -> tuple[str, str]:
        """A busy agent and one of its tasks."""
        for _ in range(100 * len(self.agent_ids) + 100):
            agent_id = self.agent_ids[rng.randrange(len(self.agent_ids))]
            tasks = self.agent_tasks[agent_id]
            if tasks:
                return agent_id, tasks[rng.randrange(len(tasks))]
        raise RuntimeError("no agent is busy")


Decision = tuple[str, str, str]
"""(path, task_id, agent_id); path "free" (an agent freed up) or "arrival" (a task arrived)."""


def settle(router: Router, offers: Sequence[Offered], ledger: Ledger,
           log: list[Decision] | None = None) -> tuple[int, int]:
    """Accept offers, and any offers the acceptances cause; returns (ns, cascaded offers)."""
    spent = cascaded = 0
    pending = deque(offers)
    while pending:
        offer = pending.popleft()
        ledger.waiting.discard(offer.task_id)
        ledger.agent_tasks[offer.agent_id].append(offer.task_id)
        elapsed, more = router.accept(offer)
        spent += elapsed
        cascaded += len(more)
        if log is not None:
            log.extend(("free", o.task_id, o.agent_id) for o in more)
        pending.extend(more)
    return spent, cascaded


def create(router: Router, ledger: Ledger, spec: TaskSpec,
           log: list[Decision] | None = None) -> tuple[str, int, list[Offered]]:
    task_id = ledger.new_task(spec)
    elapsed, offers = router.create(task_id, spec)
    if log is not None:
        log.extend(("arrival", o.task_id, o.agent_id) for o in offers)
    return task_id, elapsed, offers


@dataclass(slots=True)
class SteadyRun:
    call_ns: list[int] = field(default_factory=list)
    """Time of each decision-making call (`complete`) that made at least one decision."""
    decisions: int = 0
    decision_ns: int = 0
    """Time of every `complete` call, including any that made no decision."""
    empty_calls: int = 0
    accept_ns: int = 0
    create_ns: int = 0
    cascaded: int = 0
    log: list[Decision] = field(default_factory=list)

    @classmethod
    def merge(cls, runs: Sequence[SteadyRun]) -> SteadyRun:
        merged = cls()
        for run in runs:
            merged.call_ns += run.call_ns
            merged.decisions += run.decisions
            merged.decision_ns += run.decision_ns
            merged.empty_calls += run.empty_calls
            merged.accept_ns += run.accept_ns
            merged.create_ns += run.create_ns
            merged.cascaded += run.cascaded
            merged.log += run.log
        return merged


def run_steady(router: Router, ledger: Ledger, rng: random.Random, decisions: int,
               budget_s: float = math.inf, min_decisions: int = 0,
               keep_log: bool = True) -> SteadyRun:
    """Free an agent, accept its offers, top the backlog up; until `decisions` were made.

    Stops early once the time spent in the router passes `budget_s` and at least
    `min_decisions` were made (for the naive router, whose decisions take milliseconds).
    """
    run = SteadyRun()
    log = run.log if keep_log else None
    budget_ns = budget_s * 1e9
    while run.decisions < decisions:
        router.advance(STEP_S)
        agent_id, task_id = ledger.pick(rng)
        elapsed, offers = router.complete(task_id)
        ledger.end_task(agent_id, task_id)
        run.decision_ns += elapsed
        if offers:
            run.call_ns.append(elapsed)
            run.decisions += len(offers)
        else:
            run.empty_calls += 1
        if log is not None:
            log.extend(("free", o.task_id, o.agent_id) for o in offers)
        spent, cascaded = settle(router, offers, ledger, log)
        run.accept_ns += spent
        run.cascaded += cascaded
        for offer in offers:
            _, spent, more = create(router, ledger, ledger.specs[offer.task_id], log)
            run.create_ns += spent
            spent, cascaded = settle(router, more, ledger, log)
            run.accept_ns += spent
            run.cascaded += cascaded + len(more)
        if run.decision_ns > budget_ns and run.decisions >= min_decisions:
            break
    return run


def run_arrivals(router: Router, ledger: Ledger, workload: Workload, count: int,
                 warm: Sequence[TaskSpec] = (), keep_log: bool = True,
                 ) -> tuple[list[int], list[Decision]]:
    """Tasks arrive while agents idle: time `create` when it offers at once.

    Each offered task is accepted and completed at once (untimed), so agents stay idle; a task
    no idle agent may take is cancelled. `warm` tasks go first, untimed.
    """
    times: list[int] = []
    log: list[Decision] = []
    specs = [*warm, *(workload.task() for _ in range(count))]
    for n, spec in enumerate(specs):
        router.advance(STEP_S)
        task_id, elapsed, offers = create(router, ledger, spec, log if keep_log else None)
        if not offers:
            router.cancel(task_id)
            ledger.end_task(None, task_id)
            continue
        if n >= len(warm):
            times.append(elapsed)
        settle(router, offers, ledger)
        finishing = deque(offers)
        while finishing:
            offer = finishing.popleft()
            _, more = router.complete(offer.task_id)
            ledger.end_task(offer.agent_id, offer.task_id)
            settle(router, more, ledger)
            finishing.extend(more)
    return times, log


# --- one scenario --------------------------------------------------------------------------


def percentile(values: Sequence[int], q: float) -> float:
    """Nearest-rank percentile of sorted `values`."""
    if not values:
        return math.nan
    return float(values[max(0, math.ceil(q * len(values)) - 1)])


@dataclass(slots=True)
class Loaded:
    """A scenario built on the engine, in steady state, with what the build measured."""

    router: EngineRouter
    ledger: Ledger
    bytes_per_agent: float
    bytes_per_task: float
    peak_bytes: int
    idle_agents: int
    build_s: float


def build_loaded(workload: Workload, measure_memory: bool = True) -> Loaded:
    """Backlog first while agents are offline, then agents log in and fill up; top up again."""
    started = time.perf_counter()
    scenario = workload.scenario
    agents = workload.agents(status="offline")
    backlog = [workload.task() for _ in range(scenario.waiting)]
    router = EngineRouter(workload)
    ledger = Ledger.for_agents([a.id for a in agents])
    task_ids = [f"t{n + 1}" for n in range(len(backlog))]
    requests = [spec.request(task_id) for spec, task_id in zip(backlog, task_ids, strict=True)]
    engine, clock = router.engine, router.clock

    gc.collect()
    if measure_memory:
        tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for config in agents:
        engine.configure_agent(config)
    gc.collect()
    after_agents = tracemalloc.get_traced_memory()[0]
    for request in requests:
        clock.advance(0.001)
        engine.create_task(request)
    gc.collect()
    after_tasks, peak = tracemalloc.get_traced_memory()
    if measure_memory:
        tracemalloc.stop()
    for spec, task_id in zip(backlog, task_ids, strict=True):
        ledger.specs[task_id] = spec
        ledger.waiting.add(task_id)
    ledger.next_id = len(backlog)

    for config in agents:
        router.advance(0.001)
        settle(router, router.set_available(config.id), ledger)
    while len(ledger.waiting) < scenario.waiting:
        router.advance(0.001)
        _, _, offers = create(router, ledger, workload.task())
        settle(router, offers, ledger)
    idle = sum(1 for a in engine.agents() if a.open_channels)
    return Loaded(
        router=router,
        ledger=ledger,
        bytes_per_agent=(after_agents - base) / scenario.agents if measure_memory else math.nan,
        bytes_per_task=(after_tasks - after_agents) / scenario.waiting
        if measure_memory else math.nan,
        peak_bytes=peak - base if measure_memory else 0,
        idle_agents=idle,
        build_s=time.perf_counter() - started,
    )


@dataclass(slots=True)
class Options:
    decisions: int = 50_000
    seed: int = 1
    rounds: int = 5
    """The steady state is measured in rounds; decisions/s is the median round's rate."""
    warmup: int = 2_000
    naive_budget_s: float = 8.0
    naive_min: int = 30
    arrivals: int = 20_000
    arrival_check: int = 300
    profile: bool = False


ARRIVAL_CHECK_MAX_AGENTS = 1_000
"""The naive arrival path scans every idle agent; above this size the check takes minutes."""


def _arrival_setup(scenario: Scenario, seed: int) -> tuple[Workload, list[AgentConfig]]:
    workload = Workload(scenario, seed)
    return workload, workload.agents(status="available")


def run_arrival_engine(scenario: Scenario, options: Options) -> tuple[list[int], list[Decision]]:
    workload, agents = _arrival_setup(scenario, options.seed)
    router = EngineRouter(workload)
    for config in agents:
        router.engine.configure_agent(config)
    gc.collect()
    return run_arrivals(router, Ledger.for_agents([a.id for a in agents]), workload,
                        options.arrivals, workload.pool_keys())


def run_arrival_naive(scenario: Scenario, options: Options) -> list[Decision]:
    """The first `arrival_check` arrivals (after the same warm-up) on the naive router."""
    workload, agents = _arrival_setup(scenario, options.seed)
    naive = NaiveRouter(workload.queues, RULES, START_S)
    for config in agents:
        naive.add_agent(config, accepts_work=True)
    _, log = run_arrivals(naive, Ledger.for_agents([a.id for a in agents]), workload,
                          min(options.arrival_check, options.arrivals), workload.pool_keys())
    return log


def run_scenario(scenario: Scenario, options: Options) -> dict[str, object]:
    workload = Workload(scenario, options.seed)
    loaded = build_loaded(workload)
    router, ledger = loaded.router, loaded.ledger
    rng = random.Random(options.seed + 1)
    run_steady(router, ledger, rng, options.warmup, keep_log=False)

    naive = NaiveRouter.from_engine(router.engine, workload.queues, router.clock.now())
    naive_ledger = ledger.copy()
    naive_rng = random.Random()
    naive_rng.setstate(rng.getstate())

    gc.collect()
    profiler = cProfile.Profile() if options.profile else None
    if profiler is not None:
        profiler.enable()
    rounds: list[SteadyRun] = []
    wall_started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(options.rounds):
        rounds.append(run_steady(router, ledger, rng, math.ceil(options.decisions /
                                                                 options.rounds)))
    cpu_share = (time.process_time() - cpu_started) / (time.perf_counter() - wall_started)
    if profiler is not None:
        profiler.disable()
        stream = io.StringIO()
        stats = pstats.Stats(profiler, stream=stream).sort_stats("tottime")
        stats.print_stats(30)
        print(f"--- profile of scenario {scenario.name} (steady state, engine) ---",
              file=sys.stderr)
        print(stream.getvalue(), file=sys.stderr)
    engine_run = SteadyRun.merge(rounds)
    round_rates = [r.decisions / (r.decision_ns / 1e9) for r in rounds]

    gc.collect()
    naive_run = run_steady(naive, naive_ledger, naive_rng, options.decisions,
                           budget_s=options.naive_budget_s, min_decisions=options.naive_min)
    same = engine_run.log[: len(naive_run.log)] == naive_run.log

    # The arrival path: a second engine with the same agents and queues, all idle, no backlog.
    arrival_ns, arrival_log = run_arrival_engine(scenario, options)
    checked = 0
    arrival_same: bool | None = None
    if scenario.agents <= ARRIVAL_CHECK_MAX_AGENTS:
        naive_arrival_log = run_arrival_naive(scenario, options)
        checked = sum(1 for d in naive_arrival_log if d[0] == "arrival")
        arrival_same = arrival_log[: len(naive_arrival_log)] == naive_arrival_log

    calls = sorted(engine_run.call_ns)
    decisions_per_s = statistics.median(round_rates)
    naive_per_s = naive_run.decisions / (naive_run.decision_ns / 1e9)
    cycle_ns = engine_run.decision_ns + engine_run.accept_ns + engine_run.create_ns
    arrivals = sorted(arrival_ns)
    return {
        "agents": scenario.agents,
        "skills": scenario.skills,
        "queues": scenario.queues,
        "waiting": len(ledger.waiting),
        "idle_agents_at_start": loaded.idle_agents,
        "decisions": engine_run.decisions,
        "decision_calls": len(calls),
        "empty_calls": engine_run.empty_calls,
        "cascaded_offers": engine_run.cascaded,
        "decisions_per_s": round(decisions_per_s, 1),
        "decisions_per_s_overall": round(engine_run.decisions / (engine_run.decision_ns / 1e9), 1),
        "decisions_per_s_rounds": [round(r) for r in round_rates],
        "cpu_share": round(cpu_share, 3),
        "p50_us": round(percentile(calls, 0.50) / 1e3, 2),
        "p99_us": round(percentile(calls, 0.99) / 1e3, 2),
        "max_us": round(calls[-1] / 1e3, 2) if calls else None,
        "cycle_us": round(cycle_ns / engine_run.decisions / 1e3, 2),
        "arrival_path_us": round(sum(arrivals) / len(arrivals) / 1e3, 2) if arrivals else None,
        "arrival_p99_us": round(percentile(arrivals, 0.99) / 1e3, 2),
        "arrivals": len(arrivals),
        "bytes_per_agent": round(loaded.bytes_per_agent),
        "bytes_per_task": round(loaded.bytes_per_task),
        "build_peak_bytes": loaded.peak_bytes,
        "naive_decisions": naive_run.decisions,
        "naive_decisions_per_s": round(naive_per_s, 1),
        "speedup": round(decisions_per_s / naive_per_s, 1),
        "same_decisions_as_naive": same,
        "same_arrivals_as_naive": arrival_same,
        "arrivals_checked": checked,
        "build_s": round(loaded.build_s, 1),
    }


def goals(results: Mapping[str, Mapping[str, object]]) -> dict[str, object]:
    def figure(name: str, key: str) -> float | None:
        value = results.get(name, {}).get(key)
        return float(value) if isinstance(value, int | float) else None

    l_rate, l_p99 = figure("L", "decisions_per_s"), figure("L", "p99_us")
    m_rate, l_speedup = figure("M", "decisions_per_s"), figure("L", "speedup")
    growth = m_rate / l_rate if m_rate and l_rate else None
    return {
        "l_decisions_per_s_ge_50000": None if l_rate is None else l_rate >= GOAL_DECISIONS_PER_S,
        "l_p99_le_1ms": None if l_p99 is None else l_p99 <= GOAL_P99_US,
        "m_to_l_cost_growth": None if growth is None else round(growth, 2),
        "m_to_l_cost_growth_le_2x": None if growth is None else growth <= GOAL_GROWTH,
        "l_speedup_ge_20x": None if l_speedup is None else l_speedup >= GOAL_SPEEDUP,
        "same_decisions_as_naive": all(
            r.get("same_decisions_as_naive") is True
            and r.get("same_arrivals_as_naive") in (True, None)
            for r in results.values()
        ),
    }


COLUMNS = (
    ("scenario", None),
    ("agents", "agents"),
    ("waiting", "waiting"),
    ("decisions/s", "decisions_per_s"),
    ("p50 µs", "p50_us"),
    ("p99 µs", "p99_us"),
    ("cycle µs", "cycle_us"),
    ("arrival µs", "arrival_path_us"),
    ("B/agent", "bytes_per_agent"),
    ("B/task", "bytes_per_task"),
    ("naive dec/s", "naive_decisions_per_s"),
    ("speedup", "speedup"),
    ("same", "same_decisions_as_naive"),
)


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_table(results: Mapping[str, Mapping[str, object]], summary: Mapping[str, object]) -> None:
    rows = [[name, *(_cell(r.get(key)) for _, key in COLUMNS[1:])]
            for name, r in results.items()]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print("  ".join(title for title, _ in COLUMNS))
        for row in rows:
            print("  ".join(row))
    else:
        table = Table(title="Routing engine benchmark (one core)")
        for title, _ in COLUMNS:
            table.add_column(title, justify="left" if title == "scenario" else "right")
        for row in rows:
            table.add_row(*row)
        Console(width=160).print(table)
    for name, value in summary.items():
        print(f"goal {name}: {_cell(value) if value is not None else 'not measured'}")


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    defaults = Options()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scenarios", default="S,M,L", help="comma-separated: S, M, L")
    parser.add_argument("--decisions", type=int, default=defaults.decisions,
                        help="engine decisions measured per scenario")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--naive-seconds", type=float, default=defaults.naive_budget_s,
                        help="time budget of the naive router per scenario")
    parser.add_argument("--rounds", type=int, default=defaults.rounds,
                        help="rounds of the steady state; decisions/s is the median round's")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the engine's steady state (to stderr; slows it down)")
    parser.add_argument("--timer", choices=sorted(TIMERS), default="wall",
                        help="per-call clock: wall (default) or this thread's CPU time")
    args = parser.parse_args(argv)
    global timer_ns
    timer_ns = TIMERS[args.timer]
    names = [n.strip().upper() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}")
    options = Options(decisions=args.decisions, seed=args.seed,
                      naive_budget_s=args.naive_seconds, profile=args.profile,
                      rounds=max(1, args.rounds),
                      arrivals=min(args.decisions, defaults.arrivals))
    results: dict[str, dict[str, object]] = {}
    for name in names:
        print(f"scenario {name}: building and measuring ...", file=sys.stderr, flush=True)
        results[name] = run_scenario(SCENARIOS[name], options)
    summary = goals(results)
    report: dict[str, object] = {
        "benchmark": "routing",
        "python": platform.python_version(),
        "seed": args.seed,
        "timer": args.timer,
        "scenarios": results,
        "goals": summary,
    }
    print_table(results, summary)
    print(json.dumps(report, separators=(",", ":")))
    return report


if __name__ == "__main__":
    main()

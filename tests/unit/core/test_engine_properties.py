"""Stateful property tests of the routing engine (issue 2, "Proof").

Hypothesis drives the real `Engine` on a `ManualClock` with random command sequences: agents come,
change skills and status; tasks arrive, are offered, accepted, rejected, transferred, completed,
wrapped up, abandoned and cancelled; time passes so that offer, step, wrap-up and re-offer timers
fire. A `Ledger` replays every event the engine returns and holds its own model of agents, tasks
and offers, built from the scenario's configuration only (eligibility is decided by oracles written
here in Python, not by the engine's expression compiler). It checks, at every event and after every
step:

1. no agent is ever over capacity on any channel (offers + assigned + wrapping <= capacity);
2. nothing is offered to an agent with a voice task (offered, assigned or wrapping), and under
   `blocked_by={"voice": {"chat"}}` no voice is offered while a chat is in progress;
3. no task is offered to two agents at once except under ring-all;
4. every task ends exactly once, with the outcome of the event that ended it, and nothing is said
   about a task after its `task.ended`; at teardown everything is drained and every task ended;
5. order in a queue: an offer never passes over an older (or better-scored) task of the same
   queue and channel that the agent was eligible for and had not just declined;
6. no agent is offered a task it is not eligible for at that moment (queue expression, policy
   step, required skills after relaxation, explicit or preferred agents);
7. an agent whose status takes no work gets no offer; presence is busy/wrap-up only with tasks;
8. event seq numbers are gap-free and increasing, `at` never decreases nor passes the clock.

Beyond the brief the ledger also checks that the engine's own view (task phases, pending offers,
per-channel load, status) matches the model after every step, that no event escapes the returned
lists, that declined tasks are not re-offered within `reoffer_delay_s`, that max-no-answer is
applied, and that the engine is work-conserving: after a step no task waits while an agent is
free, eligible and has not declined it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import NoReturn

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from omnicc.core import events as ev
from omnicc.core.clock import ManualClock
from omnicc.core.engine import TRANSFER_TO_AGENT_TIMEOUT_S, Engine
from omnicc.core.model import (
    AVAILABLE,
    BREAK,
    BUSY,
    NO_ANSWER,
    OFFLINE,
    PREFERRED,
    WRAP_UP,
    AgentConfig,
    CapacityRules,
    PolicyStep,
    QueueConfig,
    RoutingPolicy,
    StatusDefinition,
    Strategy,
    TaskPhase,
    TaskRequest,
)

START_S = 1_700_000_000.0

AgentTest = Callable[[Mapping[str, object], Mapping[str, int]], bool]
StepTest = Callable[[Mapping[str, object], Mapping[str, int], Mapping[str, object]], bool]

SKILLS = ("finnish", "swedish", "english", "sales")
TEAMS = ("billing", "sales", "support")
LANGUAGES = ("fi", "sv", "en")


# --- oracles: what each expression used below means, written independently ------------------

def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def _at_least(value: object, bound: float) -> bool:
    number = _number(value)
    return number is not None and number >= bound


def _languages(attributes: Mapping[str, object]) -> list[object]:
    value = attributes.get("languages")
    return list(value) if isinstance(value, list | tuple) else []


STEP_TESTS: Mapping[str, StepTest] = {
    "task.language in languages":
        lambda a, s, t: t.get("language") in _languages(a),
    "skills.sales >= 3":
        lambda a, s, t: s.get("sales", 0) >= 3,
    "team == task.team":
        lambda a, s, t: a.get("team") == t.get("team"),
}


# --- scenarios -----------------------------------------------------------------------------

@dataclass(frozen=True)
class QueueSpec:
    config: QueueConfig
    admits: AgentTest
    """The oracle of `config.expression`."""


@dataclass(frozen=True)
class Scenario:
    name: str
    queues: tuple[QueueSpec, ...]
    policies: tuple[RoutingPolicy, ...] = ()
    rules: CapacityRules = field(default_factory=CapacityRules)
    statuses: tuple[StatusDefinition, ...] = ()
    max_missed_offers: int = 3
    channels: tuple[str, ...] = ("voice", "chat", "email")
    priorities: tuple[int, ...] = (0, 1, 2)
    vip: bool = True
    required_skills: bool = True
    preferred: bool = True
    max_agents: int = 6
    max_open_tasks: int = 12
    max_examples: int = 100
    steps: int = 50
    exercised: tuple[str, ...] = ()
    """Tally entries (besides `EXERCISED`) this scenario's runs must have produced."""


MIXED = Scenario(
    name="mixed",
    queues=(
        QueueSpec(
            QueueConfig(id="billing", expression='team == "billing" or skills.english >= 4',
                        wrap_up_s=30.0, reoffer_delay_s=10.0),
            lambda a, s: a.get("team") == "billing" or s.get("english", 0) >= 4,
        ),
        QueueSpec(
            QueueConfig(id="fi", expression="skills.finnish >= 3",
                        strategy=Strategy.MOST_PROFICIENT, proficiency_skills=("finnish",),
                        priority=1, aging_per_s=0.5, vip_score=50.0, reoffer_delay_s=5.0),
            lambda a, s: s.get("finnish", 0) >= 3,
        ),
        QueueSpec(
            QueueConfig(id="general", strategy=Strategy.LEAST_OCCUPIED, wrap_up_s=math.inf,
                        reoffer_delay_s=0.0, offer_timeout_s=15.0),
            lambda a, s: True,
        ),
        QueueSpec(
            QueueConfig(id="sales", expression='team in ["sales", "support"] and tier >= 2',
                        strategy=Strategy.ROUND_ROBIN, offer_timeout_s=15.0, aging_per_s=1.0),
            lambda a, s: a.get("team") in ("sales", "support") and _at_least(a.get("tier"), 2),
        ),
        QueueSpec(
            QueueConfig(id="nordic", expression='"swedish" in skills',
                        strategy=Strategy.FEWEST_CONTACTS, wrap_up_s=10.0, priority=2),
            lambda a, s: "swedish" in s,
        ),
        QueueSpec(
            QueueConfig(id="lottery", expression='not (team == "billing")',
                        strategy=Strategy.RANDOM, reoffer_delay_s=0.0),
            lambda a, s: a.get("team") != "billing",
        ),
    ),
    policies=(
        RoutingPolicy(
            id="care",
            steps=(
                PolicyStep(queue="billing", agents=(PREFERRED,), timeout_s=30.0),
                PolicyStep(queue="billing", expression="task.language in languages",
                           timeout_s=40.0),
                PolicyStep(queue="general", expression="skills.sales >= 3", timeout_s=30.0,
                           relax_proficiency=1),
                PolicyStep(queue="general", relax_proficiency=2, timeout_s=60.0),
            ),
        ),
        RoutingPolicy(
            id="fi_first",
            steps=(
                PolicyStep(queue="fi", timeout_s=20.0),
                PolicyStep(queue="lottery", expression="team == task.team"),
            ),
        ),
    ),
    statuses=(
        StatusDefinition("back_office", accepts_work=True),
        StatusDefinition("training", accepts_work=False),
        StatusDefinition("lunch", accepts_work=False, logged_in=False),
    ),
    max_missed_offers=2,
    max_examples=300,
    exercised=("TaskTimedOut", "task queued on step_timeout", "presence back_office",
               "presence lunch", "TaskReprioritised"),
)

RING = Scenario(
    name="ring_all_and_sequential_chats_block_voice",
    queues=(
        QueueSpec(
            QueueConfig(id="ring", strategy=Strategy.RING_ALL, wrap_up_s=15.0,
                        reoffer_delay_s=10.0),
            lambda a, s: True,
        ),
        QueueSpec(
            QueueConfig(id="hunt", expression='tier >= 2 or team == "support"',
                        strategy=Strategy.SEQUENTIAL, hunt_order=("a2", "a0", "a1", "a4"),
                        offer_timeout_s=10.0, reoffer_delay_s=0.0),
            lambda a, s: _at_least(a.get("tier"), 2) or a.get("team") == "support",
        ),
        QueueSpec(
            QueueConfig(id="ring_fi", expression='languages contains "fi"',
                        strategy=Strategy.RING_ALL, reoffer_delay_s=0.0, priority=1),
            lambda a, s: "fi" in _languages(a),
        ),
    ),
    policies=(
        RoutingPolicy(
            id="escalate",
            steps=(
                PolicyStep(queue="ring", agents=(PREFERRED,), timeout_s=20.0),
                PolicyStep(queue="hunt", timeout_s=30.0),
                PolicyStep(queue="ring", relax_proficiency=5, timeout_s=45.0),
            ),
        ),
    ),
    rules=CapacityRules(blocked_by={"voice": frozenset({"chat"})}),
    statuses=(
        StatusDefinition("training", accepts_work=False),
        StatusDefinition("outbound", accepts_work=True),
    ),
    max_examples=300,
    exercised=("second ring-all offer", "TaskTimedOut", "task queued on step_timeout",
               "presence training", "presence outbound", "TaskReprioritised"),
)

FIFO = Scenario(
    name="fifo_one_queue",
    queues=(
        QueueSpec(
            QueueConfig(id="q", expression="skills.english >= 2", wrap_up_s=20.0,
                        reoffer_delay_s=0.0),
            lambda a, s: s.get("english", 0) >= 2,
        ),
    ),
    channels=("voice", "chat"),
    priorities=(0, 0, 0, 1),
    vip=False,
    required_skills=False,
    preferred=False,
    max_missed_offers=2,
    max_agents=4,
    max_open_tasks=10,
    max_examples=250,
)

FIFO_SEQUENTIAL = Scenario(
    name="fifo_sequential_chats_block_voice",
    queues=(
        QueueSpec(
            QueueConfig(id="q", strategy=Strategy.SEQUENTIAL, hunt_order=("a1", "a0"),
                        offer_timeout_s=10.0, reoffer_delay_s=0.0),
            lambda a, s: True,
        ),
    ),
    rules=CapacityRules(blocked_by={"voice": frozenset({"chat"})}),
    channels=("voice", "chat"),
    priorities=(0,),
    vip=False,
    required_skills=False,
    preferred=False,
    max_missed_offers=1,
    max_agents=4,
    max_open_tasks=10,
    max_examples=200,
)

SCENARIOS = (MIXED, RING, FIFO, FIFO_SEQUENTIAL)

EXERCISED = (
    "OfferCreated", "OfferAccepted", "OfferRejected", "OfferTimedOut", "OfferRescinded",
    "TaskRequeued", "TaskTransferred", "TaskCompleted", "TaskWrappedUp", "TaskAbandoned",
    "TaskCancelled", "task queued on transfer", "presence busy", "presence wrap_up",
    "presence no_answer", "offer checked against a waiting task",
)
"""Tally entries every scenario's runs must have produced, so that no check is vacuous."""


# --- the model -----------------------------------------------------------------------------

@dataclass
class AgentModel:
    id: str
    skills: dict[str, int]
    attributes: dict[str, object]
    capacity: dict[str, int]
    status: str
    offers: set[str] = field(default_factory=set)
    tasks: set[str] = field(default_factory=set)
    missed: int = 0


@dataclass
class TaskModel:
    id: str
    seq: int
    channel: str
    priority: int
    attributes: dict[str, object]
    required_skills: dict[str, int]
    policy: RoutingPolicy
    enqueued_at: float
    queue: str = ""
    step: int = 0
    phase: str = "new"
    """new, waiting, offered, leaving, assigned, transferring, wrapping, wrapped, ending, ended."""
    offers: set[str] = field(default_factory=set)
    agent: str | None = None
    declined: dict[str, float] = field(default_factory=dict)
    outcome: str | None = None
    ends: int = 0

    @property
    def is_vip(self) -> bool:
        return bool(self.attributes.get("vip"))

    @property
    def preferred(self) -> tuple[str, ...]:
        value = self.attributes.get("preferred_agents")
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list | tuple):
            return tuple(str(v) for v in value)
        return ()


@dataclass
class OfferModel:
    id: str
    task: str
    agent: str
    queue: str
    channel: str


ENGINE_PHASES = {
    "waiting": TaskPhase.WAITING,
    "offered": TaskPhase.OFFERED,
    "assigned": TaskPhase.ASSIGNED,
    "wrapping": TaskPhase.WRAPPING,
}
OUTCOMES = {"completed", "abandoned", "cancelled", "timed_out"}


def fail(invariant_name: str, message: str) -> NoReturn:
    raise AssertionError(f"[{invariant_name}] {message}")


class Ledger:
    """The test's own model of the engine, advanced by the engine's events, and the checks."""

    def __init__(self, scenario: Scenario, tally: Counter[str]) -> None:
        self.scenario = scenario
        self.tally = tally
        """What the runs exercised, across examples: the test asserts it is not vacuous."""
        self.rules = scenario.rules
        self.queues: dict[str, QueueSpec] = {q.config.id: q for q in scenario.queues}
        self.policies: dict[str, RoutingPolicy] = {p.id: p for p in scenario.policies}
        for queue_id in self.queues:
            implicit = RoutingPolicy(id=f"queue:{queue_id}", steps=(PolicyStep(queue=queue_id),))
            self.policies[implicit.id] = implicit
        self.accepts_work: dict[str, bool] = {
            s.name: s.accepts_work
            for s in (AVAILABLE, BREAK, OFFLINE, NO_ANSWER, *scenario.statuses)
        }
        self.agents: dict[str, AgentModel] = {}
        self.tasks: dict[str, TaskModel] = {}
        self.offers: dict[str, OfferModel] = {}
        self.events_seen = 0
        self.last_seq = 0
        self.last_at = -math.inf

    # --- commands the test issues (the model learns them before the engine's events) ------

    def add_agent(self, config: AgentConfig) -> None:
        self.agents[config.id] = AgentModel(
            id=config.id,
            skills=dict(config.skills),
            attributes=dict(config.attributes),
            capacity=dict(config.capacity),
            status=config.status,
        )

    def reconfigure_agent(self, agent_id: str, skills: Mapping[str, int],
                          attributes: Mapping[str, object]) -> None:
        agent = self.agents[agent_id]
        agent.skills = dict(skills)
        agent.attributes = dict(attributes)

    def set_status(self, agent_id: str, status: str) -> None:
        agent = self.agents[agent_id]
        agent.status = status
        if self.accepts_work[status]:
            agent.missed = 0

    # --- derived views ------------------------------------------------------------------------

    def open_tasks(self, *phases: str) -> list[str]:
        return sorted(
            (t.id for t in self.tasks.values()
             if t.phase != "ended" and (not phases or t.phase in phases)),
            key=lambda task_id: self.tasks[task_id].seq,
        )

    def pending_offers(self) -> list[str]:
        return sorted(self.offers, key=lambda offer_id: int(offer_id.lstrip("O")))

    def load(self, agent: AgentModel) -> dict[str, int]:
        load: dict[str, int] = {}
        for offer_id in agent.offers:
            channel = self.offers[offer_id].channel
            load[channel] = load.get(channel, 0) + 1
        for task_id in agent.tasks:
            channel = self.tasks[task_id].channel
            load[channel] = load.get(channel, 0) + 1
        return load

    def why_closed(self, agent: AgentModel, channel: str) -> str | None:
        """Why the agent cannot take one more task on `channel` now, or None if it can."""
        if not self.accepts_work[agent.status]:
            return f"status {agent.status!r} takes no work"
        load = self.load(agent)
        for exclusive in sorted(self.rules.exclusive):
            if load.get(exclusive):
                return f"has a {exclusive} task in progress (exclusive): load {load}"
        if load.get(channel, 0) >= agent.capacity.get(channel, 0):
            return f"at capacity on {channel}: load {load}, capacity {agent.capacity}"
        for blocker in sorted(self.rules.blocked_by.get(channel, frozenset())):
            if load.get(blocker):
                return f"{channel} is blocked by {blocker} in progress: load {load}"
        return None

    def step_of(self, task: TaskModel) -> PolicyStep:
        return task.policy.steps[task.step]

    def step_targets_nobody(self, task: TaskModel, step: PolicyStep) -> bool:
        return step.agents == (PREFERRED,) and not task.preferred

    def is_eligible(self, agent: AgentModel, task: TaskModel) -> bool:
        step = self.step_of(task)
        if step.agents:
            explicit = task.preferred if step.agents == (PREFERRED,) else step.agents
            if agent.id not in explicit:
                return False
        elif not self.queues[step.queue].admits(agent.attributes, agent.skills):
            return False
        for skill, level in task.required_skills.items():
            if agent.skills.get(skill, 0) < max(1, level - step.relax_proficiency):
                return False
        if step.expression is not None:
            return STEP_TESTS[step.expression](agent.attributes, agent.skills, task.attributes)
        return True

    def place(self, task: TaskModel) -> tuple[float, float, int]:
        """The task's place in its queue's line: smaller goes first (priority, VIP, aging, age)."""
        config = self.queues[task.queue].config
        base = task.priority + (config.vip_score if task.is_vip else 0.0)
        return (config.aging_per_s * task.enqueued_at - base, task.enqueued_at, task.seq)

    def is_waiting(self, task: TaskModel) -> bool:
        return task.phase == "waiting" and not task.offers

    @staticmethod
    def has_declined(task: TaskModel, agent_id: str, now: float, *, inclusive: bool) -> bool:
        until = task.declined.get(agent_id)
        if until is None:
            return False
        return until >= now if inclusive else until > now

    # --- events -------------------------------------------------------------------------------

    def apply(self, events: Sequence[ev.Event], now: float) -> None:
        for event in events:
            self.events_seen += 1
            self._check_order(event, now)
            self._check_task_is_open(event)
            handler = getattr(self, f"_on_{type(event).__name__}", None)
            if handler is None:
                fail("model", f"unexpected event {event!r}")
            handler(event)
            self.tally[type(event).__name__] += 1

    def _check_order(self, event: ev.Event, now: float) -> None:
        if event.seq != self.last_seq + 1:
            fail("8 seq", f"seq {event.seq} follows {self.last_seq}: {event!r}")
        if event.at < self.last_at:
            fail("8 at", f"at {event.at} after {self.last_at}: {event!r}")
        if event.at > now:
            fail("8 at", f"at {event.at} is after the clock {now}: {event!r}")
        self.last_seq = event.seq
        self.last_at = event.at

    def _check_task_is_open(self, event: ev.Event) -> None:
        task_id = getattr(event, "task_id", None)
        if task_id is None or isinstance(event, ev.TaskCreated):
            return
        task = self.tasks.get(task_id)
        if task is None:
            fail("4", f"event about an unknown task: {event!r}")
        elif task.phase == "ended":
            fail("4", f"event about task {task_id} after its task.ended: {event!r}")

    def _on_StatusDefined(self, event: ev.StatusDefined) -> None:
        pass

    def _on_QueueConfigured(self, event: ev.QueueConfigured) -> None:
        pass

    def _on_PolicyConfigured(self, event: ev.PolicyConfigured) -> None:
        pass

    def _on_AgentConfigured(self, event: ev.AgentConfigured) -> None:
        agent = self.agents[event.agent.id]
        assert dict(event.agent.skills) == agent.skills, event
        assert dict(event.agent.attributes) == agent.attributes, event

    def _on_AgentStatusChanged(self, event: ev.AgentStatusChanged) -> None:
        agent = self.agents[event.agent_id]
        if event.status not in self.accepts_work:
            fail("7", f"unknown status in {event!r}")
        agent.status = event.status
        self.tally[f"presence {event.presence}"] += 1
        expected = self.expected_presence(agent)
        if event.presence != expected:
            fail("7 presence", f"{event!r}: expected presence {expected!r} "
                 f"(tasks {sorted(agent.tasks)})")

    def expected_presence(self, agent: AgentModel) -> str:
        if agent.tasks and self.accepts_work[agent.status]:
            if all(self.tasks[t].phase == "wrapping" for t in agent.tasks):
                return WRAP_UP
            return BUSY
        return agent.status

    def _on_TaskCreated(self, event: ev.TaskCreated) -> None:
        if event.task_id in self.tasks:
            fail("4", f"task {event.task_id} created twice")
        self.tasks[event.task_id] = TaskModel(
            id=event.task_id,
            seq=len(self.tasks) + 1,
            channel=event.channel,
            priority=event.priority,
            attributes=dict(event.attributes),
            required_skills=dict(event.required_skills),
            policy=self.policies[event.policy_id],
            enqueued_at=event.at,
        )

    def _on_TaskQueued(self, event: ev.TaskQueued) -> None:
        task = self.tasks[event.task_id]
        if task.offers:
            fail("3", f"{event!r} while offers {sorted(task.offers)} are pending")
        first = task.step + 1 if event.reason == "step_timeout" else 0
        steps = task.policy.steps
        if not first <= event.step_index < len(steps):
            fail("model", f"{event!r}: step {event.step_index} is not after step {first - 1}")
        for skipped in range(first, event.step_index):
            if not self.step_targets_nobody(task, steps[skipped]):
                fail("model", f"{event!r} skipped step {skipped}, which targets agents")
        if steps[event.step_index].queue != event.queue_id:
            fail("model", f"{event!r}: step {event.step_index} is in another queue")
        self.tally[f"task queued on {event.reason}"] += 1
        task.queue = event.queue_id
        task.step = event.step_index
        task.phase = "waiting"

    def _on_TaskRequeued(self, event: ev.TaskRequeued) -> None:
        task = self.tasks[event.task_id]
        if task.offers or event.queue_id != task.queue:
            fail("model", f"{event!r}: offers {sorted(task.offers)}, queue {task.queue}")
        task.phase = "waiting"

    def _on_TaskReprioritised(self, event: ev.TaskReprioritised) -> None:
        task = self.tasks[event.task_id]
        if task.phase not in ("waiting", "offered") or event.previous != task.priority:
            fail("model", f"{event!r}: task {task.phase} with priority {task.priority}")
        if event.priority == event.previous:
            fail("model", f"{event!r}: no change is no event")
        task.priority = event.priority

    def _on_OfferCreated(self, event: ev.OfferCreated) -> None:
        task = self.tasks[event.task_id]
        agent = self.agents.get(event.agent_id)
        if agent is None:
            fail("6", f"{event!r}: offered to an unknown agent")
            return
        queue = self.queues[event.queue_id].config
        where = f"{event.task_id} ({task.channel}, step {task.step} of {task.policy.id}) " \
                f"to {event.agent_id}"
        if event.queue_id != task.queue or event.channel != task.channel:
            fail("model", f"{event!r} does not match the task's queue {task.queue}")
        if task.phase not in ("waiting", "offered"):
            fail("model", f"offer of {where} while the task is {task.phase}")
        # 3: one agent at a time, except ring-all.
        if task.offers and queue.strategy is not Strategy.RING_ALL:
            fail("3", f"offer of {where} while {sorted(task.offers)} are pending "
                 f"({queue.strategy})")
        if any(self.offers[o].agent == agent.id for o in task.offers):
            fail("3", f"second pending offer of {where}")
        # 7: status.
        if not self.accepts_work[agent.status]:
            fail("7", f"offer of {where} whose status {agent.status!r} takes no work")
        # 1, 2: capacity, voice exclusive, chats block voice.
        load = self.load(agent)
        for exclusive in sorted(self.rules.exclusive):
            if load.get(exclusive):
                fail("2", f"offer of {where} while it has {exclusive} in progress: {load}")
        for blocker in sorted(self.rules.blocked_by.get(task.channel, frozenset())):
            if load.get(blocker):
                fail("2", f"{task.channel} offer of {where} while {blocker} is in progress: "
                     f"{load}")
        if load.get(task.channel, 0) + 1 > agent.capacity.get(task.channel, 0):
            fail("1", f"offer of {where} over capacity: load {load}, capacity {agent.capacity}")
        # 6: eligibility.
        if not self.is_eligible(agent, task):
            fail("6", f"offer of {where}, not eligible: skills {agent.skills}, attributes "
                 f"{agent.attributes}, task {task.attributes}, required {task.required_skills}")
        if self.has_declined(task, agent.id, event.at, inclusive=False):
            fail("declined", f"offer of {where} before its re-offer delay ran out "
                 f"({task.declined[agent.id]})")
        if event.expires_at != event.at + queue.offer_timeout_s:
            fail("model", f"{event!r}: offer timeout is {queue.offer_timeout_s}")
        # 5: no better task of this queue and channel waits for this agent.
        mine = self.place(task)
        for other in self.tasks.values():
            if (other is task or not self.is_waiting(other) or other.queue != task.queue
                    or other.channel != task.channel):
                continue
            if not self.is_eligible(agent, other) or self.has_declined(
                    other, agent.id, event.at, inclusive=True):
                continue
            self.tally["offer checked against a waiting task"] += 1
            if self.place(other) < mine:
                fail("5", f"offer of {where} (place {mine}) passes over {other.id} "
                     f"(place {self.place(other)}), which {agent.id} could take")
        offer = OfferModel(event.offer_id, task.id, agent.id, event.queue_id, task.channel)
        if offer.id in self.offers:
            fail("model", f"offer id {offer.id} reused")
        self.offers[offer.id] = offer
        task.offers.add(offer.id)
        agent.offers.add(offer.id)
        task.phase = "offered"
        if len(task.offers) > 1:
            self.tally["second ring-all offer"] += 1

    def _take_offer(self, offer_id: str, task_id: str, agent_id: str) -> OfferModel:
        offer = self.offers.pop(offer_id, None)
        if offer is None or offer.task != task_id or offer.agent != agent_id:
            fail("model", f"offer {offer_id} of {task_id} to {agent_id} is not pending")
        self.tasks[task_id].offers.discard(offer_id)
        self.agents[agent_id].offers.discard(offer_id)
        return offer

    def _on_OfferAccepted(self, event: ev.OfferAccepted) -> None:
        self._take_offer(event.offer_id, event.task_id, event.agent_id)
        task = self.tasks[event.task_id]
        agent = self.agents[event.agent_id]
        if task.phase != "offered":
            fail("model", f"{event!r} while the task is {task.phase}")
        task.phase = "assigned"
        task.agent = agent.id
        agent.tasks.add(task.id)
        agent.missed = 0

    def _offer_ended(self, event: ev.OfferRejected | ev.OfferTimedOut | ev.OfferRescinded,
                     reason: str, counts_as_decline: bool) -> None:
        offer = self._take_offer(event.offer_id, event.task_id, event.agent_id)
        task = self.tasks[event.task_id]
        agent = self.agents[event.agent_id]
        delay = self.queues[offer.queue].config.reoffer_delay_s
        if counts_as_decline and delay > 0:
            task.declined[agent.id] = event.at + delay
        if task.phase == "offered" and not task.offers:
            task.phase = "leaving" if reason == "task left the queue" else "waiting"

    def _on_OfferRejected(self, event: ev.OfferRejected) -> None:
        self._offer_ended(event, event.reason, counts_as_decline=True)

    def _on_OfferTimedOut(self, event: ev.OfferTimedOut) -> None:
        self._offer_ended(event, "no answer", counts_as_decline=True)
        self.agents[event.agent_id].missed += 1

    def _on_OfferRescinded(self, event: ev.OfferRescinded) -> None:
        prefix = "agent is "
        status_change = event.reason.startswith(prefix)
        if status_change:
            # The engine withdraws an agent's offers as the first thing a status change does.
            self.agents[event.agent_id].status = event.reason[len(prefix):]
        self._offer_ended(event, event.reason, counts_as_decline=status_change)

    def _on_TaskTransferred(self, event: ev.TaskTransferred) -> None:
        task = self.tasks[event.task_id]
        if task.phase != "assigned" or task.agent != event.from_agent_id:
            fail("model", f"{event!r} while the task is {task.phase} with {task.agent}")
        self.agents[event.from_agent_id].tasks.discard(task.id)
        task.agent = None
        if event.to_agent_id is not None:
            task.policy = RoutingPolicy(
                id=f"transfer:agent:{event.to_agent_id}",
                steps=(
                    PolicyStep(queue=task.queue, agents=(event.to_agent_id,),
                               timeout_s=TRANSFER_TO_AGENT_TIMEOUT_S),
                    PolicyStep(queue=task.queue),
                ),
            )
        else:
            assert event.to_queue_id is not None
            task.policy = self.policies[f"queue:{event.to_queue_id}"]
        task.enqueued_at = event.at
        task.declined.clear()
        task.phase = "transferring"

    def _on_TaskCompleted(self, event: ev.TaskCompleted) -> None:
        task = self.tasks[event.task_id]
        if task.phase != "assigned" or task.agent != event.agent_id:
            fail("model", f"{event!r} while the task is {task.phase} with {task.agent}")
        task.phase = "wrapping"
        task.outcome = "completed"

    def _on_TaskWrappedUp(self, event: ev.TaskWrappedUp) -> None:
        task = self.tasks[event.task_id]
        if task.phase != "wrapping" or task.agent != event.agent_id:
            fail("model", f"{event!r} while the task is {task.phase} with {task.agent}")
        task.phase = "wrapped"
        task.outcome = "completed"

    def _ending(self, task_id: str, outcome: str, *phases: str) -> None:
        task = self.tasks[task_id]
        if task.phase not in phases:
            fail("4", f"task {task_id} {outcome} while {task.phase}")
        task.phase = "ending"
        task.outcome = outcome

    def _on_TaskAbandoned(self, event: ev.TaskAbandoned) -> None:
        self._ending(event.task_id, "abandoned", "waiting", "leaving")

    def _on_TaskCancelled(self, event: ev.TaskCancelled) -> None:
        self._ending(event.task_id, "cancelled", "waiting", "leaving", "assigned", "wrapping")

    def _on_TaskTimedOut(self, event: ev.TaskTimedOut) -> None:
        task = self.tasks[event.task_id]
        for step in task.policy.steps[task.step + 1:]:
            if not self.step_targets_nobody(task, step):
                fail("model", f"{event!r} while step {step} was still to come")
        self._ending(event.task_id, "timed_out", "waiting")

    def _on_TaskEnded(self, event: ev.TaskEnded) -> None:
        task = self.tasks[event.task_id]
        task.ends += 1
        if event.outcome not in OUTCOMES:
            fail("4", f"{event!r}: unknown outcome")
        if task.outcome != event.outcome:
            fail("4", f"{event!r} but the task was {task.outcome or 'not ended'}")
        if task.offers:
            fail("4", f"{event!r} with offers {sorted(task.offers)} still pending")
        if task.agent is not None:
            self.agents[task.agent].tasks.discard(task.id)
            task.agent = None
        task.phase = "ended"

    # --- after every step -----------------------------------------------------------------------

    def check_state(self, engine: Engine, now: float) -> None:
        assert engine.log is not None
        if len(engine.log) != self.events_seen:
            fail("8", f"{len(engine.log) - self.events_seen} events were not returned "
                 f"by any command: {engine.log[self.events_seen:]!r}")
        engine_tasks = {t.id: t for t in engine.tasks()}
        open_tasks = {t.id: t for t in self.tasks.values() if t.phase != "ended"}
        if set(engine_tasks) != set(open_tasks):
            fail("4", f"engine has open tasks {sorted(engine_tasks)}, model "
                 f"{sorted(open_tasks)}")
        for task in open_tasks.values():
            if ENGINE_PHASES.get(task.phase) is not engine_tasks[task.id].phase:
                fail("model", f"task {task.id} is {engine_tasks[task.id].phase} in the engine, "
                     f"{task.phase} in the model")
            if len(task.offers) > 1:
                strategy = self.queues[task.queue].config.strategy
                if strategy is not Strategy.RING_ALL:
                    fail("3", f"task {task.id} has offers {sorted(task.offers)} ({strategy})")
        engine_offers = {o.id for o in engine.pending_offers()}
        if engine_offers != set(self.offers):
            fail("model", f"engine has pending offers {sorted(engine_offers)}, model "
                 f"{sorted(self.offers)}")
        for agent in self.agents.values():
            figures = engine.agent_figures(agent.id)
            load = self.load(agent)
            where = f"agent {agent.id} ({figures.status}, {figures.presence})"
            for channel, used in load.items():
                if used > agent.capacity.get(channel, 0):
                    fail("1", f"{where} is over capacity: load {load}, capacity "
                         f"{agent.capacity}")
            if figures.status != agent.status:
                fail("model", f"{where}: status {agent.status!r} in the model")
            if dict(figures.in_progress) != {c: n for c, n in load.items() if n}:
                fail("model", f"{where}: in progress {dict(figures.in_progress)}, model {load}")
            if set(figures.task_ids) != agent.tasks or set(figures.offer_ids) != agent.offers:
                fail("model", f"{where}: tasks {figures.task_ids} offers {figures.offer_ids}, "
                     f"model {sorted(agent.tasks)} {sorted(agent.offers)}")
            if figures.presence in (BUSY, WRAP_UP) and not agent.tasks:
                fail("7", f"{where} has no task")
            if figures.presence != self.expected_presence(agent):
                fail("7", f"{where}: presence should be {self.expected_presence(agent)!r}, "
                     f"tasks {sorted(agent.tasks)}")
            if agent.offers and not self.accepts_work[agent.status]:
                fail("7", f"{where} keeps offers {sorted(agent.offers)}")
            if agent.missed >= self.scenario.max_missed_offers and \
                    self.accepts_work[agent.status]:
                fail("max-no-answer", f"{where} missed {agent.missed} offers in a row")
        self.check_work_conserving(now)

    def check_work_conserving(self, now: float) -> None:
        """No task waits while an agent who could take it sits idle."""
        for task in self.tasks.values():
            if not self.is_waiting(task):
                continue
            for agent in self.agents.values():
                if (self.why_closed(agent, task.channel) is None
                        and self.is_eligible(agent, task)
                        and not self.has_declined(task, agent.id, now, inclusive=False)):
                    fail("work-conserving", f"task {task.id} ({task.channel}, queue "
                         f"{task.queue}, step {task.step}) waits while agent {agent.id} is "
                         f"free and eligible: load {self.load(agent)}, capacity "
                         f"{agent.capacity}, status {agent.status}")

    def check_drained(self, engine: Engine) -> None:
        for task in self.tasks.values():
            if task.ends != 1 or task.phase != "ended":
                fail("4", f"task {task.id} ended {task.ends} times, is {task.phase}")
        if any(True for _ in engine.tasks()) or any(True for _ in engine.pending_offers()):
            fail("4", "the engine still has tasks or offers after the drain")
        for agent in self.agents.values():
            figures = engine.agent_figures(agent.id)
            if figures.in_progress or figures.task_ids or figures.presence != agent.status:
                fail("7", f"agent {agent.id} after the drain: {figures}")


# --- the state machine ---------------------------------------------------------------------

SKILLS_ST = st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 5), max_size=3)
ATTRIBUTES_ST = st.fixed_dictionaries(
    {},
    optional={
        "team": st.sampled_from(TEAMS),
        "tier": st.integers(1, 3),
        "languages": st.lists(st.sampled_from(LANGUAGES), unique=True, max_size=2),
    },
)
CAPACITY_ST = st.fixed_dictionaries(
    {"voice": st.sampled_from([1, 1, 0]), "chat": st.sampled_from([2, 3, 1, 0]),
     "email": st.integers(0, 2)},
)
AGENT_ST = st.tuples(SKILLS_ST, ATTRIBUTES_ST, CAPACITY_ST)
INDEX = st.integers(0, 63)


def pick(items: Sequence[str], index: int) -> str:
    return items[index % len(items)]


def machine_for(scenario: Scenario, tally: Counter[str]) -> type[RuleBasedStateMachine]:
    targets: list[tuple[str, str]] = [("queue", q.config.id) for q in scenario.queues]
    targets += [("policy", p.id) for p in scenario.policies]
    statuses = ["available", "available", "break", "offline", *(s.name for s in scenario.statuses)]
    agent_ids = [f"a{i}" for i in range(scenario.max_agents)]
    queue_ids = [q.config.id for q in scenario.queues]

    @st.composite
    def request_st(draw: st.DrawFn) -> TaskRequest:
        kind, name = draw(st.sampled_from(targets))
        attributes: dict[str, object] = {"language": draw(st.sampled_from(LANGUAGES))}
        if scenario.vip and draw(st.booleans()):
            attributes["vip"] = True
        if scenario.preferred:
            preferred = draw(st.lists(st.sampled_from(agent_ids), unique=True, max_size=2))
            if preferred:
                attributes["preferred_agents"] = preferred
        team = draw(st.none() | st.sampled_from(TEAMS))
        if team is not None:
            attributes["team"] = team
        required = (draw(st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 5), max_size=2))
                    if scenario.required_skills else {})
        return TaskRequest(
            channel=draw(st.sampled_from(scenario.channels)),
            queue=name if kind == "queue" else None,
            policy=name if kind == "policy" else None,
            priority=draw(st.sampled_from(scenario.priorities)),
            attributes=attributes,
            required_skills=required,
        )

    class EngineMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.clock = ManualClock(START_S)
            self.engine = Engine(self.clock, capacity_rules=scenario.rules,
                                 max_missed_offers=scenario.max_missed_offers, keep_log=True)
            self.ledger = Ledger(scenario, tally)
            self.clean = True
            for status in scenario.statuses:
                self.run(partial(self.engine.define_status, status))
            for spec in scenario.queues:
                self.run(partial(self.engine.configure_queue, spec.config))
            for policy in scenario.policies:
                self.run(partial(self.engine.configure_policy, policy))

        def run(self, command: Callable[[], list[ev.Event]]) -> None:
            self.clean = False
            self.ledger.apply(command(), self.clock.now())

        def has(self, *phases: str) -> bool:
            return bool(self.ledger.open_tasks(*phases))

        # --- agents ---------------------------------------------------------------------

        def add(self, skills: dict[str, int], attributes: dict[str, object],
                capacity: dict[str, int], status: str) -> None:
            config = AgentConfig(id=f"a{len(self.ledger.agents)}", skills=skills,
                                 attributes=attributes, capacity=capacity, status=status)
            self.ledger.add_agent(config)
            self.run(partial(self.engine.configure_agent, config))

        @initialize(team=st.lists(AGENT_ST, min_size=1, max_size=3))
        def staff(self, team: list[tuple[dict[str, int], dict[str, object], dict[str, int]]]
                  ) -> None:
            for skills, attributes, capacity in team:
                self.add(skills, attributes, capacity, "available")

        @precondition(lambda self: len(self.ledger.agents) < scenario.max_agents)
        @rule(agent=AGENT_ST, status=st.sampled_from(statuses))
        def add_agent(self, agent: tuple[dict[str, int], dict[str, object], dict[str, int]],
                      status: str) -> None:
            self.add(*agent, status)

        @precondition(lambda self: bool(self.ledger.agents))
        @rule(index=INDEX, skills=SKILLS_ST, attributes=ATTRIBUTES_ST)
        def reconfigure_agent(self, index: int, skills: dict[str, int],
                              attributes: dict[str, object]) -> None:
            agent = self.ledger.agents[pick(sorted(self.ledger.agents), index)]
            config = AgentConfig(id=agent.id, skills=skills, attributes=attributes,
                                 capacity=dict(agent.capacity))
            self.ledger.reconfigure_agent(agent.id, skills, attributes)
            self.run(partial(self.engine.configure_agent, config))

        @precondition(lambda self: bool(self.ledger.agents))
        @rule(index=INDEX, status=st.sampled_from(statuses))
        def set_status(self, index: int, status: str) -> None:
            agent_id = pick(sorted(self.ledger.agents), index)
            self.ledger.set_status(agent_id, status)
            self.run(partial(self.engine.set_status, agent_id, status))

        # --- tasks ----------------------------------------------------------------------

        @precondition(lambda self: len(self.ledger.open_tasks()) < scenario.max_open_tasks)
        @rule(requests=st.lists(request_st(), min_size=1, max_size=3))
        def create_tasks(self, requests: list[TaskRequest]) -> None:
            for request in requests:
                self.run(partial(self.engine.create_task, request))

        @precondition(lambda self: bool(self.ledger.offers))
        @rule(index=INDEX, answer=st.sampled_from(["accept", "accept", "reject"]))
        def answer_offer(self, index: int, answer: str) -> None:
            offer_id = pick(self.ledger.pending_offers(), index)
            if answer == "accept":
                self.run(partial(self.engine.accept, offer_id))
            else:
                self.run(partial(self.engine.reject, offer_id, "busy"))

        @precondition(lambda self: self.has("assigned", "wrapping"))
        @rule(index=INDEX, wrap_up=st.booleans(), disposition=st.none() | st.just("sale"))
        def finish(self, index: int, wrap_up: bool, disposition: str | None) -> None:
            """Complete an assigned task, or wrap up a wrapping (or still assigned) one."""
            task_id = pick(self.ledger.open_tasks("assigned", "wrapping"), index)
            if wrap_up or self.ledger.tasks[task_id].phase == "wrapping":
                self.run(partial(self.engine.wrap_up, task_id, disposition))
            else:
                self.run(partial(self.engine.complete, task_id))

        @precondition(lambda self: self.has())
        @rule(index=INDEX, cancel=st.booleans())
        def leave(self, index: int, cancel: bool) -> None:
            """The customer abandons a waiting or offered task, or the system cancels a task."""
            waiting = self.ledger.open_tasks("waiting", "offered")
            if cancel or not waiting:
                task_id = pick(self.ledger.open_tasks(), index)
                self.run(partial(self.engine.cancel, task_id, "system"))
            else:
                task_id = pick(waiting, index)
                self.run(partial(self.engine.abandon, task_id))

        @precondition(lambda self: self.has("assigned"))
        @rule(index=INDEX, to=INDEX, to_agent=st.booleans())
        def transfer(self, index: int, to: int, to_agent: bool) -> None:
            task_id = pick(self.ledger.open_tasks("assigned"), index)
            if to_agent:
                agent_id = pick(sorted(self.ledger.agents), to)
                self.run(partial(self.engine.transfer, task_id, agent_id=agent_id))
            else:
                queue_id = pick(queue_ids, to)
                self.run(partial(self.engine.transfer, task_id, queue_id=queue_id))

        @precondition(lambda self: self.has("waiting", "offered"))
        @rule(index=INDEX, priority=st.sampled_from(scenario.priorities))
        def reprioritise(self, index: int, priority: int) -> None:
            """An email nears its first-response deadline: its waiting task goes up (or down)."""
            task_id = pick(self.ledger.open_tasks("waiting", "offered"), index)
            self.run(partial(self.engine.reprioritise, task_id, priority))

        # --- time -----------------------------------------------------------------------

        @rule(seconds=st.integers(0, 120))
        def tick(self, seconds: int) -> None:
            self.clock.advance(seconds)
            self.run(self.engine.advance)

        # --- checks ---------------------------------------------------------------------

        @invariant()
        def engine_matches_the_model(self) -> None:
            self.ledger.check_state(self.engine, self.clock.now())
            self.clean = True

        def teardown(self) -> None:
            if not self.clean:
                return  # a step failed: report that, not a consequence of it
            for _ in range(4 * scenario.max_open_tasks + 10):
                waiting = self.ledger.open_tasks("waiting", "offered")
                assigned = self.ledger.open_tasks("assigned")
                wrapping = self.ledger.open_tasks("wrapping")
                if waiting:
                    self.run(partial(self.engine.abandon, waiting[0]))
                elif assigned:
                    self.run(partial(self.engine.complete, assigned[0]))
                elif wrapping:
                    self.run(partial(self.engine.wrap_up, wrapping[0]))
                else:
                    break
                self.ledger.check_state(self.engine, self.clock.now())
            self.clock.advance(3600)
            self.run(self.engine.advance)
            self.ledger.check_state(self.engine, self.clock.now())
            self.ledger.check_drained(self.engine)

    EngineMachine.__name__ = EngineMachine.__qualname__ = f"EngineMachine_{scenario.name}"
    return EngineMachine


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_engine_invariants_hold_for_random_commands(scenario: Scenario) -> None:
    tally: Counter[str] = Counter()
    run_state_machine_as_test(
        machine_for(scenario, tally),
        settings=settings(
            max_examples=scenario.max_examples,
            stateful_step_count=scenario.steps,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    unexercised = [what for what in EXERCISED + scenario.exercised if tally[what] < 3]
    assert not unexercised, f"the runs hardly exercised {unexercised}: {sorted(tally.items())}"


# --- engine bugs the machines found, kept as plain regression tests -------------------------

def _desk(clock: ManualClock | None = None, **queue_options: object) -> Engine:
    engine = Engine(clock or ManualClock(START_S), keep_log=True)
    engine.configure_queue(QueueConfig(id="q", **queue_options))  # type: ignore[arg-type]
    return engine


def _created(events: list[ev.Event]) -> str:
    created = events[0]
    assert isinstance(created, ev.TaskCreated)
    return created.task_id


def test_max_no_answer_keeps_the_line_in_order() -> None:
    """When a missed offer sets the agent to no_answer, its other offers are withdrawn too; the
    task whose offer timed out is older, so it must find the next agent first (invariant 5)."""
    clock = ManualClock(START_S)
    engine = Engine(clock, keep_log=True, max_missed_offers=1)
    engine.configure_queue(QueueConfig(id="q"))
    engine.configure_agent(AgentConfig(id="a", capacity={"chat": 2}, status="available"))
    engine.configure_agent(AgentConfig(id="b", capacity={"chat": 1}, status="available"))
    older = _created(engine.create_task(TaskRequest(channel="chat", queue="q")))
    newer = _created(engine.create_task(TaskRequest(channel="chat", queue="q")))
    assert len(engine.agent("a").offers) == 2
    clock.advance(20)
    engine.advance()
    assert engine.agent_figures("a").status == "no_answer"
    assert engine.task(older).phase is TaskPhase.OFFERED
    assert engine.task(newer).phase is TaskPhase.WAITING


def test_cancel_of_an_assigned_task_frees_the_agent() -> None:
    """Cancelling work in progress settles the agent: presence and waiting work follow (7)."""
    engine = _desk()
    engine.configure_agent(AgentConfig(id="a", status="available"))
    first = _created(engine.create_task(TaskRequest(channel="voice", queue="q")))
    (offer_id,) = engine.agent("a").offers
    engine.accept(offer_id)
    second = _created(engine.create_task(TaskRequest(channel="voice", queue="q")))
    engine.cancel(first, "system")
    assert engine.agent_figures("a").presence == "available"
    assert engine.task(second).phase is TaskPhase.OFFERED


def test_going_on_break_withdraws_offers_for_good() -> None:
    """A withdrawn offer does not come straight back to the agent who went on break (7)."""
    engine = _desk(reoffer_delay_s=0.0)
    engine.configure_agent(AgentConfig(id="a", capacity={"chat": 2}, status="available"))
    task = _created(engine.create_task(TaskRequest(channel="chat", queue="q")))
    engine.set_status("a", "break")
    assert engine.agent_figures("a").offer_ids == ()
    assert engine.task(task).phase is TaskPhase.WAITING


def test_max_no_answer_withdraws_offers_for_good() -> None:
    """Nor to the agent that max-no-answer has just set to no_answer (7)."""
    clock = ManualClock(START_S)
    engine = _desk(clock, reoffer_delay_s=0.0)
    engine.configure_agent(AgentConfig(id="a", capacity={"chat": 2}, status="available"))
    task = _created(engine.create_task(TaskRequest(channel="chat", queue="q")))
    clock.advance(60)  # three offers of 20 s missed
    engine.advance()
    assert engine.agent_figures("a").status == "no_answer"
    assert engine.agent_figures("a").offer_ids == ()
    assert engine.task(task).phase is TaskPhase.WAITING


def test_transfer_to_the_agent_of_the_current_explicit_pool() -> None:
    """Re-entering the explicit pool a task is already in keeps that pool alive (6, 4)."""
    clock = ManualClock(START_S)
    engine = _desk(clock)
    engine.configure_agent(AgentConfig(id="a", status="available"))
    task = _created(engine.create_task(TaskRequest(channel="voice", queue="q")))
    for _ in range(2):  # the second transfer re-enters the pool the first one created
        (offer_id,) = engine.agent("a").offers
        engine.accept(offer_id)
        engine.transfer(task, agent_id="a")
    assert engine.task(task).phase is TaskPhase.OFFERED
    clock.advance(TRANSFER_TO_AGENT_TIMEOUT_S + 1)
    engine.advance()  # the step times out: the pool must still be registered

"""Scenarios: what a simulation runs, as read from a YAML file.

A scenario names the engine's queues and routing policies (the same settings production uses),
the traffic that arrives (Poisson streams with handle-time and patience distributions) and the
agents who serve it (groups with skills, capacity and shifts). Validation happens here, so a bad
file fails with the path of the offending field before anything runs.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from omnicc.core.errors import ExpressionError
from omnicc.core.expression import compile_expression
from omnicc.core.model import (
    AgentConfig,
    CapacityRules,
    FinalAction,
    PolicyStep,
    QueueConfig,
    RoutingPolicy,
    Strategy,
)

SECONDS_PER_HOUR = 3600.0
DEFAULT_BATCHES = 20

Level = Annotated[int, Field(ge=1, le=5)]
Scalar = str | bool | int | float


class ScenarioError(Exception):
    """A scenario cannot be read or is invalid; the message is one line naming the field."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_expression(source: str, *, agents_only: bool) -> str:
    try:
        expression = compile_expression(source)
    except ExpressionError as error:
        raise ValueError(
            f"{error.reason} at position {error.position} in expression {source!r}"
        ) from None
    if agents_only and expression.task_refs:
        raise ValueError(
            f"a queue expression selects agents and cannot read {', '.join(expression.task_refs)}"
        )
    return source


class QueueSpec(_Spec):
    """An engine queue; fields and defaults are those of `QueueConfig`."""

    id: Annotated[str, Field(min_length=1)]
    name: str = ""
    expression: str = "true"
    strategy: Strategy = Strategy.LONGEST_IDLE
    priority: int = 0
    offer_timeout_s: Annotated[float, Field(gt=0)] = 20.0
    reoffer_delay_s: Annotated[float, Field(ge=0)] = 10.0
    wrap_up_s: Annotated[float, Field(ge=0)] | None = None
    sl_threshold_s: Annotated[float, Field(ge=0)] | None = None
    aging_per_s: Annotated[float, Field(ge=0)] = 0.0
    proficiency_skills: tuple[str, ...] = ()
    hunt_order: tuple[str, ...] = ()
    expected_handle_s: Annotated[float, Field(gt=0)] = 180.0

    @field_validator("expression")
    @classmethod
    def _expression_parses(cls, source: str) -> str:
        return _check_expression(source, agents_only=True)

    def to_config(self, default_threshold_s: float) -> QueueConfig:
        threshold_s = self.sl_threshold_s
        return QueueConfig(
            id=self.id,
            name=self.name,
            expression=self.expression,
            strategy=self.strategy,
            priority=self.priority,
            offer_timeout_s=self.offer_timeout_s,
            reoffer_delay_s=self.reoffer_delay_s,
            wrap_up_s=self.wrap_up_s,
            sl_threshold_s=default_threshold_s if threshold_s is None else threshold_s,
            aging_per_s=self.aging_per_s,
            proficiency_skills=self.proficiency_skills,
            hunt_order=self.hunt_order,
            expected_handle_s=self.expected_handle_s,
        )


class PolicyStepSpec(_Spec):
    queue: str
    agents: tuple[str, ...] = ()
    expression: str | None = None
    timeout_s: Annotated[float, Field(ge=0)] | None = None
    relax_proficiency: Annotated[int, Field(ge=0)] = 0

    @field_validator("expression")
    @classmethod
    def _expression_parses(cls, source: str | None) -> str | None:
        return None if source is None else _check_expression(source, agents_only=False)


class PolicySpec(_Spec):
    """A routing policy: ordered steps with timeouts, then a final action."""

    id: Annotated[str, Field(min_length=1)]
    steps: Annotated[tuple[PolicyStepSpec, ...], Field(min_length=1)]
    final_action: FinalAction = FinalAction.CLOSE
    final_reason: str = "no agent available"

    def to_policy(self) -> RoutingPolicy:
        return RoutingPolicy(
            id=self.id,
            steps=tuple(
                PolicyStep(
                    queue=step.queue,
                    agents=step.agents,
                    expression=step.expression,
                    timeout_s=step.timeout_s,
                    relax_proficiency=step.relax_proficiency,
                )
                for step in self.steps
            ),
            final_action=self.final_action,
            final_reason=self.final_reason,
        )


class HandleTimeSpec(_Spec):
    """Handle time (talk) of one contact: exponential, or lognormal with a coefficient of
    variation. Wrap-up is the queue's `wrap_up_s` and comes on top."""

    distribution: Literal["exponential", "lognormal"] = "exponential"
    mean_s: Annotated[float, Field(gt=0)]
    cv: Annotated[float, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _cv_fits_distribution(self) -> Self:
        if self.distribution == "exponential" and self.cv not in (None, 1.0):
            raise ValueError("an exponential distribution has cv 1; use lognormal for another cv")
        return self


class TrafficSpec(_Spec):
    """One stream of contacts (a call type): Poisson arrivals routed to a queue or a policy.

    `profile` gives hourly multipliers of `arrivals_per_hour`, repeating (24 values: a day).
    `patience_s` is the mean of an exponential patience; None means nobody abandons.
    """

    id: Annotated[str, Field(min_length=1)]
    queue: str | None = None
    policy: str | None = None
    channel: Annotated[str, Field(min_length=1)] = "voice"
    arrivals_per_hour: Annotated[float, Field(ge=0)]
    profile: Annotated[tuple[Annotated[float, Field(ge=0)], ...], Field(min_length=1)] | None = (
        None
    )
    handle: HandleTimeSpec
    patience_s: Annotated[float, Field(gt=0)] | None = None
    threshold_s: Annotated[float, Field(ge=0)] | None = None
    priority: int = 0
    required_skills: dict[str, Level] = Field(default_factory=dict)
    attributes: dict[str, Scalar] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if (self.queue is None) == (self.policy is None):
            raise ValueError("give exactly one of queue or policy")
        return self


class ShiftSpec(_Spec):
    """A login period, in hours from the start of the simulation (or of each cycle)."""

    login_h: Annotated[float, Field(ge=0)]
    logout_h: float

    @model_validator(mode="after")
    def _logout_after_login(self) -> Self:
        if self.logout_h <= self.login_h:
            raise ValueError("logout_h must be later than login_h")
        return self


class AgentGroupSpec(_Spec):
    """`count` agents alike, with ids `<group>-1` ... `<group>-<count>`.

    Without `shifts` they are available all the time. `shift_cycle_h` repeats the shifts every
    so many hours. `answer_delay_s` is how long an agent takes to accept an offer.
    """

    group: Annotated[str, Field(min_length=1)]
    count: Annotated[int, Field(ge=1)]
    skills: dict[str, Level] = Field(default_factory=dict)
    attributes: dict[str, Scalar] = Field(default_factory=dict)
    capacity: dict[str, Annotated[int, Field(ge=0)]] | None = None
    shifts: Annotated[tuple[ShiftSpec, ...], Field(min_length=1)] | None = None
    shift_cycle_h: Annotated[int, Field(ge=1)] | None = None
    answer_delay_s: Annotated[float, Field(ge=0)] = 0.0

    @model_validator(mode="after")
    def _shifts_do_not_overlap(self) -> Self:
        if self.shift_cycle_h is not None and self.shifts is None:
            raise ValueError("shift_cycle_h needs shifts")
        shifts = self.shifts or ()
        for index, (earlier, later) in enumerate(itertools.pairwise(shifts)):
            if later.login_h < earlier.logout_h:
                raise ValueError(f"shifts[{index + 1}] starts before shifts[{index}] ends")
        cycle_h = self.shift_cycle_h
        if shifts and cycle_h is not None and shifts[-1].logout_h > shifts[0].login_h + cycle_h:
            raise ValueError("the last shift runs into the first one of the next cycle")
        return self

    def agent_ids(self) -> list[str]:
        return [f"{self.group}-{number}" for number in range(1, self.count + 1)]

    def to_configs(self) -> list[AgentConfig]:
        status = "offline" if self.shifts else "available"
        extra: dict[str, Any] = {} if self.capacity is None else {"capacity": self.capacity}
        return [
            AgentConfig(
                id=agent_id,
                skills=self.skills,
                attributes={"group": self.group, **self.attributes},
                status=status,
                **extra,
            )
            for agent_id in self.agent_ids()
        ]


class CapacityRulesSpec(_Spec):
    exclusive: tuple[str, ...] = ("voice",)
    blocked_by: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    def to_rules(self) -> CapacityRules:
        return CapacityRules(
            exclusive=frozenset(self.exclusive),
            blocked_by={channel: frozenset(by) for channel, by in self.blocked_by.items()},
        )


class Scenario(_Spec):
    """A whole simulation: configuration, traffic, agents and how long and how to measure.

    After `warmup_hours` (default: 5 % of `hours`, at least one hour, whole cycles when traffic
    or shifts repeat) the rest is cut into `batches` equal batches for the confidence intervals.
    """

    name: str = ""
    description: str = ""
    seed: int = 1
    hours: Annotated[float, Field(gt=0)] = 200.0
    warmup_hours: Annotated[float, Field(ge=0)] | None = None
    batches: Annotated[int, Field(ge=2, le=10_000)] = DEFAULT_BATCHES
    threshold_s: Annotated[float, Field(ge=0)] = 20.0
    capacity_rules: CapacityRulesSpec = Field(default_factory=CapacityRulesSpec)
    queues: Annotated[tuple[QueueSpec, ...], Field(min_length=1)]
    policies: tuple[PolicySpec, ...] = ()
    traffic: Annotated[tuple[TrafficSpec, ...], Field(min_length=1)]
    agents: Annotated[tuple[AgentGroupSpec, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _references_resolve(self) -> Self:
        queue_ids = _unique("queues", [q.id for q in self.queues])
        policy_ids = _unique("policies", [p.id for p in self.policies])
        _unique("traffic", [t.id for t in self.traffic])
        _unique("agents", [g.group for g in self.agents])
        agent_ids = {agent_id for group in self.agents for agent_id in group.agent_ids()}
        for p, policy in enumerate(self.policies):
            for s, step in enumerate(policy.steps):
                where = f"policies[{p}].steps[{s}]"
                if step.queue not in queue_ids:
                    raise ValueError(f"{where}.queue: unknown queue {step.queue!r}")
                unknown = [a for a in step.agents if a != "preferred" and a not in agent_ids]
                if unknown:
                    raise ValueError(f"{where}.agents: unknown agents {', '.join(unknown)}")
        for t, stream in enumerate(self.traffic):
            if stream.queue is not None and stream.queue not in queue_ids:
                raise ValueError(f"traffic[{t}].queue: unknown queue {stream.queue!r}")
            if stream.policy is not None and stream.policy not in policy_ids:
                raise ValueError(f"traffic[{t}].policy: unknown policy {stream.policy!r}")
        self.batch_hours()  # raises when the run is too short for whole cycles
        return self

    def cycle_hours(self) -> int | None:
        """Length of the pattern that repeats (traffic profiles, shift cycles), if any."""
        lengths = [len(t.profile) for t in self.traffic if t.profile is not None]
        lengths += [g.shift_cycle_h for g in self.agents if g.shift_cycle_h is not None]
        return math.lcm(*lengths) if lengths else None

    def warmup_hours_used(self) -> float:
        cycle_h = self.cycle_hours()
        if self.warmup_hours is not None:
            warmup_h = self.warmup_hours
        elif cycle_h is not None:
            warmup_h = float(cycle_h)
        else:
            warmup_h = max(1.0, 0.05 * self.hours)
        if cycle_h is not None:
            warmup_h = math.ceil(warmup_h / cycle_h) * cycle_h
        return warmup_h

    def batch_hours(self) -> float:
        """Length of one batch; whole cycles when the scenario repeats, so batches are alike."""
        warmup_h = self.warmup_hours_used()
        measured_h = self.hours - warmup_h
        if measured_h <= 0:
            raise ValueError(f"hours ({self.hours:g}) must exceed the warm-up ({warmup_h:g} h)")
        cycle_h = self.cycle_hours()
        if cycle_h is None:
            return measured_h / self.batches
        cycles_per_batch = math.floor(measured_h / self.batches / cycle_h)
        if cycles_per_batch < 1:
            needed_h = warmup_h + self.batches * cycle_h
            raise ValueError(
                f"hours: {self.batches} batches of whole {cycle_h}-hour cycles after a "
                f"{warmup_h:g}-hour warm-up need at least {needed_h:g} hours"
            )
        return float(cycles_per_batch * cycle_h)

    def threshold_of(self, stream: TrafficSpec) -> float:
        return self.threshold_s if stream.threshold_s is None else stream.threshold_s


def _unique(section: str, ids: list[str]) -> set[str]:
    seen: set[str] = set()
    for index, item in enumerate(ids):
        if item in seen:
            raise ValueError(f"{section}[{index}]: duplicate id {item!r}")
        seen.add(item)
    return seen


def single_queue_scenario(
    *,
    arrivals_per_hour: float,
    aht_s: float,
    agents: int,
    patience_s: float | None = None,
    threshold_s: float = 20.0,
    hours: float = 1000.0,
    seed: int = 1,
    batches: int = DEFAULT_BATCHES,
) -> Scenario:
    """The textbook case: one queue, Poisson arrivals, exponential handle times, N agents."""
    return parse_scenario(
        {
            "name": "single queue",
            "seed": seed,
            "hours": hours,
            "batches": batches,
            "threshold_s": threshold_s,
            "queues": [{"id": "support", "expected_handle_s": aht_s}],
            "traffic": [
                {
                    "id": "support",
                    "queue": "support",
                    "arrivals_per_hour": arrivals_per_hour,
                    "handle": {"distribution": "exponential", "mean_s": aht_s},
                    "patience_s": patience_s,
                }
            ],
            "agents": [{"group": "agent", "count": agents, "capacity": {"voice": 1}}],
        }
    )


def parse_scenario(data: object, source: str = "scenario") -> Scenario:
    """Validate already-loaded data; errors become one-line `ScenarioError`s."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a scenario must be a mapping of fields")
    try:
        return Scenario.model_validate(data)
    except ValidationError as error:
        raise ScenarioError(f"{source}: {describe_validation_error(error)}") from None


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"scenario file not found: {path}") from None
    except IsADirectoryError:
        raise ScenarioError(f"scenario path is a directory, not a file: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ScenarioError(f"cannot read scenario file {path}: {error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ScenarioError(f"{path}: invalid YAML: {_describe_yaml_error(error)}") from None
    return parse_scenario(data, str(path))


def describe_validation_error(error: ValidationError) -> str:
    """The first problem as `field.path: message`, plus how many more there are."""
    problems = error.errors(include_url=False)
    first = problems[0]
    path = _format_location(first["loc"])
    message = first["msg"]
    if first["type"] == "value_error":
        message = str(first.get("ctx", {}).get("error", message))
    text = f"{path}: {message}" if path else message
    if len(problems) > 1:
        text += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    return " ".join(text.split())


def _format_location(location: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in location:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts)


def _describe_yaml_error(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    if mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(problem).split())

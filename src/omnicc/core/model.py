"""The routing model: configuration (what an administrator sets) and the engine's live records.

Configuration objects are frozen dataclasses. Live records (`AgentState`, `TaskState`, `Offer`)
are mutable and owned by the engine; other layers read them through the engine's queries and
events, never by mutating them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from omnicc.core.errors import InvalidConfiguration
from omnicc.core.expression import Expression

if TYPE_CHECKING:
    from omnicc.core.pool import Line, LineGroup, Pool

Channel = str
"""A channel name: "voice", "chat", "email", "sms", ... A new channel needs no change here."""

VOICE: Channel = "voice"
CHAT: Channel = "chat"
EMAIL: Channel = "email"


# --- presence -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StatusDefinition:
    """A presence status an agent can choose. Built-in and custom statuses share this shape."""

    name: str
    accepts_work: bool
    logged_in: bool = True


AVAILABLE = StatusDefinition("available", accepts_work=True)
BREAK = StatusDefinition("break", accepts_work=False)
OFFLINE = StatusDefinition("offline", accepts_work=False, logged_in=False)
NO_ANSWER = StatusDefinition("no_answer", accepts_work=False)
BUILTIN_STATUSES: tuple[StatusDefinition, ...] = (AVAILABLE, BREAK, OFFLINE, NO_ANSWER)

BUSY = "busy"
WRAP_UP = "wrap_up"
DERIVED_PRESENCES = frozenset({BUSY, WRAP_UP})
"""Presences the engine derives from the work in progress; an agent cannot choose them."""


# --- capacity -------------------------------------------------------------------------------

DEFAULT_CAPACITY: Mapping[Channel, int] = {"voice": 1, "chat": 3, "email": 5, "sms": 3}


@dataclass(frozen=True, slots=True)
class CapacityRules:
    """Cross-channel rules, one set per engine (tenant).

    `exclusive`: while a task on one of these channels is in progress, nothing else is offered.
    `blocked_by`: channel -> channels whose tasks in progress block offers on it; e.g.
    `{"voice": {"chat"}}` means an agent with chats in progress gets no calls.
    """

    exclusive: frozenset[Channel] = frozenset({VOICE})
    blocked_by: Mapping[Channel, frozenset[Channel]] = field(default_factory=dict)


# --- queues, strategies, policies -----------------------------------------------------------

class Strategy(enum.StrEnum):
    """How a queue chooses among its available agents."""

    LONGEST_IDLE = "longest_idle"
    LEAST_OCCUPIED = "least_occupied"
    MOST_PROFICIENT = "most_proficient"
    ROUND_ROBIN = "round_robin"
    FEWEST_CONTACTS = "fewest_contacts"
    RANDOM = "random"
    RING_ALL = "ring_all"
    SEQUENTIAL = "sequential"


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """A queue: where tasks wait, which agents serve it and how one is chosen.

    `priority` orders queues for an agent who serves several (higher first). A task's score is
    `priority + vip_score (if VIP) + aging_per_s * seconds waited`; higher scores go first, then
    the longest-waiting task. `wrap_up_s` None means capacity frees at completion; otherwise the
    agent keeps the slot until wrap-up is done or `wrap_up_s` has passed (inf: until done).
    """

    id: str
    name: str = ""
    expression: str = "true"
    strategy: Strategy = Strategy.LONGEST_IDLE
    priority: int = 0
    offer_timeout_s: float = 20.0
    reoffer_delay_s: float = 10.0
    wrap_up_s: float | None = None
    sl_threshold_s: float = 20.0
    short_abandon_s: float = 5.0
    aging_per_s: float = 0.0
    vip_score: float = 100.0
    proficiency_skills: tuple[str, ...] = ()
    hunt_order: tuple[str, ...] = ()
    expected_handle_s: float = 180.0

    def __post_init__(self) -> None:
        if not self.id:
            raise InvalidConfiguration("a queue needs an id")
        if self.offer_timeout_s <= 0:
            raise InvalidConfiguration(f"queue {self.id}: offer_timeout_s must be > 0")
        if self.reoffer_delay_s < 0:
            raise InvalidConfiguration(f"queue {self.id}: reoffer_delay_s must be >= 0")
        if self.wrap_up_s is not None and self.wrap_up_s < 0:
            raise InvalidConfiguration(f"queue {self.id}: wrap_up_s must be >= 0")
        if self.aging_per_s < 0:
            raise InvalidConfiguration(f"queue {self.id}: aging_per_s must be >= 0")
        if self.expected_handle_s <= 0:
            raise InvalidConfiguration(f"queue {self.id}: expected_handle_s must be > 0")


class FinalAction(enum.StrEnum):
    """What happens to a task when the last step of its policy times out."""

    VOICEMAIL = "voicemail"
    CALLBACK = "callback"
    CLOSE = "close"


OUTBOUND = "outbound"
"""`direction` attribute of agent-initiated tasks (`TaskRequest.agent_id`)."""
INITIATED_BY = "initiated_by"
"""Attribute naming the agent who started an agent-initiated task (kept in the store, so a
restarted engine knows the task again)."""

PREFERRED = "preferred"
"""A step target meaning the task's preferred agents (attribute `preferred_agents`)."""


@dataclass(frozen=True, slots=True)
class PolicyStep:
    """One step of a routing policy.

    Target: `queue` (its members) or `agents` (an explicit list, or `("preferred",)` for the
    task's preferred agents; the step's queue still gives timeout and strategy). `expression`
    further filters agents and may read `task.*`. `relax_proficiency` lowers each required skill
    level (bullseye routing). `timeout_s` None means wait here for ever.
    """

    queue: str
    agents: tuple[str, ...] = ()
    expression: str | None = None
    timeout_s: float | None = None
    relax_proficiency: int = 0

    def __post_init__(self) -> None:
        if self.timeout_s is not None and self.timeout_s < 0:
            raise InvalidConfiguration(f"policy step on {self.queue}: timeout_s must be >= 0")
        if self.relax_proficiency < 0:
            raise InvalidConfiguration("relax_proficiency must be >= 0")


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    """Ordered steps; when the last one times out the final action ends the task."""

    id: str
    steps: tuple[PolicyStep, ...]
    final_action: FinalAction = FinalAction.CLOSE
    final_reason: str = "no agent available"

    def __post_init__(self) -> None:
        if not self.steps:
            raise InvalidConfiguration(f"policy {self.id}: needs at least one step")


# --- agents and tasks ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AgentConfig:
    """What an administrator sets for an agent."""

    id: str
    name: str = ""
    skills: Mapping[str, int] = field(default_factory=dict)
    attributes: Mapping[str, object] = field(default_factory=dict)
    capacity: Mapping[Channel, int] = field(default_factory=lambda: dict(DEFAULT_CAPACITY))
    status: str = "offline"

    def __post_init__(self) -> None:
        if not self.id:
            raise InvalidConfiguration("an agent needs an id")
        check_skills(self.skills, f"agent {self.id}")
        for channel, slots in self.capacity.items():
            if slots < 0:
                raise InvalidConfiguration(f"agent {self.id}: capacity for {channel} is < 0")


def check_skills(skills: Mapping[str, int], owner: str) -> None:
    for skill, level in skills.items():
        if not 1 <= level <= 5:
            raise InvalidConfiguration(f"{owner}: proficiency of {skill} must be 1-5, not {level}")


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """A unit of work handed to the engine: a contact that needs an agent."""

    channel: Channel
    queue: str | None = None
    policy: str | None = None
    id: str | None = None
    priority: int = 0
    attributes: Mapping[str, object] = field(default_factory=dict)
    required_skills: Mapping[str, int] = field(default_factory=dict)
    conversation_id: str | None = None
    arrived_at: float | None = None
    """When the customer first asked, if earlier than now: a callback that replaces a waiting
    call keeps the call's place in line (and its wait counts from then)."""
    agent_id: str | None = None
    """Agent-initiated work (an outbound call the agent dials): the task is this agent's from
    the start - assigned at once, never queued or offered, so it is no offered contact of its
    queue (the queue gives its caller ID, wrap-up and reports). See `Engine.create_task`."""

    def __post_init__(self) -> None:
        if (self.queue is None) == (self.policy is None):
            raise InvalidConfiguration("a task names exactly one of queue or policy")
        check_skills(self.required_skills, "task")


class TaskPhase(enum.StrEnum):
    WAITING = "waiting"
    OFFERED = "offered"
    ASSIGNED = "assigned"
    WRAPPING = "wrapping"
    ENDED = "ended"


class Outcome(enum.StrEnum):
    """How a task ended; every task ends exactly once."""

    COMPLETED = "completed"
    ABANDONED = "abandoned"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


class OfferPhase(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"
    RESCINDED = "rescinded"


@dataclass(frozen=True, slots=True)
class RestoredTask:
    """An open task read back from the store after a restart (see `Engine.restore`).

    `seq` is any number that grows with the original creation order (the store's sequence);
    `phase` is waiting, assigned or wrapping: an offer that was pending when the process stopped
    is not restored, its task waits again at its place in line.
    """

    request: TaskRequest
    seq: int
    created_at: float
    enqueued_at: float
    phase: TaskPhase
    step_index: int = 0
    step_entered_at: float | None = None
    agent_id: str | None = None
    accepted_at: float | None = None
    completed_at: float | None = None
    transferred: bool = False

    def __post_init__(self) -> None:
        if self.request.id is None:
            raise InvalidConfiguration("a restored task needs its id")
        if self.phase in (TaskPhase.ASSIGNED, TaskPhase.WRAPPING) and self.agent_id is None:
            raise InvalidConfiguration(f"task {self.request.id}: {self.phase} needs its agent")
        if self.phase not in (TaskPhase.WAITING, TaskPhase.ASSIGNED, TaskPhase.WRAPPING):
            raise InvalidConfiguration(f"task {self.request.id}: cannot restore {self.phase}")


@dataclass(slots=True, eq=False)
class Offer:
    id: str
    task_id: str
    agent_id: str
    queue_id: str
    created_at: float
    expires_at: float
    phase: OfferPhase = OfferPhase.PENDING


@dataclass(slots=True, eq=False)
class TaskState:
    """The engine's record of a task."""

    id: str
    seq: int
    channel: Channel
    priority: int
    attributes: dict[str, object]
    required_skills: dict[str, int]
    conversation_id: str | None
    policy: RoutingPolicy
    created_at: float
    phase: TaskPhase = TaskPhase.WAITING
    step_index: int = 0
    step_expired: bool = False
    timer_token: int = 0
    queue_id: str = ""
    enqueued_at: float = 0.0
    entry: tuple[float, float, int, str] = (0.0, 0.0, 0, "")
    """The task's place in line: (aging-adjusted -score, enqueued_at, seq, id)."""
    pool: Pool | None = None
    line: Line | None = None
    offers: dict[str, Offer] = field(default_factory=dict)
    agent_id: str | None = None
    accepted_at: float | None = None
    completed_at: float | None = None
    declined_until: dict[str, float] = field(default_factory=dict)
    hunt_cursor: int = -1
    transferred: bool = False
    agents_served: list[str] = field(default_factory=list)
    outcome: Outcome | None = None
    initiated_by: str | None = None
    """The agent who started this task themselves (`TaskRequest.agent_id`) while it is theirs;
    a transfer makes it a routed task like any other."""

    @property
    def is_vip(self) -> bool:
        return bool(self.attributes.get("vip"))

    @property
    def preferred_agents(self) -> tuple[str, ...]:
        value = self.attributes.get("preferred_agents")
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list | tuple):
            return tuple(str(v) for v in value)
        return ()


@dataclass(slots=True, eq=False)
class AgentState:
    """The engine's record of an agent: configuration plus live presence and work."""

    id: str
    ordinal: int
    name: str
    skills: dict[str, int]
    attributes: dict[str, object]
    capacity: dict[Channel, int]
    status: StatusDefinition
    status_since: float
    presence: str
    presence_since: float
    idle_since: float
    in_progress: dict[Channel, int] = field(default_factory=dict)
    tasks: dict[str, TaskState] = field(default_factory=dict)
    offers: dict[str, Offer] = field(default_factory=dict)
    open_channels: frozenset[Channel] = frozenset()
    queues: set[str] = field(default_factory=set)
    pools: set[Pool] = field(default_factory=set)
    lines: dict[Channel, list[LineGroup]] = field(default_factory=dict)
    """The waiting lines of the agent's pools per channel, grouped by queue priority."""
    idle_keys: dict[tuple[Pool, Channel], tuple[object, ...]] = field(default_factory=dict)
    missed_offers: int = 0
    contacts_today: int = 0
    contacts_day: int = 0
    contacts_handled: int = 0
    accounted_at: float = 0.0
    logged_in_s: float = 0.0
    ready_s: float = 0.0
    handling_s: float = 0.0


@dataclass(slots=True, eq=False)
class QueueStats:
    """Today's counters of a queue, in the definitions of METRICS.md."""

    offered: int = 0
    offered_by_transfer: int = 0
    handled: int = 0
    handled_within_threshold: int = 0
    abandoned: int = 0
    abandoned_after_threshold: int = 0
    short_abandoned: int = 0
    overflowed_out: int = 0
    timed_out: int = 0
    wait_handled_s: float = 0.0
    wait_abandoned_s: float = 0.0

    def count_offered(self, by_transfer: bool) -> None:
        self.offered += 1
        if by_transfer:
            self.offered_by_transfer += 1

    def count_handled(self, wait_s: float, config: QueueConfig) -> None:
        self.handled += 1
        self.wait_handled_s += wait_s
        if wait_s <= config.sl_threshold_s:
            self.handled_within_threshold += 1

    def count_abandoned(self, wait_s: float, config: QueueConfig) -> None:
        self.abandoned += 1
        self.wait_abandoned_s += wait_s
        if wait_s <= config.short_abandon_s:
            self.short_abandoned += 1
        if wait_s > config.sl_threshold_s:
            self.abandoned_after_threshold += 1


@dataclass(slots=True, eq=False)
class QueueState:
    """A queue's configuration, its compiled expression, members and live counters."""

    config: QueueConfig
    expression: Expression
    members: set[str] = field(default_factory=set)
    pools: list[Pool] = field(default_factory=list)
    stats: QueueStats = field(default_factory=QueueStats)
    stats_day: int = 0
    rr_cursor: int = -1
    handle_s_ewma: float = 0.0

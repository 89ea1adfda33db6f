"""Immutable events: every change in the engine is one of these, in order.

The event log is enough to rebuild any report and the engine's own state (see `projection.py`).
Each event has `at` (POSIX seconds) and `seq` (the engine's running number, gap-free).
`type` is the stable name used on the bus, in webhooks and in the store.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, ClassVar

from omnicc.core.model import AgentConfig, QueueConfig, RoutingPolicy, StatusDefinition


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    type: ClassVar[str] = "event"
    at: float
    seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusDefined(Event):
    type: ClassVar[str] = "status.defined"
    status: StatusDefinition


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueConfigured(Event):
    type: ClassVar[str] = "queue.configured"
    queue: QueueConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyConfigured(Event):
    type: ClassVar[str] = "policy.configured"
    policy: RoutingPolicy


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentConfigured(Event):
    """An agent was added or its skills, attributes or capacity changed."""

    type: ClassVar[str] = "agent.configured"
    agent: AgentConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentRemoved(Event):
    type: ClassVar[str] = "agent.removed"
    agent_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStatusChanged(Event):
    """The agent's chosen status or derived presence (busy, wrap_up) changed."""

    type: ClassVar[str] = "agent.status_changed"
    agent_id: str
    status: str
    presence: str
    previous_presence: str
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCreated(Event):
    type: ClassVar[str] = "task.created"
    task_id: str
    channel: str
    priority: int
    attributes: Mapping[str, object]
    required_skills: Mapping[str, int]
    policy_id: str
    conversation_id: str | None
    enqueued_at: float | None = None
    """The place in line when it is earlier than the event (`TaskRequest.arrived_at`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskQueued(Event):
    """The task entered a queue: on creation, on a policy step change, or by transfer."""

    type: ClassVar[str] = "task.queued"
    task_id: str
    queue_id: str
    step_index: int
    reason: str  # "created" | "step_timeout" | "transfer"


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskAssigned(Event):
    """Agent-initiated work (an outbound call): the task was its agent's from the start, with
    no queueing or offer. Its queue is where it belongs (caller ID, wrap-up, reports), but it
    is no offered contact there: it counts in no offered, handled, service level or ASA."""

    type: ClassVar[str] = "task.assigned"
    task_id: str
    agent_id: str
    queue_id: str
    channel: str
    direction: str = "outbound"


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRequeued(Event):
    """An offer ended without acceptance; the task is back at its place in line."""

    type: ClassVar[str] = "task.requeued"
    task_id: str
    queue_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskReprioritised(Event):
    """A waiting or offered task's priority changed; it keeps its arrival time and takes the
    place in line the new priority gives it."""

    type: ClassVar[str] = "task.reprioritised"
    task_id: str
    priority: int
    previous: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferCreated(Event):
    type: ClassVar[str] = "offer.created"
    offer_id: str
    task_id: str
    agent_id: str
    queue_id: str
    channel: str
    expires_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferAccepted(Event):
    type: ClassVar[str] = "offer.accepted"
    offer_id: str
    task_id: str
    agent_id: str
    queue_id: str
    wait_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferRejected(Event):
    type: ClassVar[str] = "offer.rejected"
    offer_id: str
    task_id: str
    agent_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferTimedOut(Event):
    type: ClassVar[str] = "offer.timed_out"
    offer_id: str
    task_id: str
    agent_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferRescinded(Event):
    type: ClassVar[str] = "offer.rescinded"
    offer_id: str
    task_id: str
    agent_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskTransferred(Event):
    type: ClassVar[str] = "task.transferred"
    task_id: str
    from_agent_id: str
    to_queue_id: str | None
    to_agent_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCompleted(Event):
    """The conversation ended; wrap-up may follow."""

    type: ClassVar[str] = "task.completed"
    task_id: str
    agent_id: str
    queue_id: str
    talk_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskWrappedUp(Event):
    type: ClassVar[str] = "task.wrapped_up"
    task_id: str
    agent_id: str
    disposition: str | None
    wrap_up_s: float
    timed_out: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskAbandoned(Event):
    type: ClassVar[str] = "task.abandoned"
    task_id: str
    queue_id: str
    wait_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCancelled(Event):
    type: ClassVar[str] = "task.cancelled"
    task_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskTimedOut(Event):
    """The routing policy ran out of steps; the channel carries out the final action."""

    type: ClassVar[str] = "task.timed_out"
    task_id: str
    queue_id: str
    action: str
    reason: str
    wait_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskEnded(Event):
    """Emitted exactly once per task, after the event that ended it."""

    type: ClassVar[str] = "task.ended"
    task_id: str
    outcome: str


# --- wire form ---------------------------------------------------------------------------------

EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (
        StatusDefined, QueueConfigured, PolicyConfigured, AgentConfigured, AgentRemoved,
        AgentStatusChanged, TaskCreated, TaskQueued, TaskAssigned, TaskRequeued, TaskReprioritised,
        OfferCreated,
        OfferAccepted, OfferRejected, OfferTimedOut, OfferRescinded, TaskTransferred,
        TaskCompleted, TaskWrappedUp, TaskAbandoned, TaskCancelled, TaskTimedOut, TaskEnded,
    )
}
"""Every event class by its stable `type` name."""

_CONFIGURATION_EVENTS = frozenset({"status.defined", "queue.configured", "policy.configured",
                                   "agent.configured"})


def encode_payload(event: Event) -> dict[str, Any]:
    """An event's fields other than `at` and `seq`, as JSON values (the store's payload)."""
    return {f.name: _jsonable(getattr(event, f.name)) for f in fields(event)
            if f.name not in ("at", "seq")}


def decode_event(type_name: str, at_s: float, seq: int, payload: Mapping[str, Any]) -> Event:
    """The event back from its stored form. Configuration events carry whole configurations and
    are read back through the store's own tables instead, so they are refused here."""
    cls = EVENT_TYPES.get(type_name)
    if cls is None or type_name in _CONFIGURATION_EVENTS:
        raise ValueError(f"cannot decode event type {type_name!r}")
    return cls(at=at_s, seq=seq, **payload)


def wire_form(value: object) -> Any:
    """Any event or figures dataclass as JSON values (enums by value, sets sorted)."""
    return _jsonable(value)


def _jsonable(value: object) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(_jsonable(v) for v in value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no infinity; "inf" reads back with float()
    return value

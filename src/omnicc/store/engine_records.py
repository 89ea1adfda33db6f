"""The routing engine's configuration and open tasks, read from the store as the core's
dataclasses: what a (re)starting engine is built from.

Times become POSIX seconds, the engine's clock (`omnicc.core.clock`). Store ids are the engine's
ids: a queue row's id is its `QueueConfig.id`, a task row's id its task id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.core.model import (
    INITIATED_BY,
    AgentConfig,
    FinalAction,
    PolicyStep,
    QueueConfig,
    RestoredTask,
    RoutingPolicy,
    Strategy,
    TaskPhase,
    TaskRequest,
)
from omnicc.store.repositories import Agents, Queues, RoutingPolicies, Tasks
from omnicc.store.tables import Agent, Queue, Task
from omnicc.store.tables import RoutingPolicy as PolicyRow

# Fields of QueueConfig held as lists in JSON and as tuples in the engine.
_QUEUE_TUPLES = ("proficiency_skills", "hunt_order")


def seconds(at: datetime) -> float:
    """A stored time as the engine's POSIX seconds."""
    return at.timestamp()


def _optional_seconds(at: datetime | None) -> float | None:
    return None if at is None else at.timestamp()


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def queue_config(row: Queue) -> QueueConfig:
    fields: dict[str, Any] = dict(row.config)
    for name in _QUEUE_TUPLES:
        if name in fields:
            fields[name] = tuple(fields[name])
    if "strategy" in fields:
        fields["strategy"] = Strategy(fields["strategy"])
    fields.setdefault("name", row.name)
    return QueueConfig(id=row.id, **fields)


def routing_policy(row: PolicyRow) -> RoutingPolicy:
    steps = tuple(
        PolicyStep(
            queue=step["queue"],
            agents=tuple(step.get("agents", ())),
            expression=step.get("expression"),
            timeout_s=step.get("timeout_s"),
            relax_proficiency=step.get("relax_proficiency", 0),
        )
        for step in row.steps
    )
    return RoutingPolicy(
        id=row.id,
        steps=steps,
        final_action=FinalAction(row.final_action),
        final_reason=row.final_reason,
    )


def agent_config(row: Agent) -> AgentConfig:
    if row.capacity:
        return AgentConfig(
            id=row.id,
            name=row.name,
            skills=dict(row.skills),
            attributes=dict(row.attributes),
            capacity=dict(row.capacity),
            status=row.status,
        )
    return AgentConfig(
        id=row.id,
        name=row.name,
        skills=dict(row.skills),
        attributes=dict(row.attributes),
        status=row.status,
    )


def restored_task(row: Task) -> RestoredTask:
    """An open task as the engine restores it; an offer pending at the stop is not restored,
    its task waits again at its place in line."""
    phase = TaskPhase(row.phase)
    if phase is TaskPhase.OFFERED:
        phase = TaskPhase.WAITING
    request = TaskRequest(
        channel=row.channel,
        queue=row.queue_id if row.policy_id is None else None,
        policy=row.policy_id,
        id=row.id,
        priority=row.priority,
        attributes=dict(row.attributes),
        required_skills=dict(row.required_skills),
        conversation_id=row.conversation_id,
        agent_id=_text_or_none(row.attributes.get(INITIATED_BY)),
    )
    return RestoredTask(
        request=request,
        seq=row.seq,
        created_at=seconds(row.created_at),
        enqueued_at=seconds(row.enqueued_at),
        phase=phase,
        step_index=row.step_index,
        step_entered_at=_optional_seconds(row.step_entered_at),
        agent_id=row.agent_id if phase is not TaskPhase.WAITING else None,
        accepted_at=_optional_seconds(row.accepted_at),
        completed_at=_optional_seconds(row.completed_at),
        transferred=row.transferred,
    )


@dataclass(frozen=True, slots=True)
class RoutingSnapshot:
    """Everything a tenant's engine is configured and restored from, in a usable order."""

    queues: list[QueueConfig]
    policies: list[RoutingPolicy]
    agents: list[AgentConfig]
    tasks: list[RestoredTask]


async def load_routing(session: AsyncSession, tenant_id: str) -> RoutingSnapshot:
    """Read a tenant's enabled queues, policies, agents and open tasks (in seq order)."""
    return RoutingSnapshot(
        queues=[queue_config(row) for row in await Queues(session, tenant_id).enabled()],
        policies=[
            routing_policy(row) for row in await RoutingPolicies(session, tenant_id).list_all()
        ],
        agents=[agent_config(row) for row in await Agents(session, tenant_id).list_all()],
        tasks=[restored_task(row) for row in await Tasks(session, tenant_id).open_in_order()],
    )

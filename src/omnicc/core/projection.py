"""Rebuild the engine's state from its events alone.

This is the proof that the event log is complete: a `Projection` fed every event an engine
emitted must arrive at the same `StateSnapshot` as `snapshot_of(engine)`. The store uses the
same idea at start-up to find the open tasks and their order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from omnicc.core import events as ev
from omnicc.core.engine import Engine
from omnicc.core.model import QueueConfig, TaskPhase


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    status: str
    presence: str
    task_ids: tuple[str, ...]
    offer_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TaskSnapshot:
    phase: str
    queue_id: str
    agent_id: str | None
    offer_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StateSnapshot:
    """What an operator needs to continue: who is doing what and who waits in which order."""

    agents: dict[str, AgentSnapshot]
    tasks: dict[str, TaskSnapshot]
    waiting: dict[str, tuple[str, ...]]


def snapshot_of(engine: Engine) -> StateSnapshot:
    agents = {
        a.id: AgentSnapshot(a.status.name, a.presence, tuple(sorted(a.tasks)),
                            tuple(sorted(a.offers)))
        for a in engine.agents()
    }
    tasks = {
        t.id: TaskSnapshot(t.phase.value, t.queue_id, t.agent_id, tuple(sorted(t.offers)))
        for t in engine.tasks()
    }
    waiting = {
        q.config.id: tuple(t.id for t in engine.waiting_tasks(q.config.id))
        for q in engine.queues()
    }
    return StateSnapshot(agents, tasks, {k: v for k, v in waiting.items() if v})


@dataclass(slots=True)
class _Agent:
    status: str
    presence: str
    tasks: set[str] = field(default_factory=set)
    offers: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Task:
    seq: int
    priority: int
    vip: bool
    phase: str = TaskPhase.WAITING.value
    queue_id: str = ""
    agent_id: str | None = None
    enqueued_at: float = 0.0
    entry: tuple[float, float, int] = (0.0, 0.0, 0)
    offers: dict[str, str] = field(default_factory=dict)


class Projection:
    """Applies events in order to a model of the engine's live state."""

    def __init__(self) -> None:
        self._queues: dict[str, QueueConfig] = {}
        self._agents: dict[str, _Agent] = {}
        self._tasks: dict[str, _Task] = {}

    def apply_all(self, events: Iterable[ev.Event]) -> Projection:
        for event in events:
            self.apply(event)
        return self

    def apply(self, event: ev.Event) -> None:
        match event:
            case ev.QueueConfigured(queue=queue):
                self._queues[queue.id] = queue
            case ev.AgentConfigured(agent=agent_config):
                if agent_config.id not in self._agents:
                    self._agents[agent_config.id] = _Agent(agent_config.status,
                                                           agent_config.status)
            case ev.AgentRemoved(agent_id=agent_id):
                del self._agents[agent_id]
            case ev.AgentStatusChanged(agent_id=agent_id, status=status, presence=presence):
                agent = self._agents[agent_id]
                agent.status, agent.presence = status, presence
            case ev.TaskCreated(task_id=task_id, priority=priority, attributes=attributes):
                self._tasks[task_id] = _Task(event.seq, priority, bool(attributes.get("vip")),
                                             enqueued_at=event.at)
            case ev.TaskQueued(task_id=task_id, queue_id=queue_id, reason=reason):
                task = self._tasks[task_id]
                task.phase, task.queue_id = TaskPhase.WAITING.value, queue_id
                if reason == "transfer":
                    task.enqueued_at = event.at
                task.entry = self._entry(task)
            case ev.TaskReprioritised(task_id=task_id, priority=priority):
                task = self._tasks[task_id]
                task.priority = priority
                task.entry = self._entry(task)
            case ev.TaskAssigned(task_id=task_id, agent_id=agent_id, queue_id=queue_id):
                task = self._tasks[task_id]
                task.phase, task.queue_id, task.agent_id = (TaskPhase.ASSIGNED.value, queue_id,
                                                            agent_id)
                self._agents[agent_id].tasks.add(task_id)
            case ev.OfferCreated(offer_id=offer_id, task_id=task_id, agent_id=agent_id):
                task = self._tasks[task_id]
                task.phase = TaskPhase.OFFERED.value
                task.offers[offer_id] = agent_id
                self._agents[agent_id].offers.add(offer_id)
            case ev.OfferAccepted(offer_id=offer_id, task_id=task_id, agent_id=agent_id):
                task = self._tasks[task_id]
                self._drop_offer(task, offer_id)
                task.phase, task.agent_id = TaskPhase.ASSIGNED.value, agent_id
                self._agents[agent_id].tasks.add(task_id)
            case ev.OfferRejected() | ev.OfferTimedOut() | ev.OfferRescinded():
                task = self._tasks[event.task_id]
                self._drop_offer(task, event.offer_id)
                if not task.offers and task.phase == TaskPhase.OFFERED.value:
                    task.phase = TaskPhase.WAITING.value
            case ev.TaskRequeued(task_id=task_id):
                self._tasks[task_id].phase = TaskPhase.WAITING.value
            case ev.TaskTransferred(task_id=task_id):
                self._unassign(self._tasks[task_id], task_id)
            case ev.TaskCompleted(task_id=task_id):
                self._tasks[task_id].phase = TaskPhase.WRAPPING.value
            case ev.TaskEnded(task_id=task_id):
                self._unassign(self._tasks.pop(task_id), task_id)

    def snapshot(self) -> StateSnapshot:
        agents = {
            agent_id: AgentSnapshot(a.status, a.presence, tuple(sorted(a.tasks)),
                                    tuple(sorted(a.offers)))
            for agent_id, a in self._agents.items()
        }
        tasks = {
            task_id: TaskSnapshot(t.phase, t.queue_id, t.agent_id, tuple(sorted(t.offers)))
            for task_id, t in self._tasks.items()
        }
        lines: dict[str, list[tuple[tuple[float, float, int], str]]] = {}
        for task_id, task in self._tasks.items():
            if task.phase == TaskPhase.WAITING.value:
                lines.setdefault(task.queue_id, []).append((task.entry, task_id))
        waiting = {q: tuple(task_id for _, task_id in sorted(line)) for q, line in lines.items()}
        return StateSnapshot(agents, tasks, waiting)

    def _entry(self, task: _Task) -> tuple[float, float, int]:
        queue = self._queues[task.queue_id]
        base = task.priority + (queue.vip_score if task.vip else 0.0)
        return (queue.aging_per_s * task.enqueued_at - base, task.enqueued_at, task.seq)

    def _drop_offer(self, task: _Task, offer_id: str) -> None:
        agent_id = task.offers.pop(offer_id)
        agent = self._agents.get(agent_id)
        if agent is not None:
            agent.offers.discard(offer_id)

    def _unassign(self, task: _Task, task_id: str) -> None:
        if task.agent_id is not None:
            self._agents[task.agent_id].tasks.discard(task_id)
            task.agent_id = None

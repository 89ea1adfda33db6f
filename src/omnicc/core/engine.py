"""The routing engine (ACD): one brain for every channel.

It takes commands (an agent changes status, a task arrives, an offer is accepted, time passes)
and returns the events they caused, in order. It is pure and deterministic: time comes from the
injected clock, ties break by sequence numbers and agent ordinals, and "random" uses a seeded
generator. Timers (offer timeouts, policy steps, wrap-up, re-offer delays) fire when a command
or `advance()` finds them due; `next_deadline()` tells a driver when to call `advance()`.

How a decision is made (see `pool.py` for the indexes):
- a task needs an agent: its pool's idle index for its channel gives the best agent at once;
- an agent can take more work: the heads of the agent's pools are compared by
  (queue priority, task score now, enqueued_at, seq) and the best one is offered.
"""

from __future__ import annotations

import heapq
import math
import random
from bisect import insort
from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast
from zoneinfo import ZoneInfo

from sortedcontainers import SortedList

from omnicc.core import events as ev
from omnicc.core.clock import Clock
from omnicc.core.errors import Conflict, InvalidConfiguration, NotFound
from omnicc.core.expression import Expression, compile_expression
from omnicc.core.model import (
    BUILTIN_STATUSES,
    BUSY,
    DERIVED_PRESENCES,
    INITIATED_BY,
    OUTBOUND,
    PREFERRED,
    WRAP_UP,
    AgentConfig,
    AgentState,
    CapacityRules,
    Channel,
    Offer,
    OfferPhase,
    Outcome,
    PolicyStep,
    QueueConfig,
    QueueState,
    QueueStats,
    RestoredTask,
    RoutingPolicy,
    StatusDefinition,
    Strategy,
    TaskPhase,
    TaskRequest,
    TaskState,
)
from omnicc.core.pool import AgentPredicate, IdleEntry, Line, LineGroup, Pool, WaitingEntry

TRANSFER_TO_AGENT_TIMEOUT_S = 60.0
"""A task transferred to one agent waits this long for them, then returns to its queue."""

HANDLE_TIME_SMOOTHING = 0.01
"""Weight of the newest handle time in a queue's moving average (used by EWT)."""

DECLINED_SCAN_LIMIT = 64
"""How far past the head an agent looks for a task it has not recently declined."""


@dataclass(frozen=True, slots=True)
class TaskPosition:
    """Where a waiting task stands: 1-based position among its queue's tasks on its channel."""

    task_id: str
    queue_id: str
    position: int
    waited_s: float
    ewt_s: float | None


@dataclass(frozen=True, slots=True)
class QueueFigures:
    """Live figures of one queue (definitions: METRICS.md)."""

    queue_id: str
    waiting: int
    longest_wait_s: float
    ewt_s: float | None
    offered: int
    handled: int
    abandoned: int
    short_abandoned: int
    service_level_1: float | None
    service_level_2: float | None
    service_level_3: float | None
    asa_s: float | None
    agents_by_presence: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class AgentFigures:
    agent_id: str
    status: str
    presence: str
    time_in_presence_s: float
    occupancy: float | None
    utilisation: float | None
    contacts_handled: int
    contacts_today: int
    in_progress: Mapping[Channel, int]
    task_ids: tuple[str, ...]
    offer_ids: tuple[str, ...]


_NO_CHANNELS: frozenset[Channel] = frozenset()


def expected_wait_s(service_rate: float, abandon_rate: float, ahead: int) -> float:
    """sum_{i=0..ahead} 1 / (service_rate + i * abandon_rate), in closed form for long lines."""
    if abandon_rate <= 0.0:
        return (ahead + 1) / service_rate
    if ahead <= 200 or service_rate <= abandon_rate:
        return sum(1.0 / (service_rate + i * abandon_rate) for i in range(ahead + 1))
    # The midpoint rule on 1 / (a + x theta), accurate to well under 0.1 % this far out.
    top = service_rate + (ahead + 0.5) * abandon_rate
    return math.log(top / (service_rate - 0.5 * abandon_rate)) / abandon_rate


def _group_rank(group: LineGroup) -> int:
    return group.rank


class Engine:
    """The routing engine of one tenant."""

    def __init__(
        self,
        clock: Clock,
        *,
        capacity_rules: CapacityRules | None = None,
        max_missed_offers: int = 3,
        missed_offer_status: str = "no_answer",
        seed: int = 0,
        timezone: str = "UTC",
        keep_log: bool = False,
        last_event_seq: int = 0,
    ) -> None:
        """`last_event_seq`: the seq of the last stored event, so numbering continues after a
        restart (event seqs, and offer ids made from them, stay unique per tenant)."""
        if max_missed_offers < 1:
            raise InvalidConfiguration("max_missed_offers must be >= 1")
        self._clock = clock
        self._now = clock.now()
        self._rules = capacity_rules or CapacityRules()
        self._max_missed = max_missed_offers
        self._rng = random.Random(seed)
        self._tz = ZoneInfo(timezone)
        self._day_start = 0.0
        self._day_end = -1.0
        self._day = 0
        self._statuses: dict[str, StatusDefinition] = {s.name: s for s in BUILTIN_STATUSES}
        if missed_offer_status not in self._statuses:
            raise InvalidConfiguration(f"unknown missed-offer status {missed_offer_status!r}")
        self._missed_status = self._statuses[missed_offer_status]
        self._queues: dict[str, QueueState] = {}
        self._policies: dict[str, RoutingPolicy] = {}
        self._agents: dict[str, AgentState] = {}
        self._tasks: dict[str, TaskState] = {}
        self._offers: dict[str, Offer] = {}
        self._pools: dict[Hashable, Pool] = {}
        self._explicit_pools: dict[str, set[Pool]] = {}
        self._step_expressions: dict[str, Expression] = {}
        self._bound: dict[Hashable, AgentPredicate] = {}
        self._timers: list[tuple[float, int, str, str, int]] = []
        self._seq = last_event_seq
        self._timer_seq = 0
        self._task_seq = 0
        self._pool_seq = 0
        self._ordinal = 0
        self._out: list[ev.Event] = []
        self.log: list[ev.Event] | None = [] if keep_log else None
        self.tasks_ended = 0

    # --- configuration ----------------------------------------------------------------------

    def define_status(self, status: StatusDefinition) -> list[ev.Event]:
        """Add or change a custom presence status."""
        self._begin()
        if status.name in DERIVED_PRESENCES or status.name in {s.name for s in BUILTIN_STATUSES}:
            raise InvalidConfiguration(f"{status.name!r} is a built-in status")
        self._statuses[status.name] = status
        self._out.append(ev.StatusDefined(at=self._now, seq=self._next_seq(), status=status))
        return self._flush()

    def configure_queue(self, config: QueueConfig) -> list[ev.Event]:
        """Add a queue or change its configuration; membership is evaluated again."""
        self._begin()
        expression = compile_expression(config.expression)
        if expression.task_refs:
            raise InvalidConfiguration(
                f"queue {config.id}: a queue expression selects agents and cannot read "
                f"{', '.join(expression.task_refs)}; put task conditions in a policy step"
            )
        existing = self._queues.get(config.id)
        if existing is not None:
            if existing.config.strategy is not config.strategy or (
                existing.config.hunt_order != config.hunt_order
            ):
                waiting = sum(len(line) for p in existing.pools for line in p.waiting.values())
                if waiting:
                    raise Conflict(f"queue {config.id}: change the strategy when it is empty")
            ordering_changed = (existing.config.aging_per_s, existing.config.vip_score) != (
                config.aging_per_s, config.vip_score)
            if ordering_changed and any(len(line) for p in existing.pools
                                        for line in p.waiting.values()):
                raise Conflict(f"queue {config.id}: change aging or VIP score when it is empty")
            existing.config = config
            existing.expression = expression
            for pool in existing.pools:
                for line in pool.waiting.values():
                    line.rank = -config.priority
                    line.aging_per_s = config.aging_per_s
            for agent in self._agents.values():
                lines = [line for groups in agent.lines.values() for g in groups
                         for line in g.lines]
                agent.lines.clear()
                for line in lines:
                    self._attach_line(agent, line)
            queue = existing
        else:
            queue = QueueState(config=config, expression=expression)
            self._queues[config.id] = queue
        self._out.append(ev.QueueConfigured(at=self._now, seq=self._next_seq(), queue=config))
        for pool in queue.pools:
            for index in pool.idle.values():
                index.clear()
            pool.idle.clear()
        for agent in self._agents.values():
            for key in [k for k in agent.idle_keys if k[0].queue is queue]:
                del agent.idle_keys[key]
            self._update_membership(agent)
        for agent in list(self._agents.values()):
            self._settle_agent(agent)
        return self._flush()

    def configure_policy(self, policy: RoutingPolicy) -> list[ev.Event]:
        self._begin()
        for step in policy.steps:
            if step.queue not in self._queues:
                raise NotFound(f"policy {policy.id}: unknown queue {step.queue!r}")
            if step.expression is not None:
                self._step_expression(step.expression)
        self._policies[policy.id] = policy
        self._out.append(ev.PolicyConfigured(at=self._now, seq=self._next_seq(), policy=policy))
        return self._flush()

    def configure_agent(self, config: AgentConfig) -> list[ev.Event]:
        """Add an agent, or change an existing agent's name, skills, attributes or capacity.

        The status of an existing agent is kept (use `set_status`); queue and pool membership
        is evaluated again at once.
        """
        self._begin()
        agent = self._agents.get(config.id)
        if agent is None:
            status = self._status(config.status)
            agent = AgentState(
                id=config.id,
                ordinal=self._ordinal,
                name=config.name or config.id,
                skills=dict(config.skills),
                attributes=dict(config.attributes),
                capacity=dict(config.capacity),
                status=status,
                status_since=self._now,
                presence=status.name,
                presence_since=self._now,
                idle_since=self._now,
                accounted_at=self._now,
            )
            self._ordinal += 1
            self._agents[agent.id] = agent
            event_config = config
        else:
            self._account(agent)
            agent.name = config.name or config.id
            agent.skills = dict(config.skills)
            agent.attributes = dict(config.attributes)
            agent.capacity = dict(config.capacity)
            event_config = AgentConfig(
                id=config.id,
                name=agent.name,
                skills=config.skills,
                attributes=config.attributes,
                capacity=config.capacity,
                status=agent.status.name,
            )
        self._out.append(ev.AgentConfigured(at=self._now, seq=self._next_seq(), agent=event_config))
        self._update_membership(agent)
        self._settle_agent(agent)
        return self._flush()

    def remove_agent(self, agent_id: str) -> list[ev.Event]:
        self._begin()
        agent = self._agent(agent_id)
        if agent.tasks:
            raise Conflict(f"agent {agent_id} still has tasks {sorted(agent.tasks)}")
        for offer in list(agent.offers.values()):
            self._close_offer(offer, OfferPhase.RESCINDED, "agent removed")
        for pool in list(agent.pools):
            pool.members.discard(agent.id)
        agent.pools.clear()
        agent.open_channels = frozenset()
        self._reindex(agent)
        for queue in self._queues.values():
            queue.members.discard(agent.id)
        del self._agents[agent_id]
        self._out.append(ev.AgentRemoved(at=self._now, seq=self._next_seq(), agent_id=agent_id))
        return self._flush()

    # --- presence -----------------------------------------------------------------------------

    def set_status(self, agent_id: str, status: str, reason: str = "") -> list[ev.Event]:
        """One call changes an agent's status; pending offers are withdrawn if it takes no work."""
        self._begin()
        agent = self._agent(agent_id)
        self._change_status(agent, self._status(status), reason)
        return self._flush()

    # --- tasks ----------------------------------------------------------------------------------

    def create_task(self, request: TaskRequest) -> list[ev.Event]:
        """Accept a task for routing; the first event is its `task.created`.

        With `request.agent_id` the task is agent-initiated (an outbound call): `task.assigned`
        follows at once, with no queueing or offer. Any status may start work (an agent on a
        break or offline dials; the status stays, and time with work in hand counts as logged
        in); the agent needs a free slot on the channel, and a task of an exclusive channel in
        progress (being on a call) refuses anything else. Wrap-up does not count: an agent in
        wrap-up may call the customer back. Pending offers the new task
        blocks are withdrawn (the tasks go to the next agent). The task takes the agent's
        capacity like an accepted offer, so the channel rules keep other offers away until it
        is completed and wrapped up; it counts in no queue figure (METRICS.md: an outbound
        contact is not an offered one). Conflict when the agent cannot start it.
        """
        self._begin()
        if request.policy is not None:
            policy = self._policy(request.policy)
            if policy is None:
                raise NotFound(f"unknown policy {request.policy!r}")
        else:
            assert request.queue is not None
            if request.queue not in self._queues:
                raise NotFound(f"unknown queue {request.queue!r}")
            policy = self._implicit_policy(request.queue)
        starter: AgentState | None = None
        attributes = dict(request.attributes)
        if request.agent_id is not None:
            starter = self._agent(request.agent_id)
            self._check_can_start(starter, request.channel)
            attributes.setdefault("direction", OUTBOUND)
            attributes[INITIATED_BY] = starter.id
        self._task_seq += 1
        task_id = request.id or f"T{self._task_seq}"
        if task_id in self._tasks:
            raise Conflict(f"task {task_id} exists already")
        arrived = self._now if request.arrived_at is None or starter is not None else min(
            request.arrived_at, self._now)
        task = TaskState(
            id=task_id,
            seq=self._task_seq,
            channel=request.channel,
            priority=request.priority,
            attributes=attributes,
            required_skills=dict(request.required_skills),
            conversation_id=request.conversation_id,
            policy=policy,
            created_at=self._now,
            enqueued_at=arrived,
        )
        self._tasks[task_id] = task
        self._out.append(
            ev.TaskCreated(
                at=self._now,
                seq=self._next_seq(),
                task_id=task_id,
                channel=task.channel,
                priority=task.priority,
                attributes=dict(task.attributes),
                required_skills=dict(task.required_skills),
                policy_id=policy.id,
                conversation_id=task.conversation_id,
                enqueued_at=None if arrived == self._now else arrived,
            )
        )
        if starter is not None:
            self._start_by_agent(task, starter)
        else:
            self._enter_step(task, 0, "created")
        return self._flush()

    def restore(self, tasks: Iterable[RestoredTask]) -> list[ev.Event]:
        """Put open tasks read back from the store after a restart back in place.

        Configure statuses, queues, policies and agents first. Restoring emits no event of its
        own (the log has the tasks' history already); waiting tasks keep their place in line
        (their original enqueued_at and seq), assigned and wrapping tasks hold their agents'
        capacity again, policy-step and wrap-up timers continue where they were. Then every
        agent is offered work as usual, and those offers are the events returned.
        """
        self._begin()
        restored = sorted(tasks, key=lambda r: (r.enqueued_at, r.seq))
        for item in restored:
            self._validate_restored(item)
        for item in restored:
            self._restore_task(item)
        for agent in list(self._agents.values()):
            self._settle_agent(agent)
        return self._flush()

    def _validate_restored(self, item: RestoredTask) -> None:
        request = item.request
        task_id = request.id or ""
        if task_id in self._tasks:
            raise Conflict(f"task {task_id} exists already")
        if request.policy is not None and self._policy(request.policy) is None:
            raise NotFound(f"task {task_id}: unknown policy {request.policy!r}")
        if request.queue is not None and request.queue not in self._queues:
            raise NotFound(f"task {task_id}: unknown queue {request.queue!r}")
        if item.agent_id is not None and item.agent_id not in self._agents:
            raise NotFound(f"task {task_id}: unknown agent {item.agent_id!r}")

    def _restore_task(self, item: RestoredTask) -> None:
        request = item.request
        policy = (self._policy(request.policy) if request.policy is not None
                  else self._implicit_policy(request.queue or ""))
        assert policy is not None  # checked by _validate_restored
        task_id = request.id or ""
        self._task_seq = max(self._task_seq, item.seq)
        task = TaskState(
            id=task_id,
            seq=item.seq,
            channel=request.channel,
            priority=request.priority,
            attributes=dict(request.attributes),
            required_skills=dict(request.required_skills),
            conversation_id=request.conversation_id,
            policy=policy,
            created_at=item.created_at,
            enqueued_at=item.enqueued_at,
            transferred=item.transferred,
        )
        self._tasks[task_id] = task
        if (request.agent_id is not None and request.agent_id == item.agent_id
                and not item.transferred):
            task.initiated_by = request.agent_id
        step_index = min(item.step_index, len(policy.steps) - 1)
        step = policy.steps[step_index]
        queue = self._queues[step.queue]
        if item.phase is TaskPhase.WAITING:
            pool = self._pool_for(task, step)
            if pool is None:
                self._enter_step(task, step_index + 1, "step_timeout")
                return
            self._place(task, pool, step_index)
            if step.timeout_s is not None:
                entered = item.step_entered_at if item.step_entered_at is not None else (
                    item.enqueued_at)
                self._schedule(max(self._now, entered + step.timeout_s), "step", task.id,
                               task.timer_token)
            self._join_line(task, pool)
            return
        agent = self._agents[item.agent_id or ""]
        self._account(agent)
        task.queue_id = queue.config.id
        task.step_index = step_index
        task.agent_id = agent.id
        task.accepted_at = item.accepted_at
        task.phase = item.phase
        agent.tasks[task.id] = task
        agent.in_progress[task.channel] = agent.in_progress.get(task.channel, 0) + 1
        if item.phase is TaskPhase.WRAPPING:
            task.completed_at = item.completed_at
            wrap_up_s = queue.config.wrap_up_s
            if wrap_up_s is not None and math.isfinite(wrap_up_s):
                started = item.completed_at if item.completed_at is not None else self._now
                self._schedule(max(self._now, started + wrap_up_s), "wrap", task.id,
                               task.timer_token)

    def _check_can_start(self, agent: AgentState, channel: Channel) -> None:
        """Refuse agent-initiated work the agent cannot take now (see `create_task`)."""
        slots = agent.capacity.get(channel, 0)
        if slots <= 0:
            raise Conflict(f"agent {agent.id} takes no {channel} work")
        talking = [t.channel for t in agent.tasks.values() if t.phase is TaskPhase.ASSIGNED]
        busy_on = next((c for c in talking if c in self._rules.exclusive), None)
        if busy_on is not None:
            raise Conflict(f"agent {agent.id} is on a {busy_on} task")
        if talking.count(channel) >= slots:
            raise Conflict(f"agent {agent.id} has no free {channel} slot")

    def _start_by_agent(self, task: TaskState, agent: AgentState) -> None:
        """Assign an agent-initiated task to its agent: no line, no offer, no queue figure."""
        step = task.policy.steps[0]
        self._account(agent)
        task.queue_id = step.queue
        task.phase = TaskPhase.ASSIGNED
        task.agent_id = agent.id
        task.accepted_at = self._now
        task.initiated_by = agent.id
        agent.tasks[task.id] = task
        agent.in_progress[task.channel] = agent.in_progress.get(task.channel, 0) + 1
        # Out of the idle indexes before any withdrawn task looks for an agent again.
        agent.open_channels = self._open_channels(agent)
        self._reindex(agent)
        self._out.append(ev.TaskAssigned(
            at=self._now, seq=self._next_seq(), task_id=task.id, agent_id=agent.id,
            queue_id=task.queue_id, channel=task.channel,
            direction=str(task.attributes.get("direction", OUTBOUND))))
        for offer in list(agent.offers.values()):
            if self._blocked_by_start(agent, task.channel, self._tasks[offer.task_id].channel):
                self._close_offer(offer, OfferPhase.RESCINDED, "agent is on an outbound task",
                                  settle=False)
        self._settle_agent(agent)

    def _blocked_by_start(self, agent: AgentState, started: Channel, offered: Channel) -> bool:
        """Whether a pending offer on `offered` must go now that a task on `started` began."""
        if started in self._rules.exclusive:
            return True
        if started in self._rules.blocked_by.get(offered, _NO_CHANNELS):
            return True
        if offered != started:
            return False
        assigned = sum(1 for t in agent.tasks.values()
                       if t.channel == started and t.phase is not TaskPhase.WRAPPING)
        return assigned >= agent.capacity.get(started, 0)

    def _place(self, task: TaskState, pool: Pool, step_index: int) -> None:
        """Set the task's step, pool and place in line (its static ordering key)."""
        pool.references += 1  # before releasing the old pool, which may be the same one
        self._release_pool(task)
        task.step_index = step_index
        task.step_expired = False
        task.timer_token += 1
        task.pool = pool
        task.queue_id = pool.queue.config.id
        task.entry = self._line_entry(task, pool)

    @staticmethod
    def _line_entry(task: TaskState, pool: Pool) -> WaitingEntry:
        """The task's static ordering key in its pool's line (score, arrival, seq, id)."""
        config = pool.queue.config
        base = task.priority + (config.vip_score if task.is_vip else 0.0)
        return (config.aging_per_s * task.enqueued_at - base, task.enqueued_at, task.seq, task.id)

    def day_start_s(self) -> float:
        """When today began in the engine's time zone (live figures count from here)."""
        self._today()
        return self._day_start

    def restore_figures(self, events: Iterable[ev.Event]) -> None:
        """Count today's events again after a restart, so live figures go on from where they were.

        Give the events of today (older ones are ignored), after `restore`.
        """
        self._begin()
        self._flush()
        day_start = self._day_start if self._today() else 0.0
        queue_of: dict[str, str] = {}
        for event in events:
            if event.at < day_start:
                continue
            match event:
                case ev.TaskQueued(task_id=task_id, queue_id=queue_id, reason=reason):
                    previous = queue_of.get(task_id)
                    queue_of[task_id] = queue_id
                    queue = self._queues.get(queue_id)
                    if queue is None or not (reason != "step_timeout" or previous != queue_id):
                        continue
                    self._stats(queue).count_offered(by_transfer=reason == "transfer")
                    if reason == "step_timeout" and previous in self._queues:
                        self._stats(self._queues[previous]).overflowed_out += 1
                case ev.OfferAccepted(queue_id=queue_id, wait_s=wait_s) if (
                        queue_id in self._queues):
                    queue = self._queues[queue_id]
                    self._stats(queue).count_handled(wait_s, queue.config)
                case ev.TaskAbandoned(queue_id=queue_id, wait_s=wait_s) if (
                        queue_id in self._queues):
                    queue = self._queues[queue_id]
                    self._stats(queue).count_abandoned(wait_s, queue.config)
                case ev.TaskTimedOut(queue_id=queue_id) if queue_id in self._queues:
                    self._stats(self._queues[queue_id]).timed_out += 1

    def accept(self, offer_id: str) -> list[ev.Event]:
        self._begin()
        offer = self._pending_offer(offer_id)
        task = self._tasks[offer.task_id]
        agent = self._agents[offer.agent_id]
        self._account(agent)
        offer.phase = OfferPhase.ACCEPTED
        self._unlink_offer(offer, task, agent)
        task.phase = TaskPhase.ASSIGNED
        task.agent_id = agent.id
        task.accepted_at = self._now
        task.step_expired = False
        agent.tasks[task.id] = task
        agent.in_progress[task.channel] = agent.in_progress.get(task.channel, 0) + 1
        agent.missed_offers = 0
        day = self._today()
        if agent.contacts_day != day:
            agent.contacts_day = day
            agent.contacts_today = 0
        agent.contacts_today += 1
        agent.contacts_handled += 1
        wait_s = self._now - task.enqueued_at
        queue = self._queues[task.queue_id]
        self._stats(queue).count_handled(wait_s, queue.config)
        self._out.append(
            ev.OfferAccepted(
                at=self._now,
                seq=self._next_seq(),
                offer_id=offer.id,
                task_id=task.id,
                agent_id=agent.id,
                queue_id=task.queue_id,
                wait_s=wait_s,
            )
        )
        others = list(task.offers.values())
        for other in others:
            self._close_offer(other, OfferPhase.RESCINDED, "accepted by another agent")
        self._settle_agent(agent)
        return self._flush()

    def reject(self, offer_id: str, reason: str = "") -> list[ev.Event]:
        self._begin()
        offer = self._pending_offer(offer_id)
        self._close_offer(offer, OfferPhase.REJECTED, reason)
        return self._flush()

    def requeue(self, task_id: str) -> list[ev.Event]:
        """The agent of an assigned task was lost (their phone leg dropped, not hung up): the
        task goes back to its place in line - same queue, step and arrival time - and the next
        agent is looked for. A hang-up is `complete`; a deliberate hand-over is `transfer`."""
        self._begin()
        task = self._task(task_id)
        if task.initiated_by is not None:
            raise Conflict(f"task {task_id} was started by its agent: it has no place in line")
        if task.phase is not TaskPhase.ASSIGNED or task.pool is None:
            raise Conflict(f"task {task_id} is {task.phase.value}, not assigned")
        agent = self._agents[task.agent_id or ""]
        self._release(task)
        task.phase = TaskPhase.WAITING
        task.accepted_at = None
        self._out.append(ev.TaskRequeued(at=self._now, seq=self._next_seq(), task_id=task.id,
                                         queue_id=task.queue_id))
        self._route_task(task)
        self._settle_agent(agent)
        return self._flush()

    def reprioritise(self, task_id: str, priority: int) -> list[ev.Event]:
        """Give a waiting or offered task a new priority (an email nearing its first-response
        deadline): it keeps its id, arrival time, step and policy, and takes the place in line
        the new priority gives it; routing looks again at once. Pending offers stay; should
        they end without acceptance the task returns at its new place. The same priority is
        no change and no event. Conflict once the task is assigned or ended."""
        self._begin()
        task = self._task(task_id)
        if task.phase not in (TaskPhase.WAITING, TaskPhase.OFFERED):
            raise Conflict(f"task {task_id} is {task.phase.value}; only waiting work is "
                           "reprioritised")
        previous = task.priority
        if priority == previous:
            return self._flush()
        waiting = task.phase is TaskPhase.WAITING
        if waiting:
            self._leave_line(task)
        task.priority = priority
        assert task.pool is not None  # a waiting or offered task has its step's pool
        task.entry = self._line_entry(task, task.pool)
        self._out.append(ev.TaskReprioritised(at=self._now, seq=self._next_seq(),
                                              task_id=task.id, priority=priority,
                                              previous=previous))
        if waiting:
            self._route_task(task)
        return self._flush()

    def complete(self, task_id: str) -> list[ev.Event]:
        """The conversation ended. Wrap-up follows if the queue asks for it."""
        self._begin()
        task = self._task(task_id)
        if task.phase is not TaskPhase.ASSIGNED:
            raise Conflict(f"task {task_id} is {task.phase.value}, not assigned")
        self._complete(task)
        return self._flush()

    def wrap_up(self, task_id: str, disposition: str | None = None) -> list[ev.Event]:
        """After-contact work is done; the task ends and the agent's capacity frees."""
        self._begin()
        task = self._task(task_id)
        if task.phase is TaskPhase.ASSIGNED:
            self._complete(task, wrap_up_follows=True)
        if task.phase is not TaskPhase.WRAPPING:
            raise Conflict(f"task {task_id} is {task.phase.value}, not in wrap-up")
        self._wrap_up(task, disposition, timed_out=False)
        return self._flush()

    def abandon(self, task_id: str) -> list[ev.Event]:
        """The customer left before an agent accepted."""
        self._begin()
        task = self._task(task_id)
        if task.phase not in (TaskPhase.WAITING, TaskPhase.OFFERED):
            raise Conflict(f"task {task_id} is {task.phase.value}; complete it instead")
        wait_s = self._now - task.enqueued_at
        queue = self._queues[task.queue_id]
        self._stats(queue).count_abandoned(wait_s, queue.config)
        self._detach_waiting(task)
        self._out.append(
            ev.TaskAbandoned(
                at=self._now, seq=self._next_seq(), task_id=task.id, queue_id=task.queue_id,
                wait_s=wait_s,
            )
        )
        self._end(task, Outcome.ABANDONED)
        return self._flush()

    def cancel(self, task_id: str, reason: str = "") -> list[ev.Event]:
        """End a task from the system side, whatever its phase."""
        self._begin()
        task = self._task(task_id)
        self._detach_waiting(task)
        self._out.append(ev.TaskCancelled(at=self._now, seq=self._next_seq(), task_id=task.id,
                                    reason=reason))
        agent = self._agents.get(task.agent_id or "")
        self._release(task)
        self._end(task, Outcome.CANCELLED)
        if agent is not None:
            self._settle_agent(agent)
        return self._flush()

    def transfer(
        self, task_id: str, *, queue_id: str | None = None, agent_id: str | None = None
    ) -> list[ev.Event]:
        """Hand a task to a queue or an agent; it keeps its id and history.

        An assigned task leaves its agent (an agent's transfer); a waiting or offered task
        leaves its line and its offers (a supervisor moving work), `from_agent_id` is "".
        """
        self._begin()
        if (queue_id is None) == (agent_id is None):
            raise InvalidConfiguration("transfer to exactly one of a queue or an agent")
        task = self._task(task_id)
        if task.phase not in (TaskPhase.ASSIGNED, TaskPhase.WAITING, TaskPhase.OFFERED):
            raise Conflict(f"task {task_id} is {task.phase.value}; it cannot be transferred")
        if queue_id is not None and queue_id not in self._queues:
            raise NotFound(f"unknown queue {queue_id!r}")
        if agent_id is not None:
            self._agent(agent_id)
        from_agent = self._agents.get(task.agent_id or "")
        if from_agent is None:
            self._detach_waiting(task)
        if agent_id is not None:
            policy = self._transfer_policy(agent_id, task.queue_id)
        else:
            assert queue_id is not None
            policy = self._implicit_policy(queue_id)
        self._out.append(
            ev.TaskTransferred(
                at=self._now, seq=self._next_seq(), task_id=task.id,
                from_agent_id="" if from_agent is None else from_agent.id,
                to_queue_id=queue_id, to_agent_id=agent_id,
            )
        )
        self._release(task)
        task.phase = TaskPhase.WAITING
        task.policy = policy
        task.transferred = True
        task.initiated_by = None
        task.enqueued_at = self._now
        task.accepted_at = None
        task.declined_until.clear()
        self._enter_step(task, 0, "transfer")
        if from_agent is not None:
            self._settle_agent(from_agent)
        return self._flush()

    # --- time -----------------------------------------------------------------------------------

    def advance(self) -> list[ev.Event]:
        """Fire every timer due at the clock's current time."""
        self._begin()
        return self._flush()

    def next_deadline(self) -> float | None:
        """When the next timer is due (it may turn out to be stale and do nothing)."""
        return self._timers[0][0] if self._timers else None

    # --- queries --------------------------------------------------------------------------------

    def agent(self, agent_id: str) -> AgentState:
        return self._agent(agent_id)

    def task(self, task_id: str) -> TaskState:
        return self._task(task_id)

    def offer(self, offer_id: str) -> Offer:
        offer = self._offers.get(offer_id)
        if offer is None:
            raise NotFound(f"no pending offer {offer_id!r}")
        return offer

    def agents(self) -> Iterator[AgentState]:
        return iter(self._agents.values())

    def tasks(self) -> Iterator[TaskState]:
        return iter(self._tasks.values())

    def pending_offers(self) -> Iterator[Offer]:
        return iter(self._offers.values())

    def queue(self, queue_id: str) -> QueueState:
        queue = self._queues.get(queue_id)
        if queue is None:
            raise NotFound(f"unknown queue {queue_id!r}")
        return queue

    def queues(self) -> Iterator[QueueState]:
        return iter(self._queues.values())

    def statuses(self) -> Mapping[str, StatusDefinition]:
        return dict(self._statuses)

    def waiting_tasks(self, queue_id: str, channel: Channel | None = None) -> list[TaskState]:
        """The queue's waiting tasks in the order they will be served (for a channel or all)."""
        queue = self.queue(queue_id)
        entries: list[WaitingEntry] = []
        for pool in queue.pools:
            for line_channel, line in pool.waiting.items():
                if channel is None or line_channel == channel:
                    entries.extend(line.ordered())
        entries.sort()
        return [self._tasks[entry[3]] for entry in entries]

    # Queries read the state as of the last command and never fire timers: the events a timer
    # causes belong to the caller of `advance()`, not to whoever happens to ask a question.

    def task_position(self, task_id: str) -> TaskPosition:
        task = self._task(task_id)
        if task.phase is not TaskPhase.WAITING or task.pool is None:
            raise Conflict(f"task {task_id} is {task.phase.value}, not waiting")
        queue = self._queues[task.queue_id]
        ahead = sum(pool.waiting[task.channel].count_ahead(task.entry)
                    for pool in queue.pools if task.channel in pool.waiting)
        return TaskPosition(
            task_id=task.id,
            queue_id=queue.config.id,
            position=ahead + 1,
            waited_s=self._query_now() - task.enqueued_at,
            ewt_s=self._ewt(queue, task.channel, ahead),
        )

    def queue_figures(self, queue_id: str, channel: Channel | None = None) -> QueueFigures:
        queue = self.queue(queue_id)
        waiting = self.waiting_tasks(queue_id, channel)
        stats = self._stats(queue)
        by_presence: dict[str, int] = {}
        for agent_id in queue.members:
            presence = self._agents[agent_id].presence
            by_presence[presence] = by_presence.get(presence, 0) + 1
        now = self._query_now()
        longest = max((now - t.enqueued_at for t in waiting), default=0.0)
        handled = stats.handled
        offered = stats.offered
        sl2_base = handled + stats.abandoned_after_threshold
        return QueueFigures(
            queue_id=queue_id,
            waiting=len(waiting),
            longest_wait_s=longest,
            ewt_s=self._queue_ewt(queue, channel, waiting),
            offered=offered,
            handled=handled,
            abandoned=stats.abandoned,
            short_abandoned=stats.short_abandoned,
            service_level_1=stats.handled_within_threshold / handled if handled else None,
            service_level_2=stats.handled_within_threshold / sl2_base if sl2_base else None,
            service_level_3=stats.handled_within_threshold / offered if offered else None,
            asa_s=stats.wait_handled_s / handled if handled else None,
            agents_by_presence=by_presence,
        )

    def agent_figures(self, agent_id: str) -> AgentFigures:
        agent = self._agent(agent_id)
        now = self._query_now()
        logged_in_s, ready_s, handling_s = self._times_until(agent, now)
        return AgentFigures(
            agent_id=agent.id,
            status=agent.status.name,
            presence=agent.presence,
            time_in_presence_s=now - agent.presence_since,
            occupancy=handling_s / ready_s if ready_s else None,
            utilisation=handling_s / logged_in_s if logged_in_s else None,
            contacts_handled=agent.contacts_handled,
            contacts_today=agent.contacts_today if agent.contacts_day == self._today() else 0,
            in_progress={k: v for k, v in agent.in_progress.items() if v},
            task_ids=tuple(sorted(agent.tasks)),
            offer_ids=tuple(sorted(agent.offers)),
        )

    # --- command plumbing -------------------------------------------------------------------

    def _begin(self) -> None:
        now = self._clock.now()
        if now < self._now:
            raise InvalidConfiguration(f"the clock went back from {self._now} to {now}")
        timers = self._timers
        while timers and timers[0][0] <= now:
            deadline, _, kind, ref, token = heapq.heappop(timers)
            self._now = deadline
            self._fire(kind, ref, token)
        self._now = now

    def _flush(self) -> list[ev.Event]:
        out = self._out
        self._out = []
        if self.log is not None:
            self.log.extend(out)
        return out

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _schedule(self, at: float, kind: str, ref: str, token: int = 0) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (at, self._timer_seq, kind, ref, token))

    def _fire(self, kind: str, ref: str, token: int) -> None:
        if kind == "offer":
            offer = self._offers.get(ref)
            if offer is not None and offer.expires_at <= self._now:
                self._close_offer(offer, OfferPhase.TIMED_OUT, "no answer")
            return
        task = self._tasks.get(ref)
        if task is None or (task.timer_token != token and kind != "retry"):
            return
        if kind == "step":
            if task.phase is TaskPhase.WAITING:
                self._advance_step(task)
            elif task.phase is TaskPhase.OFFERED:
                task.step_expired = True
        elif kind == "wrap":
            if task.phase is TaskPhase.WRAPPING:
                self._wrap_up(task, None, timed_out=True)
        elif kind == "retry" and task.phase is TaskPhase.WAITING:
            self._route_task(task)

    # --- lookups --------------------------------------------------------------------------------

    def _agent(self, agent_id: str) -> AgentState:
        agent = self._agents.get(agent_id)
        if agent is None:
            raise NotFound(f"unknown agent {agent_id!r}")
        return agent

    def _task(self, task_id: str) -> TaskState:
        task = self._tasks.get(task_id)
        if task is None:
            raise NotFound(f"no open task {task_id!r}")
        return task

    def _status(self, name: str) -> StatusDefinition:
        if name in DERIVED_PRESENCES:
            raise InvalidConfiguration(f"{name!r} is set by the engine from the work in progress")
        status = self._statuses.get(name)
        if status is None:
            raise NotFound(f"unknown status {name!r}; known: {', '.join(sorted(self._statuses))}")
        return status

    def _pending_offer(self, offer_id: str) -> Offer:
        offer = self._offers.get(offer_id)
        if offer is None:
            raise Conflict(f"offer {offer_id!r} is not pending (answered, expired or withdrawn)")
        return offer

    # Policies the engine makes itself have ids that say how to make them again, so a task
    # stored with such a policy id can be restored by a new engine.

    def _implicit_policy(self, queue_id: str) -> RoutingPolicy:
        policy = self._policies.get(f"queue:{queue_id}")
        if policy is None:
            policy = RoutingPolicy(id=f"queue:{queue_id}", steps=(PolicyStep(queue=queue_id),))
            self._policies[policy.id] = policy
        return policy

    def _transfer_policy(self, agent_id: str, queue_id: str) -> RoutingPolicy:
        """To one agent for a while, then back to the queue the task came from."""
        policy_id = f"transfer:{agent_id}@{queue_id}"
        policy = self._policies.get(policy_id)
        if policy is None:
            policy = RoutingPolicy(id=policy_id, steps=(
                PolicyStep(queue=queue_id, agents=(agent_id,),
                           timeout_s=TRANSFER_TO_AGENT_TIMEOUT_S),
                PolicyStep(queue=queue_id),
            ))
            self._policies[policy_id] = policy
        return policy

    def _policy(self, policy_id: str) -> RoutingPolicy | None:
        policy = self._policies.get(policy_id)
        if policy is not None:
            return policy
        kind, _, rest = policy_id.partition(":")
        if kind == "queue" and rest in self._queues:
            return self._implicit_policy(rest)
        agent_id, at, queue_id = rest.rpartition("@")
        if kind == "transfer" and at and queue_id in self._queues:
            return self._transfer_policy(agent_id, queue_id)
        return None

    def _step_expression(self, source: str) -> Expression:
        expression = self._step_expressions.get(source)
        if expression is None:
            expression = self._step_expressions[source] = compile_expression(source)
        return expression

    # --- days and statistics ---------------------------------------------------------------

    def _today(self) -> int:
        now = self._now
        if not self._day_start <= now < self._day_end:
            local = datetime.fromtimestamp(now, self._tz)
            midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
            self._day_start = midnight.timestamp()
            self._day_end = (midnight + timedelta(days=1)).timestamp()
            self._day = midnight.toordinal()
        return self._day

    def _stats(self, queue: QueueState) -> QueueStats:
        day = self._today()
        if queue.stats_day != day:
            queue.stats_day = day
            queue.stats = QueueStats()
        return queue.stats

    def _queue_ewt(self, queue: QueueState, channel: Channel | None,
                   waiting: list[TaskState]) -> float | None:
        """EWT of a new arrival on the channel; without one, on the head task's channel."""
        if channel is None and waiting:
            channel = waiting[0].channel
        if channel is not None:
            return self._ewt(queue, channel, len(waiting))
        idle = any(self._agents[a].open_channels for a in queue.members)
        return 0.0 if idle else None

    def _ewt(self, queue: QueueState, channel: Channel, ahead: int) -> float | None:
        """Queue-length predictor with abandonment (Whitt's QL for M/M/s+M).

        With k tasks ahead, s serving slots, service rate mu = 1 / handle time and abandonment
        rate theta of waiting customers, the wait of a customer who is served is
        sum_{i=0..k} 1 / (s mu + i theta): each one ahead leaves by service or by giving up.
        Theta is today's abandoned / total waiting time; with no abandons it is (k+1) / (s mu).
        """
        slots = 0
        idle = False
        for agent_id in queue.members:
            agent = self._agents[agent_id]
            if agent.status.accepts_work:
                slots += agent.capacity.get(channel, 0)
                idle = idle or channel in agent.open_channels
        if ahead == 0 and idle:
            return 0.0
        if slots == 0:
            return None
        handle_s = queue.handle_s_ewma or queue.config.expected_handle_s
        service_rate = slots / handle_s
        stats = queue.stats
        waited_s = stats.wait_handled_s + stats.wait_abandoned_s
        theta = stats.abandoned / waited_s if stats.abandoned and waited_s > 0 else 0.0
        return expected_wait_s(service_rate, theta, ahead)

    # --- agents: time, presence, capacity, indexes ----------------------------------------

    def _query_now(self) -> float:
        return max(self._now, self._clock.now())

    @staticmethod
    def _times_until(agent: AgentState, now: float) -> tuple[float, float, float]:
        """(logged in, available or handling, handling) seconds up to `now` (METRICS.md)."""
        logged_in_s, ready_s, handling_s = agent.logged_in_s, agent.ready_s, agent.handling_s
        dt = now - agent.accounted_at
        if dt > 0:
            if agent.status.logged_in or agent.tasks:  # work in hand is logged-in time
                logged_in_s += dt
            if agent.tasks:
                handling_s += dt
                ready_s += dt
            elif agent.status.accepts_work:
                ready_s += dt
        return logged_in_s, ready_s, handling_s

    def _account(self, agent: AgentState) -> None:
        agent.logged_in_s, agent.ready_s, agent.handling_s = self._times_until(agent, self._now)
        agent.accounted_at = self._now

    def _open_channels(self, agent: AgentState) -> frozenset[Channel]:
        if not agent.status.accepts_work:
            return _NO_CHANNELS
        in_progress = agent.in_progress
        for channel in self._rules.exclusive:
            if in_progress.get(channel):
                return _NO_CHANNELS
        blocked_by = self._rules.blocked_by
        if not blocked_by:
            return frozenset([channel for channel, slots in agent.capacity.items()
                              if slots > in_progress.get(channel, 0)])
        open_now = []
        for channel, slots in agent.capacity.items():
            if slots > in_progress.get(channel, 0):
                blockers = blocked_by.get(channel)
                if blockers and any(in_progress.get(b) for b in blockers):
                    continue
                open_now.append(channel)
        return frozenset(open_now)

    def _presence(self, agent: AgentState) -> str:
        if agent.tasks and agent.status.accepts_work:
            if all(t.phase is TaskPhase.WRAPPING for t in agent.tasks.values()):
                return WRAP_UP
            return BUSY
        return agent.status.name

    def _change_status(self, agent: AgentState, status: StatusDefinition, reason: str) -> None:
        self._account(agent)
        agent.status = status
        agent.status_since = self._now
        if status.accepts_work:
            agent.missed_offers = 0
        else:
            # Out of every index first, so that withdrawn tasks cannot come straight back.
            agent.open_channels = frozenset()
            self._reindex(agent)
            for offer in list(agent.offers.values()):
                self._close_offer(offer, OfferPhase.RESCINDED, f"agent is {status.name}",
                                  settle=False)
        self._settle_agent(agent, reason=reason or "status", force_event=True)

    def _settle_agent(self, agent: AgentState, reason: str = "", force_event: bool = False) -> None:
        """After any change to an agent: offer it work it can take, then refresh presence/index."""
        agent.open_channels = self._open_channels(agent)
        if agent.open_channels:
            self._route_agent(agent)
        presence = self._presence(agent)
        if presence != agent.presence or force_event:
            previous = agent.presence
            if presence != previous:
                agent.presence = presence
                agent.presence_since = self._now
            self._out.append(
                ev.AgentStatusChanged(
                    at=self._now, seq=self._next_seq(), agent_id=agent.id,
                    status=agent.status.name, presence=presence, previous_presence=previous,
                    reason=reason,
                )
            )
        self._reindex(agent)

    def _reindex(self, agent: AgentState) -> None:
        old = agent.idle_keys
        open_now = agent.open_channels
        if not old and not open_now:
            return
        new: dict[tuple[Pool, Channel], IdleEntry] = {}
        if open_now:
            contacts = agent.contacts_today if agent.contacts_day == self._today() else 0
            for pool in agent.pools:
                if pool.idle:
                    entry = None
                    for channel in pool.idle:
                        if channel in open_now:
                            if entry is None:
                                entry = pool.idle_entry(agent, contacts)
                            new[(pool, channel)] = entry
        for key, entry in old.items():
            if new.get(key) != entry:
                key[0].idle[key[1]].remove(entry)
        for key, entry in new.items():
            if old.get(key) != entry:
                key[0].idle[key[1]].add(entry)
        agent.idle_keys = new

    def _update_membership(self, agent: AgentState) -> None:
        for queue in self._queues.values():
            if queue.expression.evaluate(agent.attributes, agent.skills):
                queue.members.add(agent.id)
                agent.queues.add(queue.config.id)
            else:
                queue.members.discard(agent.id)
                agent.queues.discard(queue.config.id)
            for pool in queue.pools:
                if pool.explicit_agents is None:
                    self._set_pool_member(pool, agent, pool.admits(agent))
        for pool in self._explicit_pools.get(agent.id, ()):
            self._set_pool_member(pool, agent, pool.admits(agent))

    def _set_pool_member(self, pool: Pool, agent: AgentState, member: bool) -> None:
        if member:
            if pool not in agent.pools:
                pool.members.add(agent.id)
                agent.pools.add(pool)
                for line in pool.waiting.values():
                    self._attach_line(agent, line)
        elif pool in agent.pools:
            pool.members.discard(agent.id)
            agent.pools.discard(pool)
            for line in pool.waiting.values():
                self._detach_line(agent, line)

    @staticmethod
    def _attach_line(agent: AgentState, line: Line) -> None:
        """Add a line to the agent's group of its channel and queue priority."""
        groups = agent.lines.setdefault(line.channel, [])
        for group in groups:
            if group.rank == line.rank:
                break
        else:
            group = LineGroup(line.rank)
            insort(groups, group, key=_group_rank)
        group.lines.append(line)
        group.classify()

    @staticmethod
    def _detach_line(agent: AgentState, line: Line) -> None:
        groups = agent.lines[line.channel]
        for group in groups:
            if group.rank == line.rank:
                group.lines.remove(line)
                group.classify()
                if not group.lines:
                    groups.remove(group)
                return

    # --- pools ----------------------------------------------------------------------------------

    def _pool_for(self, task: TaskState, step: PolicyStep) -> Pool | None:
        """The pool of the task's current step; None when the step targets nobody."""
        queue = self._queues[step.queue]
        explicit: tuple[str, ...] | None = None
        if step.agents:
            explicit = task.preferred_agents if step.agents == (PREFERRED,) else step.agents
            if not explicit:
                return None
        expression = self._step_expression(step.expression) if step.expression else None
        binding = expression.task_binding(task.attributes) if expression else ()
        required = tuple(
            sorted((skill, max(1, level - step.relax_proficiency))
                   for skill, level in task.required_skills.items())
        )
        key = (step.queue, explicit, step.expression, binding, required)
        pool = self._pools.get(key)
        if pool is not None:
            return pool
        step_predicate = self._bind(expression, binding, task) if expression else None

        def predicate(attributes: Mapping[str, object], skills: Mapping[str, int]) -> bool:
            for skill, level in required:
                if skills.get(skill, 0) < level:
                    return False
            return step_predicate is None or step_predicate(attributes, skills)

        rank_skills = tuple(s for s, _ in required) or queue.config.proficiency_skills
        self._pool_seq += 1
        pool = Pool(self._pool_seq, key, queue, predicate, rank_skills,
                    frozenset(explicit) if explicit is not None else None)
        self._pools[key] = pool
        queue.pools.append(pool)
        candidates = explicit if explicit is not None else tuple(queue.members)
        for agent_id in candidates:
            agent = self._agents.get(agent_id)
            if agent is not None and pool.admits(agent):
                self._set_pool_member(pool, agent, True)
        if explicit is not None:
            for agent_id in explicit:
                self._explicit_pools.setdefault(agent_id, set()).add(pool)
        return pool

    def _bind(self, expression: Expression, binding: tuple[object, ...],
              task: TaskState) -> AgentPredicate:
        key = (expression.source, binding)
        predicate = self._bound.get(key)
        if predicate is None:
            predicate = self._bound[key] = expression.bind(task.attributes)
        return predicate

    def _idle_index(self, pool: Pool, channel: Channel) -> SortedList:
        index = pool.idle.get(channel)
        if index is None:
            index = pool.idle[channel] = SortedList()
            for agent_id in pool.members:
                agent = self._agents[agent_id]
                if channel in agent.open_channels:
                    contacts = agent.contacts_today if agent.contacts_day == self._today() else 0
                    entry = pool.idle_entry(agent, contacts)
                    index.add(entry)
                    agent.idle_keys[(pool, channel)] = entry
        return index

    def _release_pool(self, task: TaskState) -> None:
        pool = task.pool
        if pool is None:
            return
        task.pool = None
        pool.references -= 1
        if pool.references == 0 and pool.explicit_agents is not None:
            del self._pools[pool.key]
            pool.queue.pools.remove(pool)
            for agent_id in pool.explicit_agents:
                pools = self._explicit_pools.get(agent_id)
                if pools is not None:
                    pools.discard(pool)
                    if not pools:
                        del self._explicit_pools[agent_id]
                agent = self._agents.get(agent_id)
                if agent is not None and pool in agent.pools:
                    agent.pools.discard(pool)
                    for line in pool.waiting.values():
                        self._detach_line(agent, line)
                    for channel, index in pool.idle.items():
                        entry = agent.idle_keys.pop((pool, channel), None)
                        if entry is not None:
                            index.remove(entry)

    # --- routing ------------------------------------------------------------------------------

    def _enter_step(self, task: TaskState, index: int, reason: str) -> None:
        steps = task.policy.steps
        while True:
            if index >= len(steps):
                self._time_out(task)
                return
            step = steps[index]
            pool = self._pool_for(task, step)
            if pool is not None:
                break
            index += 1
        queue = pool.queue
        config = queue.config
        entering_queue = reason in ("created", "transfer") or task.queue_id != config.id
        self._place(task, pool, index)
        if entering_queue:
            self._stats(queue).count_offered(by_transfer=reason == "transfer")
        self._out.append(
            ev.TaskQueued(
                at=self._now, seq=self._next_seq(), task_id=task.id, queue_id=config.id,
                step_index=index, reason=reason,
            )
        )
        if step.timeout_s is not None:
            self._schedule(self._now + step.timeout_s, "step", task.id, task.timer_token)
        self._route_task(task)

    def _advance_step(self, task: TaskState) -> None:
        self._detach_waiting(task)
        previous = self._queues[task.queue_id]
        self._enter_step(task, task.step_index + 1, "step_timeout")
        if task.phase is not TaskPhase.ENDED and task.queue_id != previous.config.id:
            self._stats(previous).overflowed_out += 1

    def _time_out(self, task: TaskState) -> None:
        policy = task.policy
        queue = self._queues.get(task.queue_id)
        if queue is not None:
            self._stats(queue).timed_out += 1
        self._out.append(
            ev.TaskTimedOut(
                at=self._now, seq=self._next_seq(), task_id=task.id, queue_id=task.queue_id,
                action=policy.final_action.value, reason=policy.final_reason,
                wait_s=self._now - task.enqueued_at,
            )
        )
        self._end(task, Outcome.TIMED_OUT)

    def _route_task(self, task: TaskState) -> None:
        """Find agents for a waiting task now, or leave it waiting at its place in line."""
        pool = task.pool
        assert pool is not None
        agent_ids = self._choose_agents(pool, task)
        if not agent_ids:
            task.phase = TaskPhase.WAITING
            if task.line is None:
                self._join_line(task, pool)
            return
        self._leave_line(task)
        self._offer(task, pool, agent_ids)

    def _join_line(self, task: TaskState, pool: Pool) -> None:
        line = pool.waiting.get(task.channel) or self._open_line(pool, task.channel)
        line.add(task.entry, bool(task.declined_until))
        task.line = line

    def _open_line(self, pool: Pool, channel: Channel) -> Line:
        line = pool.waiting[channel] = Line(pool, channel)
        for agent_id in pool.members:
            self._attach_line(self._agents[agent_id], line)
        return line

    @staticmethod
    def _leave_line(task: TaskState) -> None:
        line = task.line
        if line is not None:
            line.remove(task.entry)
            task.line = None


    def _declined(self, task: TaskState, agent_id: str) -> bool:
        until = task.declined_until.get(agent_id)
        if until is None:
            return False
        if until <= self._now:
            del task.declined_until[agent_id]
            return False
        return True

    def _choose_agents(self, pool: Pool, task: TaskState) -> list[str]:
        index = self._idle_index(pool, task.channel)
        if not index:
            return []
        strategy = pool.queue.config.strategy
        declined = task.declined_until
        if strategy is Strategy.RING_ALL:
            return [str(e[-1]) for e in index
                    if not declined or not self._declined(task, str(e[-1]))]
        size = len(index)
        if strategy is Strategy.ROUND_ROBIN:
            start = index.bisect_left((pool.queue.rr_cursor + 1,))
        elif strategy is Strategy.SEQUENTIAL:
            start = index.bisect_left((task.hunt_cursor + 1,))
        elif strategy is Strategy.RANDOM:
            start = self._rng.randrange(size)
        else:
            start = 0
        if not declined:
            chosen = index[start % size]
        else:
            for i in range(size):
                candidate = index[(start + i) % size]
                if not self._declined(task, str(candidate[-1])):
                    chosen = candidate
                    break
            else:
                return []
        if strategy is Strategy.ROUND_ROBIN:
            pool.queue.rr_cursor = cast(int, chosen[0])
        elif strategy is Strategy.SEQUENTIAL:
            task.hunt_cursor = cast(int, chosen[0])
        return [str(chosen[-1])]

    def _route_agent(self, agent: AgentState) -> None:
        """Offer the agent the best waiting tasks it can take, while it has open channels.

        The hot path of a loaded center: it compares the heads of the agent's lines by
        (queue priority, score now, enqueued_at, seq) without touching the tasks themselves.
        """
        now = self._now
        agent_id = agent.id
        lines_by_channel = agent.lines
        while agent.open_channels:
            best_rank = 0
            best_key: tuple[float, float, int] | WaitingEntry | None = None
            best_line: Line | None = None
            for channel in agent.open_channels:
                for group in lines_by_channel.get(channel, ()):  # better queue priority first
                    rank = group.rank
                    if best_key is not None:
                        if rank > best_rank:
                            break
                        if rank < best_rank:
                            best_key = None
                    aged = group.aged
                    for line in group.lines:
                        head = line.head
                        if head is None:
                            continue
                        # Without aging the head itself is the key: (-score, enqueued_at, seq).
                        aging = line.aging_per_s if aged else 0.0
                        key = (head[0] - aging * now, head[1], head[2]) if aging else head
                        if best_key is not None and key >= best_key:
                            continue
                        if line.declined and head[3] in line.declined:
                            head = self._first_not_declined(line, agent_id)
                            if head is None:
                                continue
                            key = (head[0] - aging * now, head[1], head[2]) if aging else head
                            if best_key is not None and key >= best_key:
                                continue
                        best_rank = rank
                        best_key = key
                        best_line = line
                        best_entry = head
                    if best_key is not None and best_rank == rank:
                        break  # later groups have a lower queue priority
            if best_line is None:
                return
            best_task = self._tasks[best_entry[3]]
            best_line.remove(best_entry)
            best_task.line = None
            best_pool = best_line.pool
            if best_pool.queue.config.strategy is Strategy.RING_ALL:
                others = [a for a in self._choose_agents(best_pool, best_task) if a != agent.id]
                self._offer(best_task, best_pool, [agent.id, *others], settling=agent)
            else:
                if best_pool.queue.config.strategy is Strategy.SEQUENTIAL:
                    best_task.hunt_cursor = cast(int, best_pool.idle_entry(agent, 0)[0])
                elif best_pool.queue.config.strategy is Strategy.ROUND_ROBIN:
                    best_pool.queue.rr_cursor = agent.ordinal
                self._offer(best_task, best_pool, [agent.id], settling=agent)

    def _first_not_declined(self, line: Line, agent_id: str) -> WaitingEntry | None:
        """The first task in line this agent has not recently declined (slow path)."""
        declined = line.declined
        for entry in line.first(DECLINED_SCAN_LIMIT):
            task_id = entry[3]
            if task_id not in declined:
                return entry
            task = self._tasks[task_id]
            if not self._declined(task, agent_id):
                if not any(until > self._now for until in task.declined_until.values()):
                    declined.discard(task_id)
                return entry
        return None

    def _offer(self, task: TaskState, pool: Pool, agent_ids: list[str],
               settling: AgentState | None = None) -> None:
        """Offer the task to each agent; `settling` is an agent whose caller re-indexes it."""
        config = pool.queue.config
        expires_at = self._now + config.offer_timeout_s
        task.phase = TaskPhase.OFFERED
        for agent_id in agent_ids:
            agent = self._agents[agent_id]
            seq = self._next_seq()
            offer = Offer(
                id=f"O{seq}",
                task_id=task.id,
                agent_id=agent_id,
                queue_id=config.id,
                created_at=self._now,
                expires_at=expires_at,
            )
            task.offers[offer.id] = offer
            agent.offers[offer.id] = offer
            self._offers[offer.id] = offer
            agent.in_progress[task.channel] = agent.in_progress.get(task.channel, 0) + 1
            agent.open_channels = (_NO_CHANNELS if task.channel in self._rules.exclusive
                                   else self._open_channels(agent))
            self._schedule(expires_at, "offer", offer.id)
            self._out.append(
                ev.OfferCreated(
                    at=self._now, seq=seq, offer_id=offer.id, task_id=task.id,
                    agent_id=agent_id, queue_id=config.id, channel=task.channel,
                    expires_at=expires_at,
                )
            )
            if agent is not settling:
                self._reindex(agent)

    def _unlink_offer(self, offer: Offer, task: TaskState, agent: AgentState) -> None:
        del self._offers[offer.id]
        del task.offers[offer.id]
        del agent.offers[offer.id]
        agent.in_progress[task.channel] -= 1

    def _close_offer(self, offer: Offer, phase: OfferPhase, reason: str,
                     settle: bool = True) -> None:
        """End a pending offer without acceptance; the task goes back to its place in line."""
        task = self._tasks[offer.task_id]
        agent = self._agents[offer.agent_id]
        offer.phase = phase
        self._unlink_offer(offer, task, agent)
        now, seq = self._now, self._next_seq()
        if phase is OfferPhase.REJECTED:
            self._out.append(ev.OfferRejected(at=now, seq=seq, offer_id=offer.id, task_id=task.id,
                                        agent_id=agent.id, reason=reason))
        elif phase is OfferPhase.TIMED_OUT:
            self._out.append(ev.OfferTimedOut(at=now, seq=seq, offer_id=offer.id, task_id=task.id,
                                        agent_id=agent.id))
        else:
            self._out.append(ev.OfferRescinded(at=now, seq=seq, offer_id=offer.id, task_id=task.id,
                                         agent_id=agent.id, reason=reason))
        if phase is not OfferPhase.RESCINDED or reason.startswith("agent is"):
            delay = self._queues[offer.queue_id].config.reoffer_delay_s
            if delay > 0:
                task.declined_until[agent.id] = self._now + delay
                self._schedule(self._now + delay, "retry", task.id)
        not_ready = False
        if phase is OfferPhase.TIMED_OUT:
            agent.missed_offers += 1
            if agent.missed_offers >= self._max_missed and agent.status.accepts_work:
                # Out of the indexes before this task looks for an agent, so it cannot come
                # straight back; the agent's other offers are withdrawn after it, keeping order.
                not_ready = True
                agent.open_channels = _NO_CHANNELS
                self._reindex(agent)
        if task.phase is TaskPhase.OFFERED and not task.offers:
            task.phase = TaskPhase.WAITING
            if task.step_expired:
                self._advance_step(task)
            else:
                self._out.append(ev.TaskRequeued(at=self._now, seq=self._next_seq(),
                                                 task_id=task.id, queue_id=task.queue_id))
                self._route_task(task)
        if not_ready:
            self._change_status(agent, self._missed_status, f"{agent.missed_offers} offers missed")
        elif settle:
            self._settle_agent(agent)

    def _detach_waiting(self, task: TaskState) -> None:
        """Take a waiting or offered task out of line (abandon, cancel, step change)."""
        if task.phase is TaskPhase.WAITING:
            self._leave_line(task)
        elif task.phase is TaskPhase.OFFERED:
            task.phase = TaskPhase.WAITING
            for offer in list(task.offers.values()):
                agent = self._agents[offer.agent_id]
                offer.phase = OfferPhase.RESCINDED
                self._unlink_offer(offer, task, agent)
                self._out.append(
                    ev.OfferRescinded(
                        at=self._now, seq=self._next_seq(), offer_id=offer.id, task_id=task.id,
                        agent_id=agent.id, reason="task left the queue",
                    )
                )
                self._settle_agent(agent)

    def _complete(self, task: TaskState, wrap_up_follows: bool = False) -> None:
        agent = self._agents[task.agent_id or ""]
        config = self._queues[task.queue_id].config
        self._account(agent)
        task.completed_at = self._now
        self._out.append(
            ev.TaskCompleted(
                at=self._now, seq=self._next_seq(), task_id=task.id, agent_id=agent.id,
                queue_id=task.queue_id, talk_s=self._now - (task.accepted_at or self._now),
            )
        )
        if config.wrap_up_s is None and not wrap_up_follows:
            self._release(task)
            self._end(task, Outcome.COMPLETED)
            self._settle_agent(agent)
            return
        task.phase = TaskPhase.WRAPPING
        task.timer_token += 1
        if config.wrap_up_s is not None and math.isfinite(config.wrap_up_s):
            self._schedule(self._now + config.wrap_up_s, "wrap", task.id, task.timer_token)
        self._settle_agent(agent)

    def _wrap_up(self, task: TaskState, disposition: str | None, timed_out: bool) -> None:
        agent = self._agents[task.agent_id or ""]
        self._out.append(
            ev.TaskWrappedUp(
                at=self._now, seq=self._next_seq(), task_id=task.id, agent_id=agent.id,
                disposition=disposition, wrap_up_s=self._now - (task.completed_at or self._now),
                timed_out=timed_out,
            )
        )
        self._release(task)
        self._end(task, Outcome.COMPLETED)
        self._settle_agent(agent)

    def _release(self, task: TaskState) -> None:
        """Free the agent's slot held by an assigned or wrapping task."""
        if task.agent_id is None or task.phase not in (TaskPhase.ASSIGNED, TaskPhase.WRAPPING):
            return
        agent = self._agents[task.agent_id]
        self._account(agent)
        del agent.tasks[task.id]
        agent.in_progress[task.channel] -= 1
        agent.idle_since = self._now
        task.agents_served.append(agent.id)
        if task.accepted_at is not None and task.initiated_by is None:
            # Agent-initiated work is no handling of the queue's contacts: EWT ignores it.
            queue = self._queues[task.queue_id]
            handle_s = self._now - task.accepted_at
            previous = queue.handle_s_ewma
            queue.handle_s_ewma = (handle_s if previous == 0 else
                                   previous + HANDLE_TIME_SMOOTHING * (handle_s - previous))
        task.agent_id = None

    def _end(self, task: TaskState, outcome: Outcome) -> None:
        agent_id = task.agent_id
        task.phase = TaskPhase.ENDED
        task.outcome = outcome
        task.timer_token += 1
        self._release_pool(task)
        del self._tasks[task.id]
        self.tasks_ended += 1
        self._out.append(ev.TaskEnded(at=self._now, seq=self._next_seq(), task_id=task.id,
                                outcome=outcome.value))
        if agent_id is not None:
            agent = self._agents.get(agent_id)
            if agent is not None:
                self._settle_agent(agent)


__all__ = ["AgentFigures", "Engine", "QueueFigures", "TaskPosition"]

"""The routing use case: one tenant's engine, durable.

The engine is in memory and single-writer; the store is the system of record. Commands run one at
a time: the engine decides, then its events are appended to the event log and the task and agent
rows they change are updated, and only once that is committed does the caller get the events
back. Commands made while a commit is in flight are committed together in the next transaction
(group commit, as chat messages are): one disk flush for the batch instead of one each, in the
order the engine ran them. A restart rebuilds the engine from the store
(`engine_records.load_routing`) and continues the event numbering, so nothing is lost or doubled.
If a commit fails, the engine is rebuilt from the store and the batch's commands (and those run
after them) are run again one per transaction, so a bad command fails alone and memory never
stays ahead of what was stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.core import events as ev
from omnicc.core.clock import Clock
from omnicc.core.engine import Engine
from omnicc.core.model import TaskRequest
from omnicc.store.database import Database
from omnicc.store.engine_records import load_routing
from omnicc.store.repositories import Agents, Tasks, Tenants
from omnicc.store.repositories.events import Events, NewEvent
from omnicc.store.tables import Event, Queue, Task

log = logging.getLogger("omnicc.routing")

EngineCommand = Callable[[Engine], list[ev.Event]]
Alongside = Callable[[AsyncSession, list[ev.Event]], Awaitable[None]]
"""Writes more rows in the transaction that stores a command's events, before the task rows
(a chat's conversation, contact and first message). A task's `contact_id` attribute links its
row to its contact."""
CommitListener = Callable[[list[ev.Event]], None]
"""Told of every committed batch of events, in order (the bus publisher)."""

MAX_BATCH = 64
"""Commands per transaction at most: bounds the time the writer holds the database."""

FIGURE_EVENT_TYPES = tuple(cls.type for cls in (
    ev.TaskQueued, ev.OfferAccepted, ev.TaskAbandoned, ev.TaskTimedOut))
"""What `Engine.restore_figures` counts."""


class StoreOutOfStep(RuntimeError):
    """The event log was written by someone else: this process is not the tenant's writer."""


@dataclass(slots=True, eq=False)
class _Command:
    """A command the engine ran, waiting for its events to be committed."""

    command: EngineCommand | None
    alongside: Alongside | None
    events: list[ev.Event]
    done: asyncio.Future[list[ev.Event]] | None = None


class RoutingService:
    """One tenant's routing engine with its state committed before each command returns."""

    def __init__(self, database: Database, tenant_id: str, clock: Clock) -> None:
        self._database = database
        self._tenant_id = tenant_id
        self._clock = clock
        self._lock = asyncio.Lock()
        self._engine: Engine | None = None
        self._queue_policies: dict[str, str] = {}
        """Queue id -> the routing policy its new tasks follow (`Queue.policy_id`)."""
        self._listeners: list[CommitListener] = []
        self._uncommitted: list[_Command] = []
        """Run by the engine, not yet in a transaction (in the engine's order)."""
        self._writer: asyncio.Task[None] | None = None
        self.commits = 0
        """Transactions written for commands (batches and retries)."""
        self.changed = asyncio.Event()
        """Set after every commit: the engine's next deadline may have moved."""

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def engine(self) -> Engine:
        """For queries; change state only through `run` or the helpers below."""
        if self._engine is None:
            raise RuntimeError("the routing service is not started")
        return self._engine

    async def start(self) -> list[ev.Event]:
        """Build the engine from the store and commit what restoring it caused (new offers)."""
        async with self._lock:
            return await self._rebuild()

    def listen(self, listener: CommitListener) -> None:
        """Call `listener` with every batch of events after it is committed."""
        self._listeners.append(listener)

    async def reload(self) -> list[ev.Event]:
        """Rebuild the engine from the store after its configuration rows changed (once what
        the engine ran before is committed)."""
        while True:
            await self.flushed()
            async with self._lock:
                if self._uncommitted or self._writing():
                    continue  # commands came meanwhile
                return await self._rebuild()

    async def flushed(self) -> None:
        """Return once every command run so far is committed (or failed)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    async def run(
        self, command: EngineCommand, *, alongside: Alongside | None = None
    ) -> list[ev.Event]:
        """Run an engine command and commit its events before returning them.

        `alongside` writes more rows in the same transaction (it must not read the engine:
        the engine may be ahead by the commands of the same batch); if it fails, nothing of
        its command is stored and the command's error is raised, as for a failed commit.
        The commit goes on when the caller is cancelled meanwhile.
        """
        async with self._lock:
            events = command(self.engine)
            if not events and alongside is None:
                return events
            done: asyncio.Future[list[ev.Event]] = asyncio.get_running_loop().create_future()
            self._uncommitted.append(_Command(command, alongside, events, done))
            if not self._writing():
                self._writer = asyncio.create_task(self._write(), name="routing-commits")
        return await asyncio.shield(done)

    async def create_task(
        self, request: TaskRequest, *, alongside: Alongside | None = None
    ) -> list[ev.Event]:
        """Create a task; it gets a globally unique id when the request has none. A task
        for a queue with a routing policy follows the policy (agent-initiated work excepted)."""
        return await self.create_tasks([request], alongside=alongside)

    async def create_tasks(
        self, requests: Sequence[TaskRequest], *, alongside: Alongside | None = None
    ) -> list[ev.Event]:
        """`create_task` for many in one command and one commit (a batch of received
        messages). Their queues are checked first, so an unknown one refuses all of them
        before any is made."""
        routed: list[TaskRequest] = []
        for request in requests:
            if request.id is None:
                request = replace(request, id=uuid.uuid4().hex)
            policy = self._queue_policies.get(request.queue or "")
            if policy is not None and request.agent_id is None:
                request = replace(request, queue=None, policy=policy)
            routed.append(request)

        def create(engine: Engine) -> list[ev.Event]:
            for request in routed:
                if request.queue is not None:
                    engine.queue(request.queue)  # NotFound before any task is made
            return [event for request in routed for event in engine.create_task(request)]

        return await self.run(create, alongside=alongside)

    async def advance(self) -> list[ev.Event]:
        """Fire due timers (the server calls this at `engine.next_deadline()`)."""
        return await self.run(lambda engine: engine.advance())

    def _writing(self) -> bool:
        return self._writer is not None and not self._writer.done()

    async def _write(self) -> None:
        """Commit what the engine ran, a batch per transaction, until nothing is left."""
        while self._uncommitted:
            batch = self._uncommitted[:MAX_BATCH]
            del self._uncommitted[:MAX_BATCH]
            try:
                await self._store(batch)
            except asyncio.CancelledError:
                for waiting in [*batch, *self._uncommitted]:
                    if waiting.done is not None and not waiting.done.done():
                        waiting.done.cancel()
                self._uncommitted.clear()
                raise
            except Exception as error:
                await self._recover(batch, error)
            else:
                self._committed(batch)

    async def _recover(self, batch: list[_Command], error: Exception) -> None:
        """A batch failed: the engine is rebuilt from the store, then the batch's commands and
        those run after them are run again and committed one by one (a lone command that
        failed fails at once)."""
        async with self._lock:
            again = [*batch, *self._uncommitted]
            self._uncommitted.clear()
            try:
                await self._rebuild()
            except Exception as rebuild_error:
                for item in again:
                    _fail(item, rebuild_error)
                return
            if len(again) == 1:
                _fail(again[0], error)
                return
            for item in again:
                assert item.command is not None
                try:
                    item.events = item.command(self.engine)
                    await self._store([item])
                except Exception as alone:
                    _fail(item, alone)
                    try:
                        await self._rebuild()
                    except Exception as rebuild_error:
                        for rest in again[again.index(item) + 1:]:
                            _fail(rest, rebuild_error)
                        return
                else:
                    self._committed([item])

    async def _rebuild(self) -> list[ev.Event]:
        async with self._database.session() as session:
            tenant = await Tenants(session).get(self._tenant_id)
            snapshot = await load_routing(session, self._tenant_id)
            policies = (await session.execute(select(Queue.id, Queue.policy_id).where(
                Queue.tenant_id == self._tenant_id, Queue.policy_id.is_not(None)))).all()
            last_seq = await Events(session, self._tenant_id).last_seq()
        engine = Engine(self._clock, timezone=tenant.timezone, last_event_seq=last_seq)
        events: list[ev.Event] = []
        for queue in snapshot.queues:
            events += engine.configure_queue(queue)
        for policy in snapshot.policies:
            events += engine.configure_policy(policy)
        for agent in snapshot.agents:
            events += engine.configure_agent(agent)
        events += engine.restore(snapshot.tasks)
        engine.restore_figures(await self._todays_events(engine))
        self._engine = engine
        self._queue_policies = {queue: policy for queue, policy in policies if policy}
        if events:
            restored = _Command(None, None, events)
            await self._store([restored])
            self._committed([restored])
        return events

    async def _todays_events(self, engine: Engine) -> list[ev.Event]:
        """The stored events that count in today's live figures."""
        day_start = _datetime(engine.day_start_s())
        statement = (
            select(Event)
            .where(Event.tenant_id == self._tenant_id, Event.at >= day_start,
                   Event.type.in_(FIGURE_EVENT_TYPES))
            .order_by(Event.seq)
        )
        async with self._database.session() as session:
            rows = (await session.execute(statement)).scalars().all()
            return [ev.decode_event(row.type, row.at.timestamp(), row.seq, row.payload)
                    for row in rows]

    async def _store(self, batch: list[_Command]) -> None:
        """One transaction for the batch's events, their rows and what they write alongside."""
        events = [event for item in batch for event in item.events]
        self.commits += 1
        async with self._database.session() as session:
            stored = await Events(session, self._tenant_id).append(
                [NewEvent(type=e.type, payload=ev.encode_payload(e), at=_datetime(e.at))
                 for e in events]
            )
            if stored and [row.seq for row in stored] != [e.seq for e in events]:
                raise StoreOutOfStep(
                    f"tenant {self._tenant_id}: stored seqs {stored[0].seq}.. differ from the "
                    f"engine's {events[0].seq}..; another process writes this tenant's events"
                )
            rows = _TaskRows(session, self._tenant_id)
            for item in batch:
                # The rows a channel writes (a chat's conversation and contact) come first:
                # the task rows refer to them.
                if item.alongside is not None:
                    await item.alongside(session, item.events)
                await rows.apply(item.events)

    def _committed(self, batch: list[_Command]) -> None:
        """Tell the listeners, in order, then the commands' callers."""
        self.changed.set()
        for item in batch:
            if item.events:
                for listener in self._listeners:
                    try:
                        listener(item.events)
                    except Exception:  # a listener's fault must not keep the callers waiting
                        log.exception("routing: a commit listener failed")
        for item in batch:
            if item.done is not None and not item.done.done():
                item.done.set_result(item.events)


class WallClock:
    """The clock of a running server: POSIX seconds from the system."""

    def now(self) -> float:
        return time.time()


class RoutingTimers:
    """Fires the engine's timers (offer timeouts, policy steps, wrap-up) as wall time passes."""

    def __init__(self, service: RoutingService, clock: Clock, *, max_sleep_s: float = 1.0) -> None:
        self._service = service
        self._clock = clock
        self._max_sleep_s = max_sleep_s

    async def run(self) -> None:
        """Until cancelled: sleep to the next deadline (or a change), then advance the engine."""
        service = self._service
        while True:
            deadline = service.engine.next_deadline()
            now = self._clock.now()
            if deadline is not None and deadline <= now:
                await service.advance()
                continue
            sleep_s = self._max_sleep_s if deadline is None else min(self._max_sleep_s,
                                                                     deadline - now)
            service.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(sleep_s):
                    await service.changed.wait()


class _TaskRows:
    """Keeps the task and agent rows in step with the engine's events, in the same transaction."""

    def __init__(self, session: AsyncSession, tenant_id: str) -> None:
        self._tasks = Tasks(session, tenant_id)
        self._agents = Agents(session, tenant_id)
        self._rows: dict[str, Task] = {}
        self._new: list[Task] = []
        self._changed: dict[str, Task] = {}

    async def apply(self, events: list[ev.Event]) -> None:
        """One command's events (a batch applies its commands' in turn)."""
        for event in events:
            await self._apply(event)
        if self._new:
            await self._tasks.add_all(self._new)  # one flush for the command's new tasks
            for row in self._new:
                self._changed.pop(row.id, None)
            self._new = []
        for row in self._changed.values():
            await self._tasks.save(row)
        self._changed.clear()

    async def _row(self, task_id: str) -> Task:
        row = self._rows.get(task_id)
        if row is None:
            row = self._rows[task_id] = await self._tasks.get(task_id)
        self._changed[task_id] = row
        return row

    async def _apply(self, event: ev.Event) -> None:  # one branch per event type
        at = _datetime(event.at)
        match event:
            case ev.TaskCreated():
                queue_id, policy_id = _route_of(event.policy_id)
                row = Task(
                    id=event.task_id, channel=event.channel, queue_id=queue_id,
                    policy_id=policy_id, priority=event.priority,
                    conversation_id=event.conversation_id,
                    contact_id=_text_or_none(event.attributes.get("contact_id")),
                    attributes=dict(event.attributes), required_skills=dict(event.required_skills),
                    created_at=at, phase="waiting",
                    enqueued_at=at if event.enqueued_at is None else _datetime(event.enqueued_at),
                )
                self._rows[event.task_id] = row
                self._new.append(row)
            case ev.TaskQueued():
                row = await self._row(event.task_id)
                row.queue_id, row.phase, row.step_entered_at = event.queue_id, "waiting", at
                row.step_index = event.step_index
                if event.reason == "transfer":
                    # The engine's transfer policy is not a stored policy: the task goes on in
                    # the queue it was transferred to (or came from, when sent to an agent).
                    row.policy_id, row.step_index, row.enqueued_at = None, 0, at
            case ev.TaskRequeued():
                row = await self._row(event.task_id)
                row.phase, row.agent_id = "waiting", None
            case ev.TaskReprioritised():
                (await self._row(event.task_id)).priority = event.priority
            case ev.OfferCreated():
                (await self._row(event.task_id)).phase = "offered"
            case ev.OfferAccepted():
                row = await self._row(event.task_id)
                row.phase, row.agent_id, row.accepted_at = "assigned", event.agent_id, at
            case ev.TaskAssigned():  # agent-initiated work: assigned without an offer
                row = await self._row(event.task_id)
                row.phase, row.agent_id, row.accepted_at = "assigned", event.agent_id, at
                row.step_entered_at = at
            case ev.TaskTransferred():
                row = await self._row(event.task_id)
                row.agent_id, row.transferred = None, True
            case ev.TaskCompleted():
                row = await self._row(event.task_id)
                row.phase, row.completed_at = "wrapping", at
            case ev.TaskEnded():
                row = await self._row(event.task_id)
                row.phase, row.outcome, row.ended_at = "ended", event.outcome, at
            case ev.AgentStatusChanged():
                agent = await self._agents.get(event.agent_id)
                if agent.status != event.status:
                    agent.status, agent.status_since = event.status, at
                    await self._agents.save(agent)


def _fail(item: _Command, error: BaseException) -> None:
    if item.done is not None and not item.done.done():
        item.done.set_exception(error)


def _route_of(policy_id: str) -> tuple[str | None, str | None]:
    """(queue_id, policy_id) of a task row: the engine's implicit `queue:<id>` is a queue."""
    kind, _, queue_id = policy_id.partition(":")
    if kind == "queue":
        return queue_id, None
    return None, policy_id


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _datetime(at_s: float) -> datetime:
    return datetime.fromtimestamp(at_s, UTC)

"""The running contact center: every tenant's routing engine, timers and chats in one process.

`ContactCenter.start` builds each tenant's `TenantRuntime` from the store (the engine restored,
the open chats known) and starts its background work: the routing timers, and a one-second
pulse that tells waiting customers their position and wallboards the live figures. Committed
engine events go to the bus: every event to the `events` topic (supervisors, the event stream,
webhooks), and to the topics of the agent and the conversation it concerns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from omnicc.app.chats import ChatDesk, agent_topic, conversation_topic
from omnicc.app.routing import RoutingService, RoutingTimers
from omnicc.app.voice import VoiceDesk
from omnicc.app.webhooks import WebhookDispatcher
from omnicc.bus import Bus, Notice
from omnicc.core import events as ev
from omnicc.core.clock import Clock
from omnicc.core.errors import Conflict, NotFound
from omnicc.core.model import TaskPhase
from omnicc.store.database import Database
from omnicc.store.repositories import Tenants

log = logging.getLogger("omnicc.runtime")

EVENTS_TOPIC = "events"
WALLBOARD_TOPIC = "wallboard"


@dataclass(frozen=True, slots=True)
class RuntimeLimits:
    max_message_chars: int = 16_384
    pulse_s: float = 1.0


class TenantRuntime:
    """One tenant's live state: its routing service, chat desk and background tasks."""

    def __init__(self, database: Database, tenant_id: str, slug: str, clock: Clock, bus: Bus,
                 limits: RuntimeLimits) -> None:
        self.tenant_id = tenant_id
        self.slug = slug
        self.bus = bus
        self.routing = RoutingService(database, tenant_id, clock)
        self.chats = ChatDesk(database, tenant_id, self.routing, bus,
                              max_message_chars=limits.max_message_chars)
        self.voice = VoiceDesk(database, tenant_id, self.routing)
        self._limits = limits
        self._conversations: dict[str, str] = {}  # task id -> conversation id
        self._positions: dict[str, tuple[int, int]] = {}
        self._agents_of_users: dict[str, str] = {}
        self._background: list[asyncio.Task[None]] = []
        self.webhooks = WebhookDispatcher(database, tenant_id, slug, clock, bus)
        self.routing.listen(self._publish)

    async def start(self) -> None:
        await self.routing.start()
        for task in self.routing.engine.tasks():
            if task.conversation_id is not None:
                self._conversations[task.id] = task.conversation_id
        await self.chats.load()
        timers = RoutingTimers(self.routing, self.routing.clock)
        self._background = [
            asyncio.create_task(timers.run(), name=f"routing-timers-{self.slug}"),
            asyncio.create_task(self._pulse(), name=f"pulse-{self.slug}"),
            asyncio.create_task(self.webhooks.run(), name=f"webhooks-{self.slug}"),
        ]

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._background = []

    # --- events to the bus ---------------------------------------------------------------------

    def agent_of_user(self, user_id: str) -> str | None:
        """The agent a user works as, if known (the desk asks on every request)."""
        return self._agents_of_users.get(user_id)

    def remember_agent_of_user(self, user_id: str, agent_id: str) -> None:
        self._agents_of_users[user_id] = agent_id

    def _publish(self, events: list[ev.Event]) -> None:
        for event in events:
            if isinstance(event, ev.AgentConfigured | ev.AgentRemoved):
                # An admin changed agents (and maybe who is which user): learn it again.
                self._agents_of_users.clear()
            task_id = getattr(event, "task_id", None)
            if isinstance(event, ev.TaskCreated) and event.conversation_id is not None:
                self._conversations[event.task_id] = event.conversation_id
            data: dict[str, Any] = {"seq": event.seq, "at": event.at,
                                    **ev.encode_payload(event)}
            conversation_id = self._conversations.get(task_id) if task_id else None
            if conversation_id is not None:
                data["conversation_id"] = conversation_id
            if conversation_id is not None:
                self._route_conversation(event, conversation_id)
            topics = [EVENTS_TOPIC]
            for key in ("agent_id", "from_agent_id", "to_agent_id"):
                agent_id = getattr(event, key, None)
                if agent_id:
                    topics.append(agent_topic(agent_id))
            if conversation_id is not None:
                topics.append(conversation_topic(conversation_id))
            self.bus.publish(self.tenant_id, topics, Notice(event.type, data))
            if isinstance(event, ev.TaskEnded) and task_id is not None:
                self.chats.on_task_ended(task_id, event.outcome)
                self._conversations.pop(task_id, None)
                self._positions.pop(task_id, None)

    def _route_conversation(self, event: ev.Event, conversation_id: str) -> None:
        """Make the agent's desks follow (or leave) the conversation as the event happens, not
        when their socket gets round to reading it: messages published in between would be
        missed."""
        topic = conversation_topic(conversation_id)
        match event:
            case ev.OfferAccepted(agent_id=agent_id) | ev.TaskAssigned(agent_id=agent_id):
                self.bus.extend(self.tenant_id, agent_topic(agent_id), topic)
            case ev.TaskTransferred(from_agent_id=from_agent_id) if from_agent_id:
                self.bus.withdraw(self.tenant_id, agent_topic(from_agent_id), topic)

    async def _pulse(self) -> None:
        while True:
            await asyncio.sleep(self._limits.pulse_s)
            try:
                self.publish_positions()
                if self.bus.followers(self.tenant_id, WALLBOARD_TOPIC):
                    self.bus.publish(self.tenant_id, [WALLBOARD_TOPIC],
                                     Notice("wallboard", self.wallboard()))
            except Exception:  # the pulse must outlive any one bad moment
                log.exception("pulse failed")

    def publish_positions(self, *, force_conversation: str | None = None) -> None:
        """Tell each waiting customer their place and expected wait when either changed
        (`force_conversation`: tell that one anyway, it just connected)."""
        engine = self.routing.engine
        for chat in self.chats.open_chats():
            if chat.conversation_id == force_conversation:
                self._positions.pop(chat.task_id, None)
            topic = conversation_topic(chat.conversation_id)
            if not self.bus.followers(self.tenant_id, topic):
                continue
            try:
                task = engine.task(chat.task_id)
                if task.phase not in (TaskPhase.WAITING, TaskPhase.OFFERED):
                    continue
                position = engine.task_position(chat.task_id)
            except (NotFound, Conflict):
                continue
            ewt_s = None if position.ewt_s is None else round(position.ewt_s)
            key = (position.position, -1 if ewt_s is None else ewt_s // 10)
            if self._positions.get(chat.task_id) == key:
                continue
            self._positions[chat.task_id] = key
            self.bus.publish(self.tenant_id, [topic], Notice("queue.position", {
                "conversation_id": chat.conversation_id, "position": position.position,
                "ewt_s": ewt_s, "is_offline": chat.is_offline}))

    def wallboard(self) -> dict[str, Any]:
        """The live figures of every queue and agent (definitions in METRICS.md)."""
        engine = self.routing.engine
        queues = []
        for queue in engine.queues():
            figures = engine.queue_figures(queue.config.id)
            queues.append({"queue_id": queue.config.id, "name": queue.config.name,
                           "sl_threshold_s": queue.config.sl_threshold_s,
                           **ev.wire_form(figures)})
        agents = []
        for agent in engine.agents():
            agents.append({"agent_id": agent.id, "name": agent.name,
                           "skills": dict(agent.skills),
                           **ev.wire_form(engine.agent_figures(agent.id))})
        statuses = [s.name for s in engine.statuses().values() if s.name != "no_answer"]
        return {"queues": queues, "agents": agents, "statuses": statuses,
                "conversations": [self._conversation_row(c) for c in self.chats.open_chats()]}

    def _conversation_row(self, chat: Any) -> dict[str, Any]:
        engine = self.routing.engine
        try:
            task = engine.task(chat.task_id)
            now = self.routing.clock.now()
            phase, waited_s = task.phase.value, now - task.enqueued_at
            handling_s = None if task.accepted_at is None else round(now - task.accepted_at, 1)
            # The engine's agent: the chat learns it only after the accept's commit, and a
            # board built in between showed an assigned chat without its agent.
            agent_id = task.agent_id or chat.agent_id
        except NotFound:
            phase, waited_s, handling_s, agent_id = "ended", 0.0, None, chat.agent_id
        return {"conversation_id": chat.conversation_id, "task_id": chat.task_id,
                "queue_id": chat.queue_id, "agent_id": agent_id, "phase": phase,
                "since_s": round(waited_s, 1), "handling_s": handling_s,
                "is_offline": chat.is_offline,
                "customer_name": (task.attributes.get("customer_name", "")
                                  if phase != "ended" else "")}


class ContactCenter:
    """Every tenant's runtime in this process."""

    def __init__(self, database: Database, clock: Clock, bus: Bus,
                 limits: RuntimeLimits | None = None) -> None:
        self.database = database
        self.clock = clock
        self.bus = bus
        self.limits = limits or RuntimeLimits()
        self._tenants: dict[str, TenantRuntime] = {}
        self._lock = asyncio.Lock()
        self.is_started = False

    async def start(self) -> None:
        # Under the lock: a request during start-up must wait, not start a second runtime.
        async with self._lock:
            async with self.database.session() as session:
                tenants = await Tenants(session).list_all()
            for tenant in tenants:
                if tenant.id not in self._tenants:
                    await self._start_tenant(tenant.id, tenant.slug)
        self.is_started = True

    async def start_when_reachable(self, *, retry_s: float = 2.0,
                                   then: Callable[[], Awaitable[None]] | None = None) -> None:
        """`start`, retried while the database cannot be reached (an external database may
        come up after the server); /readyz says "starting" meanwhile. `then` runs once started
        (the voice service, which needs the tenants)."""
        while True:
            try:
                await self.start()
                if then is not None:
                    await then()
                return
            except (OSError, ConnectionError) as error:
                log.warning("database not reachable, routing waits: %s", error)
            except Exception as error:  # drivers wrap connection errors in their own types
                if "connect" not in str(error).lower():
                    raise
                log.warning("database not reachable, routing waits: %s", error)
            await self.stop()
            await asyncio.sleep(retry_s)

    async def _start_tenant(self, tenant_id: str, slug: str) -> TenantRuntime:
        runtime = TenantRuntime(self.database, tenant_id, slug, self.clock, self.bus,
                                self.limits)
        await runtime.start()
        self._tenants[tenant_id] = runtime
        log.info("tenant started", extra={"tenant": slug})
        return runtime

    async def tenant(self, tenant_id: str) -> TenantRuntime:
        """The tenant's runtime, started on first use (a tenant created after start-up)."""
        runtime = self._tenants.get(tenant_id)
        if runtime is not None:
            return runtime
        async with self._lock:
            runtime = self._tenants.get(tenant_id)
            if runtime is None:
                async with self.database.session() as session:
                    tenant = await Tenants(session).get(tenant_id)
                runtime = await self._start_tenant(tenant.id, tenant.slug)
            return runtime

    async def by_slug(self, slug: str) -> TenantRuntime:
        for runtime in self._tenants.values():
            if runtime.slug == slug:
                return runtime
        async with self.database.session() as session:
            tenant = await Tenants(session).by_slug(slug)
        return await self.tenant(tenant.id)

    async def stop(self) -> None:
        for runtime in self._tenants.values():
            await runtime.stop()
        self._tenants.clear()

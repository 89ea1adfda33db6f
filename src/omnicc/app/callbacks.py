"""Callback requests become calls: a routing task in the request's queue, then an agent-first
call to the customer when the engine offers that task.

A request (the IVR's `callback` node, virtual hold, the website) waits as a `CallbackRequest`
row until it is due; then it is a task on the `voice` channel with attributes
`{"callback": true, "callback_number", "callback_request_id"}`, in a new voice contact
(direction outbound) like any call, so it waits its turn with the other calls of the queue and
shows on the wallboard. A request for "as soon as possible" keeps the requester's place: it is
put in line (`submit`) when it is made, not at the next poll.

When the engine offers the task to an agent, a `CallbackDialler` (the voice channel's) rings the
agent's phone, accepts the offer when the agent answers and dials the customer. An agent who
does not answer rejects the offer (the next agent gets it); otherwise the attempt is counted on
the request: done when the customer answered, else pending again `retry_after_s` later, until
`max_attempts` attempts failed (failed). The request's attributes keep every attempt. After a
restart, requests left in progress are pending again (`recover`), except those whose customer
had answered (`attributes.answered_at`, written when they answer): they are done - the
customer was called back, and dialling them again would call them twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from omnicc.app.voice import VoiceContact, VoiceDesk
from omnicc.core import events as ev
from omnicc.core.engine import Engine
from omnicc.core.errors import NotFound
from omnicc.core.model import TaskPhase, TaskState
from omnicc.store.database import Database
from omnicc.store.repositories import CallbackRequests, Customers, Tenants
from omnicc.store.tables import CallbackRequest, Customer

if TYPE_CHECKING:
    from omnicc.app.runtime import ContactCenter, TenantRuntime

log = logging.getLogger("omnicc.voice.callbacks")

IN_PROGRESS = "dialling"
"""The request's state from its task's creation until the attempt's outcome."""
FINAL_OUTCOMES = frozenset({"answered", "invalid_number"})


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class CallbackPolicy:
    retry_after_s: float = 600.0
    max_attempts: int = 3


@dataclass(slots=True)
class CallbackOffer:
    """The engine offered a callback's task to an agent: ring them, then dial the number.

    `accept` is awaited when the agent answered (False: the offer is gone, hang up on the
    agent); `withdrawn` is set when the offer is withdrawn while the agent's phone rings;
    `customer_answered` is awaited when the customer answered (kept: a restart must not dial
    them again)."""

    request_id: str
    number: str
    queue_id: str
    contact: VoiceContact
    offer_id: str
    agent_id: str
    accept: Callable[[], Awaitable[bool]]
    withdrawn: asyncio.Event = field(default_factory=asyncio.Event)
    customer_answered: Callable[[], Awaitable[None]] | None = None


@dataclass(frozen=True, slots=True)
class CallbackAttempt:
    """What a dialler reports: the outcomes of `omnicc.channels.voice.outbound.DialResult`."""

    outcome: str
    sip_status: int | None = None
    record_id: str | None = None
    hangup_side: str | None = None
    reason: str = ""


CallbackDialler = Callable[[CallbackOffer], Awaitable[CallbackAttempt]]


def _arrived_at(request: CallbackRequest) -> float | None:
    """A caller who left the line for a callback keeps their place (virtual hold)."""
    value = request.attributes.get("arrived_at")
    return float(value) if isinstance(value, int | float) else None


class Callbacks:
    """A tenant's callback requests, from due to done."""

    def __init__(self, database: Database, desk: VoiceDesk, dial: CallbackDialler, *,
                 policy: CallbackPolicy | None = None) -> None:
        self._database = database
        self._desk = desk
        self._dial = dial
        self.policy = policy or CallbackPolicy()
        self.tenant_id = desk.tenant_id
        self._claiming = asyncio.Lock()
        self._work: set[asyncio.Task[Any]] = set()
        self._followers: dict[str, _CallbackTask] = {}

    async def run_due(self, now: datetime | None = None) -> list[str]:
        """Put every due request in line; the ids of those that were."""
        async with self._database.session() as session:
            due = await CallbackRequests(session, self.tenant_id).due(now or _now())
        queued = []
        for request in due:
            if await self.submit(request.id) is not None:
                queued.append(request.id)
        return queued

    async def submit(self, request_id: str) -> VoiceContact | None:
        """Put a pending request in line now (its task and contact); None when it is not
        pending any more (another poll took it, it was cancelled)."""
        request = await self._claim(request_id)
        if request is None:
            return None
        follower = _CallbackTask(self, request)
        self._followers[request.id] = follower
        try:
            customer = await self._customer_of(request)
            contact = await self._desk.enqueue(
                customer, queue_id=request.queue_id, call_id=f"callback-{request.id}",
                attributes={"callback": True, "callback_number": request.number,
                            "callback_request_id": request.id},
                direction="outbound", subject=f"Callback to {request.number}",
                priority=int(request.attributes.get("priority", 0) or 0),
                watcher=follower.on_event, arrived_at=_arrived_at(request))
        except BaseException:
            self._followers.pop(request.id, None)
            await self._update(request_id, state="pending")
            raise
        follower.attach(contact)
        await self._update(request_id, task_id=contact.task_id)
        return contact

    async def recover(self) -> int:
        """After a restart: requests left `dialling` lost the follower of their task (the
        engine restores the task, but nobody would ring the agent it is offered to). Their
        tasks end and they are pending again, due as before; how many were."""
        async with self._database.session() as session:
            requests = CallbackRequests(session, self.tenant_id)
            orphans = [row for row in await requests.all(
                requests.select().where(CallbackRequest.state == IN_PROGRESS))
                if row.id not in self._followers]
        engine = self._desk.routing.engine
        for row in orphans:
            task = _find_task(engine, row.task_id)
            if task is not None and task.phase is not TaskPhase.ENDED:
                # Not an abandon; a call the customer answered completes (the agent talked
                # with them: their wrap-up follows).
                await self._desk.hung_up(VoiceContact(
                    conversation_id=task.conversation_id or "",
                    contact_id=str(task.attributes.get("contact_id", "")),
                    customer_id=row.customer_id or "", task_id=task.id,
                    queue_id=task.queue_id), side="system",
                    lost="the callback's follower was lost in a restart")
            answered_by = row.attributes.get("answered_by")
            if row.attributes.get("answered_at"):
                await self.record_attempt(row.id, CallbackAttempt(
                    "answered", reason="the call was lost in a restart after the customer "
                                       "answered"),
                    agent_id=answered_by if isinstance(answered_by, str) else None)
            else:
                await self._update(row.id, state="pending", task_id=None)
        return len(orphans)

    async def customer_answered(self, request_id: str, agent_id: str) -> None:
        """The customer answered the callback: kept at once, so a restart in the middle of
        the call does not put the request back in line."""
        async with self._database.session() as session:
            requests = CallbackRequests(session, self.tenant_id)
            request = await requests.get(request_id)
            request.attributes = {**request.attributes, "answered_at": _now().isoformat(),
                                  "answered_by": agent_id}
            await requests.save(request)

    async def close(self) -> None:
        for task in list(self._work):
            task.cancel()
        await asyncio.gather(*self._work, return_exceptions=True)

    # --- rows ------------------------------------------------------------------------------------

    async def _claim(self, request_id: str) -> CallbackRequest | None:
        async with self._claiming, self._database.session() as session:
            requests = CallbackRequests(session, self.tenant_id)
            request = await requests.find(request_id)
            if request is None or request.state != "pending":
                return None
            request.state = IN_PROGRESS
            await requests.save(request)
            return request

    async def _customer_of(self, request: CallbackRequest) -> Customer:
        if request.customer_id is not None:
            async with self._database.session() as session:
                customer = await Customers(session, self.tenant_id).find(request.customer_id)
            if customer is not None:
                return customer
        return await self._desk.identify_caller(request.number)

    async def _update(self, request_id: str, **values: Any) -> None:
        async with self._database.session() as session:
            requests = CallbackRequests(session, self.tenant_id)
            request = await requests.get(request_id)
            for name, value in values.items():
                setattr(request, name, value)
            await requests.save(request)

    async def record_attempt(self, request_id: str, attempt: CallbackAttempt, *,
                             agent_id: str | None) -> CallbackRequest:
        """Count an attempt on the request: done, pending again later, or failed."""
        at = _now()
        async with self._database.session() as session:
            requests = CallbackRequests(session, self.tenant_id)
            request = await requests.get(request_id)
            request.attempts += 1
            history = list(request.attributes.get("attempts", []))
            history.append({"at": at.isoformat(), "outcome": attempt.outcome,
                            "sip_status": attempt.sip_status, "record_id": attempt.record_id,
                            "agent_id": agent_id, "reason": attempt.reason})
            request.attributes = {**request.attributes, "attempts": history,
                                  "last_outcome": attempt.outcome}
            request.task_id = None
            if attempt.outcome == "answered":
                request.state, request.completed_at = "done", at
            elif (attempt.outcome in FINAL_OUTCOMES
                  or request.attempts >= self.policy.max_attempts):
                request.state, request.completed_at = "failed", at
            else:
                request.state = "pending"
                request.due_at = at + timedelta(seconds=self.policy.retry_after_s)
            return await requests.save(request)

    def _spawn(self, work: Awaitable[Any]) -> None:
        async def guarded() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("voice: callback work failed")

        task = asyncio.create_task(guarded())
        self._work.add(task)
        task.add_done_callback(self._work.discard)


def _find_task(engine: Engine, task_id: str | None) -> TaskState | None:
    if task_id is None:
        return None
    try:
        return engine.task(task_id)
    except NotFound:
        return None


class _CallbackTask:
    """Follows one callback task's engine events: offers ring the agent (through the dialler)."""

    def __init__(self, callbacks: Callbacks, request: CallbackRequest) -> None:
        self.callbacks = callbacks
        self.request_id = request.id
        self.number = request.number
        self.queue_id = request.queue_id
        self.contact: VoiceContact | None = None
        self.ready = asyncio.Event()
        self.withdrawn: dict[str, asyncio.Event] = {}
        self.counted = False

    def attach(self, contact: VoiceContact) -> None:
        self.contact = contact
        self.ready.set()

    def on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.OfferCreated):
            withdrawn = asyncio.Event()
            self.withdrawn[event.offer_id] = withdrawn
            self.callbacks._spawn(self._offered(event.offer_id, event.agent_id, withdrawn))
        elif isinstance(event, ev.OfferTimedOut | ev.OfferRescinded | ev.OfferRejected):
            withdrawn_event = self.withdrawn.pop(event.offer_id, None)
            if withdrawn_event is not None:
                withdrawn_event.set()
        elif isinstance(event, ev.TaskEnded) and not self.counted:
            # The engine gave up on the task (its queue's policy) before anyone dialled.
            self.counted = True
            self.callbacks._followers.pop(self.request_id, None)
            self.callbacks._spawn(self.callbacks.record_attempt(
                self.request_id, CallbackAttempt(f"task_{event.outcome}"), agent_id=None))

    async def _offered(self, offer_id: str, agent_id: str, withdrawn: asyncio.Event) -> None:
        await self.ready.wait()
        assert self.contact is not None
        desk = self.callbacks._desk
        accepted = False

        async def accept() -> bool:
            nonlocal accepted
            accepted = await desk.accept(offer_id)
            return accepted

        async def customer_answered() -> None:
            await self.callbacks.customer_answered(self.request_id, agent_id)

        offer = CallbackOffer(request_id=self.request_id, number=self.number,
                              queue_id=self.queue_id, contact=self.contact, offer_id=offer_id,
                              agent_id=agent_id, accept=accept, withdrawn=withdrawn,
                              customer_answered=customer_answered)
        try:
            attempt = await self.callbacks._dial(offer)
        except Exception as error:
            log.exception("voice: dialling callback %s failed", self.request_id)
            attempt = CallbackAttempt("failed", reason=str(error) or type(error).__name__)
        self.withdrawn.pop(offer_id, None)
        if not accepted:
            if not withdrawn.is_set():
                await desk.reject(offer_id, attempt.reason or attempt.outcome)
            if attempt.outcome in FINAL_OUTCOMES and not self.counted:
                # The number cannot be dialled: no agent should be offered it again.
                self.counted = True
                self.callbacks._followers.pop(self.request_id, None)
                try:
                    await desk.hung_up(self.contact, side="system")
                finally:
                    await self.callbacks.record_attempt(self.request_id, attempt,
                                                        agent_id=None)
            return
        self.counted = True
        self.callbacks._followers.pop(self.request_id, None)
        try:
            await desk.hung_up(self.contact, side=attempt.hangup_side or "system")
        finally:  # the request's outcome is kept even when ending the task failed
            await self.callbacks.record_attempt(self.request_id, attempt, agent_id=agent_id)


class CallbackScheduler:
    """Every tenant's due callbacks, polled; one `Callbacks` per tenant, made on first use."""

    def __init__(self, database: Database, center: ContactCenter,
                 dialler_for: Callable[[TenantRuntime], CallbackDialler], *,
                 policy: CallbackPolicy | None = None, poll_s: float = 15.0) -> None:
        self._database = database
        self._center = center
        self._dialler_for = dialler_for
        self._policy = policy
        self.poll_s = poll_s
        self._tenants: dict[str, Callbacks] = {}
        self._loop: asyncio.Task[None] | None = None

    def for_tenant(self, runtime: TenantRuntime) -> Callbacks:
        callbacks = self._tenants.get(runtime.tenant_id)
        if callbacks is None:
            callbacks = Callbacks(self._database, runtime.voice, self._dialler_for(runtime),
                                  policy=self._policy)
            self._tenants[runtime.tenant_id] = callbacks
        return callbacks

    async def submit(self, runtime: TenantRuntime, request: CallbackRequest) -> None:
        """A request was just made: an "as soon as possible" one is put in line now."""
        if request.due_at is None:
            await self.for_tenant(runtime).submit(request.id)

    async def tick(self, now: datetime | None = None) -> int:
        """Put every tenant's due requests in line; how many were."""
        at = now or _now()
        async with self._database.session() as session:
            tenants = await Tenants(session).list_all()
            waiting = [tenant.id for tenant in tenants
                       if await CallbackRequests(session, tenant.id).due(at, limit=1)]
        queued = 0
        for tenant_id in waiting:
            runtime = await self._center.tenant(tenant_id)
            queued += len(await self.for_tenant(runtime).run_due(at))
        return queued

    async def recover(self) -> int:
        """`Callbacks.recover` for every tenant with requests in progress (at start)."""
        async with self._database.session() as session:
            tenants = await Tenants(session).list_all()
            busy = []
            for tenant in tenants:
                requests = CallbackRequests(session, tenant.id)
                if await requests.first(requests.select().where(
                        CallbackRequest.state == IN_PROGRESS)) is not None:
                    busy.append(tenant.id)
        recovered = 0
        for tenant_id in busy:
            recovered += await self.for_tenant(await self._center.tenant(tenant_id)).recover()
        return recovered

    def start(self) -> None:
        if self._loop is None:
            self._loop = asyncio.create_task(self._poll(), name="callback-scheduler")

    async def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        for callbacks in self._tenants.values():
            await callbacks.close()

    async def _poll(self) -> None:
        try:
            await self.recover()
        except Exception:
            log.exception("voice: recovering callbacks in progress failed")
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("voice: the callback poll failed")
            await asyncio.sleep(self.poll_s)

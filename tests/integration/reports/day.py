"""A generated day of a small contact center, driven through the real `RoutingService` (so the
event log is written exactly as the running server writes it): arrivals on two queues and two
channels from customers of three segments, agents of two teams taking breaks, accepting,
rejecting, talking, transferring and wrapping up with codes or by timeout, customers
abandoning, and survey answers on some contacts."""

from __future__ import annotations

import contextlib
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from omnicc.app.routing import RoutingService
from omnicc.core.clock import ManualClock
from omnicc.core.errors import Conflict, NotFound
from omnicc.core.model import TaskRequest
from omnicc.store.database import Database
from omnicc.store.repositories import Agents, Queues, Tenants
from omnicc.store.tables import Agent, CallRecord, Contact, Conversation, Customer, Queue

DAY_START_S = 1_795_503_600.0  # 2026-11-24 06:00 Helsinki (04:00 UTC)
DAY_LENGTH_S = 6 * 3600.0
CODES = ("sale", "info", "complaint")


@dataclass
class Center:
    tenant_id: str
    queues: list[str]
    agents: list[str]
    customers: list[tuple[str, str]] = field(default_factory=list)
    """(customer id, segment)."""
    contacts: list[str] = field(default_factory=list)


async def set_up(database: Database) -> Center:
    async with database.session() as session:
        tenant = await Tenants(session).create("acme", "Acme")
        tenant.timezone = "Europe/Helsinki"
        queues = [await Queues(session, tenant.id).add(Queue(
            name=name, config={"wrap_up_s": 60, "sl_threshold_s": threshold,
                               "offer_timeout_s": 15}))
                  for name, threshold in (("support", 20), ("billing", 30))]
        agents = [await Agents(session, tenant.id).add(Agent(
            name=f"agent{n}", capacity={"voice": 1, "chat": 2},
            attributes={"team": "north" if n % 2 else "south"})) for n in range(6)]
    center = Center(tenant.id, [q.id for q in queues], [a.id for a in agents])
    await add_customers(database, center)
    return center


async def add_customers(database: Database, center: Center, count: int = 40) -> None:
    """Customers of three segments (gold, silver, none): they call again, which FCR counts."""
    async with database.session() as session:
        for n in range(count):
            segment = ("gold", "silver", "")[n % 3]
            customer = Customer(tenant_id=center.tenant_id, name=f"c{n}",
                                attributes={"segment": segment} if segment else {})
            session.add(customer)
            await session.flush()
            center.customers.append((customer.id, segment))


async def run_day(database: Database, center: Center, *, seed: int = 7,
                  start_s: float = DAY_START_S, length_s: float = DAY_LENGTH_S,
                  between: Callable[[], object] | None = None) -> RoutingService:
    """Play the day from `start_s`; `between` (a coroutine function) runs every simulated
    hour."""
    rng = random.Random(seed)
    clock = ManualClock(start_s)
    service = RoutingService(database, center.tenant_id, clock)
    await service.start()
    actions: list[tuple[float, int, str, str]] = []
    counter = 0

    def plan(at: float, kind: str, subject: str) -> None:
        nonlocal counter
        counter += 1
        heapq.heappush(actions, (at, counter, kind, subject))

    for agent in center.agents:
        plan(start_s + rng.uniform(0, 900), "login", agent)
        plan(start_s + length_s - rng.uniform(0, 900), "logout", agent)
        plan(start_s + rng.uniform(0.2 * length_s, 0.7 * length_s), "break", agent)
    at = start_s + 60
    while at < start_s + length_s - 1800:
        plan(at, "arrive", "")
        at += rng.expovariate(1 / 70)
    plan(start_s + 3 * 3600, "hour", "")
    next_hour = start_s + 3600
    seen_offers: set[str] = set()
    while actions:
        at, _, kind, subject = heapq.heappop(actions)
        deadline = service.engine.next_deadline()
        while deadline is not None and deadline <= at:
            clock.set(max(clock.now(), deadline))
            await service.advance()
            deadline = service.engine.next_deadline()
        clock.set(max(clock.now(), at))
        if between is not None and clock.now() >= next_hour:
            next_hour += 3600
            await between()  # type: ignore[misc]
        # The world may have moved on (accepted before the customer hung up, ...).
        with contextlib.suppress(Conflict, NotFound):
            await _act(service, center, rng, kind, subject, plan)
        for state in service.engine.agents():
            for offer_id in list(state.offers):
                if offer_id not in seen_offers:
                    seen_offers.add(offer_id)
                    choice = rng.random()
                    if choice < 0.85:
                        plan(clock.now() + rng.uniform(1, 8), "accept", offer_id)
                    elif choice < 0.93:
                        plan(clock.now() + rng.uniform(1, 5), "reject", offer_id)
    clock.advance(3600)
    await service.advance()
    return service


async def _act(service: RoutingService, center: Center, rng: random.Random, kind: str,
               subject: str, plan: Callable[[float, str, str], None]) -> None:
    now = service.clock.now()
    engine_run = service.run
    if kind == "login":
        await engine_run(lambda e: e.set_status(subject, "available"))
    elif kind == "logout":
        await engine_run(lambda e: e.set_status(subject, "offline"))
    elif kind == "break":
        await engine_run(lambda e: e.set_status(subject, "break", "lunch"))
        plan(now + rng.uniform(600, 1800), "login", subject)
    elif kind == "arrive":
        customer, segment = rng.choice(center.customers)
        channel = rng.choice(("voice", "voice", "chat"))
        conversation, contact = await _contact(service, center, customer, channel,
                                               hold_s=round(rng.uniform(0, 40), 1))
        attributes: dict[str, object] = {"customer_id": customer, "contact_id": contact}
        if segment:
            attributes["segment"] = segment
        events = await service.create_task(TaskRequest(
            channel=channel, queue=rng.choice(center.queues), attributes=attributes,
            conversation_id=conversation))
        task_id = events[0].task_id  # type: ignore[attr-defined]
        plan(now + rng.expovariate(1 / 240), "abandon", task_id)
    elif kind == "abandon":
        await engine_run(lambda e: e.abandon(subject))
    elif kind == "accept":
        events = await engine_run(lambda e: e.accept(subject))
        task_id = events[0].task_id  # type: ignore[attr-defined]
        if rng.random() < 0.1:
            plan(now + rng.uniform(20, 120), "transfer", task_id)
        else:
            plan(now + rng.uniform(60, 400), "complete", task_id)
    elif kind == "reject":
        await engine_run(lambda e: e.reject(subject, "busy"))
    elif kind == "transfer":
        queue = service.engine.task(subject).queue_id
        other = next(q for q in center.queues if q != queue)
        await engine_run(lambda e: e.transfer(subject, queue_id=other))
    elif kind == "complete":
        await engine_run(lambda e: e.complete(subject))
        if rng.random() < 0.8:
            plan(now + rng.uniform(3, 50), "wrap", subject)
    elif kind == "wrap":
        code = rng.choice(CODES)
        await engine_run(lambda e: e.wrap_up(subject, code))


async def _contact(service: RoutingService, center: Center, customer: str,
                   channel: str, hold_s: float) -> tuple[str, str]:
    """A conversation and contact for the task; a call also gets its call record with the
    hold time the voice channel would have measured."""
    async with service._database.session() as session:
        conversation = Conversation(tenant_id=center.tenant_id, customer_id=customer)
        session.add(conversation)
        await session.flush()
        contact = Contact(tenant_id=center.tenant_id, conversation_id=conversation.id,
                          customer_id=customer, channel=channel)
        session.add(contact)
        await session.flush()
        if channel == "voice":
            session.add(CallRecord(tenant_id=center.tenant_id, call_id=contact.id,
                                   contact_id=contact.id, hold_s=hold_s))
        center.contacts.append(contact.id)
        return conversation.id, contact.id

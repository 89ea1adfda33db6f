"""The voice use cases of one tenant: a call becomes a contact and a routing task.

The SIP and media mechanics live in `omnicc.channels.voice`; this module is what a call means
to the rest of OmniCC. A caller is a customer known by their phone number (identity kind
`phone`, E.164 when the number can be read as one). A call that leaves the IVR for a queue is
a contact on the `voice` channel in a new conversation, with a routing task; both are written
in one transaction, like a chat. The call's controller follows its task: `watch` hands it the
engine's events for that task (an offer to ring, an offer withdrawn, the task's end).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import phonenumbers
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.app.customers import routing_attributes
from omnicc.app.routing import RoutingService
from omnicc.core import events as ev
from omnicc.core.engine import Engine
from omnicc.core.errors import Conflict, NotFound
from omnicc.core.model import TaskPhase, TaskRequest
from omnicc.store.database import Database
from omnicc.store.repositories import Contacts, Conversations, Customers, Identities
from omnicc.store.tables import Contact, Conversation, Customer, Identity

log = logging.getLogger("omnicc.voice")

VOICE = "voice"
PHONE = "phone"

TaskWatcher = Callable[[ev.Event], None]
RecordWrite = Callable[[AsyncSession], Awaitable[None]]
"""Saves the call's detail record in the routing command's transaction (one fewer of its own)."""


def normalize_phone(raw: str, default_region: str | None = None) -> str:
    """A caller's number as one identity value: E.164 when it parses as a possible number,
    else its digits (an internal extension, an anonymous caller's "anonymous")."""
    text = raw.strip()
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else default_region)
    except phonenumbers.NumberParseException:
        number = None
    if number is not None and phonenumbers.is_possible_number(number):
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    digits = "".join(ch for ch in text if ch.isdigit())
    return digits or text.lower()[:64]


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(slots=True)
class VoiceContact:
    """A call that reached a queue: the rows it made and its routing task."""

    conversation_id: str
    contact_id: str
    customer_id: str
    task_id: str
    queue_id: str


class VoiceDesk:
    """A tenant's calls as contacts and routing tasks."""

    def __init__(self, database: Database, tenant_id: str, routing: RoutingService,
                 *, default_region: str | None = None) -> None:
        self._database = database
        self.tenant_id = tenant_id
        self._routing = routing
        self._default_region = default_region
        self._watchers: dict[str, TaskWatcher] = {}
        routing.listen(self._on_events)

    @property
    def routing(self) -> RoutingService:
        return self._routing

    # --- the caller ------------------------------------------------------------------------

    async def identify_caller(self, number: str, display_name: str = "") -> Customer:
        """The customer behind a calling number, made on their first call."""
        async with self._database.session() as session:
            return await self.identify_in(session, number, display_name)

    async def identify_in(self, session: AsyncSession, number: str,
                          display_name: str = "") -> Customer:
        """`identify_caller` in the caller's transaction (an inbound call's first record)."""
        value = normalize_phone(number, self._default_region)
        identities = Identities(session, self.tenant_id)
        customers = Customers(session, self.tenant_id)
        identity = await identities.by_value(PHONE, value)
        if identity is not None:
            return await customers.get(identity.customer_id)
        customer = await customers.add(Customer(
            name=display_name[:200], attributes={"phone": value}))
        await identities.add(Identity(customer_id=customer.id, kind=PHONE, value=value))
        return customer

    # --- the call's task -------------------------------------------------------------------

    async def enqueue(self, customer: Customer, *, queue_id: str, call_id: str,
                      attributes: dict[str, Any] | None = None, priority: int = 0,
                      direction: str = "inbound", subject: str = "",
                      watcher: TaskWatcher | None = None,
                      arrived_at: float | None = None,
                      record: Callable[[AsyncSession, VoiceContact], Awaitable[None]]
                      | None = None) -> VoiceContact:
        """Open the call's contact and put its task in line; `watcher` gets the task's engine
        events from the first one on (an offer can be made in the same commit). `arrived_at`
        (POSIX seconds) keeps an earlier place in line: a callback for a caller who waited.
        `record` saves the call's record, with the contact, in the same transaction."""
        at = _now()
        conversation_id, contact_id, task_id = _new_id(), _new_id(), _new_id()
        contact = VoiceContact(conversation_id=conversation_id, contact_id=contact_id,
                               customer_id=customer.id, task_id=task_id, queue_id=queue_id)
        task_attributes = {"customer_name": customer.name,
                           "customer_phone": str(customer.attributes.get("phone", "")),
                           "contact_id": contact_id, "call_id": call_id,
                           **routing_attributes(customer), **(attributes or {})}

        async def write_call(session: AsyncSession, events: list[ev.Event]) -> None:
            await Conversations(session, self.tenant_id).add(Conversation(
                id=conversation_id, customer_id=customer.id, subject=subject[:500],
                created_at=at))
            await Contacts(session, self.tenant_id).add(Contact(
                id=contact_id, conversation_id=conversation_id, customer_id=customer.id,
                channel=VOICE, direction=direction, queue_id=queue_id, started_at=at,
                attributes={"call_id": call_id, **(attributes or {})}))
            if record is not None:
                await record(session, contact)

        if watcher is not None:
            self._watchers[task_id] = watcher
        request = TaskRequest(channel=VOICE, queue=queue_id, id=task_id, priority=priority,
                              conversation_id=conversation_id, attributes=task_attributes,
                              arrived_at=arrived_at)
        try:
            await self._routing.create_task(request, alongside=write_call)
        except BaseException:
            self._watchers.pop(task_id, None)
            raise
        return contact

    def watch(self, task_id: str, watcher: TaskWatcher) -> None:
        """`watcher` gets a task's engine events from now on (an outbound call's task, put in
        line by a transfer: its offers ring the new agent)."""
        self._watchers[task_id] = watcher

    def phase(self, contact: VoiceContact) -> TaskPhase | None:
        try:
            return self._routing.engine.task(contact.task_id).phase
        except NotFound:
            return None

    async def accept(self, offer_id: str, *, record: RecordWrite | None = None) -> bool:
        """The agent answered: False when the offer is no longer pending (withdrawn, timed
        out), and the caller must then not be connected to that agent. The contact names the
        agent who took the call (the last one, after a transfer); `record` saves the call's
        record as answered in the same transaction."""
        engine = self._routing.engine
        try:
            offer = engine.offer(offer_id)
            contact_id = engine.task(offer.task_id).attributes.get("contact_id")
        except (Conflict, NotFound):
            return False

        async def assign(session: AsyncSession, events: list[ev.Event]) -> None:
            if isinstance(contact_id, str):
                # One UPDATE, no read: the agent is one of the tenant's engine's.
                await session.execute(
                    update(Contact)
                    .where(Contact.id == contact_id, Contact.tenant_id == self.tenant_id)
                    .values(agent_id=offer.agent_id)
                    .execution_options(synchronize_session=False))
            if record is not None:
                await record(session)

        try:
            await self._routing.run(lambda engine: engine.accept(offer_id), alongside=assign)
        except (Conflict, NotFound):
            return False
        return True

    async def reject(self, offer_id: str, reason: str) -> None:
        """The agent's phone refused or could not ring; the caller keeps their place."""
        try:
            await self._routing.run(lambda engine: engine.reject(offer_id, reason))
        except (Conflict, NotFound):
            log.debug("offer %s was no longer pending when rejected", offer_id)

    async def hung_up(self, contact: VoiceContact, *, side: str, lost: str | None = None,
                      record: RecordWrite | None = None) -> None:
        """The call ended (`side` who hung up): abandoned while it waited, otherwise the
        conversation is complete and the agent's wrap-up follows. `lost`: why the call died
        on our side (a restart) - a task still in line is then cancelled, not abandoned: the
        caller did not choose to leave, so abandonment and service level must not count it.
        `record` saves the call's record, ended, in the same transaction."""
        end = self._end_contact(contact, side, record)

        def end_task(engine: Engine) -> list[ev.Event]:
            # Decided under the routing lock: an acceptance committing while the caller hangs
            # up makes the task assigned between a look at its phase and the command.
            try:
                phase = engine.task(contact.task_id).phase
            except NotFound:
                return []
            if phase in (TaskPhase.WAITING, TaskPhase.OFFERED):
                if lost is not None:
                    return engine.cancel(contact.task_id, lost)
                return engine.abandon(contact.task_id)
            if phase is TaskPhase.ASSIGNED:
                return engine.complete(contact.task_id)
            return []

        await self._routing.run(end_task, alongside=end)
        self._watchers.pop(contact.task_id, None)

    def _end_contact(self, contact: VoiceContact, side: str,
                     record: RecordWrite | None = None) -> Any:
        async def write(session: AsyncSession, events: list[ev.Event]) -> None:
            at = _now()
            contacts = Contacts(session, self.tenant_id)
            row = await contacts.get(contact.contact_id)
            if row.ended_at is None:
                row.ended_at = at
                row.attributes = {**row.attributes, "hangup_side": side}
                await contacts.save(row)
            await session.execute(
                update(Conversation)
                .where(Conversation.id == contact.conversation_id,
                       Conversation.tenant_id == self.tenant_id, Conversation.status == "open")
                .values(status="closed", closed_at=at)
                .execution_options(synchronize_session=False))
            if record is not None:
                await record(session)
        return write

    # --- engine events -----------------------------------------------------------------------

    def _on_events(self, events: list[ev.Event]) -> None:
        for event in events:
            task_id = getattr(event, "task_id", None)
            if task_id is None:
                continue
            watcher = self._watchers.get(task_id)
            if watcher is None:
                continue
            if isinstance(event, ev.TaskEnded):
                self._watchers.pop(task_id, None)
            try:
                watcher(event)
            except Exception:  # one call's fault must not stop the others' events
                log.exception("voice: the watcher of task %s failed on %s", task_id, event.type)

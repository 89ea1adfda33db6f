"""The website's contact form: a visitor's request becomes a stored, routed contact with a
response-time target, answered by email.

Channel: a request is an **email** contact (attribute `source: "form"`), because its answer is
an email: the desk's email view and answer box, the agents' email capacity, the first-response
service level with its escalation, and the customer's reply threading into the same
conversation all apply as they are. The form therefore asks for the address it answers on; a
phone number is optional and kept as one more identity of the customer. When the queue has a
mailbox, the request gets an email ticket (reference, target from the mailbox's
`first_response_s` in the queue's business hours); without one it is still stored and routed,
with the default 8-hour target, and the agent answers by phone.

The form is public, so it is guarded like the callback button (whose limiter it shares): a
limit per client address and per email address, and a honeypot field a person never sees;
a request that fills it is answered like any other and never kept.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.app.business_time import add_business_seconds
from omnicc.app.callback_requests import Allowance, RequestCounter, possible_number
from omnicc.app.customers import normal_identity, routing_attributes
from omnicc.app.email_threads import new_reference
from omnicc.app.login_throttle import client_key
from omnicc.app.voice import PHONE
from omnicc.core import events as ev
from omnicc.core.clock import Clock
from omnicc.core.errors import Conflict, InvalidConfiguration, OmniccError
from omnicc.core.model import TaskRequest
from omnicc.store.database import Database
from omnicc.store.repositories import (
    BusinessHoursRepository,
    Contacts,
    Conversations,
    Customers,
    EmailMessages,
    EmailTickets,
    Identities,
    Messages,
    Queues,
)
from omnicc.store.tables import (
    Contact,
    Conversation,
    Customer,
    EmailMailbox,
    EmailMessage,
    EmailTicket,
    Identity,
    Message,
    Queue,
)

if TYPE_CHECKING:
    from omnicc.app.runtime import TenantRuntime

EMAIL: Final = "email"
SOURCE: Final = "form"
DEFAULT_TARGET_S: Final = 8 * 3600
"""The response-time target of a queue without a mailbox (its mailbox's otherwise)."""


class InvalidField(InvalidConfiguration):
    """A field of the form is wrong (HTTP 422 naming the field)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


class FormThrottled(OmniccError):
    """Too many requests from one address or for one email address (HTTP 429)."""

    def __init__(self, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(f"too many contact requests, try again in {retry_after_s} s")


@dataclass(frozen=True, slots=True)
class FormLimits:
    per_client: Allowance = field(default_factory=lambda: Allowance(10, 3600.0))
    per_address: Allowance = field(default_factory=lambda: Allowance(5, 3600.0))


@dataclass(frozen=True, slots=True)
class ContactRequest:
    """What the visitor typed; `trap` is the honeypot field."""

    queue_id: str
    email: str
    message: str
    name: str = ""
    phone: str = ""
    subject: str = ""
    page: str = ""
    trap: str = ""


@dataclass(frozen=True, slots=True)
class FormReceipt:
    reference: str
    respond_by: datetime


class ContactForms:
    """The server's contact form: its limits are per server, its requests per tenant."""

    def __init__(self, database: Database, clock: Clock, *, limits: FormLimits | None = None,
                 default_region: str | None = None, max_keys: int = 100_000) -> None:
        self._database = database
        self._clock = clock
        self.limits = limits or FormLimits()
        self._default_region = default_region
        self._per_client = RequestCounter(self.limits.per_client, max_keys)
        self._per_address = RequestCounter(self.limits.per_address, max_keys)

    def _take(self, counter: RequestCounter, key: str) -> None:
        wait_s = counter.take(key, self._clock.now())
        if wait_s > 0:
            raise FormThrottled(max(1, math.ceil(wait_s)))

    async def submit(self, runtime: TenantRuntime, ask: ContactRequest, *,
                     client_ip: str) -> FormReceipt:
        """Check the request, then store and route it in one transaction."""
        self._take(self._per_client, client_key(client_ip))
        try:
            email = normal_identity(EMAIL, ask.email)
        except InvalidConfiguration as error:
            raise InvalidField("email", str(error)) from None
        phone = possible_number(ask.phone, self._default_region) if ask.phone.strip() else ""
        message = ask.message.strip()
        if not message:
            raise InvalidField("message", "the message is empty")
        at = datetime.fromtimestamp(self._clock.now(), UTC)
        async with self._database.session() as session:
            queue = await Queues(session, runtime.tenant_id).get(ask.queue_id)
            if not queue.is_enabled:
                raise Conflict(f"the queue {queue.name!r} takes no requests")
            mailbox = (await session.scalars(select(EmailMailbox).where(
                EmailMailbox.tenant_id == runtime.tenant_id,
                EmailMailbox.queue_id == queue.id, EmailMailbox.is_enabled)
                .order_by(EmailMailbox.name).limit(1))).first()
            target_s = mailbox.first_response_s if mailbox is not None else DEFAULT_TARGET_S
            respond_by = await _deadline(session, runtime.tenant_id, queue, at, target_s)
        self._take(self._per_address, email)
        reference = new_reference()
        if ask.trap:
            return FormReceipt(reference=reference, respond_by=respond_by)
        await self._keep(runtime, ask, email=email, phone=phone, message=message,
                         mailbox=mailbox, reference=reference, at=at, respond_by=respond_by)
        return FormReceipt(reference=reference, respond_by=respond_by)

    async def _keep(self, runtime: TenantRuntime, ask: ContactRequest, *, email: str,
                    phone: str, message: str, mailbox: EmailMailbox | None, reference: str,
                    at: datetime, respond_by: datetime) -> None:
        tenant_id = runtime.tenant_id
        async with self._database.session() as session:
            customer = await _customer(session, tenant_id, email, phone, ask.name.strip())
        subject = (ask.subject.strip() or message.splitlines()[0])[:200]
        conversation_id, contact_id, task_id = (uuid.uuid4().hex for _ in range(3))

        async def write(session: AsyncSession, events: list[ev.Event]) -> None:
            stored = await _stored_customer(session, tenant_id, customer, email, phone)
            await Conversations(session, tenant_id).add(Conversation(
                id=conversation_id, customer_id=stored.id, subject=subject, created_at=at))
            await Contacts(session, tenant_id).add(Contact(
                id=contact_id, conversation_id=conversation_id, customer_id=stored.id,
                channel=EMAIL, queue_id=ask.queue_id, started_at=at,
                attributes={"source": SOURCE, "reference": reference, "page": ask.page[:500],
                            "phone": phone, "respond_by": respond_by.isoformat()}))
            words, _ = await Messages(session, tenant_id).append(Message(
                conversation_id=conversation_id, contact_id=contact_id,
                author_kind="customer", author_id=stored.id, text=message, created_at=at))
            if mailbox is not None:
                ticket = await EmailTickets(session, tenant_id).add(EmailTicket(
                    conversation_id=conversation_id, contact_id=contact_id,
                    mailbox_id=mailbox.id, reference=reference, customer_address=email,
                    subject=subject, task_id=task_id, first_response_due_at=respond_by,
                    created_at=at))
                # The request as the thread's first email: the desk's email view shows it.
                await EmailMessages(session, tenant_id).add(EmailMessage(
                    mailbox_id=mailbox.id, ticket_id=ticket.id, conversation_id=conversation_id,
                    message_id=words.id, direction="inbound", kind="customer",
                    status="received",
                    dedup_key=hashlib.sha256(f"form:{reference}".encode()).hexdigest(),
                    from_address=email, from_name=customer.name, to_addresses=[mailbox.address],
                    subject=subject, text=message, created_at=at))

        await runtime.routing.create_task(TaskRequest(
            channel=EMAIL, queue=ask.queue_id, id=task_id, conversation_id=conversation_id,
            attributes={"customer_name": customer.name or email, "customer_email": email,
                        "contact_id": contact_id, "topic": subject, "source": SOURCE,
                        "reference": reference, "respond_by": respond_by.isoformat(),
                        **routing_attributes(customer)}), alongside=write)


async def _deadline(session: AsyncSession, tenant_id: str, queue: Queue, at: datetime,
                    target_s: float) -> datetime:
    """The response target counted in the queue's business hours, when it has some."""
    if queue.business_hours_id is not None:
        hours = await BusinessHoursRepository(session, tenant_id).find(queue.business_hours_id)
        if hours is not None:
            return add_business_seconds(at, target_s, hours.timezone, hours.weekly,
                                        hours.holidays)
    return at + timedelta(seconds=target_s)


async def _customer(session: AsyncSession, tenant_id: str, email: str, phone: str,
                    name: str) -> Customer:
    """The customer known by the email address, else by the phone number, else a new one
    (not stored yet: the write stores it with the request)."""
    identities = Identities(session, tenant_id)
    for kind, value in ((EMAIL, email), (PHONE, phone)):
        if value:
            identity = await identities.by_value(kind, value)
            if identity is not None:
                return await Customers(session, tenant_id).get(identity.customer_id)
    attributes = {EMAIL: email, **({PHONE: phone} if phone else {})}
    return Customer(id=uuid.uuid4().hex, name=name[:200], attributes=attributes)


async def _stored_customer(session: AsyncSession, tenant_id: str, customer: Customer,
                           email: str, phone: str) -> Customer:
    """The customer row, made if new, with each identity the form gave that no other
    customer holds (one that does is left for an agent to merge)."""
    customers = Customers(session, tenant_id)
    stored = await customers.find(customer.id)
    if stored is None:
        stored = await customers.add(Customer(id=customer.id, name=customer.name,
                                              attributes=dict(customer.attributes)))
    identities = Identities(session, tenant_id)
    for kind, value in ((EMAIL, email), (PHONE, phone)):
        if value and await identities.by_value(kind, value) is None:
            await identities.add(Identity(customer_id=stored.id, kind=kind, value=value))
    return stored

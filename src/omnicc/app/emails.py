"""The email use cases of one tenant: a received email joins its thread or opens a ticket with a
routing task; an agent's reply goes out in the same thread; robots are never answered.

Every received email is committed (its raw bytes included) before the mailbox is told it was
read, in the same transaction as the mailbox's read position, its conversation, message, ticket
and routing task; a re-read of the same email (a crash in between, a re-import) finds its
`dedup_key` and adds nothing. An email to send (an agent's reply, an acknowledgement) is a row
in the outbox, committed with its conversation message before any attempt, so a failed attempt
is retried and finally shown to the agent as failed, never lost.

Threading: the In-Reply-To and References of an email name Message-IDs we stored (received or
sent); failing that, the `[#REF]` token in the subject names the ticket. A ticket is one
conversation of one customer (identity kind `email`, the lower-case address).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.app.attachments import AttachmentStore, StoredFile
from omnicc.app.business_time import add_business_seconds
from omnicc.app.chats import conversation_topic, message_view
from omnicc.app.customers import routing_attributes
from omnicc.app.email_threads import message_id_hash, new_reference, reference_in, reply_subject
from omnicc.app.principals import Forbidden
from omnicc.app.routing import RoutingService
from omnicc.bus import Bus, Notice
from omnicc.core import events as ev
from omnicc.core.errors import Conflict, InvalidConfiguration, NotFound
from omnicc.core.model import TaskPhase, TaskRequest
from omnicc.store.database import Database
from omnicc.store.repositories import (
    Agents,
    Attachments,
    BusinessHoursRepository,
    Conversations,
    Customers,
    EmailMailboxes,
    EmailMessages,
    EmailTickets,
    Identities,
    Messages,
    Queues,
)
from omnicc.store.tables import (
    Attachment,
    Base,
    BusinessHours,
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
from omnicc.store.tables.base import new_id

log = logging.getLogger("omnicc.email")

EMAIL: Final = "email"
EMAIL_IDENTITY: Final = "email"
MAX_SEND_ATTEMPTS: Final = 5
MAX_REFERENCES: Final = 20
MAX_ACKNOWLEDGEMENTS_PER_HOUR: Final = 3
ESCALATION_STEPS: Final = ((0.75, 1), (1.0, 2))
"""(share of the first-response target elapsed, escalation level): at 75 % the task's
priority rises once, at the deadline again."""
ESCALATION_PRIORITY: Final = 10
"""Priority added per escalation level."""


# --- what the channel hands in and takes out -------------------------------------------------

@dataclass(frozen=True, slots=True)
class EmailFile:
    """A part of an email that is not its text: an attachment or an inline image."""

    filename: str
    content_type: str
    data: bytes
    content_id: str = ""
    is_inline: bool = False


@dataclass(frozen=True, slots=True)
class Bounce:
    """A delivery status notification: which of our emails failed, for whom and why."""

    original_message_id: str
    recipients: tuple[str, ...] = ()
    status: str = ""
    diagnostic: str = ""


@dataclass(frozen=True, slots=True)
class InboundEmail:
    """A received email, decoded (see `omnicc.channels.email.mime.read_email`)."""

    raw: bytes
    message_id: str
    in_reply_to: str
    references: tuple[str, ...]
    from_address: str
    from_name: str
    reply_to: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    text: str
    safe_html: str
    files: tuple[EmailFile, ...]
    automation: str | None
    """Why a robot wrote it (auto-reply, list, bounce), None for a person."""
    bounce: Bounce | None
    content_hash: str

    @property
    def dedup_key(self) -> str:
        """The same email read twice has the same key: its Message-ID, else its bytes."""
        if self.message_id:
            return hashlib.sha256(f"id:{self.message_id}".encode()).hexdigest()
        return self.content_hash


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    """An email to send, as stored in the outbox."""

    email_id: str
    mailbox_id: str
    from_address: str
    from_name: str
    to: tuple[str, ...]
    subject: str
    message_id: str
    date: datetime
    in_reply_to: str
    references: tuple[str, ...]
    text: str
    html: str = ""
    is_automatic: bool = False


@dataclass(frozen=True, slots=True)
class Receipt:
    """What became of a received email."""

    email_id: str
    is_new: bool
    kind: str
    conversation_id: str | None = None
    reference: str | None = None
    task_id: str | None = None


@dataclass(slots=True)
class _Entry:
    """One email of a batch: what it is, what it makes (None: a duplicate) and its receipt."""

    email: InboundEmail
    uid: int | None
    plan: _Plan | None
    receipt: Receipt
    files: list[StoredFile | None] = field(default_factory=list)

    @property
    def is_kept(self) -> bool:
        return self.plan is not None and (self.plan.ticket is not None or self.plan.new_ticket)


@dataclass(slots=True)
class _Batch:
    """Emails received together. What the store knew of them (`stored`, and the tickets and
    customers they thread to) is read once; what the earlier ones make is added as they are
    planned, so later ones thread to them: tickets by id, Message-ID hashes to ticket ids,
    tickets given a task, customers by address."""

    entries: list[_Entry] = field(default_factory=list)
    by_dedup_key: dict[str, _Entry] = field(default_factory=dict)
    stored: dict[str, EmailMessage] = field(default_factory=dict)
    tickets: dict[str, EmailTicket] = field(default_factory=dict)
    threads: dict[str, str] = field(default_factory=dict)
    tasked: set[str] = field(default_factory=set)
    customers: dict[str, Customer] = field(default_factory=dict)
    new_customers: dict[str, str] = field(default_factory=dict)
    """Customers made for this batch, not yet written: id -> address."""
    new_tickets: dict[str, Customer] = field(default_factory=dict)
    """Tickets made for this batch, not yet written, with their customer."""
    written: set[str] = field(default_factory=set)
    """Tickets this batch's session holds (written or read back for a change)."""
    authors: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Conversation id -> its customer's (id, name)."""
    last_uid: int | None = None

    def thread_of(self, ids: tuple[str, ...]) -> EmailTicket | None:
        """The ticket of the first of these Message-IDs that has one."""
        for message_id in ids:
            if message_id:
                ticket_id = self.threads.get(message_id_hash(message_id))
                if ticket_id is not None and ticket_id in self.tickets:
                    return self.tickets[ticket_id]
        return None


class _WriteContext:
    """Read once per batch: the first-response deadline rule and the acknowledgement limits
    (not to one of our own mailboxes - two would answer each other forever - and at most
    `MAX_ACKNOWLEDGEMENTS_PER_HOUR` to one address: a robot that sends without the headers
    that mark it still cannot keep a loop going)."""

    def __init__(self, first_response_s: int, hours: BusinessHours | None,
                 queue: Queue | None) -> None:
        self._first_response_s = first_response_s
        self._hours = hours
        self.queue = queue
        self.own_addresses: set[str] = set()
        self.opened: dict[str, int] = {}
        """Tickets opened in the last hour per address, this batch's counted as written."""
        self.stages: tuple[list[Base], ...] = ([], [], [], [], [])
        """The batch's new rows, by what they refer to: customers; identities and
        conversations; contacts and tickets; messages; files and emails."""

    def due(self, at: datetime) -> datetime:
        """The first-response deadline in the queue's business hours (none: every second)."""
        hours = self._hours
        if hours is not None:
            return add_business_seconds(at, self._first_response_s, hours.timezone,
                                        hours.weekly, hours.holidays)
        return at + timedelta(seconds=self._first_response_s)

    def may_acknowledge(self, ticket: EmailTicket) -> bool:
        address = ticket.customer_address
        if address in self.own_addresses:
            return False
        self.opened[address] = self.opened.get(address, 0) + 1  # this ticket included
        return self.opened[address] <= MAX_ACKNOWLEDGEMENTS_PER_HOUR


@dataclass(slots=True)
class _Plan:
    """The rows a received email makes, decided before the transaction writes them."""

    ticket: EmailTicket | None = None
    new_ticket: bool = False
    customer: Customer | None = None
    task_id: str | None = None


def normal_address(address: str) -> str:
    return address.strip().strip("<>").lower()


def now_utc() -> datetime:
    return datetime.now(UTC)


def new_message_id(mailbox_address: str, reference: str = "") -> str:
    domain = mailbox_address.rpartition("@")[2] or "omnicc.invalid"
    tag = f".{reference}" if reference else ""
    return f"<{uuid.uuid4().hex}{tag}@{domain}>"


class EmailDesk:
    """One tenant's email: receive, reply, send, escalate."""

    def __init__(self, database: Database, tenant_id: str, routing: RoutingService, bus: Bus,
                 *, files: AttachmentStore | None = None) -> None:
        self._database = database
        self.tenant_id = tenant_id
        self._routing = routing
        self._bus = bus
        self._files = files
        self._lock = asyncio.Lock()
        self.outbox_changed = asyncio.Event()
        """Set after an email is put in the outbox: the sender wakes."""

    @property
    def routing(self) -> RoutingService:
        return self._routing

    # --- receiving ---------------------------------------------------------------------------

    async def receive(self, mailbox_id: str, email: InboundEmail, *,
                      imap_uid: int | None = None,
                      uid_validity: int | None = None) -> Receipt:
        """Store a received email and route it; idempotent on the email's `dedup_key`.
        `imap_uid` moves the mailbox's read position in the same transaction."""
        [receipt] = await self.receive_batch(mailbox_id, [(email, imap_uid)],
                                             uid_validity=uid_validity)
        return receipt

    async def receive_batch(self, mailbox_id: str,
                            emails: Sequence[tuple[InboundEmail, int | None]], *,
                            uid_validity: int | None = None) -> list[Receipt]:
        """Store received emails (each with its IMAP UID or None) and route them, all in one
        transaction: all are stored or none (a crash mid-batch reads the whole batch again).
        Emails of the batch thread to each other as if received one by one, in order;
        each is idempotent on its `dedup_key`. The read position moves to the batch's last
        UID in the same transaction. Returns one receipt per email, in order.

        Speed (a mailbox import): what the batch needs from the store is read in a few
        queries for all of it, its rows are written in one flush and its tasks made by one
        engine command - a handful of statements per batch, not per email."""
        async with self._lock:
            batch = _Batch()
            files: list[StoredFile | None] = []
            try:
                async with self._database.session() as session:
                    mailbox = await EmailMailboxes(session, self.tenant_id).get(mailbox_id)
                    view = _MailboxView.of(mailbox)
                    await self._prefetch(session, mailbox_id, [e for e, _ in emails], batch)
                    for email, uid in emails:
                        await self._take(session, view, email, uid, batch)
                for entry in batch.entries:
                    if entry.plan is not None and entry.is_kept and entry.email.bounce is None:
                        entry.files = await self._keep_files(entry.email)
                        files += entry.files
                return await self._write(view, batch, uid_validity)
            except BaseException:
                for stored_file in files:
                    if stored_file is not None:
                        with contextlib.suppress(OSError):
                            stored_file.path.unlink()
                raise

    async def _prefetch(self, session: AsyncSession, mailbox_id: str,
                        emails: list[InboundEmail], batch: _Batch) -> None:
        """What the store knows of the batch's emails, in one query per kind: emails stored
        already, the tickets their headers thread to, their senders' customers."""
        if not emails:
            return
        messages = EmailMessages(session, self.tenant_id)
        keys = list({email.dedup_key for email in emails})
        for row in await messages.all(messages.select().where(
                EmailMessage.mailbox_id == mailbox_id, EmailMessage.dedup_key.in_(keys))):
            batch.stored[row.dedup_key] = row
        hashes = {message_id_hash(i) for email in emails
                  for i in (email.in_reply_to, *email.references,
                            email.bounce.original_message_id if email.bounce else "") if i}
        for row in await messages.by_message_id_hashes(list(hashes)):  # newest first
            if row.ticket_id is not None and row.message_id_hash is not None:
                batch.threads.setdefault(row.message_id_hash, row.ticket_id)
        if batch.threads:
            tickets = EmailTickets(session, self.tenant_id)
            for ticket in await tickets.all(tickets.select().where(
                    EmailTicket.id.in_(set(batch.threads.values())))):
                batch.tickets[ticket.id] = ticket
        addresses = {normal_address(email.reply_to or email.from_address) for email in emails}
        identities = Identities(session, self.tenant_id)
        found = {i.customer_id: i.value for i in await identities.all(identities.select().where(
            Identity.kind == EMAIL_IDENTITY, Identity.value.in_(addresses)))}
        if found:
            customers = Customers(session, self.tenant_id)
            for customer in await customers.all(customers.select().where(
                    Customer.id.in_(list(found)))):
                batch.customers[found[customer.id]] = customer

    async def _take(self, session: AsyncSession, mailbox: _MailboxView, email: InboundEmail,
                    uid: int | None, batch: _Batch) -> None:
        """Plan one email of a batch: a duplicate (stored before, or earlier in the batch)
        only moves the read position; a new one gets its rows decided."""
        if uid is not None:
            batch.last_uid = max(batch.last_uid or 0, uid)
        earlier = batch.by_dedup_key.get(email.dedup_key)
        stored = batch.stored.get(email.dedup_key)
        if earlier is not None or stored is not None:
            receipt = (Receipt(email_id=stored.id, is_new=False, kind=stored.kind,
                               conversation_id=stored.conversation_id) if stored is not None
                       else replace(earlier.receipt, is_new=False, reference=None,  # type: ignore[union-attr]
                                    task_id=None))
            batch.entries.append(_Entry(email, uid, None, receipt))
            return
        plan = await self._plan(session, mailbox, email, batch)
        entry = _Entry(email, uid, plan, self._new_receipt(email, plan))
        if plan.new_ticket:
            assert plan.customer is not None
            at = now_utc()
            plan.ticket = EmailTicket(
                id=uuid.uuid4().hex, conversation_id=entry.receipt.conversation_id or "",
                contact_id=uuid.uuid4().hex, mailbox_id=mailbox.id,
                reference=entry.receipt.reference or "",
                customer_address=normal_address(email.reply_to or email.from_address),
                subject=email.subject[:500], created_at=at)
            batch.new_tickets[plan.ticket.id] = plan.customer
        if plan.ticket is not None:
            batch.tickets[plan.ticket.id] = plan.ticket
            if plan.task_id is not None:
                batch.tasked.add(plan.ticket.id)
            if email.message_id:
                batch.threads[message_id_hash(email.message_id)] = plan.ticket.id
        batch.by_dedup_key[email.dedup_key] = entry
        batch.entries.append(entry)

    @staticmethod
    def _new_receipt(email: InboundEmail, plan: _Plan) -> Receipt:
        kind = "bounce" if email.bounce is not None else (
            "auto_reply" if email.automation is not None else "customer")
        ticket = plan.ticket
        if plan.new_ticket:
            return Receipt(email_id=uuid.uuid4().hex, is_new=True, kind=kind,
                           conversation_id=uuid.uuid4().hex, reference=new_reference(),
                           task_id=plan.task_id)
        return Receipt(email_id=uuid.uuid4().hex, is_new=True, kind=kind,
                       conversation_id=None if ticket is None else ticket.conversation_id,
                       reference=None if ticket is None else ticket.reference,
                       task_id=plan.task_id)

    async def _plan(self, session: AsyncSession, mailbox: _MailboxView,
                    email: InboundEmail, batch: _Batch) -> _Plan:
        plan = _Plan()
        if email.bounce is not None:
            plan.ticket = batch.thread_of((email.bounce.original_message_id,))
            return plan
        plan.ticket = batch.thread_of((email.in_reply_to, *email.references))
        if plan.ticket is None:
            reference = reference_in(email.subject)
            if reference:
                plan.ticket = next((t for t in batch.tickets.values()
                                    if t.reference == reference), None) or (
                    await EmailTickets(session, self.tenant_id).by_reference(reference))
        if plan.ticket is None and email.automation is not None:
            return plan  # a robot's email about nothing we know: kept, never routed
        if plan.ticket is None:
            plan.new_ticket = True
            address = normal_address(email.reply_to or email.from_address)
            plan.customer = batch.customers.get(address)
            if plan.customer is None:
                plan.customer = batch.customers[address] = Customer(
                    id=uuid.uuid4().hex, name=(email.from_name or address)[:200],
                    attributes={"email": address})
                batch.new_customers[plan.customer.id] = address
        elif email.automation is None and not self._has_open_task(plan.ticket, batch):
            plan.task_id = uuid.uuid4().hex
        if plan.new_ticket:
            plan.task_id = uuid.uuid4().hex
        if plan.task_id is not None and mailbox.queue_id is None:
            # Not stored, so not flagged: read again once an admin gives the mailbox a queue.
            raise InvalidConfiguration(f"mailbox {mailbox.name} has no queue to route to")
        return plan

    def _has_open_task(self, ticket: EmailTicket, batch: _Batch) -> bool:
        if ticket.id in batch.tasked:
            return True
        if ticket.task_id is None:
            return False
        try:
            return self._routing.engine.task(ticket.task_id).phase is not TaskPhase.ENDED
        except NotFound:
            return False

    async def _keep_files(self, email: InboundEmail) -> list[StoredFile | None]:
        """Each part through the attachments' checks; a refused part is None (noted in the
        message, never served)."""
        if self._files is None:
            return []
        kept: list[StoredFile | None] = []
        for part in email.files:
            try:
                kept.append(await self._files.receive(self.tenant_id, part.filename,
                                                      _chunks(part.data)))
            except InvalidConfiguration as refusal:
                log.info("email attachment %r refused: %s", part.filename, refusal)
                kept.append(None)
        return kept

    async def _write(self, mailbox: _MailboxView, batch: _Batch,
                     uid_validity: int | None) -> list[Receipt]:
        """One transaction: the batch's rows and its tasks (one engine command)."""
        views: list[dict[str, Any]] = []
        acknowledged = False
        held: list[_WriteContext] = []
        requests = [self._task_request(mailbox, entry) for entry in batch.entries
                    if entry.plan is not None and entry.plan.task_id is not None]

        async def write(session: AsyncSession, events: list[ev.Event]) -> None:
            nonlocal acknowledged
            row = await EmailMailboxes(session, self.tenant_id).get(mailbox.id)
            _advance(row, batch.last_uid, uid_validity)
            context = await self._context(session, mailbox, batch)
            # Held until the commit: the session's identity map is weak, and the rows it
            # holds (the queue, the new contacts) spare the task rows' reference checks.
            held.append(context)
            for entry in batch.entries:
                if entry.plan is not None:
                    view, acknowledges = await self._write_one(session, mailbox, entry,
                                                               batch, context)
                    views.append(view)
                    acknowledged = acknowledged or acknowledges
            for rows in context.stages:  # referenced rows first: one INSERT per table
                session.add_all(rows)
                await session.flush()

        if requests:
            # The queue's routing policy applies (VIPs to their account manager first); an
            # unknown queue refuses the batch before any task is made.
            await self._routing.create_tasks(requests, alongside=write)
        else:
            async with self._database.session() as session:
                await write(session, [])
        for view in views:
            if view:
                self._bus.publish(self.tenant_id, [conversation_topic(view["conversation_id"])],
                                  Notice("message.created", view))
        if acknowledged:
            self.outbox_changed.set()
        return [entry.receipt for entry in batch.entries]

    @staticmethod
    def _task_request(mailbox: _MailboxView, entry: _Entry) -> TaskRequest:
        plan, email = entry.plan, entry.email
        assert plan is not None and plan.ticket is not None and mailbox.queue_id is not None
        ticket = plan.ticket
        return TaskRequest(
            channel=EMAIL, queue=mailbox.queue_id, id=plan.task_id,
            conversation_id=ticket.conversation_id,
            attributes={"customer_name": email.from_name or email.from_address,
                        "customer_email": email.from_address,
                        "contact_id": ticket.contact_id, "topic": email.subject[:200],
                        "mailbox_id": mailbox.id, "reference": ticket.reference,
                        **routing_attributes(plan.customer)})

    async def _context(self, session: AsyncSession, mailbox: _MailboxView,
                       batch: _Batch) -> _WriteContext:
        """What writing the batch needs once: the deadline rule, our own addresses and how
        many tickets each new ticket's address opened in the last hour."""
        hours = queue = None
        if mailbox.queue_id is not None:
            queue = await Queues(session, self.tenant_id).find(mailbox.queue_id)
            if queue is not None and queue.business_hours_id is not None:
                hours = await BusinessHoursRepository(session, self.tenant_id).find(
                    queue.business_hours_id)
        context = _WriteContext(mailbox.first_response_s, hours, queue)
        if batch.new_tickets and mailbox.auto_acknowledge:
            context.own_addresses = {normal_address(m.address) for m in
                                     await EmailMailboxes(session, self.tenant_id).list_all()}
            addresses = {ticket.customer_address for ticket in batch.tickets.values()
                         if ticket.id in batch.new_tickets}
            context.opened = await EmailTickets(session, self.tenant_id).opened_by_each(
                addresses, now_utc() - timedelta(hours=1))
        return context

    async def _write_one(self, session: AsyncSession, mailbox: _MailboxView, entry: _Entry,
                         batch: _Batch, context: _WriteContext) -> tuple[dict[str, Any], bool]:
        """One new email's rows, put in the context's stages for the batch's flushes (their
        tenant is set here: every row they refer to is this tenant's, read or made for this
        batch); returns its message's view ({} when it has none) and whether it was
        acknowledged."""
        plan, email, receipt = entry.plan, entry.email, entry.receipt
        assert plan is not None
        tenant_id = self.tenant_id
        stages = context.stages
        at = now_utc()
        ticket = plan.ticket
        author: tuple[str, str] | None = None  # the conversation's customer: (id, name)
        if ticket is not None and ticket.id in batch.new_tickets:
            customer = batch.new_tickets[ticket.id]
            address = batch.new_customers.pop(customer.id, None)
            if address is not None:  # new to the store, added with its first ticket
                customer.tenant_id = tenant_id
                stages[0].append(customer)
                stages[1].append(Identity(tenant_id=tenant_id, customer_id=customer.id,
                                          kind=EMAIL_IDENTITY, value=address))
            stages[1].append(Conversation(id=ticket.conversation_id, tenant_id=tenant_id,
                                          customer_id=customer.id, subject=email.subject[:500],
                                          created_at=at))
            stages[2].extend([
                Contact(id=ticket.contact_id, tenant_id=tenant_id,
                        conversation_id=ticket.conversation_id, customer_id=customer.id,
                        channel=EMAIL, direction="inbound", queue_id=mailbox.queue_id,
                        started_at=at,
                        attributes={"mailbox_id": mailbox.id, "reference": ticket.reference,
                                    "topic": email.subject[:200]}),
                ticket])
            ticket.tenant_id = tenant_id
            ticket.task_id = plan.task_id
            ticket.first_response_due_at = context.due(at)
            ticket.created_at = at
            batch.new_tickets.pop(ticket.id)
            batch.authors[ticket.conversation_id] = author = (customer.id, customer.name)
        elif ticket is not None:
            if ticket.id not in batch.written:  # a stored ticket: this session's copy
                ticket = await EmailTickets(session, tenant_id).get(ticket.id)
                batch.tickets[ticket.id] = ticket
                batch.written.add(ticket.id)
            else:  # planned with the copy read before; this session has its own
                ticket = batch.tickets[ticket.id]
            if plan.task_id is not None:
                ticket.task_id = plan.task_id
                conversation = await Conversations(session, tenant_id).get(
                    ticket.conversation_id)
                conversation.status, conversation.closed_at = "open", None
            author = await self._author(session, ticket.conversation_id, batch)
        view: dict[str, Any] = {}
        message: Message | None = None
        if ticket is not None:
            assert author is not None
            batch.written.add(ticket.id)
            message, files = self._message(ticket, email, receipt.kind, at, entry.files,
                                           author[0])
            stages[3].append(message)
            stages[4].extend(files)
            view = message_view(message, "OmniCC" if message.author_kind == "system"
                                else author[1], files)
        stages[4].append(EmailMessage(
            id=receipt.email_id, tenant_id=tenant_id, mailbox_id=mailbox.id,
            ticket_id=None if ticket is None else ticket.id,
            conversation_id=receipt.conversation_id,
            message_id=None if message is None else message.id,
            direction="inbound", kind=receipt.kind, status="received",
            dedup_key=email.dedup_key, header_message_id=email.message_id,
            message_id_hash=message_id_hash(email.message_id) if email.message_id else None,
            in_reply_to=email.in_reply_to, references=list(email.references),
            from_address=email.from_address, from_name=email.from_name[:200],
            to_addresses=list(email.to), cc_addresses=list(email.cc),
            subject=email.subject, text=email.text, safe_html=email.safe_html,
            raw=email.raw, imap_uid=entry.uid, created_at=at))
        if email.bounce is not None:
            await self._mark_bounced(session, email.bounce)
        acknowledges = (plan.new_ticket and ticket is not None and mailbox.auto_acknowledge
                        and email.automation is None and context.may_acknowledge(ticket))
        if acknowledges:
            assert ticket is not None
            row = self._acknowledgement(mailbox, ticket, email, at)
            row.tenant_id = tenant_id
            stages[4].append(row)
        return view, acknowledges

    async def _author(self, session: AsyncSession, conversation_id: str,
                      batch: _Batch) -> tuple[str, str]:
        """(id, name) of a stored conversation's customer, read once per batch."""
        known = batch.authors.get(conversation_id)
        if known is None:
            conversation = await Conversations(session, self.tenant_id).get(conversation_id)
            customer_id = conversation.customer_id or ""
            customer = await Customers(session, self.tenant_id).find(customer_id)
            known = (customer_id, customer.name if customer is not None else "Customer")
            batch.authors[conversation_id] = known
        return known

    def _message(self, ticket: EmailTicket, email: InboundEmail, kind: str, at: datetime,
                 files: list[StoredFile | None],
                 customer_id: str) -> tuple[Message, list[Attachment]]:
        """The conversation's message of a received email and its kept files' rows. Its
        idempotency key is the email's: the email row stored with it says it is new."""
        refused = [part.filename for part, kept in zip(email.files, files, strict=False)
                   if kept is None]
        if kind == "bounce" and email.bounce is not None:
            bounce = email.bounce
            text = ("Delivery failed" + (f" to {', '.join(bounce.recipients)}"
                                         if bounce.recipients else "")
                    + (f" ({bounce.status})" if bounce.status else "")
                    + (f": {bounce.diagnostic}" if bounce.diagnostic else "."))
            author_kind, author_id, visibility = "system", None, "internal"
        else:
            text = email.text or "(no text)"
            if refused:
                text += "\n\n[Attachments not accepted: " + ", ".join(refused) + "]"
            if kind == "auto_reply":
                text = f"[Automatic reply: {email.automation}]\n{text}"
            author_kind, author_id, visibility = "customer", customer_id, "public"
        message = Message(
            id=new_id(), tenant_id=self.tenant_id, conversation_id=ticket.conversation_id,
            contact_id=ticket.contact_id, author_kind=author_kind, author_id=author_id,
            visibility=visibility, text=text[:200_000],
            idempotency_key=f"email:{email.dedup_key}"[:128], created_at=at)
        rows = [stored.attachment for stored in files if stored is not None]
        for attachment in rows:
            attachment.tenant_id = self.tenant_id
            attachment.conversation_id = ticket.conversation_id
            attachment.message_id = message.id
        return message, rows

    async def _view(self, session: AsyncSession, message: Message) -> dict[str, Any]:
        files = [] if message.id is None else await Attachments(session, self.tenant_id).all(
            Attachments(session, self.tenant_id).select().where(
                Attachment.message_id == message.id))
        name = "OmniCC" if message.author_kind == "system" else "Customer"
        if message.author_kind == "agent" and message.author_id:
            agent = await Agents(session, self.tenant_id).find(message.author_id)
            name = agent.name if agent is not None else "Agent"
        elif message.author_kind == "customer" and message.author_id:
            customer = await Customers(session, self.tenant_id).find(message.author_id)
            name = customer.name if customer is not None else name
        return message_view(message, name, files)

    async def _mark_bounced(self, session: AsyncSession, bounce: Bounce) -> None:
        if not bounce.original_message_id:
            return
        emails = EmailMessages(session, self.tenant_id)
        for row in await emails.by_message_id_hashes(
                [message_id_hash(bounce.original_message_id)]):
            if row.direction == "outbound":
                row.status = "failed"
                row.last_error = f"bounced: {bounce.status} {bounce.diagnostic}".strip()
                await emails.save(row)

    @staticmethod
    def _acknowledgement(mailbox: _MailboxView, ticket: EmailTicket, email: InboundEmail,
                         at: datetime) -> EmailMessage:
        text = (f"Hello,\n\nthank you for your message. We have received it and will answer "
                f"as soon as we can.\n\nYour reference is {ticket.reference}. Please keep "
                f"[#{ticket.reference}] in the subject when you write to us about it.\n\n"
                f"{mailbox.name}")
        return _outgoing(mailbox, ticket, kind="acknowledgement", text=text,
                         in_reply_to=email.message_id,
                         references=(*email.references, email.message_id),
                         at=at + timedelta(microseconds=1), message=None)  # after it

    async def _queue_email(self, session: AsyncSession, mailbox: _MailboxView,
                           ticket: EmailTicket, *, kind: str, text: str, in_reply_to: str,
                           references: tuple[str, ...], at: datetime,
                           message: Message | None) -> EmailMessage:
        return await EmailMessages(session, self.tenant_id).add(_outgoing(
            mailbox, ticket, kind=kind, text=text, in_reply_to=in_reply_to,
            references=references, at=at, message=message))

    # --- the agent ---------------------------------------------------------------------------

    def _task_of_agent(self, ticket: EmailTicket, agent_id: str) -> str:
        if ticket.task_id is None:
            raise Forbidden("this email is not assigned to you")
        try:
            task = self._routing.engine.task(ticket.task_id)
        except NotFound:
            raise Forbidden("this email is not assigned to you") from None
        if task.agent_id != agent_id or task.phase is not TaskPhase.ASSIGNED:
            raise Forbidden("this email is not assigned to you")
        return task.id

    async def reply(self, agent_id: str, conversation_id: str, text: str,
                    key: str | None = None) -> dict[str, Any]:
        """The agent's answer: a public message and an email in the outbox, in the thread
        (In-Reply-To the customer's last email, References the whole thread, the token)."""
        text = text.strip()
        if not text:
            raise InvalidConfiguration("a reply needs some text")
        at = now_utc()
        async with self._database.session() as session:
            tickets = EmailTickets(session, self.tenant_id)
            ticket = await tickets.of_conversation(conversation_id)
            if ticket is None:
                raise NotFound(f"no email in conversation {conversation_id}")
            self._task_of_agent(ticket, agent_id)
            mailbox = await EmailMailboxes(session, self.tenant_id).get(ticket.mailbox_id or "")
            messages = Messages(session, self.tenant_id)
            message, is_new = await messages.append(Message(
                conversation_id=conversation_id, contact_id=ticket.contact_id,
                author_kind="agent", author_id=agent_id, visibility="public", text=text,
                idempotency_key=key, created_at=at))
            if is_new:
                emails = EmailMessages(session, self.tenant_id)
                thread = await emails.thread_message_ids(conversation_id)
                last_inbound = next(
                    (row.header_message_id for row in reversed(
                        await emails.of_conversation(conversation_id))
                     if row.direction == "inbound" and row.kind == "customer"
                     and row.header_message_id), thread[-1] if thread else "")
                await self._queue_email(session, _MailboxView.of(mailbox), ticket,
                                        kind="reply", text=text, in_reply_to=last_inbound,
                                        references=tuple(thread), at=at, message=message)
                if ticket.first_responded_at is None:
                    ticket.first_responded_at = at
                    await tickets.save(ticket)
            view = await self._view(session, message)
        if is_new:
            self._bus.publish(self.tenant_id, [conversation_topic(conversation_id)],
                              Notice("message.created", view))
            self.outbox_changed.set()
        return view

    async def finish(self, agent_id: str, conversation_id: str) -> None:
        """The agent is done with the email for now; wrap-up follows when the queue asks.
        The customer's next email opens a new task in the same conversation."""
        async with self._database.session() as session:
            ticket = await EmailTickets(session, self.tenant_id).of_conversation(conversation_id)
        if ticket is None:
            raise NotFound(f"no email in conversation {conversation_id}")
        task_id = self._task_of_agent(ticket, agent_id)

        async def close(session: AsyncSession, events: list[ev.Event]) -> None:
            conversation = await Conversations(session, self.tenant_id).get(conversation_id)
            conversation.status, conversation.closed_at = "closed", now_utc()

        await self._routing.run(lambda engine: engine.complete(task_id), alongside=close)

    async def transfer(self, agent_id: str, conversation_id: str, *,
                       queue_id: str | None = None, to_agent_id: str | None = None) -> None:
        """Hand the email to a queue or a colleague; the conversation notes it for agents."""
        async with self._database.session() as session:
            ticket = await EmailTickets(session, self.tenant_id).of_conversation(conversation_id)
        if ticket is None:
            raise NotFound(f"no email in conversation {conversation_id}")
        task_id = self._task_of_agent(ticket, agent_id)

        async def note(session: AsyncSession, events: list[ev.Event]) -> None:
            if queue_id is not None:
                queue = await Queues(session, self.tenant_id).get(queue_id)
                target = f"queue {queue.name}"
            else:
                colleague = await Agents(session, self.tenant_id).get(to_agent_id or "")
                target = colleague.name
            await Messages(session, self.tenant_id).append(Message(
                conversation_id=conversation_id, contact_id=ticket.contact_id,
                author_kind="system", visibility="internal",
                text=f"The email was transferred to {target}.", created_at=now_utc()))

        await self._routing.run(
            lambda engine: engine.transfer(task_id, queue_id=queue_id, agent_id=to_agent_id),
            alongside=note)

    async def thread(self, conversation_id: str) -> dict[str, Any]:
        """The ticket and its emails as the desk shows them (sanitised HTML only)."""
        async with self._database.session() as session:
            ticket = await EmailTickets(session, self.tenant_id).of_conversation(conversation_id)
            if ticket is None:
                raise NotFound(f"no email in conversation {conversation_id}")
            rows = await EmailMessages(session, self.tenant_id).of_conversation(conversation_id)
            files: dict[str, list[Attachment]] = {}
            ids = [row.message_id for row in rows if row.message_id]
            if ids:
                repository = Attachments(session, self.tenant_id)
                for attachment in await repository.all(repository.select().where(
                        Attachment.message_id.in_(ids))):
                    files.setdefault(attachment.message_id or "", []).append(attachment)
        return {
            "ticket": {"reference": ticket.reference, "subject": ticket.subject,
                       "customer_address": ticket.customer_address, "task_id": ticket.task_id,
                       "mailbox_id": ticket.mailbox_id,
                       "first_response_due_at": _iso(ticket.first_response_due_at),
                       "first_responded_at": _iso(ticket.first_responded_at),
                       "escalation": ticket.escalation},
            "emails": [_email_view(row, files.get(row.message_id or "", [])) for row in rows],
        }

    # --- sending -----------------------------------------------------------------------------

    async def outbox(self) -> list[OutgoingEmail]:
        """Emails waiting to be sent, oldest first."""
        async with self._database.session() as session:
            rows = await EmailMessages(session, self.tenant_id).pending()
        return [OutgoingEmail(
            email_id=row.id, mailbox_id=row.mailbox_id, from_address=row.from_address,
            from_name=row.from_name, to=tuple(row.to_addresses), subject=row.subject,
            message_id=row.header_message_id, date=row.created_at,
            in_reply_to=row.in_reply_to, references=tuple(row.references), text=row.text,
            is_automatic=row.kind == "acknowledgement") for row in rows]

    async def sent(self, email_id: str) -> None:
        async with self._database.session() as session:
            emails = EmailMessages(session, self.tenant_id)
            row = await emails.get(email_id)
            row.status, row.sent_at, row.attempts = "sent", now_utc(), row.attempts + 1
            row.last_error = None
            conversation_id = row.conversation_id
        self._tell_status(conversation_id, email_id, "sent")

    def _tell_status(self, conversation_id: str | None, email_id: str, status: str) -> None:
        """The desk shows an email's delivery state: it changes after the reply was posted."""
        if conversation_id is not None:
            self._bus.publish(self.tenant_id, [conversation_topic(conversation_id)],
                              Notice("email.status", {"conversation_id": conversation_id,
                                                      "email_id": email_id,
                                                      "status": status}))

    async def failed(self, email_id: str, error: str) -> bool:
        """An attempt failed; returns whether it is given up (then the conversation says so
        with an internal note the agent sees)."""
        note: Message | None = None
        async with self._database.session() as session:
            emails = EmailMessages(session, self.tenant_id)
            row = await emails.get(email_id)
            row.attempts += 1
            row.last_error = error[:2000]
            is_final = row.attempts >= MAX_SEND_ATTEMPTS
            if is_final:
                row.status = "failed"
                if row.conversation_id is not None:
                    note, _ = await Messages(session, self.tenant_id).append(Message(
                        conversation_id=row.conversation_id, author_kind="system",
                        visibility="internal",
                        text=f"The email to {', '.join(row.to_addresses)} could not be sent "
                             f"after {row.attempts} attempts: {error[:500]}",
                        idempotency_key=f"send-failed:{row.id}", created_at=now_utc()))
            view = None if note is None else await self._view(session, note)
            conversation_id = row.conversation_id
        if is_final:
            self._tell_status(conversation_id, email_id, "failed")
        if view is not None:
            self._bus.publish(self.tenant_id, [conversation_topic(view["conversation_id"])],
                              Notice("message.created", view))
        return is_final

    # --- the first-response service level ----------------------------------------------------

    async def escalate_due(self, at: datetime | None = None) -> list[str]:
        """Raise the priority of waiting email tasks as their first-response deadline nears;
        returns the references escalated. The task keeps its id and its place in time; the
        higher priority moves it up the line (`task.reprioritised`)."""
        now = at or now_utc()
        escalated: list[str] = []
        async with self._database.session() as session:
            tickets = await EmailTickets(session, self.tenant_id).awaiting_first_response()
            mailboxes = {m.id: m for m in await EmailMailboxes(session,
                                                                 self.tenant_id).list_all()}
        for ticket in tickets:
            mailbox = mailboxes.get(ticket.mailbox_id or "")
            if mailbox is None or ticket.first_response_due_at is None:
                continue
            target_s = max(1, mailbox.first_response_s)
            left_s = (ticket.first_response_due_at - now).total_seconds()
            share = 1 - left_s / target_s
            level = max((lvl for at_share, lvl in ESCALATION_STEPS if share >= at_share),
                        default=0)
            if level <= ticket.escalation or ticket.task_id is None:
                continue
            if await self._raise_priority(ticket, level):
                escalated.append(ticket.reference)
        return escalated

    async def _raise_priority(self, ticket: EmailTicket, level: int) -> bool:
        task_id = ticket.task_id or ""
        try:
            task = self._routing.engine.task(task_id)
        except NotFound:
            return False
        if task.phase not in (TaskPhase.WAITING, TaskPhase.OFFERED):
            return False  # being handled: nothing to hurry
        priority = task.priority + ESCALATION_PRIORITY * (level - ticket.escalation)

        async def note(session: AsyncSession, events: list[ev.Event]) -> None:
            row = await EmailTickets(session, self.tenant_id).get(ticket.id)
            row.escalation = level

        try:
            await self._routing.run(lambda engine: engine.reprioritise(task_id, priority),
                                    alongside=note)
        except (Conflict, NotFound):
            return False
        log.info("email %s escalated to level %d", ticket.reference, level)
        return True


@dataclass(frozen=True, slots=True)
class _MailboxView:
    """What receiving needs of a mailbox, outside its session."""

    id: str
    name: str
    address: str
    queue_id: str | None
    auto_acknowledge: bool
    first_response_s: int

    @classmethod
    def of(cls, row: EmailMailbox) -> _MailboxView:
        return cls(id=row.id, name=row.name, address=normal_address(row.address),
                   queue_id=row.queue_id, auto_acknowledge=row.auto_acknowledge,
                   first_response_s=row.first_response_s)


def _outgoing(mailbox: _MailboxView, ticket: EmailTicket, *, kind: str, text: str,
              in_reply_to: str, references: tuple[str, ...], at: datetime,
              message: Message | None) -> EmailMessage:
    """An email for the outbox, threaded to the ticket (pending until sent)."""
    header_id = new_message_id(mailbox.address, ticket.reference)
    kept = tuple(r for r in references if r)[-MAX_REFERENCES:]
    return EmailMessage(
        mailbox_id=mailbox.id, ticket_id=ticket.id, conversation_id=ticket.conversation_id,
        message_id=None if message is None else message.id, direction="outbound",
        kind=kind, status="pending",
        dedup_key=hashlib.sha256(f"id:{header_id}".encode()).hexdigest(),
        header_message_id=header_id, message_id_hash=message_id_hash(header_id),
        in_reply_to=in_reply_to, references=list(kept), from_address=mailbox.address,
        from_name=mailbox.name, to_addresses=[ticket.customer_address],
        subject=reply_subject(ticket.subject, ticket.reference), text=text,
        created_at=at)


def _advance(mailbox: EmailMailbox, uid: int | None, uid_validity: int | None) -> None:
    if uid is None:
        return
    if uid_validity is not None and mailbox.uid_validity != uid_validity:
        mailbox.uid_validity, mailbox.last_uid = uid_validity, 0
    mailbox.last_uid = max(mailbox.last_uid or 0, uid)


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _email_view(row: EmailMessage, files: list[Attachment]) -> dict[str, Any]:
    return {"id": row.id, "direction": row.direction, "kind": row.kind, "status": row.status,
            "message_id": row.message_id, "from_address": row.from_address,
            "from_name": row.from_name, "to": list(row.to_addresses),
            "cc": list(row.cc_addresses), "subject": row.subject, "text": row.text,
            "safe_html": row.safe_html, "created_at": row.created_at.isoformat(),
            "sent_at": _iso(row.sent_at), "last_error": row.last_error,
            "attachments": [{"id": a.id, "filename": a.filename,
                             "content_type": a.content_type, "size_bytes": a.size_bytes,
                             "url": f"/api/attachments/{a.id}"} for a in files]}


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 64 * 1024):
        yield data[start:start + 64 * 1024]


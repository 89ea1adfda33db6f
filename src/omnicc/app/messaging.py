"""The messaging use cases of one tenant (SMS, WhatsApp, Telegram, Messenger): a customer's
message joins their open conversation or opens one with a routing task; an agent's answer goes
out through the provider with retries; delivery receipts move each message's state.

Durability: a received message is committed (with its customer, conversation, contact and
routing task) before the webhook is answered, and its provider id is unique per account, so a
provider's retry of the same webhook stores nothing twice. An answer is a row in the outbox,
committed with its conversation message before any attempt: a failed attempt is retried
(network trouble, 429, 5xx) with back-off and finally shown to the agent as failed, never lost.

WhatsApp allows free-form answers only within 24 hours of the customer's last message (the
customer-service window); after it only approved templates (`send_template`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

from sqlalchemy import Table, bindparam, func, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from omnicc.app.chats import attachment_view, conversation_topic, message_view
from omnicc.app.customers import routing_attributes
from omnicc.app.group_commit import GroupCommit
from omnicc.app.principals import Forbidden
from omnicc.app.routing import RoutingService
from omnicc.app.voice import PHONE
from omnicc.bus import Bus, Notice
from omnicc.channels.messaging.shape import Account, InboundMessage, Media, Outgoing, Receipt
from omnicc.core import events as ev
from omnicc.core.errors import Conflict, InvalidConfiguration, NotFound
from omnicc.core.model import TaskPhase, TaskRequest
from omnicc.store.database import Database
from omnicc.store.repositories import (
    Agents,
    Attachments,
    Contacts,
    Conversations,
    Customers,
    Identities,
    Messages,
    MessagingAccounts,
    MessagingMessages,
    MessagingThreads,
    Queues,
)
from omnicc.store.tables import (
    Attachment,
    Contact,
    Conversation,
    Customer,
    Identity,
    Message,
    MessagingAccount,
    MessagingMessage,
    MessagingThread,
    Queue,
)

log = logging.getLogger("omnicc.messaging")

MAX_SEND_ATTEMPTS: Final = 5
MAX_BATCH: Final = 200
"""Received messages per transaction at most: bounds the time the writer holds the store."""
SERVICE_WINDOW: Final = timedelta(hours=24)
MEDIA_RECOVERY: Final = timedelta(days=2)
"""How far back media left unfetched by a stop are fetched at start (providers keep them for
days: Twilio until deleted, WhatsApp's media ids for 30 days)."""
"""WhatsApp's customer-service window (Messenger's standard messaging window too)."""
IDENTITY_KINDS: Final = {"sms": PHONE, "whatsapp": PHONE, "telegram": "telegram",
                         "messenger": "messenger"}
"""SMS and WhatsApp find the customer by phone number, the same identity as a caller's."""
STATE_RANK: Final = {"pending": 0, "sent": 1, "delivered": 2, "read": 3}


@dataclass(frozen=True, slots=True)
class Received:
    """What became of a received message."""

    message_id: str
    is_new: bool
    conversation_id: str
    task_id: str | None = None


@dataclass(frozen=True, slots=True)
class MediaJob:
    """A stored message's media, to fetch into the attachment store."""

    row_id: str
    account_id: str
    conversation_id: str
    message_id: str
    contact_id: str | None
    media: tuple[Media, ...]


@dataclass(frozen=True, slots=True)
class Sending:
    """An outbox row due for an attempt, with what its provider needs."""

    row_id: str
    provider: str
    account: Account
    outgoing: Outgoing


@dataclass(slots=True)
class _Inbox:
    """A batch of received messages: what the store knew of them (read once) and what its
    earlier messages make, so later ones join them."""

    accounts: dict[str, MessagingAccount]
    stored: dict[tuple[str, str], Received] = field(default_factory=dict)
    """(account, provider message id) -> the stored message, or the batch's earlier copy."""
    threads: dict[tuple[str, str], MessagingThread] = field(default_factory=dict)
    """(account, peer) -> the customer's thread (stored, or new in this batch)."""
    identities: dict[tuple[str, str], str] = field(default_factory=dict)
    """(identity kind, value) -> customer id."""
    customers: dict[str, Customer] = field(default_factory=dict)
    new_threads: set[str] = field(default_factory=set)
    tasked: set[str] = field(default_factory=set)
    """Threads given a task by this batch."""
    thread_changes: dict[str, tuple[datetime, str | None]] = field(default_factory=dict)
    """Stored thread id -> (last inbound at, its new task or None)."""
    reopened: set[str] = field(default_factory=set)
    """Stored conversations a new task opens again."""
    stages: tuple[list[Any], ...] = field(default_factory=lambda: ([], [], [], [], [], []))
    """The new rows by what they refer to: customers; identities and conversations;
    contacts; threads; messages; messaging messages."""
    requests: list[TaskRequest] = field(default_factory=list)
    views: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    media: list[MediaJob] = field(default_factory=list)


def now_utc() -> datetime:
    return datetime.now(UTC)


def account_of(row: MessagingAccount) -> Account:
    return Account(channel=row.channel, address=row.address, account_sid=row.account_sid,
                   auth_token=row.auth_token, app_secret=row.app_secret,
                   verify_token=row.verify_token, api_base_url=row.api_base_url)


def in_window(thread: MessagingThread, at: datetime) -> bool:
    return thread.last_inbound_at is not None and at - thread.last_inbound_at < SERVICE_WINDOW


class MessagingDesk:
    """One tenant's messaging: receive, answer, send, track delivery."""

    def __init__(self, database: Database, tenant_id: str, routing: RoutingService,
                 bus: Bus, *, public_base_url: str = "", keeps_media: bool = False) -> None:
        self._database = database
        self.tenant_id = tenant_id
        self._routing = routing
        self._bus = bus
        self._public_base_url = public_base_url.rstrip("/")
        self._inbox: GroupCommit[tuple[str, InboundMessage], Received] = GroupCommit(
            self._receive_batch, max_batch=MAX_BATCH)
        self.outbox_changed = asyncio.Event()
        """Set after a message is put in the outbox: the sender wakes."""
        self._keeps_media = keeps_media
        self._media: list[MediaJob] = []
        self.media_arrived = asyncio.Event()
        """Set after messages with media are stored: the media fetcher wakes."""

    @property
    def routing(self) -> RoutingService:
        return self._routing

    # --- receiving ---------------------------------------------------------------------------

    async def receive(self, account_id: str, inbound: InboundMessage) -> Received:
        """Store a customer's message and route it; returns once it is committed, in one
        transaction with the messages received at the same moment (group commit).
        Idempotent on its provider id, also for two copies in one batch."""
        return await self._inbox.submit((account_id, inbound))

    async def _receive_batch(self, items: list[tuple[str, InboundMessage]]
                             ) -> list[Received | Exception]:
        try:
            return await self._store_batch(items)
        except IntegrityError:
            if len(items) > 1:
                raise  # the group commit tries each alone
            # Another process stored the same provider message first.
            [(account_id, inbound)] = items
            async with self._database.session() as session:
                stored = await MessagingMessages(session, self.tenant_id).by_provider_id(
                    account_id, inbound.provider_message_id)
            if stored is None:
                raise
            return [Received(message_id=stored.id, is_new=False,
                             conversation_id=stored.conversation_id)]

    async def _store_batch(self, items: list[tuple[str, InboundMessage]]
                           ) -> list[Received | Exception]:
        """One transaction for the batch: its messages (with their customers, threads,
        conversations and contacts) and one engine command for the tasks they open. A
        message refused alone (an account without a queue) gets its exception; a provider
        id stored before, or earlier in the batch, is a duplicate and stores nothing."""
        async with self._database.session() as session:
            inbox = await self._prefetch(session, items)
        outcomes: list[Received | Exception] = []
        for account_id, inbound in items:
            try:
                outcomes.append(self._plan(inbox, account_id, inbound))
            except (InvalidConfiguration, NotFound) as refused:
                outcomes.append(refused)
        queue_ids = {request.queue for request in inbox.requests if request.queue}
        held: list[Queue] = []

        async def write(session: AsyncSession, events: list[ev.Event]) -> None:
            if inbox.thread_changes:  # one statement for the batch's stored threads
                table = cast(Table, MessagingThread.__table__)
                await session.execute(update(table).where(
                    table.c.tenant_id == self.tenant_id, table.c.id == bindparam("thread_id"))
                    .values(last_inbound_at=bindparam("at"),
                            task_id=func.coalesce(bindparam("task"), table.c.task_id)), [
                    {"thread_id": thread_id, "at": at, "task": task_id}
                    for thread_id, (at, task_id) in inbox.thread_changes.items()])
            if inbox.reopened:
                conversations = Conversations(session, self.tenant_id)
                for conversation in await conversations.all(conversations.select().where(
                        Conversation.id.in_(list(inbox.reopened)))):
                    conversation.status, conversation.closed_at = "open", None
            if queue_ids:
                # Held until the commit (the identity map is weak): the task rows' queues are
                # then known to this session and need no reference check each.
                held.extend((await session.execute(select(Queue).where(
                    Queue.tenant_id == self.tenant_id, Queue.id.in_(queue_ids)))).scalars())
            for rows in inbox.stages:  # referenced rows first: one INSERT per table
                session.add_all(rows)
                await session.flush()

        if inbox.requests:
            await self._routing.create_tasks(inbox.requests, alongside=write)
        elif inbox.views:
            async with self._database.session() as session:
                await write(session, [])
        for conversation_id, view in inbox.views:
            self._bus.publish(self.tenant_id, [conversation_topic(conversation_id)],
                              Notice("message.created", view))
        self.fetch_media(inbox.media)
        return outcomes

    def take_media(self) -> list[MediaJob]:
        """The media stored since the last call, to fetch."""
        jobs, self._media = self._media, []
        return jobs

    async def unfetched_media(self, *, within: timedelta = MEDIA_RECOVERY) -> list[MediaJob]:
        """The customers' media of the last `within` that were neither kept nor refused: the
        process stopped between a webhook's answer and the fetch. Asked once at start, before
        any webhook, so a medium is never fetched twice."""
        note = aliased(Message)
        async with self._database.session() as session:
            rows = (await session.execute(
                select(MessagingMessage, Message.contact_id)
                .join(Message, Message.id == MessagingMessage.message_id)
                .where(MessagingMessage.tenant_id == self.tenant_id,
                       MessagingMessage.direction == "inbound",
                       MessagingMessage.created_at >= now_utc() - within,
                       ~select(Attachment.id).where(
                           Attachment.message_id == MessagingMessage.message_id).exists(),
                       ~select(note.id).where(
                           note.conversation_id == MessagingMessage.conversation_id,
                           note.idempotency_key == literal("messaging-media:")
                           + MessagingMessage.id).exists())
                .order_by(MessagingMessage.created_at))).all()
        return [MediaJob(row_id=row.id, account_id=row.account_id,
                         conversation_id=row.conversation_id, message_id=row.message_id or "",
                         contact_id=contact_id, media=tuple(Media(url=str(url))
                                                            for url in row.media_urls))
                for row, contact_id in rows if row.media_urls]

    def fetch_media(self, jobs: list[MediaJob]) -> None:
        """Hand media to the fetcher (`take_media`)."""
        if jobs:
            self._media.extend(jobs)
            self.media_arrived.set()

    async def attach(self, job: MediaJob, kept: list[Attachment], refused: list[str]) -> None:
        """A message's fetched media become its attachments; what could not be kept is said
        in an internal note (the provider's reference stays in the message's text)."""
        note: Message | None = None
        async with self._database.session() as session:
            files = Attachments(session, self.tenant_id)
            for attachment in kept:
                attachment.conversation_id, attachment.message_id = (job.conversation_id,
                                                                      job.message_id)
                await files.add(attachment)
            if refused:
                note, _ = await Messages(session, self.tenant_id).append(Message(
                    conversation_id=job.conversation_id, contact_id=job.contact_id,
                    author_kind="system", visibility="internal",
                    text="The customer's media could not be kept: " + "; ".join(refused),
                    idempotency_key=f"messaging-media:{job.row_id}", created_at=now_utc()))
        if note is not None:
            self._bus.publish(self.tenant_id, [conversation_topic(job.conversation_id)],
                              Notice("message.created", message_view(note, "OmniCC")))
        if kept:
            self._tell_status(job.conversation_id, job.row_id, "received")

    async def _prefetch(self, session: AsyncSession,
                        items: list[tuple[str, InboundMessage]]) -> _Inbox:
        """What the store knows of a batch, in one query per kind: its accounts, the provider
        ids stored already, the customers' threads and the identities of new peers."""
        tenant_id = self.tenant_id
        account_ids = list({account_id for account_id, _ in items})
        peers = list({inbound.peer for _, inbound in items})
        accounts = MessagingAccounts(session, tenant_id)
        inbox = _Inbox(accounts={a.id: a for a in await accounts.all(accounts.select().where(
            MessagingAccount.id.in_(account_ids)))})
        rows = MessagingMessages(session, tenant_id)
        for row in await rows.all(rows.select().where(
                MessagingMessage.account_id.in_(account_ids),
                MessagingMessage.provider_message_id.in_(
                    list({inbound.provider_message_id for _, inbound in items})))):
            inbox.stored[(row.account_id, row.provider_message_id or "")] = Received(
                message_id=row.id, is_new=False, conversation_id=row.conversation_id)
        threads = MessagingThreads(session, tenant_id)
        for thread in await threads.all(threads.select().where(
                MessagingThread.account_id.in_(account_ids), MessagingThread.peer.in_(peers))):
            inbox.threads[(thread.account_id, thread.peer)] = thread
        lookups = {(IDENTITY_KINDS[inbox.accounts[account_id].channel], inbound.peer)
                   for account_id, inbound in items if account_id in inbox.accounts
                   and (account_id, inbound.peer) not in inbox.threads}
        if lookups:
            identities = Identities(session, tenant_id)
            for identity in await identities.all(identities.select().where(
                    Identity.kind.in_({kind for kind, _ in lookups}),
                    Identity.value.in_({value for _, value in lookups}))):
                inbox.identities.setdefault((identity.kind, identity.value),
                                            identity.customer_id)
        # The customers whose routing data a new task carries: those found by identity, and
        # those of threads with no open task (most messages join an open task: no query).
        customer_ids = {*inbox.identities.values(),
                        *(thread.customer_id for thread in inbox.threads.values()
                          if not self._has_open_task(thread.task_id))}
        if customer_ids:
            customers = Customers(session, tenant_id)
            for customer in await customers.all(customers.select().where(
                    Customer.id.in_(list(customer_ids)))):
                inbox.customers[customer.id] = customer
        return inbox

    def _plan(self, inbox: _Inbox, account_id: str, inbound: InboundMessage) -> Received:
        """Decide one message's rows and task, as if the batch's earlier messages were
        stored: a second message from a peer joins the thread (and task) the first made."""
        tenant_id = self.tenant_id
        account = inbox.accounts.get(account_id)
        if account is None:
            raise NotFound(f"messaging account {account_id} not found")
        key = (account_id, inbound.provider_message_id)
        stored = inbox.stored.get(key)
        if stored is not None:
            return stored
        thread = inbox.threads.get((account_id, inbound.peer))
        needs_task = thread is None or (thread.id not in inbox.tasked
                                        and not self._has_open_task(thread.task_id))
        queue_id = account.queue_id
        if needs_task:
            if queue_id is None:
                raise InvalidConfiguration(f"messaging account {account_id} has no queue")
            try:
                self._routing.engine.queue(queue_id)
            except NotFound:
                raise InvalidConfiguration(
                    f"messaging account {account_id}: its queue is not routable") from None
        at = now_utc()
        kind = IDENTITY_KINDS[account.channel]
        name = inbound.name or inbound.peer
        customers, parents, contacts, threads, messages, rows = inbox.stages
        known: Customer | None = None
        if thread is None:
            customer_id = inbox.identities.get((kind, inbound.peer))
            if customer_id is None:
                customer = Customer(id=uuid.uuid4().hex, tenant_id=tenant_id, name=name[:200],
                                    attributes={kind: inbound.peer})
                customer_id = inbox.identities[(kind, inbound.peer)] = customer.id
                customers.append(customer)
                parents.append(Identity(tenant_id=tenant_id, customer_id=customer_id,
                                              kind=kind, value=inbound.peer))
            else:
                known = inbox.customers.get(customer_id)
            conversation_id, contact_id = uuid.uuid4().hex, uuid.uuid4().hex
            parents.append(Conversation(
                id=conversation_id, tenant_id=tenant_id, customer_id=customer_id,
                created_at=at, subject=f"{account.channel} {inbound.peer}"[:500]))
            contacts.append(Contact(
                id=contact_id, tenant_id=tenant_id, conversation_id=conversation_id,
                customer_id=customer_id, channel=account.channel, direction="inbound",
                queue_id=queue_id, started_at=at,
                attributes={"messaging_account_id": account_id, "peer": inbound.peer}))
            thread = MessagingThread(
                id=uuid.uuid4().hex, tenant_id=tenant_id, account_id=account_id,
                peer=inbound.peer, customer_id=customer_id, conversation_id=conversation_id,
                contact_id=contact_id, created_at=at, last_inbound_at=at)
            threads.append(thread)
            inbox.threads[(account_id, inbound.peer)] = thread
            inbox.new_threads.add(thread.id)
        else:
            customer_id = thread.customer_id
            known = inbox.customers.get(customer_id) if needs_task else None
            if needs_task and thread.id not in inbox.new_threads:
                inbox.reopened.add(thread.conversation_id)
        task_id = uuid.uuid4().hex if needs_task else None
        if thread.id in inbox.new_threads:
            thread.last_inbound_at = at
            thread.task_id = task_id or thread.task_id
        else:
            earlier = inbox.thread_changes.get(thread.id, (at, None))[1]
            inbox.thread_changes[thread.id] = (at, task_id or earlier)
        if task_id is not None:
            inbox.tasked.add(thread.id)
            assert queue_id is not None
            inbox.requests.append(TaskRequest(
                channel=account.channel, queue=queue_id, id=task_id,
                conversation_id=thread.conversation_id,
                attributes={"customer_name": name, "contact_id": thread.contact_id,
                            "peer": inbound.peer, "messaging_account_id": account_id,
                            "topic": inbound.text[:200], **routing_attributes(known)}))
        text = inbound.text
        if inbound.media:
            text = "\n".join([text, *(f"[{m.content_type or 'media'}] {m.url}"
                                      for m in inbound.media)]).strip()
        message = Message(
            id=uuid.uuid4().hex, tenant_id=tenant_id, conversation_id=thread.conversation_id,
            contact_id=thread.contact_id, author_kind="customer", author_id=customer_id,
            visibility="public", text=text or "(empty message)",
            idempotency_key=f"{account.provider}:{inbound.provider_message_id}"[:128],
            created_at=at)
        row_id = uuid.uuid4().hex
        messages.append(message)
        rows.append(MessagingMessage(
            id=row_id, tenant_id=tenant_id, account_id=account_id, thread_id=thread.id,
            conversation_id=thread.conversation_id, message_id=message.id,
            direction="inbound", status="received",
            provider_message_id=inbound.provider_message_id, text=inbound.text,
            media_urls=[m.url for m in inbound.media], created_at=at))
        inbox.views.append((thread.conversation_id, message_view(message, name)))
        if inbound.media and self._keeps_media:
            inbox.media.append(MediaJob(row_id=row_id, account_id=account_id,
                                        conversation_id=thread.conversation_id,
                                        message_id=message.id, contact_id=thread.contact_id,
                                        media=inbound.media))
        inbox.stored[key] = Received(message_id=row_id, is_new=False,
                                     conversation_id=thread.conversation_id)
        return Received(message_id=row_id, is_new=True, conversation_id=thread.conversation_id,
                        task_id=task_id)

    def _has_open_task(self, task_id: str | None) -> bool:
        if task_id is None:
            return False
        try:
            return self._routing.engine.task(task_id).phase is not TaskPhase.ENDED
        except NotFound:
            return False

    async def receipt(self, account_id: str, receipt: Receipt) -> int:
        """A delivery receipt moves our message's state forward (never back: a late `sent`
        after `read` changes nothing); returns how many messages changed."""
        changed: list[MessagingMessage] = []
        notes: list[dict[str, Any]] = []
        at = now_utc()
        async with self._database.session() as session:
            rows = MessagingMessages(session, self.tenant_id)
            if receipt.read_up_to is not None:
                thread = await MessagingThreads(session, self.tenant_id).of_peer(
                    account_id, receipt.peer)
                candidates = [] if thread is None else [
                    row for row in await rows.of_conversation(thread.conversation_id)
                    if row.thread_id == thread.id and row.direction == "outbound"
                    and row.sent_at is not None and row.sent_at <= receipt.read_up_to]
            else:
                row = await rows.by_provider_id(account_id, receipt.provider_message_id)
                candidates = [] if row is None or row.direction != "outbound" else [row]
            for row in candidates:
                if _advance(row, receipt, at):
                    changed.append(row)
                    if row.status == "failed":
                        note = await self._failure_note(session, row, receipt.error)
                        notes.append(note)
            result = [(row.conversation_id, row.id, row.status) for row in changed]
        for conversation_id, row_id, status in result:
            self._tell_status(conversation_id, row_id, status)
        for view in notes:
            self._bus.publish(self.tenant_id, [conversation_topic(view["conversation_id"])],
                              Notice("message.created", view))
        return len(result)

    async def _failure_note(self, session: AsyncSession, row: MessagingMessage,
                            error: str) -> dict[str, Any]:
        thread = await MessagingThreads(session, self.tenant_id).get(row.thread_id)
        note, _ = await Messages(session, self.tenant_id).append(Message(
            conversation_id=row.conversation_id, contact_id=thread.contact_id,
            author_kind="system", visibility="internal",
            text=f"The message to {thread.peer} could not be delivered"
                 + (f": {error[:500]}" if error else "."),
            idempotency_key=f"messaging-failed:{row.id}", created_at=now_utc()))
        return message_view(note, "OmniCC")

    def _tell_status(self, conversation_id: str, row_id: str, status: str) -> None:
        self._bus.publish(self.tenant_id, [conversation_topic(conversation_id)],
                          Notice("messaging.status", {"conversation_id": conversation_id,
                                                      "messaging_id": row_id,
                                                      "status": status}))

    # --- the agent ---------------------------------------------------------------------------

    def _task_of_agent(self, thread: MessagingThread, agent_id: str) -> str:
        try:
            task = self._routing.engine.task(thread.task_id or "")
        except NotFound:
            raise Forbidden("this conversation is not assigned to you") from None
        if task.agent_id != agent_id or task.phase is not TaskPhase.ASSIGNED:
            raise Forbidden("this conversation is not assigned to you")
        return task.id

    async def _thread(self, session: AsyncSession, conversation_id: str) -> MessagingThread:
        thread = await MessagingThreads(session, self.tenant_id).of_conversation(conversation_id)
        if thread is None:
            raise NotFound(f"no messaging in conversation {conversation_id}")
        return thread

    async def reply(self, agent_id: str, conversation_id: str, text: str,
                    media_urls: tuple[str, ...] = (), key: str | None = None) -> dict[str, Any]:
        """The agent's answer: a public message and a row in the outbox, in one commit.
        `Conflict` outside WhatsApp's 24-hour window (only templates may go then)."""
        text = text.strip()
        if not text and not media_urls:
            raise InvalidConfiguration("an answer needs text or media")
        at = now_utc()
        async with self._database.session() as session:
            thread = await self._thread(session, conversation_id)
            self._task_of_agent(thread, agent_id)
            account = await MessagingAccounts(session, self.tenant_id).get(thread.account_id)
            if account.channel == "whatsapp" and not in_window(thread, at):
                raise Conflict(
                    "the customer last wrote more than 24 hours ago (WhatsApp's customer-"
                    "service window is closed): only an approved template may be sent")
            shown = "\n".join([text, *media_urls]).strip()
            queued = await self._queue(session, thread, agent_id, shown, at, key,
                                       text=text, media_urls=list(media_urls))
        return self._queued(queued)

    async def send_template(self, agent_id: str, conversation_id: str, name: str,
                            language: str, parameters: tuple[str, ...] = (),
                            key: str | None = None) -> dict[str, Any]:
        """An approved WhatsApp template (a Twilio Content SID for WhatsApp through Twilio):
        allowed at any time, the way to write again after the window closed."""
        at = now_utc()
        async with self._database.session() as session:
            thread = await self._thread(session, conversation_id)
            self._task_of_agent(thread, agent_id)
            account = await MessagingAccounts(session, self.tenant_id).get(thread.account_id)
            if account.channel != "whatsapp":
                raise Conflict("templates are for WhatsApp only")
            shown = f"[Template {name} ({language})]" + (
                f" {', '.join(parameters)}" if parameters else "")
            queued = await self._queue(session, thread, agent_id, shown, at, key,
                                       template=name, template_language=language,
                                       template_parameters=list(parameters))
        return self._queued(queued)

    async def _queue(self, session: AsyncSession, thread: MessagingThread, agent_id: str,
                     shown: str, at: datetime, key: str | None,
                     **content: Any) -> tuple[dict[str, Any], bool]:
        message, is_new = await Messages(session, self.tenant_id).append(Message(
            conversation_id=thread.conversation_id, contact_id=thread.contact_id,
            author_kind="agent", author_id=agent_id, visibility="public", text=shown,
            idempotency_key=key, created_at=at))
        if is_new:
            await MessagingMessages(session, self.tenant_id).add(MessagingMessage(
                account_id=thread.account_id, thread_id=thread.id,
                conversation_id=thread.conversation_id, message_id=message.id,
                direction="outbound", status="pending", created_at=at, **content))
        agent = await Agents(session, self.tenant_id).find(agent_id)
        return message_view(message, agent.name if agent is not None else "Agent"), is_new

    def _queued(self, queued: tuple[dict[str, Any], bool]) -> dict[str, Any]:
        """After the commit: the desks see the answer and the sender wakes."""
        view, is_new = queued
        if is_new:
            self._bus.publish(self.tenant_id, [conversation_topic(view["conversation_id"])],
                              Notice("message.created", view))
            self.outbox_changed.set()
        return view

    async def finish(self, agent_id: str, conversation_id: str) -> None:
        """Done for now: the task completes (wrap-up as the queue says) and the conversation
        closes; the customer's next message opens a new task in it."""
        async with self._database.session() as session:
            thread = await self._thread(session, conversation_id)
        task_id = self._task_of_agent(thread, agent_id)

        async def close(session: AsyncSession, events: list[ev.Event]) -> None:
            conversation = await Conversations(session, self.tenant_id).get(conversation_id)
            conversation.status, conversation.closed_at = "closed", now_utc()

        await self._routing.run(lambda engine: engine.complete(task_id), alongside=close)

    async def transfer(self, agent_id: str, conversation_id: str, *,
                       queue_id: str | None = None, to_agent_id: str | None = None) -> None:
        """Hand the conversation to a queue or a colleague; an internal note says to whom."""
        async with self._database.session() as session:
            thread = await self._thread(session, conversation_id)
        task_id = self._task_of_agent(thread, agent_id)

        async def note(session: AsyncSession, events: list[ev.Event]) -> None:
            if queue_id is not None:
                target = f"queue {(await Queues(session, self.tenant_id).get(queue_id)).name}"
            else:
                target = (await Agents(session, self.tenant_id).get(to_agent_id or "")).name
            await Messages(session, self.tenant_id).append(Message(
                conversation_id=conversation_id, contact_id=thread.contact_id,
                author_kind="system", visibility="internal",
                text=f"The conversation was transferred to {target}.", created_at=now_utc()))

        await self._routing.run(
            lambda engine: engine.transfer(task_id, queue_id=queue_id, agent_id=to_agent_id),
            alongside=note)

    async def continue_on(self, agent_id: str, task_id: str, conversation_id: str,
                          channel: str, address: str, text: str,
                          key: str | None = None) -> dict[str, Any]:
        """Answer a conversation of another channel (a chat that went quiet) on `channel` at
        `address`: the customer's thread on the tenant's account for that channel (the one of
        the conversation's queue first) moves to this conversation and the agent's task, so
        the customer's answer lands here too; then `reply` (WhatsApp's window applies)."""
        async with self._database.session() as session:
            conversation = await Conversations(session, self.tenant_id).get(conversation_id)
            contacts = await Contacts(session, self.tenant_id).of_conversation(conversation_id)
            queue_id = contacts[-1].queue_id if contacts else None
            accounts = [a for a in await MessagingAccounts(session, self.tenant_id).list_all()
                        if a.channel == channel and a.is_enabled]
            if not accounts or conversation.customer_id is None:
                raise Conflict(f"the tenant has no {channel} account to send from")
            account = min(accounts, key=lambda a: (a.queue_id != queue_id, a.name))
            threads = MessagingThreads(session, self.tenant_id)
            thread = await threads.of_peer(account.id, address)
            if thread is None:
                await threads.add(MessagingThread(
                    account_id=account.id, peer=address, customer_id=conversation.customer_id,
                    conversation_id=conversation_id,
                    contact_id=contacts[-1].id if contacts else None, task_id=task_id,
                    created_at=now_utc()))
            else:
                thread.conversation_id, thread.task_id = conversation_id, task_id
                thread.contact_id = contacts[-1].id if contacts else thread.contact_id
        return await self.reply(agent_id, conversation_id, text, (), key)

    async def conversation(self, conversation_id: str) -> dict[str, Any]:
        """The thread (channel, customer's address, window) and its messages with their
        delivery state, oldest first."""
        at = now_utc()
        async with self._database.session() as session:
            thread = await self._thread(session, conversation_id)
            account = await MessagingAccounts(session, self.tenant_id).get(thread.account_id)
            rows = await MessagingMessages(session, self.tenant_id).of_conversation(
                conversation_id)
            files = Attachments(session, self.tenant_id)
            kept: dict[str, list[Attachment]] = {}
            for attachment in await files.all(files.select().where(
                    Attachment.conversation_id == conversation_id)
                    .order_by(Attachment.created_at, Attachment.id)):
                kept.setdefault(attachment.message_id or "", []).append(attachment)
        closes = (None if thread.last_inbound_at is None
                  else thread.last_inbound_at + SERVICE_WINDOW)
        return {
            "thread": {"channel": account.channel, "provider": account.provider,
                       "account_id": account.id, "account_name": account.name,
                       "peer": thread.peer, "task_id": thread.task_id,
                       "last_inbound_at": _iso(thread.last_inbound_at),
                       "window_open": in_window(thread, at),
                       "window_closes_at": _iso(closes),
                       "needs_template": account.channel == "whatsapp"
                       and not in_window(thread, at)},
            "messages": [_row_view(row, kept.get(row.message_id or "", [])) for row in rows],
        }

    # --- sending -----------------------------------------------------------------------------

    async def due(self) -> list[Sending]:
        """The outbox rows whose attempt is due, oldest first. Twilio is told where to post
        the message's status callbacks (the account's webhook under the public base URL)."""
        at = now_utc()
        async with self._database.session() as session:
            rows = await MessagingMessages(session, self.tenant_id).due(at)
            accounts = {a.id: a for a in await MessagingAccounts(session,
                                                                   self.tenant_id).list_all()}
            threads = {t.id: t for t in await MessagingThreads(session, self.tenant_id).all(
                MessagingThreads(session, self.tenant_id).select().where(
                    MessagingThread.id.in_({row.thread_id for row in rows})))} if rows else {}
        due: list[Sending] = []
        for row in rows:
            account, thread = accounts.get(row.account_id), threads.get(row.thread_id)
            if account is None or thread is None:
                continue
            callback = (f"{self._public_base_url}/api/messaging/{account.id}/webhook"
                        if self._public_base_url and account.provider == "twilio" else "")
            due.append(Sending(row_id=row.id, provider=account.provider,
                               account=account_of(account), outgoing=Outgoing(
                peer=thread.peer, text=row.text, media_urls=tuple(row.media_urls),
                template=row.template, template_language=row.template_language,
                template_parameters=tuple(row.template_parameters),
                status_callback_url=callback, in_window=in_window(thread, at))))
        return due

    async def next_due_at(self) -> datetime | None:
        async with self._database.session() as session:
            return await MessagingMessages(session, self.tenant_id).next_due_at()

    async def sent(self, row_id: str, provider_message_id: str) -> None:
        async with self._database.session() as session:
            row = await MessagingMessages(session, self.tenant_id).get(row_id)
            row.attempts += 1
            row.provider_message_id, row.last_error = provider_message_id, None
            row.sent_at = now_utc()
            if row.status == "pending":  # a receipt may have come before this commit
                row.status = "sent"
            conversation_id, status = row.conversation_id, row.status
        self._tell_status(conversation_id, row_id, status)

    async def failed(self, row_id: str, error: str, *, retryable: bool,
                     retry_base_s: float, retry_max_s: float) -> bool:
        """An attempt failed: retried later (back-off doubling from `retry_base_s`) when the
        provider may take it then, else or after `MAX_SEND_ATTEMPTS` marked failed with a note
        the agent sees. Returns whether it was given up."""
        note: dict[str, Any] | None = None
        async with self._database.session() as session:
            row = await MessagingMessages(session, self.tenant_id).get(row_id)
            row.attempts += 1
            row.last_error = error[:2000]
            is_final = not retryable or row.attempts >= MAX_SEND_ATTEMPTS
            if is_final:
                row.status, row.next_attempt_at = "failed", None
                note = await self._failure_note(session, row, f"{error[:500]} (after "
                                                f"{row.attempts} attempt"
                                                f"{'s' if row.attempts > 1 else ''})")
            else:
                wait_s = min(retry_base_s * 2.0 ** (row.attempts - 1), retry_max_s)
                row.next_attempt_at = now_utc() + timedelta(seconds=wait_s)
            conversation_id = row.conversation_id
        if is_final:
            self._tell_status(conversation_id, row_id, "failed")
        if note is not None:
            self._bus.publish(self.tenant_id, [conversation_topic(conversation_id)],
                              Notice("message.created", note))
        return is_final


def _advance(row: MessagingMessage, receipt: Receipt, at: datetime) -> bool:
    if receipt.state == "failed":
        if row.status in ("failed", "delivered", "read"):
            return False
        row.status, row.last_error = "failed", receipt.error or "failed"
        return True
    if row.status == "failed" or STATE_RANK[receipt.state] <= STATE_RANK.get(row.status, 0):
        return False
    row.status = receipt.state
    if receipt.state in ("delivered", "read") and row.delivered_at is None:
        row.delivered_at = at
    if receipt.state == "read":
        row.read_at = at
    return True


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _row_view(row: MessagingMessage, files: list[Attachment]) -> dict[str, Any]:
    return {"id": row.id, "message_id": row.message_id, "direction": row.direction,
            "attachments": [attachment_view(a) for a in files],
            "status": row.status, "text": row.text, "media_urls": list(row.media_urls),
            "template": row.template or None, "attempts": row.attempts,
            "last_error": row.last_error, "created_at": row.created_at.isoformat(),
            "sent_at": _iso(row.sent_at), "delivered_at": _iso(row.delivered_at),
            "read_at": _iso(row.read_at)}

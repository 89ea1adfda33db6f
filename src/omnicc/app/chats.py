"""The web chat use cases, for the customer, the agent and the supervisor, of one tenant.

Every accepted message and every chat is committed before the caller is answered, then told
to the connected clients on the bus (topics: `conversation:<id>` for everyone in the chat,
`agent:<id>` for an agent's desktop). A chat is a contact on the `chat` channel in a
conversation, with a routing task that brings it to an agent; the task and the rows of the
chat are written in one transaction, so a chat never exists without its task or the reverse.

A visitor is known by a random token the widget keeps in the browser; only its SHA-256 is
stored (identity kind `chat_visitor`), so a leaked database does not let anyone speak as a
visitor. A returning visitor with the same token is the same customer and sees their history.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.app.customers import routing_attributes
from omnicc.app.message_log import MessageLog
from omnicc.app.principals import Forbidden
from omnicc.app.routing import RoutingService
from omnicc.bus import Bus, Notice, Subscription
from omnicc.core import events as ev
from omnicc.core.business_hours import is_open
from omnicc.core.errors import Conflict, InvalidConfiguration, NotFound
from omnicc.core.model import TaskPhase, TaskRequest
from omnicc.store.database import Database
from omnicc.store.repositories import (
    Agents,
    Attachments,
    BusinessHoursRepository,
    Contacts,
    Conversations,
    Customers,
    Identities,
    Messages,
    Queues,
    Tasks,
    Users,
    WrapUpCodes,
)
from omnicc.store.tables import Attachment, Contact, Conversation, Customer, Identity, Message

CHAT = "chat"
VISITOR = "chat_visitor"


class MessageTooLong(InvalidConfiguration):
    """A message over the tenant's size limit (HTTP 413 on the wire)."""


def visitor_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_visitor_token() -> str:
    return secrets.token_urlsafe(24)


def conversation_topic(conversation_id: str) -> str:
    return f"conversation:{conversation_id}"


def agent_topic(agent_id: str) -> str:
    return f"agent:{agent_id}"


def now_utc() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Author:
    """Who writes: `kind` customer, agent, supervisor or system; `id` their customer, agent
    or user id."""

    kind: str
    id: str | None
    name: str


@dataclass(slots=True)
class Chat:
    """An open chat: what the use cases need to know without asking the store."""

    conversation_id: str
    contact_id: str
    customer_id: str
    task_id: str
    queue_id: str
    is_offline: bool = False
    """Opened while the queue was closed or unstaffed: answered later, not abandoned."""
    agent_id: str | None = None
    barged_user_ids: set[str] = field(default_factory=set)


def attachment_view(attachment: Attachment) -> dict[str, Any]:
    """What clients show of a file; `url` needs the viewer's credentials (see api/attachments)."""
    return {"id": attachment.id, "filename": attachment.filename,
            "content_type": attachment.content_type, "size_bytes": attachment.size_bytes,
            "url": f"/api/attachments/{attachment.id}"}


async def attachments_of(session: AsyncSession, tenant_id: str,
                         messages: Iterable[Message]) -> dict[str, list[Attachment]]:
    """The files of each message (by message id), in one query."""
    ids = [m.id for m in messages]
    if not ids:
        return {}
    statement = (select(Attachment)
                 .where(Attachment.tenant_id == tenant_id, Attachment.message_id.in_(ids))
                 .order_by(Attachment.created_at, Attachment.id))
    found: dict[str, list[Attachment]] = {}
    for row in (await session.execute(statement)).scalars():
        found.setdefault(row.message_id or "", []).append(row)
    return found


def message_view(message: Message, author_name: str,
                 attachments: Sequence[Attachment] = ()) -> dict[str, Any]:
    return {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "contact_id": message.contact_id,
        "author_kind": message.author_kind,
        "author_id": message.author_id,
        "author_name": author_name,
        "visibility": message.visibility,
        "text": message.text,
        "created_at": message.created_at.isoformat(),
        "attachments": [attachment_view(a) for a in attachments],
    }


class ChatDesk:
    """One tenant's chats. Create with the tenant's routing service and the process's bus."""

    def __init__(self, database: Database, tenant_id: str, routing: RoutingService, bus: Bus,
                 *, max_message_chars: int = 16_384) -> None:
        self._database = database
        self.tenant_id = tenant_id
        self._routing = routing
        self._bus = bus
        self.max_message_chars = max_message_chars
        self._chats: dict[str, Chat] = {}  # by conversation id
        self._by_task: dict[str, Chat] = {}
        self._by_customer: dict[str, Chat] = {}
        self._names: dict[tuple[str, str], str] = {}
        self._messages = MessageLog(database, tenant_id)

    # --- start-up ------------------------------------------------------------------------------

    async def load(self) -> None:
        """Know the open chats after a restart (their tasks are in the engine already)."""
        async with self._database.session() as session:
            rows = await Tasks(session, self.tenant_id).open_in_order()
            for row in rows:
                if row.channel != CHAT or row.contact_id is None or row.conversation_id is None:
                    continue
                contact = await Contacts(session, self.tenant_id).get(row.contact_id)
                self._remember(Chat(
                    conversation_id=row.conversation_id, contact_id=contact.id,
                    customer_id=contact.customer_id or "", task_id=row.id,
                    queue_id=row.queue_id or contact.queue_id or "",
                    is_offline=bool(contact.attributes.get("offline")), agent_id=row.agent_id,
                ))

    def _remember(self, chat: Chat) -> None:
        self._chats[chat.conversation_id] = chat
        self._by_task[chat.task_id] = chat
        self._by_customer[chat.customer_id] = chat

    def _forget(self, chat: Chat) -> None:
        self._chats.pop(chat.conversation_id, None)
        self._by_task.pop(chat.task_id, None)
        if self._by_customer.get(chat.customer_id) is chat:
            del self._by_customer[chat.customer_id]

    def chat_of_task(self, task_id: str) -> Chat | None:
        return self._by_task.get(task_id)

    def chat(self, conversation_id: str) -> Chat:
        chat = self._chats.get(conversation_id)
        if chat is None:
            raise NotFound(f"no open chat in conversation {conversation_id}")
        return chat

    def find_chat(self, conversation_id: str) -> Chat | None:
        return self._chats.get(conversation_id)

    def involves(self, chat: Chat, agent_id: str) -> bool:
        """Whether the agent has the chat or an offer of it."""
        if chat.agent_id == agent_id:
            return True
        try:
            offers = self._routing.engine.task(chat.task_id).offers.values()
        except NotFound:
            return False
        return any(offer.agent_id == agent_id for offer in offers)

    def open_chats(self) -> list[Chat]:
        return list(self._chats.values())

    # --- the customer --------------------------------------------------------------------------

    async def identify(self, token: str | None, *, name: str = "",
                       email: str = "") -> tuple[str, Customer]:
        """The visitor's customer (made on first contact) and the token to keep using."""
        async with self._database.session() as session:
            identities = Identities(session, self.tenant_id)
            customers = Customers(session, self.tenant_id)
            if token:
                identity = await identities.by_value(VISITOR, visitor_digest(token))
                if identity is not None:
                    customer = await customers.get(identity.customer_id)
                    if name and customer.name != name:
                        customer.name = name
                    if email:
                        customer.attributes = {**customer.attributes, "email": email.lower()}
                    await customers.save(customer)
                    return token, customer
            token = new_visitor_token()
            customer = await customers.add(Customer(
                name=name, attributes={"email": email.lower()} if email else {}))
            await identities.add(Identity(customer_id=customer.id, kind=VISITOR,
                                          value=visitor_digest(token)))
            return token, customer

    async def update_customer(self, customer_id: str, *, name: str, email: str) -> Customer:
        """The pre-chat form's name and email, kept on the customer."""
        async with self._database.session() as session:
            customers = Customers(session, self.tenant_id)
            customer = await customers.get(customer_id)
            if name:
                customer.name = name
                self._names[("customer", customer_id)] = name
            if email:
                customer.attributes = {**customer.attributes, "email": email.lower()}
            return await customers.save(customer)

    def open_chat_of(self, customer_id: str) -> Chat | None:
        return self._by_customer.get(customer_id)

    async def history(self, customer_id: str, *, limit: int = 200) -> list[dict[str, Any]]:
        """The customer's public messages across their chat conversations, oldest first.
        Only conversations with a chat: a customer merged with their email or phone record
        must not show those to whoever holds the widget's token."""
        chats = select(Contact.conversation_id).where(Contact.tenant_id == self.tenant_id,
                                                      Contact.customer_id == customer_id,
                                                      Contact.channel == CHAT)
        async with self._database.session() as session:
            statement = (
                select(Message)
                .join(Conversation, Conversation.id == Message.conversation_id)
                .where(Message.tenant_id == self.tenant_id,
                       Conversation.customer_id == customer_id,
                       Conversation.id.in_(chats),
                       Message.visibility == "public")
                .order_by(Message.created_at.desc(), Message.id.desc())
                .limit(limit)
            )
            rows = list((await session.execute(statement)).scalars().all())[::-1]
            files = await attachments_of(session, self.tenant_id, rows)
            return [message_view(m, await self.author_name(session, m), files.get(m.id, ()))
                    for m in rows]

    async def availability(self, queue_id: str) -> tuple[bool, str]:
        """Whether a chat to the queue can be answered now, and why not."""
        async with self._database.session() as session:
            queue = await Queues(session, self.tenant_id).get(queue_id)
            if not queue.is_enabled:
                return False, "closed"
            if queue.business_hours_id is not None:
                hours = await BusinessHoursRepository(session, self.tenant_id).get(
                    queue.business_hours_id)
                if not is_open(hours.timezone, hours.weekly, hours.holidays, now_utc()):
                    return False, "closed"
        engine = self._routing.engine
        members = engine.queue(queue_id).members
        if not any(engine.agent(a).status.logged_in for a in members):
            return False, "unstaffed"
        return True, "open"

    async def start(self, customer: Customer, *, queue_id: str, text: str,
                    key: str | None = None, topic: str = "",
                    follower: Subscription | None = None) -> tuple[Chat, dict[str, Any]]:
        """Open a chat with its first message; returns the chat and that message.

        A customer has one open chat: a second start while one is open posts to it.
        `follower` (the customer's connection) follows the conversation before the chat is
        committed, so it misses nothing an agent does from the first moment.
        """
        existing = self._by_customer.get(customer.id)
        if existing is not None:
            return existing, await self.post_customer(customer.id, text, key)
        text = self._checked(text)
        async with self._database.session() as session:  # an agent may have made them a VIP
            known = await Customers(session, self.tenant_id).find(customer.id)
        is_available, reason = await self.availability(queue_id)
        is_offline = not is_available
        at = now_utc()
        conversation_id = _new_id()
        if follower is not None:
            follower.follow(conversation_topic(conversation_id))
        contact_id = _new_id()
        task_id = _new_id()
        email = str(customer.attributes.get("email", ""))
        stored: dict[str, Message] = {}

        async def write_chat(session: AsyncSession, events: list[ev.Event]) -> None:
            await Conversations(session, self.tenant_id).add(Conversation(
                id=conversation_id, customer_id=customer.id, subject=topic[:500],
                created_at=at))
            await Contacts(session, self.tenant_id).add(Contact(
                id=contact_id, conversation_id=conversation_id, customer_id=customer.id,
                channel=CHAT, queue_id=queue_id, started_at=at,
                attributes={"offline": is_offline, "offline_reason": "" if is_available
                            else reason, "topic": topic}))
            stored["message"], _ = await Messages(session, self.tenant_id).append(Message(
                conversation_id=conversation_id, contact_id=contact_id,
                author_kind="customer", author_id=customer.id, text=text,
                idempotency_key=key, created_at=at))

        request = TaskRequest(
            channel=CHAT, queue=queue_id, id=task_id, conversation_id=conversation_id,
            attributes={"customer_name": customer.name, "customer_email": email,
                        "topic": topic, "offline": is_offline, "contact_id": contact_id,
                        **routing_attributes(known or customer)},
        )
        await self._routing.create_task(request, alongside=write_chat)
        chat = Chat(conversation_id=conversation_id, contact_id=contact_id,
                    customer_id=customer.id, task_id=task_id, queue_id=queue_id,
                    is_offline=is_offline)
        self._remember(chat)
        self._names[("customer", customer.id)] = customer.name or "Customer"
        view = message_view(stored["message"], customer.name or "Customer")
        self._publish(chat, "message.created", view)
        return chat, view

    async def post_customer(self, customer_id: str, text: str,
                            key: str | None = None) -> dict[str, Any]:
        chat = self._by_customer.get(customer_id)
        if chat is None:
            raise Conflict("no open chat: start one first")
        return await self._post(chat, Author("customer", customer_id,
                                             await self._name("customer", customer_id)),
                                text, key, "public")

    async def leave(self, customer_id: str) -> None:
        """The customer ends the chat: abandoned if no agent has it yet, else the agent's
        conversation ends (wrap-up follows on the agent's side)."""
        chat = self._by_customer.get(customer_id)
        if chat is None:
            return
        await self._system_message(chat, "The customer left the chat.")
        engine = self._routing.engine
        phase = engine.task(chat.task_id).phase
        if phase in (TaskPhase.WAITING, TaskPhase.OFFERED):
            await self._routing.run(lambda e: e.abandon(chat.task_id),
                                    alongside=self._end_contact(chat))
            self._close(chat)
        elif phase is TaskPhase.ASSIGNED:
            await self._routing.run(lambda e: e.complete(chat.task_id),
                                    alongside=self._end_contact(chat))
            self._close(chat)

    async def rate(self, customer_id: str, contact_id: str, score: int, comment: str) -> None:
        """The satisfaction survey: CSAT 1-5 and a comment, once per chat."""
        if not 1 <= score <= 5:
            raise InvalidConfiguration("score must be between 1 and 5")
        async with self._database.session() as session:
            contacts = Contacts(session, self.tenant_id)
            contact = await contacts.get(contact_id)
            if contact.customer_id != customer_id:
                raise NotFound(f"contact {contact_id} not found")
            if contact.csat_score is not None:
                raise Conflict("this chat is already rated")
            contact.csat_score = score
            contact.csat_comment = comment[:2000]
            await contacts.save(contact)
        self._bus.publish(self.tenant_id, ["events"], Notice("contact.rated", {
            "contact_id": contact_id, "conversation_id": contact.conversation_id,
            "score": score, "agent_id": contact.agent_id}))

    # --- the agent ----------------------------------------------------------------------------

    async def accept(self, agent_id: str, offer_id: str) -> Chat | None:
        engine = self._routing.engine
        offer = engine.offer(offer_id)
        if offer.agent_id != agent_id:
            raise NotFound(f"no pending offer {offer_id!r}")
        chat = self._by_task.get(offer.task_id)
        # Any channel's task (an email, a form) names its contact: the contact names its agent.
        contact_id = chat.contact_id if chat is not None else engine.task(
            offer.task_id).attributes.get("contact_id")

        async def assign(session: AsyncSession, events: list[ev.Event]) -> None:
            if isinstance(contact_id, str):
                contact = await Contacts(session, self.tenant_id).get(contact_id)
                contact.agent_id = agent_id
                await Contacts(session, self.tenant_id).save(contact)

        await self._routing.run(lambda e: e.accept(offer_id), alongside=assign)
        if chat is not None:
            chat.agent_id = agent_id
            name = await self._name("agent", agent_id)
            await self._system_message(chat, f"{name} joined the chat.")
        return chat

    async def reject(self, agent_id: str, offer_id: str, reason: str = "") -> None:
        offer = self._routing.engine.offer(offer_id)
        if offer.agent_id != agent_id:
            raise NotFound(f"no pending offer {offer_id!r}")
        await self._routing.run(lambda e: e.reject(offer_id, reason))

    def assigned_chat(self, agent_id: str, conversation_id: str) -> Chat:
        chat = self.chat(conversation_id)
        if chat.agent_id != agent_id:
            raise Forbidden("this chat is not assigned to you")
        return chat

    async def post_agent(self, agent_id: str, conversation_id: str, text: str,
                         key: str | None = None, *, internal: bool = False) -> dict[str, Any]:
        chat = self.assigned_chat(agent_id, conversation_id)
        return await self._post(chat, Author("agent", agent_id,
                                             await self._name("agent", agent_id)),
                                text, key, "internal" if internal else "public")

    async def end(self, agent_id: str, conversation_id: str) -> None:
        """The agent ends the conversation; wrap-up follows when the queue asks for it."""
        chat = self.assigned_chat(agent_id, conversation_id)
        await self._system_message(chat, "The chat has ended.")
        await self._routing.run(lambda e: e.complete(chat.task_id),
                                alongside=self._end_contact(chat))
        self._close(chat)

    async def wrap_up(self, agent_id: str, task_id: str, code: str | None) -> None:
        """Wrap-up is done, with a disposition code from the tenant's list."""
        engine = self._routing.engine
        task = engine.task(task_id)
        if task.agent_id != agent_id:
            raise Forbidden("this task is not yours")
        code_id: str | None = None
        if code:
            async with self._database.session() as session:
                codes = [c for c in await WrapUpCodes(session, self.tenant_id).list_all()
                         if c.code == code and c.is_enabled]
            if not codes:
                raise NotFound(f"wrap-up code {code!r} not found")
            code_id = codes[0].id

        async def classify(session: AsyncSession, events: list[ev.Event]) -> None:
            row = await Tasks(session, self.tenant_id).get(task_id)
            if code_id is not None and row.contact_id is not None:
                contact = await Contacts(session, self.tenant_id).get(row.contact_id)
                contact.wrap_up_code_id = code_id
                await Contacts(session, self.tenant_id).save(contact)

        await self._routing.run(lambda e: e.wrap_up(task_id, code), alongside=classify)

    async def transfer(self, agent_id: str | None, conversation_id: str, *,
                       queue_id: str | None = None, to_agent_id: str | None = None) -> None:
        """Hand the chat to a queue or an agent; `agent_id` None: a supervisor moves it."""
        chat = self.chat(conversation_id)
        if agent_id is not None and chat.agent_id != agent_id:
            raise Forbidden("this chat is not assigned to you")
        engine = self._routing.engine
        phase = engine.task(chat.task_id).phase
        # An agent hands over their chat; a supervisor may also move a waiting one.
        if phase is TaskPhase.ASSIGNED or (
                agent_id is None and phase in (TaskPhase.WAITING, TaskPhase.OFFERED)):
            await self._routing.run(
                lambda e: e.transfer(chat.task_id, queue_id=queue_id, agent_id=to_agent_id))
        else:
            raise Conflict(f"the chat is {phase.value}; it cannot be transferred now")
        target = (f"queue {await self._queue_name(queue_id)}" if queue_id
                  else await self._name("agent", to_agent_id or ""))
        chat.agent_id = None
        if queue_id is not None:
            chat.queue_id = queue_id
        await self._system_message(chat, f"The chat was transferred to {target}.")

    # --- the supervisor -----------------------------------------------------------------------

    async def whisper(self, user_id: str, name: str, conversation_id: str,
                      text: str) -> dict[str, Any]:
        """A note only the agent (and supervisors) see."""
        chat = self.chat(conversation_id)
        return await self._post(chat, Author("supervisor", user_id, name), text, None,
                                "whisper")

    async def barge(self, user_id: str, name: str, conversation_id: str) -> None:
        """Join the chat: from now on the supervisor's messages reach the customer."""
        chat = self.chat(conversation_id)
        if user_id not in chat.barged_user_ids:
            chat.barged_user_ids.add(user_id)
            await self._system_message(chat, f"{name} (supervisor) joined the chat.")

    async def post_supervisor(self, user_id: str, name: str, conversation_id: str,
                              text: str, key: str | None = None) -> dict[str, Any]:
        chat = self.chat(conversation_id)
        if user_id not in chat.barged_user_ids:
            raise Conflict("barge in first to write to the customer")
        return await self._post(chat, Author("supervisor", user_id, name), text, key, "public")

    # --- files --------------------------------------------------------------------------------

    async def post_attachment(self, chat: Chat, author_kind: str, author_id: str,
                              attachment: Attachment) -> dict[str, Any]:
        """A file in the chat: its message ("📎 name") and its row are written in one
        transaction, so a file never shows without its message or the reverse; then told."""
        author = Author(author_kind, author_id, await self._name(author_kind, author_id))
        async with self._database.session() as session:
            stored = await Messages(session, self.tenant_id).add(Message(
                conversation_id=chat.conversation_id, contact_id=chat.contact_id,
                author_kind=author.kind, author_id=author.id, visibility="public",
                text=f"📎 {attachment.filename}", created_at=now_utc()))
            attachment.conversation_id = chat.conversation_id
            attachment.message_id = stored.id
            await Attachments(session, self.tenant_id).add(attachment)
        view = message_view(stored, author.name, [attachment])
        self._publish(chat, "message.created", view)
        return view

    # --- shared -------------------------------------------------------------------------------

    def _checked(self, text: str) -> str:
        text = text.strip()
        if not text:
            raise InvalidConfiguration("a message needs text")
        if len(text) > self.max_message_chars:
            raise MessageTooLong(
                f"the message has {len(text)} characters; the limit is "
                f"{self.max_message_chars}")
        return text

    async def _post(self, chat: Chat, author: Author, text: str, key: str | None,
                    visibility: str) -> dict[str, Any]:
        text = self._checked(text)
        stored = await self._messages.append(Message(
            conversation_id=chat.conversation_id, contact_id=chat.contact_id,
            author_kind=author.kind, author_id=author.id, visibility=visibility,
            text=text, idempotency_key=key, created_at=now_utc()))
        view = message_view(stored, author.name)
        self._publish(chat, "message.created", view)
        return view

    async def _system_message(self, chat: Chat, text: str) -> None:
        await self._post(chat, Author("system", None, "OmniCC"), text, None, "public")

    def _publish(self, chat: Chat, type_: str, data: dict[str, Any]) -> None:
        self._bus.publish(self.tenant_id, [conversation_topic(chat.conversation_id)],
                          Notice(type_, data))

    def publish_typing(self, conversation_id: str, author_kind: str, name: str,
                       is_typing: bool) -> None:
        self._bus.publish(self.tenant_id, [conversation_topic(conversation_id)],
                          Notice("typing", {"conversation_id": conversation_id,
                                            "author_kind": author_kind, "author_name": name,
                                            "is_typing": is_typing}))

    def _end_contact(self, chat: Chat) -> Any:
        async def write(session: AsyncSession, events: list[ev.Event]) -> None:
            at = now_utc()
            contact = await Contacts(session, self.tenant_id).get(chat.contact_id)
            if contact.ended_at is None:
                contact.ended_at = at
                await Contacts(session, self.tenant_id).save(contact)
            conversation = await Conversations(session, self.tenant_id).get(
                chat.conversation_id)
            if conversation.status == "open":
                conversation.status, conversation.closed_at = "closed", at
                await Conversations(session, self.tenant_id).save(conversation)
        return write

    def _close(self, chat: Chat) -> None:
        self._forget(chat)
        self._publish(chat, "chat.ended", {"conversation_id": chat.conversation_id,
                                           "contact_id": chat.contact_id})

    def on_task_ended(self, task_id: str, outcome: str) -> None:
        """The engine ended a task by itself (policy ran out, offer limits): close its chat."""
        chat = self._by_task.get(task_id)
        if chat is not None and outcome != "completed":
            self._close(chat)

    async def _name(self, kind: str, row_id: str) -> str:
        cached = self._names.get((kind, row_id))
        if cached is not None:
            return cached
        async with self._database.session() as session:
            name = await self._lookup_name(session, kind, row_id)
        self._names[(kind, row_id)] = name
        return name

    async def author_name(self, session: AsyncSession, message: Message) -> str:
        if message.author_kind == "system" or message.author_id is None:
            return "OmniCC"
        key = (message.author_kind, message.author_id)
        if key not in self._names:
            self._names[key] = await self._lookup_name(session, *key)
        return self._names[key]

    async def _lookup_name(self, session: AsyncSession, kind: str, row_id: str) -> str:
        try:
            if kind == "agent":
                return (await Agents(session, self.tenant_id).get(row_id)).name
            if kind == "customer":
                return (await Customers(session, self.tenant_id).get(row_id)).name or "Customer"
            if kind == "supervisor":  # a whisper keeps saying who whispered after a reload
                user = await Users(session, self.tenant_id).get(row_id)
                return user.display_name or user.username
        except NotFound:
            pass
        return kind.capitalize()

    async def _queue_name(self, queue_id: str | None) -> str:
        async with self._database.session() as session:
            return (await Queues(session, self.tenant_id).get(queue_id or "")).name

    def forget_names(self) -> None:
        """After an agent or customer is renamed."""
        self._names.clear()


def _new_id() -> str:
    return secrets.token_hex(16)


__all__ = ["Author", "Chat", "ChatDesk", "MessageTooLong", "attachment_view", "attachments_of"]

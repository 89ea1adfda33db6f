"""A conversation continues on another channel: the agent answers a chat that went quiet by
email (or, once its outbound exists, SMS, WhatsApp...), and the customer's answer lands in the
same conversation.

The seam is a `Sender` per channel: `(agent_id, conversation_id, address, text, key)` -> the
stored message's view. Email is built in (`email_sender`): it gives the conversation an email
thread (ticket, reference token, the queue's mailbox) tied to the agent's open task and sends
through `EmailDesk.reply`, so the customer's reply threads back by Message-ID or token. A
messaging channel registers its own sender under its channel name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from omnicc.app.customers import CustomerBook
from omnicc.app.email_threads import new_reference
from omnicc.app.emails import EmailDesk
from omnicc.app.principals import Forbidden
from omnicc.app.routing import RoutingService
from omnicc.core.errors import Conflict, InvalidConfiguration, NotFound
from omnicc.core.model import TaskPhase
from omnicc.store.database import Database
from omnicc.store.repositories import Contacts, Conversations, EmailTickets
from omnicc.store.tables import EmailMailbox, EmailTicket

Sender = Callable[[str, str, str, str, str | None], Awaitable[dict[str, Any]]]


def agents_task(routing: RoutingService, conversation_id: str, agent_id: str) -> str:
    """The agent's assigned task in the conversation; answering needs one."""
    for task in routing.engine.tasks():
        if (task.conversation_id == conversation_id and task.agent_id == agent_id
                and task.phase is TaskPhase.ASSIGNED):
            return task.id
    raise Forbidden("this conversation is not assigned to you")


class ReplyChannels:
    """Which channels an agent may answer a conversation on, and the answer itself."""

    def __init__(self, database: Database, tenant_id: str, routing: RoutingService,
                 senders: Mapping[str, Sender]) -> None:
        self._database = database
        self.tenant_id = tenant_id
        self._routing = routing
        self._senders = senders

    async def _customer_id(self, conversation_id: str) -> str:
        async with self._database.session() as session:
            conversation = await Conversations(session, self.tenant_id).get(conversation_id)
        if conversation.customer_id is None:
            raise NotFound(f"conversation {conversation_id} has no customer")
        return conversation.customer_id

    async def choices(self, conversation_id: str) -> list[dict[str, Any]]:
        """The customer's reachable channels (opt-outs left out), each saying whether this
        server can send on it yet."""
        customer_id = await self._customer_id(conversation_id)
        view = await CustomerBook(self._database, self.tenant_id).view(customer_id)
        return [{**choice, "can_send": choice["channel"] in self._senders}
                for choice in view["reachable"]]

    async def reply(self, agent_id: str, conversation_id: str, *, channel: str, address: str,
                    text: str, key: str | None = None) -> dict[str, Any]:
        agents_task(self._routing, conversation_id, agent_id)
        choices = await self.choices(conversation_id)
        if not any(c["channel"] == channel and c["address"] == address for c in choices):
            raise InvalidConfiguration(f"the customer cannot be reached on {channel} at "
                                       f"{address!r} (unknown, or they opted out)")
        sender = self._senders.get(channel)
        if sender is None:
            raise Conflict(f"this server cannot send on {channel} yet")
        return await sender(agent_id, conversation_id, address, text, key)


def email_sender(database: Database, tenant_id: str, routing: RoutingService,
                 desk: EmailDesk) -> Sender:
    """Answer by email: the conversation's email thread (made on first use, with the queue's
    mailbox, else the tenant's first) is tied to the agent's task, then `EmailDesk.reply`."""

    async def send(agent_id: str, conversation_id: str, address: str, text: str,
                   key: str | None) -> dict[str, Any]:
        task_id = agents_task(routing, conversation_id, agent_id)
        async with database.session() as session:
            tickets = EmailTickets(session, tenant_id)
            ticket = await tickets.of_conversation(conversation_id)
            if ticket is None:
                conversation = await Conversations(session, tenant_id).get(conversation_id)
                contacts = await Contacts(session, tenant_id).of_conversation(conversation_id)
                if not contacts:
                    raise NotFound(f"conversation {conversation_id} has no contact")
                contact = contacts[-1]
                mailbox = (await session.scalars(select(EmailMailbox).where(
                    EmailMailbox.tenant_id == tenant_id, EmailMailbox.is_enabled).order_by(
                    EmailMailbox.queue_id != contact.queue_id, EmailMailbox.name)
                    .limit(1))).first()
                if mailbox is None:
                    raise Conflict("the tenant has no mailbox to send email from")
                await tickets.add(EmailTicket(
                    conversation_id=conversation_id, contact_id=contact.id,
                    mailbox_id=mailbox.id, reference=new_reference(),
                    customer_address=address, subject=(conversation.subject or
                                                       "Our conversation")[:500],
                    task_id=task_id, created_at=datetime.now(UTC)))
            else:
                ticket.task_id, ticket.customer_address = task_id, address
                await tickets.save(ticket)
        return await desk.reply(agent_id, conversation_id, text, key)

    return send

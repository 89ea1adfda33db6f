"""Finished contacts for the CRM tests: the rows a channel and the routing engine leave when a
contact is handled, and the `task.ended` event that the outboxes read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from omnicc.store.database import Database
from omnicc.store.repositories import Tasks
from omnicc.store.repositories.events import Events, NewEvent
from omnicc.store.tables import (
    CallRecord,
    Contact,
    Conversation,
    Customer,
    Identity,
    Message,
    Task,
    WrapUpCode,
)

ENDED = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


async def finish_contact(database: Database, tenant_id: str, queue_id: str, agent_id: str, *,
                         name: str = "Maija", phone: str = "+358401234567",
                         channel: str = "voice", priority: int = 0,
                         code: str | None = "solved", note: str = "",
                         recorded: bool = False) -> str:
    """A customer's handled contact, committed with its `task.ended`: the task id."""
    async with database.session() as session:
        customer = Customer(tenant_id=tenant_id, name=name, attributes={"segment": "gold"})
        session.add(customer)
        await session.flush()
        conversation = Conversation(tenant_id=tenant_id, customer_id=customer.id,
                                    subject="Invoice question")
        session.add_all([Identity(tenant_id=tenant_id, customer_id=customer.id, kind="phone",
                                  value=phone), conversation])
        await session.flush()
        code_id = None
        if code is not None:
            code_id = (await session.scalars(select(WrapUpCode.id).where(
                WrapUpCode.tenant_id == tenant_id, WrapUpCode.code == code))).first()
        contact = Contact(tenant_id=tenant_id, conversation_id=conversation.id,
                          customer_id=customer.id, channel=channel, queue_id=queue_id,
                          agent_id=agent_id, wrap_up_code_id=code_id)
        session.add(contact)
        await session.flush()
        session.add(Message(tenant_id=tenant_id, conversation_id=conversation.id,
                            contact_id=contact.id, author_kind="customer",
                            text="My invoice is wrong"))
        if note:
            session.add(Message(tenant_id=tenant_id, conversation_id=conversation.id,
                                contact_id=contact.id, author_kind="agent", author_id=agent_id,
                                visibility="internal", text=note))
        if recorded:
            session.add(CallRecord(tenant_id=tenant_id, call_id=f"{phone}@test",
                                   contact_id=contact.id, conversation_id=conversation.id,
                                   customer_id=customer.id, from_number=phone,
                                   outcome="answered", talk_s=42.0, recording_path="r.wav"))
        task = Task(contact_id=contact.id,
                    conversation_id=conversation.id, channel=channel, queue_id=queue_id,
                    priority=priority, phase="ended", agent_id=agent_id, outcome="completed",
                    created_at=ENDED - timedelta(minutes=5),
                    enqueued_at=ENDED - timedelta(minutes=5),
                    accepted_at=ENDED - timedelta(minutes=4),
                    completed_at=ENDED - timedelta(minutes=1), ended_at=ENDED)
        await Tasks(session, tenant_id).add(task)
        await Events(session, tenant_id).append([NewEvent(
            type="task.ended", payload={"task_id": task.id, "outcome": "completed"})])
        return task.id


async def abandon_contact(database: Database, tenant_id: str) -> None:
    """A task that ended without being handled: nobody is told."""
    async with database.session() as session:
        await Events(session, tenant_id).append([NewEvent(
            type="task.ended", payload={"task_id": "gone", "outcome": "abandoned"})])

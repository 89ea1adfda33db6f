"""Customers, identities, conversations, contacts, tasks, messages and attachments."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from omnicc.core.errors import NotFound
from omnicc.store.repositories.base import TenantRepository, take_sequence
from omnicc.store.tables import (
    OPEN_TASK_PHASES,
    Attachment,
    Contact,
    Conversation,
    Customer,
    Identity,
    Message,
    Task,
)
from omnicc.store.tables.base import new_id


class Customers(TenantRepository[Customer]):
    table = Customer
    noun = "customer"


class Identities(TenantRepository[Identity]):
    table = Identity
    noun = "identity"

    async def by_value(self, kind: str, value: str) -> Identity | None:
        """The identity of `kind` with this normalised `value`, if a customer has it."""
        return await self.first(self.select().where(Identity.kind == kind, Identity.value == value))


class Conversations(TenantRepository[Conversation]):
    table = Conversation
    noun = "conversation"

    async def of_customer(self, customer_id: str) -> list[Conversation]:
        statement = self.select().where(Conversation.customer_id == customer_id)
        return await self.all(statement.order_by(Conversation.created_at, Conversation.id))


class Contacts(TenantRepository[Contact]):
    table = Contact
    noun = "contact"

    async def of_conversation(self, conversation_id: str) -> list[Contact]:
        statement = self.select().where(Contact.conversation_id == conversation_id)
        return await self.all(statement.order_by(Contact.started_at, Contact.id))


class Tasks(TenantRepository[Task]):
    """Routing tasks. `seq` is handed out here, in creation order, gap-free per tenant."""

    table = Task
    noun = "task"

    async def add(self, row: Task) -> Task:
        row.seq = await take_sequence(self.session, self.tenant_id, "task_seq")
        return await super().add(row)

    async def add_all(self, rows: Sequence[Task]) -> list[Task]:
        """Many tasks in one flush (a batch of emails), numbered in the order given."""
        if not rows:
            return []
        first = await take_sequence(self.session, self.tenant_id, "task_seq", len(rows))
        for offset, row in enumerate(rows):
            row.seq = first + offset
        return await super().add_all(rows)

    async def open_in_order(self) -> list[Task]:
        """Every task not ended, in creation order: what the engine is rebuilt from."""
        statement = self.select().where(Task.phase.in_(OPEN_TASK_PHASES))
        return await self.all(statement.order_by(Task.seq))


class Messages(TenantRepository[Message]):
    table = Message
    noun = "message"

    async def append(self, message: Message) -> tuple[Message, bool]:
        """Store `message` unless its conversation already has its idempotency key.

        Returns the stored message and whether it is new: a resent message (same key) gives
        back the first one and adds no row (use the returned message, not `message`). The
        insert is `ON CONFLICT DO NOTHING`, so two concurrent sends of one key store one row.
        """
        if message.idempotency_key is None:
            return await self.add(message), True
        await self._own(message)
        existing = await self._by_key(message.conversation_id, message.idempotency_key)
        if existing is not None:
            return existing, False
        values = {
            column.key: getattr(message, column.key)
            for column in Message.__table__.columns
            if getattr(message, column.key) is not None
        }
        dialect = sqlite if self.session.get_bind().dialect.name == "sqlite" else postgresql
        statement = (
            dialect.insert(Message)
            .values(values)
            .on_conflict_do_nothing(index_elements=["conversation_id", "idempotency_key"])
            .returning(Message.id)
        )
        inserted = (await self.session.execute(statement)).scalar_one_or_none()
        stored = await self._by_key(message.conversation_id, message.idempotency_key)
        if stored is None:  # pragma: no cover - the row was just inserted or already there
            raise NotFound(f"message {message.idempotency_key} vanished")
        return stored, inserted is not None

    async def append_batch(self, messages: Sequence[Message]) -> list[tuple[Message, bool]]:
        """`append` for many messages in two or three statements: the chat's hot path.

        The conversations and contacts they refer to are checked for this tenant once for the
        batch; one multi-row `INSERT ... ON CONFLICT DO NOTHING` stores the new ones, and the
        messages whose key was already stored are read back. Returns, in order, each stored
        message and whether it is new (a key repeated within the batch is new once).
        """
        if not messages:
            return []
        await self._check_parents(messages)
        values = []
        for message in messages:
            message.tenant_id = self.tenant_id
            message.id = message.id or new_id()
            values.append({column.key: getattr(message, column.key)
                           for column in Message.__table__.columns
                           if getattr(message, column.key) is not None})
        dialect = sqlite if self.session.get_bind().dialect.name == "sqlite" else postgresql
        statement = (
            dialect.insert(Message)
            .on_conflict_do_nothing(index_elements=["conversation_id", "idempotency_key"])
            .returning(Message.id)
        )
        inserted = set((await self.session.execute(statement, values)).scalars().all())
        result: list[tuple[Message, bool]] = []
        for message in messages:
            if message.id in inserted:
                result.append((message, True))
                continue
            assert message.idempotency_key is not None  # only a keyed message can conflict
            stored = await self._by_key(message.conversation_id, message.idempotency_key)
            if stored is None:  # pragma: no cover - a conflict means the key is stored
                raise NotFound(f"message {message.idempotency_key} vanished")
            result.append((stored, False))
        return result

    async def _check_parents(self, messages: Sequence[Message]) -> None:
        for table, ids in ((Conversation, {m.conversation_id for m in messages}),
                           (Contact, {m.contact_id for m in messages} - {None})):
            if not ids:
                continue
            found = set((await self.session.execute(
                select(table.id).where(table.tenant_id == self.tenant_id, table.id.in_(ids))
            )).scalars().all())
            missing = ids - found
            if missing:
                noun = table.__tablename__.rstrip("s")
                raise NotFound(f"{noun} {min(map(str, missing))} not found")

    async def history(self, conversation_id: str) -> list[Message]:
        statement = self.select().where(Message.conversation_id == conversation_id)
        return await self.all(statement.order_by(Message.created_at, Message.id))

    async def _by_key(self, conversation_id: str, key: str) -> Message | None:
        return await self.first(
            self.select().where(
                Message.conversation_id == conversation_id, Message.idempotency_key == key
            )
        )


class Attachments(TenantRepository[Attachment]):
    table = Attachment
    noun = "attachment"


__all__ = [
    "Attachments",
    "Contacts",
    "Conversations",
    "Customers",
    "Identities",
    "Messages",
    "Tasks",
]

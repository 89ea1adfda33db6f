"""Customers and their identities, conversations, contacts, tasks, messages and attachments."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from omnicc.store.tables.accounts import TenantOwned
from omnicc.store.tables.base import (
    ID_LENGTH,
    Base,
    JsonObject,
    choice,
    created_column,
    id_column,
)

TASK_PHASES = ("waiting", "offered", "assigned", "wrapping", "ended")
OPEN_TASK_PHASES = ("waiting", "offered", "assigned", "wrapping")
OUTCOMES = ("completed", "abandoned", "cancelled", "timed_out")
AUTHOR_KINDS = ("customer", "agent", "supervisor", "system")
VISIBILITIES = ("public", "internal", "whisper")


def _reference(table: str, *, ondelete: str = "CASCADE", index: bool = True) -> Mapped[Any]:
    return mapped_column(
        String(ID_LENGTH), ForeignKey(f"{table}.id", ondelete=ondelete), index=index
    )


class Customer(TenantOwned, Base):
    __tablename__ = "customers"

    id: Mapped[str] = id_column()
    name: Mapped[str] = mapped_column(String(200), default="")
    attributes: Mapped[dict[str, Any]] = mapped_column(JsonObject, default=dict)
    created_at: Mapped[datetime] = created_column()


class Identity(TenantOwned, Base):
    """One way to reach a customer: `kind` is open (phone, email, chat_visitor, whatsapp, ...)
    so a new channel needs no migration; `value` is normalised (E.164, lower-case email)."""

    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("tenant_id", "kind", "value"),)

    id: Mapped[str] = id_column()
    customer_id: Mapped[str] = _reference("customers")
    kind: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = created_column()


class Conversation(TenantOwned, Base):
    """A customer's case, across channels."""

    __tablename__ = "conversations"
    __table_args__ = (CheckConstraint(choice("status", ("open", "closed")), name="status"),)

    id: Mapped[str] = id_column()
    customer_id: Mapped[str | None] = _reference("customers", ondelete="SET NULL")
    subject: Mapped[str] = mapped_column(String(500), default="")
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime] = created_column()
    closed_at: Mapped[datetime | None]


class Contact(TenantOwned, Base):
    """One interaction on one channel (a call, a chat session, an email thread)."""

    __tablename__ = "contacts"
    __table_args__ = (
        CheckConstraint(choice("direction", ("inbound", "outbound")), name="direction"),
        CheckConstraint("csat_score BETWEEN 1 AND 5", name="csat_score"),
    )

    id: Mapped[str] = id_column()
    conversation_id: Mapped[str] = _reference("conversations")
    customer_id: Mapped[str | None] = _reference("customers", ondelete="SET NULL")
    channel: Mapped[str] = mapped_column(String(32))
    direction: Mapped[str] = mapped_column(String(16), default="inbound")
    queue_id: Mapped[str | None] = _reference("queues", ondelete="SET NULL")
    agent_id: Mapped[str | None] = _reference("agents", ondelete="SET NULL")
    wrap_up_code_id: Mapped[str | None] = _reference("wrap_up_codes", ondelete="SET NULL")
    attributes: Mapped[dict[str, Any]] = mapped_column(JsonObject, default=dict)
    started_at: Mapped[datetime] = created_column()
    ended_at: Mapped[datetime | None]
    csat_score: Mapped[int | None]
    csat_comment: Mapped[str | None] = mapped_column(Text)


class Task(TenantOwned, Base):
    """The durable record of a routing task; the engine is rebuilt from the open ones
    (`omnicc.core.model.RestoredTask`) in `seq` order after a restart."""

    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("tenant_id", "seq"),
        CheckConstraint(choice("phase", TASK_PHASES), name="phase"),
        CheckConstraint(f"outcome IS NULL OR {choice('outcome', OUTCOMES)}", name="outcome"),
        Index("ix_tasks_open", "tenant_id", "phase", "seq"),
    )

    id: Mapped[str] = id_column()
    seq: Mapped[int] = mapped_column(BigInteger)
    contact_id: Mapped[str | None] = _reference("contacts")
    conversation_id: Mapped[str | None] = _reference("conversations")
    channel: Mapped[str] = mapped_column(String(32))
    queue_id: Mapped[str | None] = _reference("queues", ondelete="RESTRICT")
    policy_id: Mapped[str | None] = _reference("routing_policies", ondelete="RESTRICT")
    priority: Mapped[int] = mapped_column(default=0)
    attributes: Mapped[dict[str, Any]] = mapped_column(JsonObject, default=dict)
    required_skills: Mapped[dict[str, Any]] = mapped_column(JsonObject, default=dict)
    phase: Mapped[str] = mapped_column(String(16), default="waiting")
    created_at: Mapped[datetime] = created_column()
    enqueued_at: Mapped[datetime] = created_column()
    step_index: Mapped[int] = mapped_column(default=0)
    step_entered_at: Mapped[datetime | None]
    agent_id: Mapped[str | None] = _reference("agents", ondelete="SET NULL")
    accepted_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    transferred: Mapped[bool] = mapped_column(default=False)
    outcome: Mapped[str | None] = mapped_column(String(16))


class Message(TenantOwned, Base):
    """One message of a conversation. `idempotency_key` is the sender's (a widget's or a
    provider's id): a resent message with the same key is the same message."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("conversation_id", "idempotency_key"),
        CheckConstraint(choice("author_kind", AUTHOR_KINDS), name="author_kind"),
        CheckConstraint(choice("visibility", VISIBILITIES), name="visibility"),
        Index("ix_messages_history", "conversation_id", "created_at"),
    )

    id: Mapped[str] = id_column()
    conversation_id: Mapped[str] = _reference("conversations", index=False)
    contact_id: Mapped[str | None] = _reference("contacts")
    author_kind: Mapped[str] = mapped_column(String(16))
    author_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    visibility: Mapped[str] = mapped_column(String(16), default="public")
    text: Mapped[str] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = created_column()


class Attachment(TenantOwned, Base):
    """A file's metadata; the bytes live at `storage_path` (relative to the data directory),
    never at a name the uploader chose."""

    __tablename__ = "attachments"
    __table_args__ = (CheckConstraint("size_bytes >= 0", name="size_bytes"),)

    id: Mapped[str] = id_column()
    conversation_id: Mapped[str] = _reference("conversations")
    message_id: Mapped[str | None] = _reference("messages", ondelete="SET NULL")
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_path: Mapped[str] = mapped_column(String(500), unique=True)
    created_at: Mapped[datetime] = created_column()

"""The CRM connector (lookup and push of finished contacts), the client company's contact per
queue (client notifications), their outboxes, and the event-log positions that feed them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from omnicc.store.tables.accounts import TenantOwned
from omnicc.store.tables.base import (
    ID_LENGTH,
    Base,
    JsonList,
    JsonObject,
    choice,
    created_column,
    id_column,
)

PUSH_STATES = ("pending", "delivered", "failed")
NOTIFICATION_STATES = ("pending", "sent", "failed")
LOOKUP_METHODS = ("GET", "POST")


class CrmConnector(Base):
    """A tenant's external CRM: how to look a customer up and where to push finished contacts.
    `auth_value` and `push_secret` are kept as given (the CRM needs them back), never shown."""

    __tablename__ = "crm_connectors"
    __table_args__ = (CheckConstraint(choice("lookup_method", LOOKUP_METHODS),
                                      name="lookup_method"),)

    tenant_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    lookup_enabled: Mapped[bool] = mapped_column(default=False)
    lookup_url: Mapped[str] = mapped_column(String(2000), default="")
    """A template: `{phone}` and `{email}` are replaced, URL-encoded."""
    lookup_method: Mapped[str] = mapped_column(String(8), default="GET")
    lookup_body: Mapped[str] = mapped_column(Text, default="")
    """POST only: a JSON template, `{phone}` and `{email}` replaced JSON-escaped."""
    auth_header: Mapped[str] = mapped_column(String(100), default="Authorization")
    auth_value: Mapped[str] = mapped_column(String(2000), default="")
    mapping: Mapped[dict[str, Any]] = mapped_column(JsonObject, default=dict)
    """`record` (path to the customer's record, e.g. `results[0]`), `fields` ([{label, path}]
    shown to the agent), `attributes` ({segment|vip|account_manager|language: path}), `link`
    (path of the record's address in the CRM)."""
    timeout_s: Mapped[float] = mapped_column(default=3.0)
    cache_ttl_s: Mapped[int] = mapped_column(default=300)
    push_enabled: Mapped[bool] = mapped_column(default=False)
    push_url: Mapped[str] = mapped_column(String(2000), default="")
    push_secret: Mapped[str] = mapped_column(String(200), default="")
    updated_at: Mapped[datetime] = created_column()


class CrmPush(TenantOwned, Base):
    """One finished contact to push, built when its task ended and retried under one key."""

    __tablename__ = "crm_pushes"
    __table_args__ = (
        CheckConstraint(choice("state", PUSH_STATES), name="state"),
        Index("ix_crm_pushes_due", "tenant_id", "state", "next_attempt_at"),
    )

    id: Mapped[str] = id_column()
    task_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    event_seq: Mapped[int] = mapped_column(BigInteger)
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JsonObject, default=dict)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = created_column()
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_column()
    delivered_at: Mapped[datetime | None]


class ClientContact(TenantOwned, Base):
    """The person of the client company a queue's handled contacts are reported to."""

    __tablename__ = "client_contacts"

    queue_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("queues.id", ondelete="CASCADE"), primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    is_enabled: Mapped[bool] = mapped_column(default=True)
    urgent_priority: Mapped[int | None]
    """A contact whose task had at least this priority is urgent (None: priority never is)."""
    urgent_codes: Mapped[list[Any]] = mapped_column(JsonList, default=list)
    """Wrap-up codes that make a contact urgent."""
    batch_minutes: Mapped[int] = mapped_column(default=0)
    """0: one email per contact at once; N: the non-urgent ones together, at most every N min."""
    created_at: Mapped[datetime] = created_column()


class ClientNotification(TenantOwned, Base):
    """One handled contact to report to a client contact. `message_id` is set (and committed)
    before the email is handed to the SMTP server, so a retry sends the same email."""

    __tablename__ = "client_notifications"
    __table_args__ = (
        CheckConstraint(choice("state", NOTIFICATION_STATES), name="state"),
        Index("ix_client_notifications_due", "tenant_id", "state", "next_attempt_at"),
    )

    id: Mapped[str] = id_column()
    queue_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("queues.id", ondelete="SET NULL"), index=True)
    task_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    recipient: Mapped[str] = mapped_column(String(320))
    is_urgent: Mapped[bool] = mapped_column(default=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JsonObject, default=dict)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = created_column()
    message_id: Mapped[str | None] = mapped_column(String(255))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_column()
    sent_at: Mapped[datetime | None]


class EventCursor(Base):
    """How far a reader of the event log (`crm_push`, `client_notifications`) has got in a
    tenant's log; its outbox rows and the move are one transaction."""

    __tablename__ = "event_cursors"

    tenant_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    reader: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)

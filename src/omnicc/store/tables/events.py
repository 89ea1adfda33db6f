"""The append-only event log, and webhook subscriptions and deliveries that carry it out."""

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

DELIVERY_STATES = ("pending", "delivered", "failed")


class Event(Base):
    """An immutable record of a change. `seq` is gap-free per tenant (handed out from
    `tenants.event_seq` in the same transaction), so a reader resumes from the last seq it saw."""

    __tablename__ = "events"

    tenant_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    type: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = created_column()
    payload: Mapped[dict[str, Any]] = mapped_column(JsonObject, default=dict)


class WebhookSubscription(TenantOwned, Base):
    """Where to POST events. `secret` signs deliveries (HMAC-SHA256), so it is kept as is."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[str] = id_column()
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(200))
    event_types: Mapped[list[Any]] = mapped_column(JsonList, default=list)
    """Event type names, prefixes (`task.*`) or `*`; empty means all."""
    is_enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = created_column()
    cursor_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    """The last event seq handed over to deliveries: the dispatcher resumes after it, and a new
    subscription starts at the log's end (it follows what happens from now on)."""


class WebhookDelivery(TenantOwned, Base):
    """One event to one subscription, retried with backoff under one idempotency key."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint(choice("state", DELIVERY_STATES), name="state"),
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
    )

    id: Mapped[str] = id_column()
    subscription_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"), index=True
    )
    event_seq: Mapped[int] = mapped_column(BigInteger)
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = created_column()
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_column()
    delivered_at: Mapped[datetime | None]

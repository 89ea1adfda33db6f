"""Messaging channels (SMS, WhatsApp, Telegram, Messenger): the provider accounts a tenant
receives and sends through, each customer's thread on one account, and every message in or
out with its delivery state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from omnicc.store.tables.accounts import TenantOwned
from omnicc.store.tables.base import (
    ID_LENGTH,
    Base,
    JsonList,
    choice,
    created_column,
    id_column,
)

PROVIDERS = ("twilio", "whatsapp", "telegram", "messenger")
MESSAGING_CHANNELS = ("sms", "whatsapp", "telegram", "messenger")
MESSAGING_DIRECTIONS = ("inbound", "outbound")
MESSAGING_STATES = ("received", "pending", "sent", "delivered", "read", "failed")


def _reference(table: str, *, ondelete: str = "SET NULL") -> Mapped[Any]:
    return mapped_column(
        String(ID_LENGTH), ForeignKey(f"{table}.id", ondelete=ondelete), index=True
    )


class MessagingAccount(TenantOwned, Base):
    """One provider account feeding one queue: a Twilio number (SMS or WhatsApp), a WhatsApp
    Cloud API phone number, a Telegram bot or a Facebook page.

    `address` is our side as the provider names it (the Twilio number in E.164, the Cloud
    API's phone number id, the bot's username, the page id). The secrets must be given back to
    the provider (API calls, signature checks), so they are stored as given and never shown
    again by the API. `api_base_url` empty means the provider's public API.
    """

    __tablename__ = "messaging_accounts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        CheckConstraint(choice("provider", PROVIDERS), name="provider"),
        CheckConstraint(choice("channel", MESSAGING_CHANNELS), name="channel"),
    )

    id: Mapped[str] = id_column()
    name: Mapped[str] = mapped_column(String(100))
    provider: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    queue_id: Mapped[str | None] = _reference("queues")
    address: Mapped[str] = mapped_column(String(200))
    account_sid: Mapped[str] = mapped_column(String(100), default="")
    """Twilio's Account SID (the user name of its API's basic auth)."""
    auth_token: Mapped[str] = mapped_column(String(500), default="")
    """Twilio's auth token, the Cloud API's or the page's access token, the bot's token."""
    app_secret: Mapped[str] = mapped_column(String(500), default="")
    """Meta's app secret (X-Hub-Signature-256) or Telegram's webhook secret token."""
    verify_token: Mapped[str] = mapped_column(String(500), default="")
    """Meta's webhook verify token (the hub.challenge handshake)."""
    api_base_url: Mapped[str] = mapped_column(String(500), default="")
    is_enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = created_column()


class MessagingThread(TenantOwned, Base):
    """A customer on one account: the conversation their messages join, its contact and open
    task, and when they last wrote (WhatsApp's 24-hour customer-service window)."""

    __tablename__ = "messaging_threads"
    __table_args__ = (UniqueConstraint("account_id", "peer"),)

    id: Mapped[str] = id_column()
    account_id: Mapped[str] = _reference("messaging_accounts", ondelete="CASCADE")
    peer: Mapped[str] = mapped_column(String(200))
    """The customer's address: E.164 phone, Telegram chat id, Messenger PSID."""
    customer_id: Mapped[str] = _reference("customers", ondelete="CASCADE")
    conversation_id: Mapped[str] = _reference("conversations", ondelete="CASCADE")
    contact_id: Mapped[str | None] = _reference("contacts")
    task_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    last_inbound_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_column()


class MessagingMessage(TenantOwned, Base):
    """One message in or out. `provider_message_id` is unique per account, so a webhook
    delivered twice stores nothing twice. Outbound rows are the outbox: `pending` with
    `next_attempt_at`, then `sent` (the provider took it), `delivered`, `read` or `failed`."""

    __tablename__ = "messaging_messages"
    __table_args__ = (
        UniqueConstraint("account_id", "provider_message_id"),
        CheckConstraint(choice("direction", MESSAGING_DIRECTIONS), name="direction"),
        CheckConstraint(choice("status", MESSAGING_STATES), name="status"),
        Index("ix_messaging_messages_outbox", "tenant_id", "status", "next_attempt_at"),
    )

    id: Mapped[str] = id_column()
    account_id: Mapped[str] = _reference("messaging_accounts", ondelete="CASCADE")
    thread_id: Mapped[str] = _reference("messaging_threads", ondelete="CASCADE")
    conversation_id: Mapped[str] = _reference("conversations", ondelete="CASCADE")
    message_id: Mapped[str | None] = _reference("messages")
    direction: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text, default="")
    media_urls: Mapped[list[Any]] = mapped_column(JsonList, default=list)
    template: Mapped[str] = mapped_column(String(200), default="")
    template_language: Mapped[str] = mapped_column(String(20), default="")
    template_parameters: Mapped[list[Any]] = mapped_column(JsonList, default=list)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    read_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_column()

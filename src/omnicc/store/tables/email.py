"""Email: the mailboxes a tenant reads and sends from, each email thread (a ticket), and every
message received or sent, with what threading and de-duplication need."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
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

SECURITIES = ("tls", "starttls", "plain")
EMAIL_DIRECTIONS = ("inbound", "outbound")
EMAIL_KINDS = ("customer", "auto_reply", "bounce", "reply", "acknowledgement")
EMAIL_STATES = ("received", "pending", "sent", "failed")


def _reference(table: str, *, ondelete: str = "SET NULL") -> Mapped[Any]:
    return mapped_column(
        String(ID_LENGTH), ForeignKey(f"{table}.id", ondelete=ondelete), index=True
    )


class EmailMailbox(TenantOwned, Base):
    """A mailbox read over IMAP and sent from over SMTP, feeding one queue.

    The IMAP and SMTP passwords must be given back to the servers, so they are kept as they
    are (like a webhook's signing secret) and never shown again by the API. `uid_validity` and
    `last_uid` say how far the inbox was read; they move in the transaction that stores the
    message, so a crash between storing and flagging on the server re-reads, never skips.
    """

    __tablename__ = "email_mailboxes"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        CheckConstraint(choice("imap_security", SECURITIES), name="imap_security"),
        CheckConstraint(choice("smtp_security", SECURITIES), name="smtp_security"),
    )

    id: Mapped[str] = id_column()
    name: Mapped[str] = mapped_column(String(100))
    address: Mapped[str] = mapped_column(String(320))
    queue_id: Mapped[str | None] = _reference("queues")
    imap_host: Mapped[str] = mapped_column(String(255))
    imap_port: Mapped[int] = mapped_column(default=993)
    imap_security: Mapped[str] = mapped_column(String(16), default="tls")
    imap_username: Mapped[str] = mapped_column(String(320))
    imap_password: Mapped[str] = mapped_column(String(500))
    imap_folder: Mapped[str] = mapped_column(String(200), default="INBOX")
    smtp_host: Mapped[str] = mapped_column(String(255))
    smtp_port: Mapped[int] = mapped_column(default=465)
    smtp_security: Mapped[str] = mapped_column(String(16), default="tls")
    smtp_username: Mapped[str] = mapped_column(String(320), default="")
    smtp_password: Mapped[str] = mapped_column(String(500), default="")
    auto_acknowledge: Mapped[bool] = mapped_column(default=True)
    first_response_s: Mapped[int] = mapped_column(default=8 * 3600)
    """The first-response target in business seconds of the queue's hours (8 h by default)."""
    poll_interval_s: Mapped[int] = mapped_column(default=60)
    is_enabled: Mapped[bool] = mapped_column(default=True)
    uid_validity: Mapped[int | None] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_checked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_column()


class EmailTicket(TenantOwned, Base):
    """The email thread of one conversation: its reference (the `[#REF]` token in subjects),
    the customer's address, the open task if any, and the first-response service level."""

    __tablename__ = "email_tickets"
    __table_args__ = (UniqueConstraint("tenant_id", "reference"),)

    id: Mapped[str] = id_column()
    conversation_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("conversations.id", ondelete="CASCADE"), unique=True)
    contact_id: Mapped[str] = _reference("contacts", ondelete="CASCADE")
    mailbox_id: Mapped[str | None] = _reference("email_mailboxes")
    reference: Mapped[str] = mapped_column(String(16))
    customer_address: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(500), default="")
    task_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    first_response_due_at: Mapped[datetime | None]
    first_responded_at: Mapped[datetime | None]
    escalation: Mapped[int] = mapped_column(default=0)
    """How many times the task's priority was raised as the due time neared."""
    created_at: Mapped[datetime] = created_column()


class EmailMessage(TenantOwned, Base):
    """One email in or out. `dedup_key` is the SHA-256 of the Message-ID (or, without one, of
    the raw bytes): unique per mailbox, so reading a mailbox again adds nothing.
    `message_id_hash` finds the thread an answer's In-Reply-To / References point at."""

    __tablename__ = "email_messages"
    __table_args__ = (
        UniqueConstraint("mailbox_id", "dedup_key"),
        CheckConstraint(choice("direction", EMAIL_DIRECTIONS), name="direction"),
        CheckConstraint(choice("kind", EMAIL_KINDS), name="kind"),
        CheckConstraint(choice("status", EMAIL_STATES), name="status"),
        Index("ix_email_messages_thread", "tenant_id", "message_id_hash"),
        Index("ix_email_messages_outbox", "tenant_id", "status"),
    )

    id: Mapped[str] = id_column()
    mailbox_id: Mapped[str] = _reference("email_mailboxes", ondelete="CASCADE")
    ticket_id: Mapped[str | None] = _reference("email_tickets")
    conversation_id: Mapped[str | None] = _reference("conversations", ondelete="CASCADE")
    message_id: Mapped[str | None] = _reference("messages")
    direction: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    dedup_key: Mapped[str] = mapped_column(String(64))
    header_message_id: Mapped[str] = mapped_column(Text, default="")
    message_id_hash: Mapped[str | None] = mapped_column(String(64))
    in_reply_to: Mapped[str] = mapped_column(Text, default="")
    references: Mapped[list[Any]] = mapped_column(JsonList, default=list)
    from_address: Mapped[str] = mapped_column(String(320), default="")
    from_name: Mapped[str] = mapped_column(String(200), default="")
    to_addresses: Mapped[list[Any]] = mapped_column(JsonList, default=list)
    cc_addresses: Mapped[list[Any]] = mapped_column(JsonList, default=list)
    subject: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    safe_html: Mapped[str] = mapped_column(Text, default="")
    """The HTML body after nh3: what a browser may be shown. The original is only in `raw`."""
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    imap_uid: Mapped[int | None] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_column()

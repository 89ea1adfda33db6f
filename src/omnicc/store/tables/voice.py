"""Voice: numbers callers dial, the IVR flows behind them, agents' SIP accounts, uploaded
prompts, call detail records and callback requests."""

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
    UniqueConstraint,
)
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

CALL_DIRECTIONS = ("inbound", "outbound")
HANGUP_SIDES = ("caller", "agent", "system")
CALLBACK_STATES = ("pending", "dialling", "done", "failed", "cancelled")


def _reference(table: str, *, ondelete: str = "SET NULL") -> Mapped[Any]:
    return mapped_column(
        String(ID_LENGTH), ForeignKey(f"{table}.id", ondelete=ondelete), index=True
    )


class IvrFlow(TenantOwned, Base):
    """An IVR flow; `definition` is `omnicc.channels.voice.ivr.Flow` as JSON."""

    __tablename__ = "ivr_flows"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[str] = id_column()
    name: Mapped[str] = mapped_column(String(100))
    definition: Mapped[dict[str, Any]] = mapped_column(JsonObject, default=dict)
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = created_column()


class VoiceNumber(TenantOwned, Base):
    """A number callers dial (E.164, or the user part of a SIP URI) and the flow it runs.

    Unique across tenants: an incoming INVITE names only the number, and that picks the
    tenant. The same number is the caller ID of outbound calls from `outbound_queue_id` (or of
    every queue without one, when `is_default_outbound`).
    """

    __tablename__ = "voice_numbers"

    id: Mapped[str] = id_column()
    number: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    flow_id: Mapped[str | None] = _reference("ivr_flows", ondelete="RESTRICT")
    outbound_queue_id: Mapped[str | None] = _reference("queues")
    is_default_outbound: Mapped[bool] = mapped_column(default=False)
    is_enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = created_column()


class SipAccount(TenantOwned, Base):
    """An agent's SIP phone login. Only the digest HA1 hashes are kept (MD5 and SHA-256, as
    phones still use both), never the password; they are bound to `realm`, so the realm is kept
    with them and a phone is challenged in it."""

    __tablename__ = "sip_accounts"
    __table_args__ = (UniqueConstraint("realm", "username"),)

    id: Mapped[str] = id_column()
    agent_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("agents.id", ondelete="CASCADE"), unique=True
    )
    username: Mapped[str] = mapped_column(String(64))
    realm: Mapped[str] = mapped_column(String(255))
    ha1_md5: Mapped[str] = mapped_column(String(32))
    ha1_sha256: Mapped[str] = mapped_column(String(64))
    is_enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = created_column()
    password_changed_at: Mapped[datetime] = created_column()


class VoicePrompt(TenantOwned, Base):
    """An uploaded WAV prompt (mono PCM, 8 or 16 kHz, short), kept in the database: a few
    hundred kilobytes each, backed up and isolated with the tenant's other rows. The media
    layer writes it to its prompt cache by `sha256`."""

    __tablename__ = "voice_prompts"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[str] = id_column()
    name: Mapped[str] = mapped_column(String(100))
    sample_rate: Mapped[int]
    duration_ms: Mapped[int]
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    audio: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    """The WAV file as uploaded; loaded only when asked for."""
    created_at: Mapped[datetime] = created_column()


class CallRecord(TenantOwned, Base):
    """The call detail record of one call, from the first INVITE to the last BYE."""

    __tablename__ = "call_records"
    __table_args__ = (
        CheckConstraint(choice("direction", CALL_DIRECTIONS), name="direction"),
        CheckConstraint(f"hangup_side IS NULL OR {choice('hangup_side', HANGUP_SIDES)}",
                        name="hangup_side"),
        Index("ix_call_records_started", "tenant_id", "started_at"),
    )

    id: Mapped[str] = id_column()
    call_id: Mapped[str] = mapped_column(String(255), index=True)
    """The SIP Call-ID of the customer's leg."""
    contact_id: Mapped[str | None] = _reference("contacts")
    conversation_id: Mapped[str | None] = _reference("conversations")
    customer_id: Mapped[str | None] = _reference("customers")
    direction: Mapped[str] = mapped_column(String(16), default="inbound")
    from_number: Mapped[str] = mapped_column(String(255), default="")
    to_number: Mapped[str] = mapped_column(String(255), default="")
    number_id: Mapped[str | None] = _reference("voice_numbers")
    """The tenant's number that was dialled (inbound) or shown (outbound)."""
    flow_id: Mapped[str | None] = _reference("ivr_flows")
    ivr_path: Mapped[list[Any]] = mapped_column(JsonList, default=list)
    queue_id: Mapped[str | None] = _reference("queues")
    agent_id: Mapped[str | None] = _reference("agents")
    started_at: Mapped[datetime] = created_column()
    answered_at: Mapped[datetime | None]
    """When an agent (or the called party of an outbound call) answered."""
    ended_at: Mapped[datetime | None]
    queue_s: Mapped[float] = mapped_column(default=0.0)
    talk_s: Mapped[float] = mapped_column(default=0.0)
    hold_s: Mapped[float] = mapped_column(default=0.0)
    transfers: Mapped[int] = mapped_column(default=0)
    hangup_side: Mapped[str | None] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(32), default="in_progress")
    """in_progress, answered, abandoned, voicemail, callback, hangup, failed, ..."""
    recording_path: Mapped[str | None] = mapped_column(String(500))
    details: Mapped[dict[str, Any]] = mapped_column(JsonObject, default=dict)


class CallbackRequest(TenantOwned, Base):
    """A customer asked to be called back (IVR, leaving the queue, the website's button).

    It becomes a routing task of channel "callback" when due (`due_at` None: at once); the
    request keeps the number and time, the task its place in the queue.
    """

    __tablename__ = "callback_requests"
    __table_args__ = (
        CheckConstraint(choice("state", CALLBACK_STATES), name="state"),
        Index("ix_callback_requests_due", "tenant_id", "state", "due_at"),
    )

    id: Mapped[str] = id_column()
    number: Mapped[str] = mapped_column(String(64))
    queue_id: Mapped[str] = _reference("queues", ondelete="CASCADE")
    customer_id: Mapped[str | None] = _reference("customers")
    call_record_id: Mapped[str | None] = _reference("call_records")
    task_id: Mapped[str | None] = _reference("tasks")
    source: Mapped[str] = mapped_column(String(32), default="ivr")
    """ivr, queue (virtual hold), widget, agent."""
    due_at: Mapped[datetime | None]
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    attributes: Mapped[dict[str, Any]] = mapped_column(JsonObject, default=dict)
    created_at: Mapped[datetime] = created_column()
    completed_at: Mapped[datetime | None]

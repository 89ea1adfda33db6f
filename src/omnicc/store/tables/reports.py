"""The reports' read side: contacts and agent statuses folded from the event log, their 15-minute
and daily totals, the fold's cursor, and scheduled report emails.

Everything here is derived from the event log (and a few store facts: hold time, CSAT), so
`omnicc reports rebuild` can drop it and fold the log again.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
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

COUNT_MEASURES = (
    "offered", "transfers_in", "handled", "handled_within_threshold", "abandoned",
    "short_abandoned", "abandoned_after_threshold", "timed_out", "transfers",
    "fcr_contacts", "fcr_repeats", "csat_answers", "csat_good",
)
"""Counted contacts (METRICS.md): `transfers_in` of the offered came by transfer, `transfers`
of the handled were transferred on, `fcr_repeats` of the `fcr_contacts` were followed by a new
contact of the same customer within the FCR window, `csat_good` surveys scored 4 or 5."""

SECONDS_MEASURES = (
    "wait_s", "abandon_wait_s", "talk_s", "hold_s", "wrap_s",
    "logged_in_s", "available_s", "handling_s", "wrap_up_status_s", "break_s",
)
"""Summed seconds: waits of handled contacts, waits before abandoning, talk/hold/wrap-up of
handled contacts, and agents' time by presence (logged in, available, handling = busy or
wrap-up, in wrap-up, on a break or other status that takes no work)."""

MEASURES = COUNT_MEASURES + SECONDS_MEASURES
DIMENSIONS = ("total", "queue", "channel", "agent", "team", "disposition", "segment")
VISIT_OUTCOMES = ("handled", "abandoned", "timed_out", "cancelled", "moved")
SCHEDULE_FREQUENCIES = ("daily", "weekly")
SEND_STATES = ("pending", "sent", "failed")


class ReportCursor(Base):
    """The last event seq of a tenant folded into the report tables: the fold resumes after it."""

    __tablename__ = "report_cursors"

    tenant_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = created_column()


class ReportContact(Base):
    """One visit of a task to a queue (METRICS.md's offered contact; a transfer or overflow to
    another queue is a new visit), with what the fold learned about it. The drill-down of every
    total lists these rows."""

    __tablename__ = "report_contacts"
    __table_args__ = (
        CheckConstraint(f"outcome IS NULL OR {choice('outcome', VISIT_OUTCOMES)}",
                        name="outcome"),
        Index("ix_report_contacts_entered", "tenant_id", "entered_at"),
        Index("ix_report_contacts_customer", "tenant_id", "customer_key", "ended_at"),
        Index("ix_report_contacts_open", "tenant_id", "is_final", "task_id"),
    )

    tenant_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    task_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    visit: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    conversation_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    contact_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    customer_key: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    queue_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    channel: Mapped[str] = mapped_column(String(32))
    segment: Mapped[str] = mapped_column(String(64), default="")
    agent_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    team: Mapped[str] = mapped_column(String(64), default="")
    disposition: Mapped[str] = mapped_column(String(64), default="")
    entered_reason: Mapped[str] = mapped_column(String(16))
    entered_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(16))
    threshold_s: Mapped[float] = mapped_column(Float)
    wait_s: Mapped[float] = mapped_column(Float, default=0.0)
    talk_s: Mapped[float] = mapped_column(Float, default=0.0)
    hold_s: Mapped[float] = mapped_column(Float, default=0.0)
    wrap_s: Mapped[float] = mapped_column(Float, default=0.0)
    transferred: Mapped[bool] = mapped_column(default=False)
    fcr_repeat: Mapped[bool] = mapped_column(default=False)
    csat_score: Mapped[int | None]
    is_final: Mapped[bool] = mapped_column(default=False)
    """Counted in the totals (its task ended or moved on, and its wrap-up is done)."""


class ReportAgentStatus(Base):
    """One period of an agent in one status and presence, from the `agent.status_changed` that
    began it (`seq`) until the next one (`ended_at`; None while it lasts)."""

    __tablename__ = "report_agent_statuses"
    __table_args__ = (
        Index("ix_report_agent_statuses_agent", "tenant_id", "agent_id", "started_at"),
        Index("ix_report_agent_statuses_started", "tenant_id", "started_at"),
    )

    tenant_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    agent_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    status: Mapped[str] = mapped_column(String(32))
    presence: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(200), default="")
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class _Totals:
    """The measures of a total; the fold adds to them and never overwrites."""

    offered: Mapped[int] = mapped_column(BigInteger, default=0)
    transfers_in: Mapped[int] = mapped_column(BigInteger, default=0)
    handled: Mapped[int] = mapped_column(BigInteger, default=0)
    handled_within_threshold: Mapped[int] = mapped_column(BigInteger, default=0)
    abandoned: Mapped[int] = mapped_column(BigInteger, default=0)
    short_abandoned: Mapped[int] = mapped_column(BigInteger, default=0)
    abandoned_after_threshold: Mapped[int] = mapped_column(BigInteger, default=0)
    timed_out: Mapped[int] = mapped_column(BigInteger, default=0)
    transfers: Mapped[int] = mapped_column(BigInteger, default=0)
    fcr_contacts: Mapped[int] = mapped_column(BigInteger, default=0)
    fcr_repeats: Mapped[int] = mapped_column(BigInteger, default=0)
    csat_answers: Mapped[int] = mapped_column(BigInteger, default=0)
    csat_good: Mapped[int] = mapped_column(BigInteger, default=0)
    wait_s: Mapped[float] = mapped_column(Float, default=0.0)
    abandon_wait_s: Mapped[float] = mapped_column(Float, default=0.0)
    talk_s: Mapped[float] = mapped_column(Float, default=0.0)
    hold_s: Mapped[float] = mapped_column(Float, default=0.0)
    wrap_s: Mapped[float] = mapped_column(Float, default=0.0)
    logged_in_s: Mapped[float] = mapped_column(Float, default=0.0)
    available_s: Mapped[float] = mapped_column(Float, default=0.0)
    handling_s: Mapped[float] = mapped_column(Float, default=0.0)
    wrap_up_status_s: Mapped[float] = mapped_column(Float, default=0.0)
    break_s: Mapped[float] = mapped_column(Float, default=0.0)


class ReportInterval(_Totals, Base):
    """Totals of one 15-minute interval (UTC start) for one key of one dimension (`total`'s key
    is ""). Contacts count in the interval they entered the queue; agent time where it passed."""

    __tablename__ = "report_intervals"

    tenant_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    dimension: Mapped[str] = mapped_column(String(16), primary_key=True)
    start: Mapped[datetime] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(ID_LENGTH * 2), primary_key=True)


class ReportDay(_Totals, Base):
    """The same totals for one day in the tenant's time zone: what week and month reports add."""

    __tablename__ = "report_days"

    tenant_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    dimension: Mapped[str] = mapped_column(String(16), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    key: Mapped[str] = mapped_column(String(ID_LENGTH * 2), primary_key=True)


class ReportSchedule(TenantOwned, Base):
    """A report emailed to `recipients` every day or week (the previous day's or week's)."""

    __tablename__ = "report_schedules"
    __table_args__ = (
        CheckConstraint(choice("frequency", SCHEDULE_FREQUENCIES), name="frequency"),
        UniqueConstraint("tenant_id", "name"),
    )

    id: Mapped[str] = id_column()
    name: Mapped[str] = mapped_column(String(100))
    recipients: Mapped[list[Any]] = mapped_column(JsonList, default=list)
    frequency: Mapped[str] = mapped_column(String(16), default="daily")
    dimension: Mapped[str] = mapped_column(String(16), default="queue")
    mailbox_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("email_mailboxes.id", ondelete="SET NULL"), index=True
    )
    """The mailbox whose SMTP server sends it; None: the tenant's first enabled mailbox."""
    is_enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = created_column()


class ReportSend(TenantOwned, Base):
    """One period's email of a schedule. Unique per (schedule, period): a restart finds the row
    and neither skips the period nor sends it twice."""

    __tablename__ = "report_sends"
    __table_args__ = (
        CheckConstraint(choice("state", SEND_STATES), name="state"),
        UniqueConstraint("schedule_id", "period_start"),
    )

    id: Mapped[str] = id_column()
    schedule_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("report_schedules.id", ondelete="CASCADE"), index=True
    )
    period_start: Mapped[date] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    message_id: Mapped[str] = mapped_column(String(255), default="")
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_column()
    sent_at: Mapped[datetime | None]

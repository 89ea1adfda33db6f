"""Reports: contacts and agent statuses folded from the event log, 15-minute and daily totals,
the fold's cursor, and scheduled report emails.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 05:30:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The measures as this revision made them (store/tables/reports.py may grow later ones).
COUNT_MEASURES = (
    "offered", "transfers_in", "handled", "handled_within_threshold", "abandoned",
    "short_abandoned", "abandoned_after_threshold", "timed_out", "transfers",
    "fcr_contacts", "fcr_repeats", "csat_answers", "csat_good",
)
SECONDS_MEASURES = (
    "wait_s", "abandon_wait_s", "talk_s", "hold_s", "wrap_s",
    "logged_in_s", "available_s", "handling_s", "wrap_up_status_s", "break_s",
)


def _tenant_key(table: str) -> tuple[sa.Column[str], sa.ForeignKeyConstraint]:
    return (
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"],
                                name=op.f(f"fk_{table}_tenant_id_tenants"), ondelete="CASCADE"),
    )


def _measures() -> list[sa.Column[Any]]:
    return [sa.Column(name, sa.BigInteger(), nullable=False) for name in COUNT_MEASURES] + [
        sa.Column(name, sa.Float(), nullable=False) for name in SECONDS_MEASURES]


def upgrade() -> None:
    op.create_table(
        "report_cursors",
        *_tenant_key("report_cursors"),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_report_cursors")),
    )
    op.create_table(
        "report_contacts",
        *_tenant_key("report_contacts"),
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("visit", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("conversation_id", sa.String(length=36), nullable=True),
        sa.Column("contact_id", sa.String(length=36), nullable=True),
        sa.Column("customer_key", sa.String(length=36), nullable=True),
        sa.Column("queue_id", sa.String(length=36), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("segment", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=36), nullable=True),
        sa.Column("team", sa.String(length=64), nullable=False),
        sa.Column("disposition", sa.String(length=64), nullable=False),
        sa.Column("entered_reason", sa.String(length=16), nullable=False),
        sa.Column("entered_at", TIME, nullable=False),
        sa.Column("accepted_at", TIME, nullable=True),
        sa.Column("ended_at", TIME, nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("threshold_s", sa.Float(), nullable=False),
        sa.Column("wait_s", sa.Float(), nullable=False),
        sa.Column("talk_s", sa.Float(), nullable=False),
        sa.Column("hold_s", sa.Float(), nullable=False),
        sa.Column("wrap_s", sa.Float(), nullable=False),
        sa.Column("transferred", sa.Boolean(), nullable=False),
        sa.Column("fcr_repeat", sa.Boolean(), nullable=False),
        sa.Column("csat_score", sa.Integer(), nullable=True),
        sa.Column("is_final", sa.Boolean(), nullable=False),
        sa.CheckConstraint(
            "outcome IS NULL OR outcome IN ('handled', 'abandoned', 'timed_out', 'cancelled', "
            "'moved')", name=op.f("ck_report_contacts_outcome")),
        sa.PrimaryKeyConstraint("tenant_id", "task_id", "visit", name=op.f("pk_report_contacts")),
    )
    op.create_index("ix_report_contacts_customer", "report_contacts",
                    ["tenant_id", "customer_key", "ended_at"], unique=False)
    op.create_index("ix_report_contacts_entered", "report_contacts",
                    ["tenant_id", "entered_at"], unique=False)
    op.create_index("ix_report_contacts_open", "report_contacts",
                    ["tenant_id", "is_final", "task_id"], unique=False)
    op.create_table(
        "report_agent_statuses",
        *_tenant_key("report_agent_statuses"),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("agent_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("presence", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("ended_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "seq", name=op.f("pk_report_agent_statuses")),
    )
    op.create_index("ix_report_agent_statuses_agent", "report_agent_statuses",
                    ["tenant_id", "agent_id", "started_at"], unique=False)
    op.create_index("ix_report_agent_statuses_started", "report_agent_statuses",
                    ["tenant_id", "started_at"], unique=False)
    op.create_table(
        "report_intervals",
        *_tenant_key("report_intervals"),
        sa.Column("dimension", sa.String(length=16), nullable=False),
        sa.Column("start", TIME, nullable=False),
        sa.Column("key", sa.String(length=72), nullable=False),
        *_measures(),
        sa.PrimaryKeyConstraint("tenant_id", "dimension", "start", "key",
                                name=op.f("pk_report_intervals")),
    )
    op.create_table(
        "report_days",
        *_tenant_key("report_days"),
        sa.Column("dimension", sa.String(length=16), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("key", sa.String(length=72), nullable=False),
        *_measures(),
        sa.PrimaryKeyConstraint("tenant_id", "dimension", "day", "key",
                                name=op.f("pk_report_days")),
    )
    op.create_table(
        "report_schedules",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("recipients", JSON, nullable=False),
        sa.Column("frequency", sa.String(length=16), nullable=False),
        sa.Column("dimension", sa.String(length=16), nullable=False),
        sa.Column("mailbox_id", sa.String(length=36), nullable=True),
        sa.Column("is_enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        *_tenant_key("report_schedules"),
        sa.CheckConstraint("frequency IN ('daily', 'weekly')",
                           name=op.f("ck_report_schedules_frequency")),
        sa.ForeignKeyConstraint(["mailbox_id"], ["email_mailboxes.id"],
                                name=op.f("fk_report_schedules_mailbox_id_email_mailboxes"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_schedules")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_report_schedules_tenant_id_name")),
    )
    op.create_index(op.f("ix_report_schedules_mailbox_id"), "report_schedules", ["mailbox_id"],
                    unique=False)
    op.create_index(op.f("ix_report_schedules_tenant_id"), "report_schedules", ["tenant_id"],
                    unique=False)
    op.create_table(
        "report_sends",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("schedule_id", sa.String(length=36), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("sent_at", TIME, nullable=True),
        *_tenant_key("report_sends"),
        sa.CheckConstraint("state IN ('pending', 'sent', 'failed')",
                           name=op.f("ck_report_sends_state")),
        sa.ForeignKeyConstraint(["schedule_id"], ["report_schedules.id"],
                                name=op.f("fk_report_sends_schedule_id_report_schedules"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_sends")),
        sa.UniqueConstraint("schedule_id", "period_start",
                            name=op.f("uq_report_sends_schedule_id_period_start")),
    )
    op.create_index(op.f("ix_report_sends_schedule_id"), "report_sends", ["schedule_id"],
                    unique=False)
    op.create_index(op.f("ix_report_sends_tenant_id"), "report_sends", ["tenant_id"],
                    unique=False)


def downgrade() -> None:
    for table in ("report_sends", "report_schedules", "report_days", "report_intervals",
                  "report_agent_statuses", "report_contacts", "report_cursors"):
        op.drop_table(table)

"""Voice: IVR flows, numbers, agents' SIP accounts, uploaded prompts, call detail records and
callback requests.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 23:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import SchemaItem

# JSON documents, JSONB on PostgreSQL (as omnicc.store.tables.base.Json).
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.Column[str]:
    return sa.Column("id", sa.String(length=36), nullable=False)


def _tenant(table: str) -> list[SchemaItem]:
    return [
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f(f"fk_{table}_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
    ]


def _reference(table: str, column: str, referred: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{referred}.id"], name=op.f(f"fk_{table}_{column}_{referred}"),
        ondelete=ondelete,
    )


def _indexes(table: str, *columns: str) -> None:
    for column in columns:
        op.create_index(op.f(f"ix_{table}_{column}"), table, [column], unique=False)


def upgrade() -> None:
    op.create_table(
        "ivr_flows",
        _id(),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("definition", JSON, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        *_tenant("ivr_flows"),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_ivr_flows_tenant_id_name")),
    )
    _indexes("ivr_flows", "tenant_id")

    op.create_table(
        "voice_prompts",
        _id(),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("sample_rate", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("audio", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        *_tenant("voice_prompts"),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_voice_prompts_tenant_id_name")),
    )
    _indexes("voice_prompts", "tenant_id")

    op.create_table(
        "sip_accounts",
        _id(),
        sa.Column("agent_id", sa.String(length=36), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("realm", sa.String(length=255), nullable=False),
        sa.Column("ha1_md5", sa.String(length=32), nullable=False),
        sa.Column("ha1_sha256", sa.String(length=64), nullable=False),
        sa.Column("is_enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("password_changed_at", TIME, nullable=False),
        *_tenant("sip_accounts"),
        _reference("sip_accounts", "agent_id", "agents", "CASCADE"),
        sa.UniqueConstraint("agent_id", name=op.f("uq_sip_accounts_agent_id")),
        sa.UniqueConstraint("realm", "username", name=op.f("uq_sip_accounts_realm_username")),
    )
    _indexes("sip_accounts", "tenant_id")

    op.create_table(
        "voice_numbers",
        _id(),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("flow_id", sa.String(length=36), nullable=True),
        sa.Column("outbound_queue_id", sa.String(length=36), nullable=True),
        sa.Column("is_default_outbound", sa.Boolean(), nullable=False),
        sa.Column("is_enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        *_tenant("voice_numbers"),
        _reference("voice_numbers", "flow_id", "ivr_flows", "RESTRICT"),
        _reference("voice_numbers", "outbound_queue_id", "queues", "SET NULL"),
        sa.UniqueConstraint("number", name=op.f("uq_voice_numbers_number")),
    )
    _indexes("voice_numbers", "flow_id", "outbound_queue_id", "tenant_id")

    op.create_table(
        "call_records",
        _id(),
        sa.Column("call_id", sa.String(length=255), nullable=False),
        sa.Column("contact_id", sa.String(length=36), nullable=True),
        sa.Column("conversation_id", sa.String(length=36), nullable=True),
        sa.Column("customer_id", sa.String(length=36), nullable=True),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("from_number", sa.String(length=255), nullable=False),
        sa.Column("to_number", sa.String(length=255), nullable=False),
        sa.Column("number_id", sa.String(length=36), nullable=True),
        sa.Column("flow_id", sa.String(length=36), nullable=True),
        sa.Column("ivr_path", JSON, nullable=False),
        sa.Column("queue_id", sa.String(length=36), nullable=True),
        sa.Column("agent_id", sa.String(length=36), nullable=True),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("answered_at", TIME, nullable=True),
        sa.Column("ended_at", TIME, nullable=True),
        sa.Column("queue_s", sa.Double(), nullable=False),
        sa.Column("talk_s", sa.Double(), nullable=False),
        sa.Column("hold_s", sa.Double(), nullable=False),
        sa.Column("transfers", sa.Integer(), nullable=False),
        sa.Column("hangup_side", sa.String(length=16), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("recording_path", sa.String(length=500), nullable=True),
        sa.Column("details", JSON, nullable=False),
        *_tenant("call_records"),
        sa.CheckConstraint(
            "direction IN ('inbound', 'outbound')", name=op.f("ck_call_records_direction")
        ),
        sa.CheckConstraint(
            "hangup_side IS NULL OR hangup_side IN ('caller', 'agent', 'system')",
            name=op.f("ck_call_records_hangup_side"),
        ),
        _reference("call_records", "agent_id", "agents", "SET NULL"),
        _reference("call_records", "contact_id", "contacts", "SET NULL"),
        _reference("call_records", "conversation_id", "conversations", "SET NULL"),
        _reference("call_records", "customer_id", "customers", "SET NULL"),
        _reference("call_records", "flow_id", "ivr_flows", "SET NULL"),
        _reference("call_records", "number_id", "voice_numbers", "SET NULL"),
        _reference("call_records", "queue_id", "queues", "SET NULL"),
    )
    _indexes(
        "call_records", "agent_id", "call_id", "contact_id", "conversation_id", "customer_id",
        "flow_id", "number_id", "queue_id", "tenant_id",
    )
    op.create_index(
        "ix_call_records_started", "call_records", ["tenant_id", "started_at"], unique=False
    )

    op.create_table(
        "callback_requests",
        _id(),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("queue_id", sa.String(length=36), nullable=False),
        sa.Column("customer_id", sa.String(length=36), nullable=True),
        sa.Column("call_record_id", sa.String(length=36), nullable=True),
        sa.Column("task_id", sa.String(length=36), nullable=True),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("due_at", TIME, nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("attributes", JSON, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("completed_at", TIME, nullable=True),
        *_tenant("callback_requests"),
        sa.CheckConstraint(
            "state IN ('pending', 'dialling', 'done', 'failed', 'cancelled')",
            name=op.f("ck_callback_requests_state"),
        ),
        _reference("callback_requests", "call_record_id", "call_records", "SET NULL"),
        _reference("callback_requests", "customer_id", "customers", "SET NULL"),
        _reference("callback_requests", "queue_id", "queues", "CASCADE"),
        _reference("callback_requests", "task_id", "tasks", "SET NULL"),
    )
    _indexes(
        "callback_requests", "call_record_id", "customer_id", "queue_id", "task_id", "tenant_id"
    )
    op.create_index(
        "ix_callback_requests_due",
        "callback_requests",
        ["tenant_id", "state", "due_at"],
        unique=False,
    )


def downgrade() -> None:
    for table in (
        "callback_requests", "call_records", "voice_numbers", "sip_accounts", "voice_prompts",
        "ivr_flows",
    ):
        op.drop_table(table)

"""Messaging channels: provider accounts, customer threads and messages.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 03:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import SchemaItem

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)

revision: str = "0007"
down_revision: str | None = "0006"
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


def _check(table: str, column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    quoted = ", ".join(f"'{value}'" for value in values)
    return sa.CheckConstraint(f"{column} IN ({quoted})", name=op.f(f"ck_{table}_{column}"))


def _indexes(table: str, *columns: str) -> None:
    for column in columns:
        op.create_index(op.f(f"ix_{table}_{column}"), table, [column], unique=False)


def upgrade() -> None:
    op.create_table(
        "messaging_accounts",
        _id(),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("queue_id", sa.String(length=36), nullable=True),
        sa.Column("address", sa.String(length=200), nullable=False),
        sa.Column("account_sid", sa.String(length=100), nullable=False),
        sa.Column("auth_token", sa.String(length=500), nullable=False),
        sa.Column("app_secret", sa.String(length=500), nullable=False),
        sa.Column("verify_token", sa.String(length=500), nullable=False),
        sa.Column("api_base_url", sa.String(length=500), nullable=False),
        sa.Column("is_enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        *_tenant("messaging_accounts"),
        _check("messaging_accounts", "provider", ("twilio", "whatsapp", "telegram", "messenger")),
        _check("messaging_accounts", "channel", ("sms", "whatsapp", "telegram", "messenger")),
        _reference("messaging_accounts", "queue_id", "queues", "SET NULL"),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_messaging_accounts_tenant_id_name")),
    )
    _indexes("messaging_accounts", "queue_id", "tenant_id")
    op.create_table(
        "messaging_threads",
        _id(),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("peer", sa.String(length=200), nullable=False),
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("conversation_id", sa.String(length=36), nullable=False),
        sa.Column("contact_id", sa.String(length=36), nullable=True),
        sa.Column("task_id", sa.String(length=36), nullable=True),
        sa.Column("last_inbound_at", TIME, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        *_tenant("messaging_threads"),
        _reference("messaging_threads", "account_id", "messaging_accounts", "CASCADE"),
        _reference("messaging_threads", "customer_id", "customers", "CASCADE"),
        _reference("messaging_threads", "conversation_id", "conversations", "CASCADE"),
        _reference("messaging_threads", "contact_id", "contacts", "SET NULL"),
        sa.UniqueConstraint("account_id", "peer",
                            name=op.f("uq_messaging_threads_account_id_peer")),
    )
    _indexes("messaging_threads", "account_id", "contact_id", "conversation_id", "customer_id",
             "tenant_id")
    op.create_table(
        "messaging_messages",
        _id(),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("thread_id", sa.String(length=36), nullable=False),
        sa.Column("conversation_id", sa.String(length=36), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=True),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("media_urls", JSON, nullable=False),
        sa.Column("template", sa.String(length=200), nullable=False),
        sa.Column("template_language", sa.String(length=20), nullable=False),
        sa.Column("template_parameters", JSON, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TIME, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", TIME, nullable=True),
        sa.Column("delivered_at", TIME, nullable=True),
        sa.Column("read_at", TIME, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        *_tenant("messaging_messages"),
        _check("messaging_messages", "direction", ("inbound", "outbound")),
        _check("messaging_messages", "status",
               ("received", "pending", "sent", "delivered", "read", "failed")),
        _reference("messaging_messages", "account_id", "messaging_accounts", "CASCADE"),
        _reference("messaging_messages", "thread_id", "messaging_threads", "CASCADE"),
        _reference("messaging_messages", "conversation_id", "conversations", "CASCADE"),
        _reference("messaging_messages", "message_id", "messages", "SET NULL"),
        sa.UniqueConstraint("account_id", "provider_message_id",
                            name=op.f("uq_messaging_messages_account_id_provider_message_id")),
    )
    _indexes("messaging_messages", "account_id", "conversation_id", "message_id", "tenant_id",
             "thread_id")
    op.create_index("ix_messaging_messages_outbox", "messaging_messages",
                    ["tenant_id", "status", "next_attempt_at"], unique=False)


def downgrade() -> None:
    for table in ("messaging_messages", "messaging_threads", "messaging_accounts"):
        op.drop_table(table)

"""Email: mailboxes, tickets (one email thread per conversation) and email messages.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 02:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import SchemaItem

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)

revision: str = "0004"
down_revision: str | None = "0003"
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


SECURITIES = ("tls", "starttls", "plain")


def upgrade() -> None:
    op.create_table(
        "email_mailboxes",
        _id(),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("queue_id", sa.String(length=36), nullable=True),
        sa.Column("imap_host", sa.String(length=255), nullable=False),
        sa.Column("imap_port", sa.Integer(), nullable=False),
        sa.Column("imap_security", sa.String(length=16), nullable=False),
        sa.Column("imap_username", sa.String(length=320), nullable=False),
        sa.Column("imap_password", sa.String(length=500), nullable=False),
        sa.Column("imap_folder", sa.String(length=200), nullable=False),
        sa.Column("smtp_host", sa.String(length=255), nullable=False),
        sa.Column("smtp_port", sa.Integer(), nullable=False),
        sa.Column("smtp_security", sa.String(length=16), nullable=False),
        sa.Column("smtp_username", sa.String(length=320), nullable=False),
        sa.Column("smtp_password", sa.String(length=500), nullable=False),
        sa.Column("auto_acknowledge", sa.Boolean(), nullable=False),
        sa.Column("first_response_s", sa.Integer(), nullable=False),
        sa.Column("poll_interval_s", sa.Integer(), nullable=False),
        sa.Column("is_enabled", sa.Boolean(), nullable=False),
        sa.Column("uid_validity", sa.BigInteger(), nullable=True),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_checked_at", TIME, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        *_tenant("email_mailboxes"),
        _check("email_mailboxes", "imap_security", SECURITIES),
        _check("email_mailboxes", "smtp_security", SECURITIES),
        _reference("email_mailboxes", "queue_id", "queues", "SET NULL"),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_email_mailboxes_tenant_id_name")),
    )
    _indexes("email_mailboxes", "queue_id", "tenant_id")

    op.create_table(
        "email_tickets",
        _id(),
        sa.Column("conversation_id", sa.String(length=36), nullable=False),
        sa.Column("contact_id", sa.String(length=36), nullable=False),
        sa.Column("mailbox_id", sa.String(length=36), nullable=True),
        sa.Column("reference", sa.String(length=16), nullable=False),
        sa.Column("customer_address", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=True),
        sa.Column("first_response_due_at", TIME, nullable=True),
        sa.Column("first_responded_at", TIME, nullable=True),
        sa.Column("escalation", sa.Integer(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        *_tenant("email_tickets"),
        _reference("email_tickets", "contact_id", "contacts", "CASCADE"),
        _reference("email_tickets", "conversation_id", "conversations", "CASCADE"),
        _reference("email_tickets", "mailbox_id", "email_mailboxes", "SET NULL"),
        sa.UniqueConstraint("conversation_id", name=op.f("uq_email_tickets_conversation_id")),
        sa.UniqueConstraint(
            "tenant_id", "reference", name=op.f("uq_email_tickets_tenant_id_reference")),
    )
    _indexes("email_tickets", "contact_id", "mailbox_id", "tenant_id")

    op.create_table(
        "email_messages",
        _id(),
        sa.Column("mailbox_id", sa.String(length=36), nullable=False),
        sa.Column("ticket_id", sa.String(length=36), nullable=True),
        sa.Column("conversation_id", sa.String(length=36), nullable=True),
        sa.Column("message_id", sa.String(length=36), nullable=True),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("dedup_key", sa.String(length=64), nullable=False),
        sa.Column("header_message_id", sa.Text(), nullable=False),
        sa.Column("message_id_hash", sa.String(length=64), nullable=True),
        sa.Column("in_reply_to", sa.Text(), nullable=False),
        sa.Column("references", JSON, nullable=False),
        sa.Column("from_address", sa.String(length=320), nullable=False),
        sa.Column("from_name", sa.String(length=200), nullable=False),
        sa.Column("to_addresses", JSON, nullable=False),
        sa.Column("cc_addresses", JSON, nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("safe_html", sa.Text(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=True),
        sa.Column("imap_uid", sa.BigInteger(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", TIME, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        *_tenant("email_messages"),
        _check("email_messages", "direction", ("inbound", "outbound")),
        _check("email_messages", "kind",
               ("customer", "auto_reply", "bounce", "reply", "acknowledgement")),
        _check("email_messages", "status", ("received", "pending", "sent", "failed")),
        _reference("email_messages", "conversation_id", "conversations", "CASCADE"),
        _reference("email_messages", "mailbox_id", "email_mailboxes", "CASCADE"),
        _reference("email_messages", "message_id", "messages", "SET NULL"),
        _reference("email_messages", "ticket_id", "email_tickets", "SET NULL"),
        sa.UniqueConstraint(
            "mailbox_id", "dedup_key", name=op.f("uq_email_messages_mailbox_id_dedup_key")),
    )
    _indexes("email_messages", "conversation_id", "mailbox_id", "message_id", "ticket_id",
             "tenant_id")
    op.create_index("ix_email_messages_thread", "email_messages",
                    ["tenant_id", "message_id_hash"], unique=False)
    op.create_index("ix_email_messages_outbox", "email_messages", ["tenant_id", "status"],
                    unique=False)


def downgrade() -> None:
    for table in ("email_messages", "email_tickets", "email_mailboxes"):
        op.drop_table(table)

"""CRM: the tenant's connector (lookup, push of finished contacts) and its push outbox; the
client company's contact per queue and the notification outbox; event-log cursors.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 05:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _tenant_key(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"],
                                   name=op.f(f"fk_{table}_tenant_id_tenants"), ondelete="CASCADE")


def _state(table: str, states: tuple[str, ...]) -> sa.CheckConstraint:
    quoted = ", ".join(f"'{state}'" for state in states)
    return sa.CheckConstraint(f"state IN ({quoted})", name=op.f(f"ck_{table}_state"))


def upgrade() -> None:
    op.create_table(
        "crm_connectors",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("lookup_enabled", sa.Boolean(), nullable=False),
        sa.Column("lookup_url", sa.String(length=2000), nullable=False),
        sa.Column("lookup_method", sa.String(length=8), nullable=False),
        sa.Column("lookup_body", sa.Text(), nullable=False),
        sa.Column("auth_header", sa.String(length=100), nullable=False),
        sa.Column("auth_value", sa.String(length=2000), nullable=False),
        sa.Column("mapping", JSON, nullable=False),
        sa.Column("timeout_s", sa.Double(), nullable=False),
        sa.Column("cache_ttl_s", sa.Integer(), nullable=False),
        sa.Column("push_enabled", sa.Boolean(), nullable=False),
        sa.Column("push_url", sa.String(length=2000), nullable=False),
        sa.Column("push_secret", sa.String(length=200), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.CheckConstraint("lookup_method IN ('GET', 'POST')",
                           name=op.f("ck_crm_connectors_lookup_method")),
        _tenant_key("crm_connectors"),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_crm_connectors")),
    )
    op.create_table(
        "crm_pushes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("event_seq", sa.BigInteger(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TIME, nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("delivered_at", TIME, nullable=True),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        _state("crm_pushes", ("pending", "delivered", "failed")),
        _tenant_key("crm_pushes"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_pushes")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_crm_pushes_idempotency_key")),
    )
    op.create_index("ix_crm_pushes_due", "crm_pushes", ["tenant_id", "state", "next_attempt_at"])
    op.create_index(op.f("ix_crm_pushes_tenant_id"), "crm_pushes", ["tenant_id"])
    op.create_table(
        "event_cursors",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("reader", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        _tenant_key("event_cursors"),
        sa.PrimaryKeyConstraint("tenant_id", "reader", name=op.f("pk_event_cursors")),
    )
    op.create_table(
        "client_contacts",
        sa.Column("queue_id", sa.String(length=36), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("is_enabled", sa.Boolean(), nullable=False),
        sa.Column("urgent_priority", sa.Integer(), nullable=True),
        sa.Column("urgent_codes", JSON, nullable=False),
        sa.Column("batch_minutes", sa.Integer(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(["queue_id"], ["queues.id"],
                                name=op.f("fk_client_contacts_queue_id_queues"),
                                ondelete="CASCADE"),
        _tenant_key("client_contacts"),
        sa.PrimaryKeyConstraint("queue_id", name=op.f("pk_client_contacts")),
    )
    op.create_index(op.f("ix_client_contacts_tenant_id"), "client_contacts", ["tenant_id"])
    op.create_table(
        "client_notifications",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("queue_id", sa.String(length=36), nullable=True),
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("is_urgent", sa.Boolean(), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TIME, nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("sent_at", TIME, nullable=True),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        _state("client_notifications", ("pending", "sent", "failed")),
        sa.ForeignKeyConstraint(["queue_id"], ["queues.id"],
                                name=op.f("fk_client_notifications_queue_id_queues"),
                                ondelete="SET NULL"),
        _tenant_key("client_notifications"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_client_notifications")),
        sa.UniqueConstraint("idempotency_key",
                            name=op.f("uq_client_notifications_idempotency_key")),
    )
    op.create_index("ix_client_notifications_due", "client_notifications",
                    ["tenant_id", "state", "next_attempt_at"])
    op.create_index(op.f("ix_client_notifications_queue_id"), "client_notifications",
                    ["queue_id"])
    op.create_index(op.f("ix_client_notifications_tenant_id"), "client_notifications",
                    ["tenant_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_client_notifications_tenant_id"), table_name="client_notifications")
    op.drop_index(op.f("ix_client_notifications_queue_id"), table_name="client_notifications")
    op.drop_index("ix_client_notifications_due", table_name="client_notifications")
    op.drop_table("client_notifications")
    op.drop_index(op.f("ix_client_contacts_tenant_id"), table_name="client_contacts")
    op.drop_table("client_contacts")
    op.drop_table("event_cursors")
    op.drop_index(op.f("ix_crm_pushes_tenant_id"), table_name="crm_pushes")
    op.drop_index("ix_crm_pushes_due", table_name="crm_pushes")
    op.drop_table("crm_pushes")
    op.drop_table("crm_connectors")

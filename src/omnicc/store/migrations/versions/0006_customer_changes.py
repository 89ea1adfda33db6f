"""Customers: the audit trail of merges and splits; a queue's routing policy (routing by
customer data: a VIP's account manager first, then the team).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 03:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "customer_changes"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("other_id", sa.String(length=36), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("moved", JSON, nullable=False),
        sa.Column("reverted_by", sa.String(length=36), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.CheckConstraint("kind IN ('merge', 'split')", name=op.f(f"ck_{TABLE}_kind")),
        sa.ForeignKeyConstraint(["reverted_by"], [f"{TABLE}.id"],
                                name=op.f(f"fk_{TABLE}_reverted_by_{TABLE}"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"],
                                name=op.f(f"fk_{TABLE}_tenant_id_tenants"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{TABLE}")),
    )
    op.create_index(op.f(f"ix_{TABLE}_tenant_id"), TABLE, ["tenant_id"], unique=False)
    op.create_index("ix_customer_changes_customer", TABLE, ["tenant_id", "customer_id"])
    op.create_index("ix_customer_changes_other", TABLE, ["tenant_id", "other_id"])
    with op.batch_alter_table("queues") as batch:
        batch.add_column(sa.Column("policy_id", sa.String(length=36), nullable=True))
        batch.create_foreign_key(op.f("fk_queues_policy_id_routing_policies"),
                                 "routing_policies", ["policy_id"], ["id"], ondelete="SET NULL")
        batch.create_index(op.f("ix_queues_policy_id"), ["policy_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("queues") as batch:
        batch.drop_index(op.f("ix_queues_policy_id"))
        batch.drop_constraint(op.f("fk_queues_policy_id_routing_policies"), type_="foreignkey")
        batch.drop_column("policy_id")
    op.drop_index("ix_customer_changes_other", table_name=TABLE)
    op.drop_index("ix_customer_changes_customer", table_name=TABLE)
    op.drop_index(op.f(f"ix_{TABLE}_tenant_id"), table_name=TABLE)
    op.drop_table(TABLE)

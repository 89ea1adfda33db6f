"""Workforce management: schedules and the shifts of named agents.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23 06:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import SchemaItem

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _tenant(table: str) -> list[SchemaItem]:
    return [
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f(f"fk_{table}_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
    ]


def upgrade() -> None:
    op.create_table(
        "wfm_schedules",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("start", TIME, nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=False),
        sa.Column("intervals", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rules", JSON, nullable=False),
        sa.Column("forecast", JSON, nullable=False),
        sa.Column("requirement", JSON, nullable=False),
        sa.Column("coverage", JSON, nullable=False),
        sa.Column("summary", JSON, nullable=False),
        sa.Column("whatif", JSON, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        *_tenant("wfm_schedules"),
    )
    op.create_index(op.f("ix_wfm_schedules_tenant_id"), "wfm_schedules", ["tenant_id"])
    op.create_index("ix_wfm_schedules_start", "wfm_schedules", ["tenant_id", "start"])
    op.create_table(
        "wfm_shifts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("schedule_id", sa.String(length=36), nullable=False),
        sa.Column("agent_id", sa.String(length=36), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("start_at", TIME, nullable=False),
        sa.Column("end_at", TIME, nullable=False),
        sa.Column("breaks", JSON, nullable=False),
        *_tenant("wfm_shifts"),
        sa.ForeignKeyConstraint(["schedule_id"], ["wfm_schedules.id"],
                                name=op.f("fk_wfm_shifts_schedule_id_wfm_schedules"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"],
                                name=op.f("fk_wfm_shifts_agent_id_agents"), ondelete="CASCADE"),
    )
    op.create_index(op.f("ix_wfm_shifts_tenant_id"), "wfm_shifts", ["tenant_id"])
    op.create_index("ix_wfm_shifts_schedule", "wfm_shifts", ["tenant_id", "schedule_id"])
    op.create_index("ix_wfm_shifts_agent", "wfm_shifts", ["tenant_id", "agent_id", "start_at"])


def downgrade() -> None:
    op.drop_table("wfm_shifts")
    op.drop_table("wfm_schedules")

"""What the routing engine is configured from: skills, queues, policies, agents, and the
administration around them (wrap-up codes, canned responses, business hours)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from omnicc.store.tables.accounts import TenantOwned
from omnicc.store.tables.base import (
    ID_LENGTH,
    Base,
    JsonList,
    JsonObject,
    created_column,
    id_column,
)


class Skill(TenantOwned, Base):
    __tablename__ = "skills"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[str] = id_column()
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(500), default="")


class BusinessHours(TenantOwned, Base):
    """Opening hours in a zone (zoneinfo name) with holidays.

    `weekly` maps a weekday (`mon`..`sun`) to a list of `["09:00", "17:00"]` ranges;
    `holidays` is a list of `{"date": "2026-12-24", "name": ..., "hours": [...]}` (no hours:
    closed all day).
    """

    __tablename__ = "business_hours"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[str] = id_column()
    name: Mapped[str] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64))
    weekly: Mapped[dict[str, Any]] = mapped_column(JsonObject, default=dict)
    holidays: Mapped[list[Any]] = mapped_column(JsonList, default=list)


class Queue(TenantOwned, Base):
    """A queue. `config` holds the engine's `QueueConfig` fields (all but `id`, which is this
    row's id), so the engine's tuning can grow without a migration per field."""

    __tablename__ = "queues"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[str] = id_column()
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(500), default="")
    is_enabled: Mapped[bool] = mapped_column(default=True)
    business_hours_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("business_hours.id", ondelete="SET NULL"), index=True
    )
    config: Mapped[dict[str, Any]] = mapped_column(JsonObject, default=dict)
    policy_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("routing_policies.id", ondelete="SET NULL"), index=True
    )
    """The policy a task made for this queue follows (e.g. the customer's account manager
    first, then the team); None: the queue's members."""
    created_at: Mapped[datetime] = created_column()


class RoutingPolicy(TenantOwned, Base):
    """Ordered steps (the engine's `PolicyStep` fields as JSON objects) and a final action."""

    __tablename__ = "routing_policies"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[str] = id_column()
    name: Mapped[str] = mapped_column(String(100))
    steps: Mapped[list[Any]] = mapped_column(JsonList, default=list)
    final_action: Mapped[str] = mapped_column(String(32), default="close")
    final_reason: Mapped[str] = mapped_column(String(200), default="no agent available")


class Agent(TenantOwned, Base):
    """A person who handles tasks (the engine's `AgentConfig`), usually linked to a user."""

    __tablename__ = "agents"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[str] = id_column()
    user_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("users.id", ondelete="SET NULL"), unique=True
    )
    name: Mapped[str] = mapped_column(String(200))
    skills: Mapped[dict[str, Any]] = mapped_column(JsonObject, default=dict)
    attributes: Mapped[dict[str, Any]] = mapped_column(JsonObject, default=dict)
    capacity: Mapped[dict[str, Any]] = mapped_column(JsonObject, default=dict)
    """Per channel, e.g. `{"voice": 1, "chat": 3}`; empty means the engine's default."""
    status: Mapped[str] = mapped_column(String(32), default="offline")
    status_since: Mapped[datetime] = created_column()
    created_at: Mapped[datetime] = created_column()


class WrapUpCode(TenantOwned, Base):
    """A disposition code that classifies a contact at wrap-up."""

    __tablename__ = "wrap_up_codes"
    __table_args__ = (UniqueConstraint("tenant_id", "code"),)

    id: Mapped[str] = id_column()
    code: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(200))
    is_enabled: Mapped[bool] = mapped_column(default=True)


class CannedResponse(TenantOwned, Base):
    __tablename__ = "canned_responses"
    __table_args__ = (UniqueConstraint("tenant_id", "shortcut"),)

    id: Mapped[str] = id_column()
    title: Mapped[str] = mapped_column(String(200))
    shortcut: Mapped[str | None] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    queue_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("queues.id", ondelete="CASCADE"), index=True
    )
    """Offered only on this queue's contacts; None: everywhere."""

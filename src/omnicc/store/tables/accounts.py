"""Tenants, users and API tokens: who may do what, and in which contact center."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from omnicc.store.tables.base import (
    ID_LENGTH,
    Base,
    JsonList,
    choice,
    created_column,
    id_column,
    tenant_column,
)

ROLES = ("admin", "supervisor", "agent")


class Tenant(Base):
    """One contact center. Every other row belongs to exactly one tenant."""

    __tablename__ = "tenants"

    id: Mapped[str] = id_column()
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    recording_retention_days: Mapped[int | None]
    """Days its call recordings are kept (0: forever); None: the installation's setting."""
    created_at: Mapped[datetime] = created_column()
    # Counters handed out in the transaction that uses them, so they stay gap-free:
    # the last event seq and the last task seq of this tenant.
    event_seq: Mapped[int] = mapped_column(default=0)
    task_seq: Mapped[int] = mapped_column(default=0)


class TenantOwned:
    """The tenant column of every tenant-owned table, indexed for the repository's filter."""

    tenant_id: Mapped[str] = tenant_column()


class User(TenantOwned, Base):
    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("tenant_id", "username"),
        UniqueConstraint("tenant_id", "email"),
        CheckConstraint(choice("role", ROLES), name="role"),
    )

    id: Mapped[str] = id_column()
    username: Mapped[str] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(320))
    display_name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    """An argon2 hash (argon2-cffi's encoded form); None for a user who cannot log in yet."""
    is_disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = created_column()
    last_login_at: Mapped[datetime | None]


class ApiToken(TenantOwned, Base):
    """A token for integrations. Only a hash of the secret is kept, looked up by that hash."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        CheckConstraint(choice("role", ROLES), name="role"),
    )

    id: Mapped[str] = id_column()
    user_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[list[Any]] = mapped_column(JsonList, default=list)
    created_at: Mapped[datetime] = created_column()
    last_used_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


__all__ = ["ROLES", "ApiToken", "Tenant", "TenantOwned", "User"]

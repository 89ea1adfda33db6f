"""What every table shares: the declarative base, constraint names, UTC times, JSON, ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, ForeignKey, MetaData, String, TypeDecorator
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.mutable import MutableDict, MutableList
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

# Explicit constraint names: Alembic can then drop or alter them by name on both backends, and
# autogenerate compares like with like instead of backend-invented names.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID_LENGTH = 36


def new_id() -> str:
    return uuid.uuid4().hex


def utc_now() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on both backends.

    PostgreSQL keeps `timestamptz`; SQLite has no time zones, so values are stored as UTC and
    read back with `tzinfo=UTC`. A naive datetime is refused rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store keeps UTC-aware times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json() -> TypeEngine[Any]:
    return JSON().with_variant(JSONB(), "postgresql")


Json = _json()
"""JSON documents; JSONB on PostgreSQL so they can be indexed and compared."""

# Changing a key of a loaded dict (or an item of a list) marks the row dirty, so
# `queue.config["priority"] = 2` is saved like an assignment would be. Nested values are not
# tracked: assign a new top-level value to change them. (Each needs its own type instance:
# as_mutable attaches to columns by the identity of the type.)
JsonObject = MutableDict.as_mutable(_json())
JsonList = MutableList.as_mutable(_json())


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # JSON columns name their type (JsonObject or JsonList) explicitly: change tracking
    # attaches to the type instance, which the annotation map would copy.
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        datetime: UtcDateTime(),
    }


def id_column() -> Mapped[str]:
    return mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)


def tenant_column() -> Mapped[str]:
    return mapped_column(
        String(ID_LENGTH), ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )


def created_column() -> Mapped[datetime]:
    return mapped_column(default=utc_now)


def choice(column: str, values: tuple[str, ...]) -> str:
    """The SQL of a CHECK constraint limiting `column` to `values`."""
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"

"""The database connection and its migrations, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, select, text

from omnicc.store.database import Database, alembic_config, migrate, sqlite_url
from omnicc.store.tables import Tenant, metadata

pytestmark = pytest.mark.anyio


def _schema_difference(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _table_names(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def test_migrations_apply_from_empty_and_match_the_tables(
    database_url: str, anyio_backend: str
) -> None:
    database = Database(database_url)
    try:
        async with database.engine.connect() as connection:
            assert await connection.run_sync(_table_names) == set()
        await database.ensure_schema()
        async with database.engine.connect() as connection:
            names = await connection.run_sync(_table_names)
            assert set(metadata.tables) <= names
            assert await connection.run_sync(_schema_difference) == []
    finally:
        await database.dispose()


async def test_migrations_are_idempotent(database: Database) -> None:
    async with database.engine.connect() as connection:
        before = await connection.run_sync(_revision)
    await database.ensure_schema()
    async with database.engine.connect() as connection:
        assert await connection.run_sync(_revision) == before == HEAD


def test_migrate_is_synchronous_and_idempotent(database_url: str) -> None:
    migrate(database_url)
    migrate(database_url)


async def test_migrate_works_inside_an_event_loop(database_url: str, anyio_backend: str) -> None:
    migrate(database_url)
    database = Database(database_url)
    try:
        async with database.engine.connect() as connection:
            assert await connection.run_sync(_revision) == HEAD
    finally:
        await database.dispose()


async def test_ping_reaches_the_database(database: Database) -> None:
    await database.ping()


async def test_ping_raises_when_unreachable(anyio_backend: str) -> None:
    database = Database("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    try:
        with pytest.raises(OSError):
            await database.ping()
    finally:
        await database.dispose()


async def test_times_come_back_as_utc(database: Database) -> None:
    helsinki = timezone(timedelta(hours=2))
    created = datetime(2026, 1, 2, 12, 0, tzinfo=helsinki)
    async with database.session() as session:
        session.add(Tenant(id="t", slug="t", name="T", created_at=created))
    async with database.session() as session:
        tenant = (await session.execute(select(Tenant))).scalar_one()
    assert tenant.created_at == created
    assert tenant.created_at.tzinfo == UTC


async def test_sqlite_is_durable_and_enforces_foreign_keys(
    tmp_path: Path, anyio_backend: str
) -> None:
    database = Database(sqlite_url(tmp_path / "omnicc.db"))
    try:
        async with database.engine.connect() as connection:
            pragmas = {
                name: (await connection.execute(text(f"PRAGMA {name}"))).scalar_one()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
    finally:
        await database.dispose()
    assert pragmas == {
        "journal_mode": "wal",
        "synchronous": 2,  # FULL
        "foreign_keys": 1,
        "busy_timeout": 5000,
    }


async def test_an_in_memory_database_is_one_database(anyio_backend: str) -> None:
    database = Database("sqlite+aiosqlite:///:memory:")
    try:
        await database.ensure_schema()
        async with database.session() as session:
            session.add(Tenant(id="t", slug="t", name="T"))
        async with database.session() as session:
            assert (await session.execute(select(Tenant.slug))).scalar_one() == "t"
    finally:
        await database.dispose()


def test_migrated_database_url_is_at_head(migrated_database_url: str) -> None:
    migrate(migrated_database_url)

"""The connection to the system of record: SQLite (the embedded default) or PostgreSQL, by URL.

`Database` owns one SQLAlchemy `AsyncEngine` and its session factory. `migrate(url)` brings a
database to the newest schema with Alembic; it is what `omnicc migrate` and start-up call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import StaticPool

MIGRATIONS = Path(__file__).parent / "migrations"

SQLITE_BUSY_TIMEOUT_MS = 5000
"""How long a SQLite writer waits for another writer's lock before failing."""

# Serialises concurrent `migrate` calls of several nodes on one PostgreSQL database.
MIGRATION_LOCK_KEY = 0x0C_C0_57_0E


def sqlite_url(path: str | Path) -> str:
    """The URL of a SQLite database file (the embedded default)."""
    return f"sqlite+aiosqlite:///{Path(path)}"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run while one writer commits. synchronous=FULL makes every commit
    # fsync the WAL before COMMIT returns, so a committed row survives not only kill -9 (which
    # NORMAL would also survive: the WAL is in the OS page cache) but a power cut too. The store
    # acknowledges a message only after its commit; that promise must hold for the machine, not
    # just the process. foreign_keys is off by default in SQLite; busy_timeout makes a second
    # writer wait instead of failing at once.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def create_engine(url: str, *, echo: bool = False, **options: Any) -> AsyncEngine:
    """An async engine for `url`, with SQLite set up for durability and concurrency.

    `options` go to SQLAlchemy's `create_async_engine` (e.g. `pool_size` for PostgreSQL).
    """
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            # SQLite has one writer at a time. Several pooled connections would contend for its
            # lock through busy_timeout's sleep-and-retry, which is unfair: under load a writer
            # starves past the timeout and fails with "database is locked". One connection
            # makes transactions queue in order at the pool instead.
            options.setdefault("pool_size", 1)
            options.setdefault("max_overflow", 0)
        else:
            # An in-memory database lives in one connection: share it, or each would be empty.
            options.setdefault("poolclass", StaticPool)
        engine = create_async_engine(url, echo=echo, **options)
        event.listen(engine.sync_engine, "connect", _configure_sqlite)
        return engine
    return create_async_engine(url, echo=echo, pool_pre_ping=True, **options)


def alembic_config(url: str | None = None) -> Config:
    """Alembic's configuration, built in code so migrations run from an installed package."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        # Percent signs in passwords would otherwise be read as interpolation by configparser.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _upgrade(connection: Connection, revision: str = "head") -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


class Database:
    """One database of OmniCC: an engine, a session factory, and the schema's migrations."""

    def __init__(self, url: str, *, echo: bool = False, **options: Any) -> None:
        self.url = url
        self.engine = create_engine(url, echo=echo, **options)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def backend(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.engine.dialect.name

    async def ping(self) -> None:
        """Raise if the database cannot be reached (readiness check)."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed when the block ends, rolled back on error."""
        async with self.sessions() as session, session.begin():
            yield session

    async def ensure_schema(self, revision: str = "head") -> None:
        """Apply every migration up to `revision` (a no-op when already there)."""
        async with self.engine.begin() as connection:
            await connection.run_sync(_upgrade, revision)

    async def dispose(self) -> None:
        await self.engine.dispose()


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` (`alembic upgrade head`); idempotent.

    Synchronous, for the CLI and start-up. Called inside a running event loop it runs in a
    worker thread with a loop of its own and blocks until done; async code should rather
    `await Database(url).ensure_schema()`.
    """

    async def run() -> None:
        database = Database(url)
        try:
            await database.ensure_schema(revision)
        finally:
            await database.dispose()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(run())
        return
    with ThreadPoolExecutor(max_workers=1) as worker:
        worker.submit(asyncio.run, run()).result()

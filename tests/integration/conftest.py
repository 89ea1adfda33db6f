"""Databases for integration tests: every test that takes `database_url` (or `database`) runs
on SQLite and on PostgreSQL.

PostgreSQL is a throwaway cluster started once per test session: `initdb` into a fresh temporary
directory, `pg_ctl start` with its unix socket in that directory, on a free port, listening on
no TCP address but loopback; each test gets a new database in it. When PostgreSQL cannot be
started the PostgreSQL variants FAIL (not skip) and say why: issue 3 requires both backends.
As root, the cluster runs as the `postgres` user (initdb refuses root).
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from omnicc.store.database import Database, migrate, sqlite_url

BACKENDS = ("sqlite", "postgresql")
PG_USER = "omnicc"
PG_START_TIMEOUT_S = 30


@dataclass(frozen=True)
class PostgresCluster:
    """A running throwaway PostgreSQL cluster."""

    directory: Path
    port: int

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{PG_USER}@/{database}?host={self.directory}&port={self.port}"

    def create_database(self) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        name = f"test_{uuid.uuid4().hex[:12]}"

        async def create() -> None:
            connection = await asyncpg.connect(
                host=str(self.directory), port=self.port, user=PG_USER, database="postgres"
            )
            try:
                await connection.execute(f'CREATE DATABASE "{name}"')
            finally:
                await connection.close()

        asyncio.run(create())
        return self.url(name)


def _postgres_binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    if not candidates:
        pytest.fail(
            f"PostgreSQL's `{name}` is not installed (not on PATH nor under "
            "/usr/lib/postgresql/*/bin): run `make test`, whose bootstrap installs the "
            "`postgresql` package, or `apt-get install postgresql`",
            pytrace=False,
        )
    return candidates[-1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _as_cluster_owner(directory: Path) -> list[str]:
    """The command prefix that runs PostgreSQL's tools as a non-root user."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    try:
        shutil.chown(directory, user="postgres", group=None)
    except LookupError:
        pytest.fail(
            "running as root, and PostgreSQL refuses to run as root: create a `postgres` "
            "user (the `postgresql` package does) or run the tests as a normal user",
            pytrace=False,
        )
    if runuser is None:
        pytest.fail("running as root without `runuser` to start PostgreSQL as `postgres`")
    return [runuser, "-u", "postgres", "--"]


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(
            f"PostgreSQL could not be started: {what} failed ({result.returncode}):\n"
            f"$ {' '.join(command)}\n{result.stdout}\n{result.stderr}",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    initdb = _postgres_binary("initdb")
    pg_ctl = _postgres_binary("pg_ctl")
    # Not under pytest's tmp_path: its parents are private to the invoking user, and the
    # cluster's owner must be able to reach the directory.
    directory = Path(tempfile.mkdtemp(prefix="omnicc-pg-"))
    data = directory / "data"
    log = directory / "postgres.log"
    prefix = _as_cluster_owner(directory)
    port = _free_port()
    _run(
        [
            *prefix,
            initdb,
            "-D",
            str(data),
            "-U",
            PG_USER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ],
        "initdb",
    )
    options = f"-k {directory} -p {port} -c listen_addresses=127.0.0.1 -c fsync=on"
    _run(
        [
            *prefix,
            pg_ctl,
            "-D",
            str(data),
            "-l",
            str(log),
            "-w",
            "-t",
            str(PG_START_TIMEOUT_S),
            "-o",
            options,
            "start",
        ],
        f"pg_ctl start (log: {log})",
    )
    try:
        yield PostgresCluster(directory=directory, port=port)
    finally:
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test: `sqlite` or `postgresql`."""
    name: str = request.param
    return name


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a new, empty database (not migrated) on the backend under test."""
    if backend == "sqlite":
        return sqlite_url(tmp_path / "omnicc.db")
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    return cluster.create_database()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def database(database_url: str, anyio_backend: str) -> AsyncIterator[Database]:
    """A migrated `Database` on the backend under test, disposed after the test."""
    database = Database(database_url)
    await database.ensure_schema()
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def migrated_database_url(database_url: str) -> str:
    """The URL of a migrated database on the backend under test, for code that connects by
    itself (a server in a subprocess, a CLI command)."""
    migrate(database_url)
    return database_url

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
import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from omnicc.store.database import Database, migrate, sqlite_url

BACKENDS = ("sqlite", "postgresql")
PG_USER = "omnicc"
PG_START_TIMEOUT_S = 30
LOG_TAIL_CHARS = 3000


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


def _run(command: list[str], what: str, log: Path | None = None) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        server_log = log.read_text()[-LOG_TAIL_CHARS:] if log and log.exists() else ""
        pytest.fail(
            f"PostgreSQL could not be started: {what} failed ({result.returncode}):\n"
            f"$ {' '.join(command)}\n{result.stdout}\n{result.stderr}\n{server_log}",
            pytrace=False,
        )


class PostgresCluster:
    """A throwaway PostgreSQL cluster in its own temporary directory (data, socket, log)."""

    def __init__(self) -> None:
        self.initdb = _postgres_binary("initdb")
        self.pg_ctl = _postgres_binary("pg_ctl")
        # Not under pytest's tmp_path: its parents are private to the invoking user, and the
        # cluster's owner must be able to reach the directory.
        self.directory = Path(tempfile.mkdtemp(prefix="omnicc-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self.prefix = _as_cluster_owner(self.directory)
        self.port = _free_port()
        _run(
            [
                *self.prefix,
                self.initdb,
                "-D",
                str(self.data),
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

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{PG_USER}@/{database}?host={self.directory}&port={self.port}"

    def start(self) -> None:
        options = f"-k {self.directory} -p {self.port} -c listen_addresses=127.0.0.1 -c fsync=on"
        _run(
            [
                *self.prefix,
                self.pg_ctl,
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-t",
                str(PG_START_TIMEOUT_S),
                "-o",
                options,
                "start",
            ],
            "pg_ctl start",
            self.log,
        )

    def stop(self) -> None:
        subprocess.run(
            [*self.prefix, self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            check=False,
        )

    def crash(self) -> None:
        """SIGKILL the server and all its processes at once, as a crash would."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        victims = [postmaster, *_children(postmaster)]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + PG_START_TIMEOUT_S
        while any(_is_running(pid) for pid in victims) and time.monotonic() < deadline:
            time.sleep(0.05)
        # Where PID 1 reaps no orphans the dead postmaster stays a zombie, which PostgreSQL
        # would take for a live server holding the data directory and the socket.
        (self.data / "postmaster.pid").unlink(missing_ok=True)
        (self.directory / f".s.PGSQL.{self.port}.lock").unlink(missing_ok=True)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

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


def _children(parent: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # The parent pid is the 2nd field after the parenthesised command name.
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                children.append(int(stat.parent.name))
    return children


def _is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@contextlib.contextmanager
def _running_cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """The session's shared cluster; each test takes a database of its own in it."""
    with _running_cluster() as cluster:
        yield cluster


@pytest.fixture
def private_postgres_cluster() -> Iterator[PostgresCluster]:
    """A cluster for one test alone, for tests that stop or crash the server."""
    with _running_cluster() as cluster:
        yield cluster


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

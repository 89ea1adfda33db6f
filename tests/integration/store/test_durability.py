"""What is committed stays committed: a writer killed with SIGKILL loses nothing it committed,
on SQLite (the writer owns the file) and on PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

from omnicc.store.database import Database
from omnicc.store.repositories import Conversations, Events, Messages, Tasks, Tenants
from omnicc.store.tables import Conversation, Task
from tests.integration.conftest import PostgresCluster

pytestmark = pytest.mark.anyio

COMMITS_BEFORE_KILL = 40
WRITER_TIMEOUT_S = 30
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

# Each transaction stores a customer message, a waiting task and their event, then reports the
# number on stdout: a reported number was committed before it was reported.
WRITER = """
import asyncio, sys
from omnicc.store.database import Database
from omnicc.store.repositories import Events, Messages, NewEvent, Tasks
from omnicc.store.tables import Message, Task

async def main(url, tenant, conversation):
    database = Database(url)
    n = 0
    while True:
        async with database.session() as session:
            await Messages(session, tenant).append(Message(
                conversation_id=conversation, author_kind="customer", text=f"message {n}",
                idempotency_key=f"m{n}"))
            await Tasks(session, tenant).add(Task(id=f"task-{n}", channel="chat"))
            await Events(session, tenant).append([NewEvent("message.received", {"n": n})])
        print(n, flush=True)
        n += 1

asyncio.run(main(*sys.argv[1:]))
"""


def _run_writer_and_kill(url: str, tenant: str, conversation: str) -> list[int]:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, url, tenant, conversation],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    assert writer.stdout is not None
    reported: list[int] = []
    deadline = time.monotonic() + WRITER_TIMEOUT_S
    try:
        while len(reported) < COMMITS_BEFORE_KILL and time.monotonic() < deadline:
            line = writer.stdout.readline()
            if not line:
                break
            reported.append(int(line))
        writer.send_signal(signal.SIGKILL)
        rest, errors = writer.communicate(timeout=WRITER_TIMEOUT_S)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert len(reported) >= COMMITS_BEFORE_KILL, f"the writer failed:\n{errors}"
    assert writer.returncode == -signal.SIGKILL
    return reported + [int(line) for line in rest.split()]


async def test_rows_committed_before_kill_9_are_all_there(database: Database) -> None:
    async with database.session() as session:
        tenant = await Tenants(session).create("durable", "Durable")
        conversation = await Conversations(session, tenant.id).add(Conversation())
    await database.dispose()
    reported = await asyncio.to_thread(
        _run_writer_and_kill, database.url, tenant.id, conversation.id
    )
    assert reported == list(range(len(reported)))

    async with database.session() as session:
        history = await Messages(session, tenant.id).history(conversation.id)
        tasks = await Tasks(session, tenant.id).open_in_order()
        last_seq = await Events(session, tenant.id).last_seq()
    stored = len(history)
    # Every reported commit is there; at most one more committed before it could be reported.
    assert stored in (len(reported), len(reported) + 1)
    assert [m.text for m in history] == [f"message {n}" for n in range(stored)]
    assert [t.id for t in tasks] == [f"task-{n}" for n in range(stored)]
    assert [t.seq for t in tasks] == list(range(1, stored + 1))
    assert last_seq == stored


async def test_postgresql_keeps_committed_rows_through_a_server_crash(
    private_postgres_cluster: PostgresCluster, anyio_backend: str
) -> None:
    cluster = private_postgres_cluster
    url = await asyncio.to_thread(cluster.create_database)
    database = Database(url)
    try:
        await database.ensure_schema()
        async with database.session() as session:
            tenant = await Tenants(session).create("crash", "Crash")
            conversation = await Conversations(session, tenant.id).add(Conversation())
        for n in range(COMMITS_BEFORE_KILL):
            async with database.session() as session:
                await Tasks(session, tenant.id).add(Task(id=f"task-{n}", channel="chat"))
        # Uncommitted work at the time of the crash must vanish, and only it.
        doomed = await database.engine.connect()
        transaction = await doomed.begin()
        await doomed.run_sync(
            lambda connection: connection.execute(
                Task.__table__.insert().values(
                    id="uncommitted",
                    tenant_id=tenant.id,
                    seq=0,
                    channel="chat",
                    priority=0,
                    attributes={},
                    required_skills={},
                    phase="waiting",
                    created_at=T0,
                    enqueued_at=T0,
                    step_index=0,
                    transferred=False,
                )
            )
        )
        await asyncio.to_thread(cluster.crash)
        with contextlib.suppress(Exception):
            await transaction.rollback()
        with contextlib.suppress(Exception):
            await doomed.close()
        await database.dispose()
        await asyncio.to_thread(cluster.start)
        assert "not properly shut down" in cluster.log.read_text()  # it was a crash
        async with database.session() as session:
            tasks = await Tasks(session, tenant.id).open_in_order()
            assert await Conversations(session, tenant.id).get(conversation.id)
        assert [task.id for task in tasks] == [f"task-{n}" for n in range(COMMITS_BEFORE_KILL)]
    finally:
        await database.dispose()

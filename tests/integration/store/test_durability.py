"""What is committed stays committed: a writer killed with SIGKILL loses nothing it committed,
on SQLite (the writer owns the file) and on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from omnicc.store.database import Database
from omnicc.store.repositories import Conversations, Events, Messages, Tasks, Tenants
from omnicc.store.tables import Conversation

pytestmark = pytest.mark.anyio

COMMITS_BEFORE_KILL = 40
WRITER_TIMEOUT_S = 30

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

"""Concurrent writers in one process: the event log stays gap-free and nothing fails."""

from __future__ import annotations

import asyncio

import pytest

from omnicc.store.database import Database
from omnicc.store.repositories import Conversations, Events, Messages, NewEvent, Tenants
from omnicc.store.tables import Conversation, Message

pytestmark = pytest.mark.anyio

WRITERS = 20
COMMITS_PER_WRITER = 10


async def test_concurrent_sessions_append_gap_free(database: Database) -> None:
    async with database.session() as session:
        tenant = (await Tenants(session).create("busy", "Busy")).id
        conversation = (await Conversations(session, tenant).add(Conversation())).id

    async def write(writer: int) -> None:
        for n in range(COMMITS_PER_WRITER):
            async with database.session() as session:
                # A read first, then writes: the case where SQLite upgrades a read lock.
                await Events(session, tenant).last_seq()
                await Messages(session, tenant).append(
                    Message(
                        conversation_id=conversation,
                        author_kind="customer",
                        text=f"{writer}/{n}",
                        idempotency_key=f"{writer}/{n}",
                    )
                )
                await Events(session, tenant).append([NewEvent("message.received")])

    await asyncio.gather(*(write(writer) for writer in range(WRITERS)))
    async with database.session() as session:
        log = await Events(session, tenant).since(0, limit=10_000)
        history = await Messages(session, tenant).history(conversation)
    total = WRITERS * COMMITS_PER_WRITER
    assert [event.seq for event in log] == list(range(1, total + 1))
    assert len(history) == total

"""SQLite under a queue of writers: each waits its turn, however long the queue, and none fails
with "database is locked" (several pooled connections would race through busy_timeout)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from omnicc.store.database import SQLITE_BUSY_TIMEOUT_MS, Database, sqlite_url
from omnicc.store.repositories import Conversations, Messages, Tenants
from omnicc.store.tables import Conversation, Message

pytestmark = pytest.mark.anyio

HOLD_S = 0.07
WRITERS = int(SQLITE_BUSY_TIMEOUT_MS / 1000 / HOLD_S) + 20
"""Enough writers that the last one waits longer than busy_timeout in all."""


async def test_writers_queue_past_the_busy_timeout(tmp_path: Path) -> None:
    database = Database(sqlite_url(tmp_path / "omnicc.db"))
    await database.ensure_schema()
    try:
        async with database.session() as session:
            tenant = (await Tenants(session).create("queue", "Queue")).id
            conversation = (await Conversations(session, tenant).add(Conversation())).id

        async def write(writer: int) -> None:
            async with database.session() as session:
                await Messages(session, tenant).append(Message(
                    conversation_id=conversation, author_kind="customer", text=str(writer),
                    idempotency_key=str(writer)))
                await asyncio.sleep(HOLD_S)  # holding the write lock, as a slow commit does

        await asyncio.gather(*(write(writer) for writer in range(WRITERS)))
        async with database.session() as session:
            assert len(await Messages(session, tenant).history(conversation)) == WRITERS
    finally:
        await database.dispose()

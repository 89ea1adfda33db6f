"""Chat messages into the store with group commit: concurrent appends share one transaction.

Every message is committed before its author is answered (the chat's durability rule); a
commit costs a disk flush, and on SQLite one writer flushes at a time. Under load, messages
that arrive while a commit is in flight wait for the next one and are written together in a
single transaction: one flush for the batch instead of one each. A lone message is written at
once, as before, so the latency at low load does not change.

A batch that fails is retried one message per transaction, so a bad message (a conversation
deleted meanwhile, say) fails alone and the others are still stored.
"""

from __future__ import annotations

import asyncio

from omnicc.store.database import Database
from omnicc.store.repositories import Messages
from omnicc.store.tables import Message

MAX_BATCH = 256
"""Messages per transaction at most: bounds the time the writer holds the database."""


class MessageLog:
    """One tenant's message appends; `append` returns once the message is committed."""

    def __init__(self, database: Database, tenant_id: str) -> None:
        self._database = database
        self.tenant_id = tenant_id
        self._pending: list[tuple[Message, asyncio.Future[Message]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.commits = 0
        """Transactions written (batches and retries): less than messages under load."""

    async def append(self, message: Message) -> Message:
        """Store `message` (a resent idempotency key gives back the first one) and return the
        stored row, once it is committed."""
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending.append((message, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await asyncio.shield(future)

    async def _write(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                stored = await self._commit([message for message, _ in batch])
            except Exception as error:
                if len(batch) == 1:
                    _fail(batch[0][1], error)
                    continue
                for message, future in batch:
                    try:
                        [row] = await self._commit([message])
                    except Exception as alone:
                        _fail(future, alone)
                    else:
                        _resolve(future, row)
                continue
            for (_, future), row in zip(batch, stored, strict=True):
                _resolve(future, row)

    async def _commit(self, messages: list[Message]) -> list[Message]:
        async with self._database.session() as session:
            stored = [row for row, _ in
                      await Messages(session, self.tenant_id).append_batch(messages)]
        self.commits += 1
        return stored


def _resolve(future: asyncio.Future[Message], row: Message) -> None:
    if not future.done():
        future.set_result(row)


def _fail(future: asyncio.Future[Message], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)

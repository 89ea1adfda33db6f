"""Chat messages into the store with group commit: concurrent appends share one transaction.

Every message is committed before its author is answered (the chat's durability rule); a
commit costs a disk flush, and on SQLite one writer flushes at a time. Under load, messages
that arrive while a commit is in flight wait for the next one and are written together in a
single transaction: one flush for the batch instead of one each. A lone message is written at
once, as before, so the latency at low load does not change.

A batch that fails is retried one message per transaction, so a bad message (a conversation
deleted meanwhile, say) fails alone and the others are still stored (app/group_commit.py).
"""

from __future__ import annotations

from omnicc.app.group_commit import GroupCommit
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
        self._writes: GroupCommit[Message, Message] = GroupCommit(self._commit,
                                                                  max_batch=MAX_BATCH)

    @property
    def commits(self) -> int:
        """Transactions tried (batches and retries): fewer than messages under load."""
        return self._writes.commits

    async def append(self, message: Message) -> Message:
        """Store `message` (a resent idempotency key gives back the first one) and return the
        stored row, once it is committed."""
        return await self._writes.submit(message)

    async def _commit(self, messages: list[Message]) -> list[Message | Exception]:
        async with self._database.session() as session:
            return [row for row, _ in
                    await Messages(session, self.tenant_id).append_batch(messages)]

"""The event log as integrations see it: one wire form, and a gap-free follow from any seq.

Webhooks and the WebSocket event stream both read the log itself, never the bus' notices, so a
replay and a live event look the same and a reader that resumes from the last seq it saw gets
every later event exactly once. The bus only says "the log grew": it wakes a follower early.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.bus import Bus
from omnicc.store.database import Database
from omnicc.store.repositories.events import Events
from omnicc.store.tables import Event, Task

EVENTS_TOPIC = "events"
PAGE_SIZE = 500


class FeedOverflow(Exception):
    """The reader fell too far behind the live events; it should resume from its last seq."""


def wire_event(row: Event, conversations: dict[str, str]) -> dict[str, Any]:
    """`{"type", "seq", "at", "data"}`: `at` in ISO 8601 UTC, `data` the stored payload plus
    the task's `conversation_id` when the event names a task of a conversation (a CRM files
    events under the customer's case)."""
    data = dict(row.payload)
    task_id = data.get("task_id")
    if isinstance(task_id, str) and "conversation_id" not in data and task_id in conversations:
        data["conversation_id"] = conversations[task_id]
    return {"type": row.type, "seq": row.seq, "at": row.at.isoformat(), "data": data}


async def conversations_of(session: AsyncSession, tenant_id: str,
                           rows: Sequence[Event]) -> dict[str, str]:
    """Task id -> conversation id for the tasks these events name."""
    task_ids = {row.payload.get("task_id") for row in rows} - {None}
    if not task_ids:
        return {}
    statement = select(Task.id, Task.conversation_id).where(
        Task.tenant_id == tenant_id, Task.id.in_(task_ids), Task.conversation_id.is_not(None))
    return {task_id: conversation_id
            for task_id, conversation_id in (await session.execute(statement)).all()
            if conversation_id is not None}


class EventFeed:
    """One tenant's event log, read in pages and followed live."""

    def __init__(self, database: Database, tenant_id: str, bus: Bus, *,
                 page_size: int = PAGE_SIZE) -> None:
        self._database = database
        self._tenant_id = tenant_id
        self._bus = bus
        self._page_size = page_size

    async def last_seq(self) -> int:
        async with self._database.session() as session:
            return await Events(session, self._tenant_id).last_seq()

    async def page(self, after_seq: int) -> list[dict[str, Any]]:
        """The wire form of the events after `after_seq`, oldest first, one page at most."""
        async with self._database.session() as session:
            rows = await Events(session, self._tenant_id).since(after_seq, self._page_size)
            conversations = await conversations_of(session, self._tenant_id, rows)
        return [wire_event(row, conversations) for row in rows]

    async def follow(self, after_seq: int | None = None,
                     ) -> AsyncGenerator[dict[str, Any], None]:
        """Every event after `after_seq` (default: from now on), then each new one as it is
        committed; raises `FeedOverflow` when the consumer is too slow for the live events.

        The replay runs before the bus is followed, so a long replay is not taken for a slow
        consumer; the log is read once more after subscribing, which closes the gap between
        the two."""
        last = await self.last_seq() if after_seq is None else after_seq
        async for event in self._catch_up(last):
            last = event["seq"]
            yield event
        with self._bus.subscribe(self._tenant_id, EVENTS_TOPIC) as subscription:
            while True:
                async for event in self._catch_up(last):
                    last = event["seq"]
                    yield event
                while True:
                    notice = await subscription.get()
                    if notice is None:
                        if subscription.overflowed:
                            raise FeedOverflow(f"more than the bus holds arrived after seq {last}")
                        return
                    seq = notice.data.get("seq")
                    if isinstance(seq, int) and seq > last:
                        break

    async def _catch_up(self, after_seq: int) -> AsyncIterator[dict[str, Any]]:
        while True:
            page = await self.page(after_seq)
            for event in page:
                yield event
            if len(page) < self._page_size:
                return
            after_seq = page[-1]["seq"]

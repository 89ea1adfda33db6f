"""Call detail records into the store with group commit: saves of many calls share a transaction.

A call saves its record a few times (answered, queued, connected, ended), and each save is
committed before the call goes on, so the record is never behind the call. A commit costs a
disk flush, and on SQLite one writer flushes at a time (about 5 ms on the development
machine): at 50 new calls a second the records alone would need 200 flushes a second. Saves
made while a commit is in flight wait for the next one and are written together, one flush for
the batch; several saves of one call in a batch are one write of its latest figures. A lone
save is written at once, so the latency at low load does not change.

A batch that fails is retried one record per transaction, so a bad record fails alone.

A save that goes with a routing command the call makes anyway (queued, answered, ended) is
written in that command's transaction instead (`write`): no transaction of its own at all.

A save is one UPDATE of the row by its id within the tenant, of every column the call sets
(the call keeps all its figures, so the stored row is not read first); only a record not
stored yet is added through the repository, which checks the rows it refers to. The later
saves change references only to the call's own rows (its contact, conversation, queue,
agent), all of the call's tenant.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy import Table, bindparam
from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.store.database import Database
from omnicc.store.repositories import CallRecords
from omnicc.store.tables import CallRecord

MAX_BATCH = 128
"""Records per transaction at most: bounds the time the writer holds the database."""

NewRecord = Callable[[], CallRecord]
"""The row of a call whose record is not stored yet."""
Before = Callable[[AsyncSession], Awaitable[None]]
"""Work of the call's that goes in the same transaction, before its record (identifying the
caller: the record names the customer)."""
FillRecord = Callable[[CallRecord], None]
"""Puts the call's figures, as they are when the batch is written, into its row (a new one:
it must not read what the row held)."""

_TABLE: Table = CallRecord.__table__  # type: ignore[assignment]
_COLUMNS = frozenset(column.key for column in _TABLE.columns) - {"id", "tenant_id"}
_UPDATE = _TABLE.update().where(_TABLE.c.id == bindparam("record_key"),
                                _TABLE.c.tenant_id == bindparam("tenant_key"))
"""SET takes the columns the parameters name: built once, not per save."""


@dataclass(slots=True)
class _Save:
    new: NewRecord
    fill: FillRecord
    waiting: list[asyncio.Future[None]] = field(default_factory=list)
    before: list[Before] = field(default_factory=list)


class CallRecordWriter:
    """Every tenant's call records; `save` returns once the record is committed."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._pending: dict[tuple[str, str], _Save] = {}
        self._writer: asyncio.Task[None] | None = None
        self.commits = 0
        """Transactions written (batches and retries): fewer than saves under load."""

    async def save(self, tenant_id: str, record_id: str, new: NewRecord,
                   fill: FillRecord, *, before: Before | None = None) -> None:
        """Return once the record (and `before`'s work) is committed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        pending = self._pending.get((tenant_id, record_id))
        if pending is None:
            pending = self._pending[(tenant_id, record_id)] = _Save(new, fill)
        else:
            pending.fill = fill
        if before is not None:
            pending.before.append(before)
        pending.waiting.append(future)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        await asyncio.shield(future)

    async def _write(self) -> None:
        while self._pending:
            keys = list(self._pending)[:MAX_BATCH]
            batch = {key: self._pending.pop(key) for key in keys}
            try:
                await self._commit(batch)
            except Exception as error:
                if len(batch) == 1:
                    _settle(batch, error)
                    continue
                for key, save in batch.items():
                    try:
                        await self._commit({key: save})
                    except Exception as alone:
                        _settle({key: save}, alone)
                    else:
                        _settle({key: save}, None)
            else:
                _settle(batch, None)

    async def write(self, session: AsyncSession, tenant_id: str, record_id: str,
                    new: NewRecord, fill: FillRecord) -> None:
        """Save a record in the caller's transaction (a routing command's)."""
        row = new()
        fill(row)
        values = {key: value for key, value in vars(row).items() if key in _COLUMNS}
        updated = await session.execute(
            _UPDATE, {"record_key": record_id, "tenant_key": tenant_id, **values})
        if getattr(updated, "rowcount", 0) == 0:
            await CallRecords(session, tenant_id).add(row)

    async def _commit(self, batch: dict[tuple[str, str], _Save]) -> None:
        self.commits += 1
        async with self._database.session() as session:
            for (tenant_id, record_id), save in batch.items():
                for work in save.before:
                    await work(session)
                await self.write(session, tenant_id, record_id, save.new, save.fill)


def _settle(batch: dict[tuple[str, str], _Save], error: Exception | None) -> None:
    for save in batch.values():
        for future in save.waiting:
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

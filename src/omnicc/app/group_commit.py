"""Group commit: concurrent writes share one transaction, and each caller is answered after it.

A commit costs a disk flush, and on SQLite one writer flushes at a time. Items submitted while
a commit is in flight wait for the next one and are written together: one flush for the batch
instead of one each. A lone item is written at once, so the latency at low load does not
change; under load a batch holds what arrived during the previous commit (it clocks itself:
no timer to tune, and the batch grows with the load).

The batch's `commit` returns one outcome per item, in order: its result, or the exception of
an item refused on its own (not written; the others were). When the transaction as a whole
fails, every item is tried again in a transaction of its own, so a bad item fails alone and
the others are still stored. A caller's `submit` returns only once the transaction that holds
its item has committed: an item whose transaction never committed is never acknowledged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


class GroupCommit(Generic[ItemT, ResultT]):
    """Batches `submit`ted items into `commit` calls of at most `max_batch` items, one at a
    time, in arrival order."""

    def __init__(self, commit: Callable[[list[ItemT]], Awaitable[list[ResultT | Exception]]],
                 *, max_batch: int) -> None:
        self._commit = commit
        self._max_batch = max_batch
        self._pending: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.commits = 0
        """Transactions tried (batches and retries alone): fewer than items under load."""
        self.items = 0

    async def submit(self, item: ItemT) -> ResultT:
        """Write `item` with whatever else is waiting; its result once committed (or its
        exception, if it could not be)."""
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        # Shielded: a caller that goes away does not cancel the batch the others wait for.
        return await asyncio.shield(future)

    async def _write(self) -> None:
        batch: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        try:
            while self._pending:
                batch = self._pending[:self._max_batch]
                self._pending = self._pending[self._max_batch:]
                self.items += len(batch)
                try:
                    outcomes = await self._run([item for item, _ in batch])
                except Exception as error:
                    if len(batch) == 1:
                        _settle(batch[0][1], error)
                        continue
                    for item, future in batch:
                        try:
                            [outcome] = await self._run([item])
                        except Exception as alone:
                            outcome = alone
                        _settle(future, outcome)
                    continue
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    _settle(future, outcome)
        except BaseException:  # cancelled (the process stops): nobody waits forever
            for _, future in [*batch, *self._pending]:
                future.cancel()
            self._pending = []
            raise

    async def _run(self, items: list[ItemT]) -> list[ResultT | Exception]:
        self.commits += 1
        return await self._commit(items)


def _settle(future: asyncio.Future[ResultT], outcome: ResultT | Exception) -> None:
    if future.done():
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)

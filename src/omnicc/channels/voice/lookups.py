"""What every call reads from the store before it can go on, kept for a moment.

Each call looked up the dialled number's route (number, tenant, flow, business hours: five
queries) and, for each agent it rang, the agent's SIP account: a transaction each on the one
SQLite connection the whole server shares, tens per second under load for rows that change a
few times a day. They are kept here (the SIP accounts as one map per tenant, read in one
query), each entry valid while:

- no administrative change was made through this server since (`forget`: the admin API's
  change transaction calls it after its commit),
- the tenant's routing engine is the one it was read with (a routing reload, which every
  change to routing configuration makes, builds a new engine), and
- it is younger than `max_age_s`, so a change made by another process (the CLI, a second
  node) is seen within that time too.

An unknown number is not kept: it is read again on every call. Calls that need an entry
while it is being read wait for that one read (under load, tens of calls would otherwise
read the same rows at once each time an entry grows old).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

ValueT = TypeVar("ValueT")

MAX_AGE_S = 2.0


@dataclass(frozen=True, slots=True)
class _Entry(Generic[ValueT]):
    value: ValueT
    generation: object
    read_at: float


class Lookups(Generic[ValueT]):
    """Values by key, each tied to the generation (the routing engine) it was read under."""

    def __init__(self, *, max_age_s: float = MAX_AGE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._max_age_s = max_age_s
        self._clock = clock
        self._entries: dict[Hashable, _Entry[ValueT]] = {}
        self._reading: dict[Hashable, asyncio.Future[ValueT]] = {}

    def get(self, key: Hashable) -> tuple[ValueT, object] | None:
        """The value kept for `key` and its generation, or None (not kept, or too old); the
        caller compares the generation with the current one."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock() - entry.read_at > self._max_age_s:
            del self._entries[key]
            return None
        return entry.value, entry.generation

    async def read_once(self, key: Hashable, read: Callable[[], Awaitable[ValueT]]) -> ValueT:
        """`read()`, shared by every caller that asks for `key` while it runs."""
        reading = self._reading.get(key)
        if reading is not None:
            return await asyncio.shield(reading)
        future: asyncio.Future[ValueT] = asyncio.get_running_loop().create_future()
        self._reading[key] = future
        try:
            value = await read()
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            del self._reading[key]
        future.set_result(value)
        return value

    def put(self, key: Hashable, value: ValueT, generation: object) -> None:
        self._entries[key] = _Entry(value, generation, self._clock())

    def discard(self, key: Hashable) -> None:
        self._entries.pop(key, None)

    def forget(self) -> None:
        """Everything is read again (an administrative change)."""
        self._entries.clear()

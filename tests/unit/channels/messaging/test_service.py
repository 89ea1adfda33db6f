"""The messaging service keeps one desk per tenant: webhooks that come together before the
tenant's runtime is up share it (two desks would write two batches at once and race to add
the same new customer)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from omnicc.bus import Bus
from omnicc.channels.messaging.service import MessagingService

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class SlowCenter:
    """A contact center whose tenant runtime takes a moment to start."""

    bus = Bus()

    async def tenant(self, tenant_id: str) -> Any:
        await asyncio.sleep(0.01)
        return SimpleNamespace(routing=None)


async def test_webhooks_arriving_together_share_one_desk() -> None:
    service = MessagingService(database=None, center=SlowCenter())  # type: ignore[arg-type]
    desks = await asyncio.gather(*(service.desk("tenant-1") for _ in range(5)))
    assert all(desk is desks[0] for desk in desks)
    assert await service.desk("tenant-1") is desks[0]


class CountingDatabase:
    """A store that answers an account after a moment and counts its reads."""

    def __init__(self) -> None:
        self.reads = 0
        self.name = "first"

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Any]:
        yield self

    async def get(self, table: Any, account_id: str) -> Any:
        self.reads += 1
        name = self.name
        await asyncio.sleep(0.01)
        return SimpleNamespace(id=account_id, name=name)


async def test_an_account_is_read_once_for_the_webhooks_that_need_it_together() -> None:
    database = CountingDatabase()
    service = MessagingService(database=database, center=SlowCenter())  # type: ignore[arg-type]
    rows = await asyncio.gather(*(service.account("a1") for _ in range(20)))
    assert database.reads == 1 and all(row is rows[0] for row in rows)
    assert await service.account("a1") is rows[0] and database.reads == 1  # kept a while
    # Changed through this process during a read: the read's row is not kept.
    database.name = "second"
    reading = asyncio.ensure_future(service.account("a2"))
    await asyncio.sleep(0)
    service.forget("a2")
    await reading
    assert (await service.account("a2")).name == "second" and database.reads == 3
    service.forget("a1")
    assert (await service.account("a1")).name == "second"

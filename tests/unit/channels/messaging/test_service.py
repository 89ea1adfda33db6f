"""The messaging service keeps one desk per tenant: webhooks that come together before the
tenant's runtime is up share it (two desks would write two batches at once and race to add
the same new customer)."""

from __future__ import annotations

import asyncio
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

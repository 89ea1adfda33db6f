"""The contact center's start-up: a tenant's runtime is started once, even when a request
asks for it while the server is still starting (an external database starts in the
background)."""

from __future__ import annotations

import asyncio

import pytest

from omnicc.app.routing import WallClock
from omnicc.app.runtime import ContactCenter
from omnicc.bus import Bus
from omnicc.store.database import Database
from omnicc.store.repositories import Queues, Tenants
from omnicc.store.tables import Queue

pytestmark = pytest.mark.anyio


async def test_a_request_during_start_up_does_not_start_a_tenant_twice(
        database: Database) -> None:
    async with database.session() as session:
        tenant = await Tenants(session).create("acme", "Acme")
        await Queues(session, tenant.id).add(Queue(name="support"))
    center = ContactCenter(database, WallClock(), Bus())
    try:
        _, runtime = await asyncio.gather(center.start(), center.by_slug("acme"))
        assert await center.by_slug("acme") is runtime
        assert await center.tenant(tenant.id) is runtime
    finally:
        await center.stop()

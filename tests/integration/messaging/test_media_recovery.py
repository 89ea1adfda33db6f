"""A customer's media stored but not yet fetched when the process stopped (the webhook was
answered, the fetch had not run) are fetched when the messaging service starts again, once;
media already kept are not fetched again. SQLite and PostgreSQL, a Telegram stand-in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from omnicc.app.attachments import AttachmentStore
from omnicc.app.messaging import MessagingDesk
from omnicc.app.routing import WallClock
from omnicc.app.runtime import ContactCenter
from omnicc.bus import Bus
from omnicc.channels.messaging.service import MessagingService
from omnicc.channels.messaging.shape import InboundMessage, Media
from omnicc.store.database import Database
from omnicc.store.repositories import MessagingAccounts, Queues, Tenants
from omnicc.store.tables import Attachment, MessagingAccount, Queue
from tests.integration.messaging.providers import BOT_TOKEN, FakeProviders, fake_providers

pytestmark = pytest.mark.anyio

PDF = b"%PDF-1.7\n" + bytes(64)


@pytest.fixture
def fake() -> Iterator[FakeProviders]:
    yield from fake_providers()


@pytest.fixture
async def database(migrated_database_url: str) -> AsyncIterator[Database]:
    database = Database(migrated_database_url)
    yield database
    await database.dispose()


async def attachments(database: Database) -> int:
    async with database.session() as session:
        return int((await session.execute(
            select(func.count()).select_from(Attachment))).scalar_one())


async def test_media_left_unfetched_by_a_stop_are_fetched_at_start(
        database: Database, fake: FakeProviders, tmp_path: Path) -> None:
    fake.media.update({"doc1": PDF, "doc2": PDF})
    async with database.session() as session:
        tenant = await Tenants(session).create("acme", "Acme")
        queue = await Queues(session, tenant.id).add(Queue(name="chat", config={}))
        account = await MessagingAccounts(session, tenant.id).add(MessagingAccount(
            name="Bot", provider="telegram", channel="telegram", queue_id=queue.id,
            address="bot", auth_token=BOT_TOKEN, app_secret="", verify_token="",
            api_base_url=fake.url))
    center = ContactCenter(database, WallClock(), Bus())
    try:
        runtime = await center.tenant(tenant.id)
        # The process that answered the webhooks stopped before fetching (it kept no job).
        before = MessagingDesk(database, tenant.id, runtime.routing, center.bus)
        for number in (1, 2):
            await before.receive(account.id, InboundMessage(
                provider_message_id=str(number), peer="555", text="",
                media=(Media(url=f"doc{number}", content_type="application/pdf"),)))
        assert await attachments(database) == 0

        for _ in range(2):  # started twice: the second start finds nothing left to fetch
            service = MessagingService(database, center,
                                       files=AttachmentStore(tmp_path, max_bytes=1_000_000))
            await service.start()
            try:
                async with asyncio.timeout(20):
                    while await attachments(database) < 2:
                        await asyncio.sleep(0.05)
                await asyncio.sleep(0.3)  # a second fetch, if any, would land meanwhile
            finally:
                await service.stop()
            assert await attachments(database) == 2
        assert len(fake.sent(f"/bot{BOT_TOKEN}/getFile")) == 2
    finally:
        await center.stop()

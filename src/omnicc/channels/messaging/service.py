"""The running messaging channels: one outbox sender per tenant and the desks the webhooks
hand messages to. Started by `create_app` after the contact center.

The outbox is rows (`messaging_messages`, status pending, with `next_attempt_at`), so what an
agent answered survives a restart. The sender sends what is due oldest first through the
account's provider; network trouble, 429 and 5xx are retried with back-off (2 s, 4 s, ... up
to 5 min), other refusals and the fifth failure are shown to the agent as failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import httpx

from omnicc.app.attachments import AttachmentStore, StoredFile
from omnicc.app.messaging import MediaJob, MessagingDesk, Sending, account_of
from omnicc.app.reply_channels import Sender, agents_task
from omnicc.app.runtime import ContactCenter
from omnicc.channels.messaging.media import fetch_medium
from omnicc.channels.messaging.providers import PROVIDERS
from omnicc.channels.messaging.shape import Media, MediaFailed, SendFailed
from omnicc.core.errors import InvalidConfiguration, NotFound
from omnicc.store.database import Database
from omnicc.store.repositories import MessagingAccounts, Tenants, find_messaging_account
from omnicc.store.tables import Conversation, MessagingAccount
from omnicc.store.tables.messaging import MESSAGING_CHANNELS

log = logging.getLogger("omnicc.messaging")

ACCOUNT_TTL_S: Final = 2.0
"""How long webhooks trust an account read from the store (one read per account, not per
webhook, under load): a change made through another process applies within this time, one
made through this process at once (`forget`)."""
MAX_CACHED_ACCOUNTS: Final = 10_000
MAX_MEDIA_ATTEMPTS: Final = 3
MEDIA_AT_ONCE: Final = 4
"""Media fetched at the same time, per process."""


@dataclass(frozen=True, slots=True)
class MessagingTiming:
    retry_base_s: float = 2.0
    """First wait after a failed attempt; doubles up to `retry_max_s`."""
    retry_max_s: float = 300.0
    request_timeout_s: float = 20.0


class MessagingService:
    """Every tenant's messaging accounts in this process."""

    def __init__(self, database: Database, center: ContactCenter, *,
                 public_base_url: str = "", timing: MessagingTiming | None = None,
                 files: AttachmentStore | None = None) -> None:
        self._database = database
        self._center = center
        self._public_base_url = public_base_url
        self.timing = timing or MessagingTiming()
        self._desks: dict[str, MessagingDesk] = {}
        self._senders: dict[str, asyncio.Task[None]] = {}
        self._client: httpx.AsyncClient | None = None
        self._is_running = False
        self._accounts: dict[str, tuple[float, MessagingAccount]] = {}
        self._account_reads: dict[str, asyncio.Future[MessagingAccount | None]] = {}
        self._files = files
        """Where received media are kept (None: they stay the provider's links)."""
        self._fetchers: dict[str, asyncio.Task[None]] = {}
        self._fetching = asyncio.Semaphore(MEDIA_AT_ONCE)

    async def account(self, account_id: str) -> MessagingAccount | None:
        """The account a webhook names (any tenant's), read at most every `ACCOUNT_TTL_S`;
        the webhooks that find it out of date together wait for one read."""
        cached = self._accounts.get(account_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        reading = self._account_reads.get(account_id)
        if reading is None:
            reading = self._account_reads[account_id] = asyncio.ensure_future(
                self._read_account(account_id))
            reading.add_done_callback(lambda _: self._account_reads.pop(account_id, None))
        return await asyncio.shield(reading)

    async def _read_account(self, account_id: str) -> MessagingAccount | None:
        read_at = time.monotonic()
        async with self._database.session() as session:
            row = await find_messaging_account(session, account_id)
        if row is None:  # unknown ids are not kept: guessing them fills no memory
            self._accounts.pop(account_id, None)
            return None
        if self._account_reads.get(account_id) is not asyncio.current_task():
            return row  # forgotten meanwhile: what was read may be from before the change
        if len(self._accounts) >= MAX_CACHED_ACCOUNTS:
            self._accounts.clear()
        self._accounts[account_id] = (read_at + ACCOUNT_TTL_S, row)
        return row

    def forget(self, account_id: str) -> None:
        """The account changed: the next webhook reads it again."""
        self._accounts.pop(account_id, None)
        self._account_reads.pop(account_id, None)

    async def desk(self, tenant_id: str) -> MessagingDesk:
        desk = self._desks.get(tenant_id)
        if desk is None:
            runtime = await self._center.tenant(tenant_id)
            # Looked up again: webhooks that came together all waited for the runtime, and
            # one desk (one batch writer) per tenant is what keeps their batches in turn.
            desk = self._desks.get(tenant_id) or MessagingDesk(
                self._database, tenant_id, runtime.routing, self._center.bus,
                public_base_url=self._public_base_url, keeps_media=self._files is not None)
            self._desks[tenant_id] = desk
        if self._is_running and tenant_id not in self._senders:
            self._senders[tenant_id] = asyncio.create_task(
                self._send_loop(desk), name=f"messaging-outbox-{tenant_id}")
            if self._files is not None:
                self._fetchers[tenant_id] = asyncio.create_task(
                    self._media_loop(desk, self._files), name=f"messaging-media-{tenant_id}")
        return desk

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.timing.request_timeout_s)
        self._is_running = True
        async with self._database.session() as session:
            tenants = [t.id for t in await Tenants(session).list_all()
                       if await MessagingAccounts(session, t.id).list_all()]
        for tenant_id in tenants:
            desk = await self.desk(tenant_id)
            if self._files is not None:  # before any webhook: nothing is fetched twice
                desk.fetch_media(await desk.unfetched_media())

    async def stop(self) -> None:
        self._is_running = False
        tasks = [*self._senders.values(), *self._fetchers.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._senders.clear()
        self._fetchers.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _send_loop(self, desk: MessagingDesk) -> None:
        while self._is_running:
            desk.outbox_changed.clear()
            wait_s = self.timing.retry_max_s
            try:
                for sending in await desk.due():
                    await self._send_one(desk, sending)
                next_at = await desk.next_due_at()
                if next_at is not None:
                    wait_s = min(wait_s, max(0.0, (next_at - datetime.now(UTC))
                                             .total_seconds()))
            except asyncio.CancelledError:
                raise
            except Exception:  # the outbox must outlive a bad moment of the database
                log.exception("messaging: the outbox of tenant %s failed", desk.tenant_id)
                wait_s = self.timing.retry_base_s
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation
            # that arrives as the event is set.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await desk.outbox_changed.wait()

    async def _send_one(self, desk: MessagingDesk, sending: Sending) -> None:
        assert self._client is not None
        provider = PROVIDERS[sending.provider]
        try:
            provider_id = await provider.send(self._client, sending.account, sending.outgoing)
        except SendFailed as error:
            is_final = await desk.failed(sending.row_id, str(error), retryable=error.retryable,
                                         retry_base_s=self.timing.retry_base_s,
                                         retry_max_s=self.timing.retry_max_s)
            log.warning("messaging: %s message %s not sent (%s): %s", sending.provider,
                        sending.row_id, "given up" if is_final else "will retry", error)
            return
        await desk.sent(sending.row_id, provider_id)


    async def _media_loop(self, desk: MessagingDesk, files: AttachmentStore) -> None:
        """Fetch the media of stored messages as they come (the webhook was answered before:
        a slow provider CDN never delays the answer)."""
        running: set[asyncio.Task[None]] = set()
        try:
            while self._is_running:
                desk.media_arrived.clear()
                for job in desk.take_media():
                    task = asyncio.create_task(self._keep_media(desk, files, job))
                    running.add(task)
                    task.add_done_callback(running.discard)
                await desk.media_arrived.wait()
        finally:
            for task in list(running):
                task.cancel()

    async def _keep_media(self, desk: MessagingDesk, files: AttachmentStore,
                          job: MediaJob) -> None:
        kept: list[StoredFile] = []
        refused: list[str] = []
        try:
            row = await self.account(job.account_id)
            if row is None:
                return
            for media in job.media:
                try:
                    async with self._fetching:
                        kept.append(await self._fetch(row, media, files, desk.tenant_id))
                except (MediaFailed, InvalidConfiguration) as error:
                    log.info("messaging: media of message %s not kept: %s", job.row_id, error)
                    refused.append(f"{media.content_type or 'a file'}: {error}")
            await desk.attach(job, [stored.attachment for stored in kept], refused)
        except asyncio.CancelledError:
            _remove(kept)
            raise
        except Exception:  # one message's media must not stop the others'
            _remove(kept)
            log.exception("messaging: media of message %s failed", job.row_id)

    async def _fetch(self, row: MessagingAccount, media: Media, files: AttachmentStore,
                     tenant_id: str) -> StoredFile:
        """One medium, tried again after network trouble, 429 and 5xx (back-off doubling
        from the retry base), at most `MAX_MEDIA_ATTEMPTS` times."""
        assert self._client is not None
        attempt = 1
        while True:
            try:
                return await fetch_medium(self._client, PROVIDERS[row.provider],
                                          account_of(row), media, files, tenant_id)
            except MediaFailed as error:
                if not error.retryable or attempt == MAX_MEDIA_ATTEMPTS:
                    raise
            await asyncio.sleep(min(self.timing.retry_base_s * 2.0 ** (attempt - 1),
                                    self.timing.retry_max_s))
            attempt += 1


def _remove(kept: list[StoredFile]) -> None:
    for stored in kept:
        stored.path.unlink(missing_ok=True)


def reply_senders(service: MessagingService, database: Database) -> dict[str, Sender]:
    """The messaging channels as `Sender`s for answering a conversation of another channel
    (`app/reply_channels.py`): the tenant is the conversation's."""

    def sender(channel: str) -> Sender:
        async def send(agent_id: str, conversation_id: str, address: str, text: str,
                       key: str | None) -> dict[str, Any]:
            async with database.session() as session:
                conversation = await session.get(Conversation, conversation_id)
            if conversation is None:
                raise NotFound(f"conversation {conversation_id} not found")
            desk = await service.desk(conversation.tenant_id)
            task_id = agents_task(desk.routing, conversation_id, agent_id)
            return await desk.continue_on(agent_id, task_id, conversation_id, channel,
                                          address, text, key)

        return send

    return {channel: sender(channel) for channel in MESSAGING_CHANNELS}

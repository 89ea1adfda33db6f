"""The running email channel: one reader per enabled mailbox, one outbox sender per tenant,
and the first-response watch. Started by `create_app` after the contact center.

A reader logs in over IMAP, stores every message above the mailbox's read position (then flags
it `\\Seen`), and waits with IDLE (or sleeps `poll_interval_s` when the server has no IDLE).
A failure is written on the mailbox (`last_error`, for the admin) and retried with back-off.
The sender sends the outbox oldest first; a failed attempt is retried with back-off and, after
`MAX_SEND_ATTEMPTS`, marked failed with a note in the conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from omnicc.app.attachments import AttachmentStore
from omnicc.app.emails import EmailDesk, InboundEmail, OutgoingEmail
from omnicc.app.runtime import ContactCenter
from omnicc.channels.email.imap import ImapAccount, ImapError, ImapInbox
from omnicc.channels.email.mime import compose, read_email
from omnicc.channels.email.smtp import SmtpAccount, SmtpError, send
from omnicc.store.database import Database
from omnicc.store.repositories import EmailMailboxes, Tenants
from omnicc.store.tables import EmailMailbox, utc_now

log = logging.getLogger("omnicc.email")
RECEIVE_BATCH: Final = 200
"""Emails stored per transaction when a mailbox is read (one commit and one flag command for
them all: an import's speed; `docs/benchmarks.md`)."""
ImportProgress = Callable[[int, int], None]
"""Told (messages done, messages in all) as a mailbox is read."""


@dataclass(frozen=True, slots=True)
class EmailTiming:
    idle_s: float = 300.0
    """How long one IDLE lasts before the folder is searched again and IDLE renewed (servers
    drop them after 30 min; the search also catches what a missed notification hid)."""
    retry_base_s: float = 2.0
    """First wait after a failed send or connection; doubles up to `retry_max_s`."""
    retry_max_s: float = 300.0
    service_level_check_s: float = 60.0


def imap_account(row: EmailMailbox, context: ssl.SSLContext | None) -> ImapAccount:
    return ImapAccount(host=row.imap_host, port=row.imap_port, security=row.imap_security,
                       username=row.imap_username, password=row.imap_password,
                       folder=row.imap_folder, ssl_context=context)


def smtp_account(row: EmailMailbox, context: ssl.SSLContext | None) -> SmtpAccount:
    return SmtpAccount(host=row.smtp_host, port=row.smtp_port, security=row.smtp_security,
                       username=row.smtp_username, password=row.smtp_password,
                       ssl_context=context)


def _fingerprint(row: EmailMailbox) -> tuple[object, ...]:
    return (row.imap_host, row.imap_port, row.imap_security, row.imap_username,
            row.imap_password, row.imap_folder, row.poll_interval_s, row.queue_id)


class EmailService:
    """Every tenant's mailboxes in this process."""

    def __init__(self, database: Database, center: ContactCenter,
                 files: AttachmentStore | None = None, *, timing: EmailTiming | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._database = database
        self._center = center
        self._files = files
        self.timing = timing or EmailTiming()
        self._ssl_context = ssl_context
        self._desks: dict[str, EmailDesk] = {}
        self._readers: dict[str, tuple[tuple[object, ...], asyncio.Task[None]]] = {}
        self._senders: dict[str, asyncio.Task[None]] = {}
        self._watch: asyncio.Task[None] | None = None
        self._is_stopping = False
        self._retry_at: dict[str, float] = {}  # email id -> monotonic time of its next try
        self._failures: dict[str, int] = {}

    async def desk(self, tenant_id: str) -> EmailDesk:
        desk = self._desks.get(tenant_id)
        if desk is None:
            runtime = await self._center.tenant(tenant_id)
            desk = EmailDesk(self._database, tenant_id, runtime.routing, self._center.bus,
                             files=self._files)
            self._desks[tenant_id] = desk
        return desk

    async def start(self) -> None:
        await self.refresh()
        self._watch = asyncio.create_task(self._watch_service_levels(), name="email-sla")

    async def stop(self) -> None:
        self._is_stopping = True  # also ends a loop whose cancellation got lost
        tasks = [task for _, task in self._readers.values()] + list(self._senders.values())
        if self._watch is not None:
            tasks.append(self._watch)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._readers.clear()
        self._senders.clear()
        self._watch = None
        self._is_stopping = False

    async def refresh(self) -> None:
        """Start, restart or stop readers to match the stored mailboxes (after an admin
        change)."""
        wanted: dict[str, tuple[str, EmailMailbox]] = {}
        async with self._database.session() as session:
            for tenant in await Tenants(session).list_all():
                for row in await EmailMailboxes(session, tenant.id).list_all():
                    if row.is_enabled:
                        wanted[row.id] = (tenant.id, row)
                    if tenant.id not in self._senders:
                        self._senders[tenant.id] = asyncio.create_task(
                            self._send_loop(tenant.id), name=f"email-outbox-{tenant.slug}")
        for mailbox_id in list(self._readers):
            fingerprint, task = self._readers[mailbox_id]
            if mailbox_id not in wanted or _fingerprint(wanted[mailbox_id][1]) != fingerprint:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                del self._readers[mailbox_id]
        for mailbox_id, (tenant_id, row) in wanted.items():
            if mailbox_id not in self._readers:
                task = asyncio.create_task(self._read_loop(tenant_id, mailbox_id),
                                           name=f"email-reader-{row.name}")
                self._readers[mailbox_id] = (_fingerprint(row), task)

    # --- reading -----------------------------------------------------------------------------

    async def _mailbox(self, tenant_id: str, mailbox_id: str) -> EmailMailbox:
        async with self._database.session() as session:
            return await EmailMailboxes(session, tenant_id).get(mailbox_id)

    async def _note(self, tenant_id: str, mailbox_id: str, error: str | None) -> None:
        async with self._database.session() as session:
            row = await EmailMailboxes(session, tenant_id).find(mailbox_id)
            if row is not None:
                row.last_error, row.last_checked_at = error, utc_now()

    async def _read_loop(self, tenant_id: str, mailbox_id: str) -> None:
        wait_s = self.timing.retry_base_s
        while not self._is_stopping:
            try:
                row = await self._mailbox(tenant_id, mailbox_id)
                inbox = ImapInbox(imap_account(row, self._ssl_context))
                await inbox.open()
                try:
                    while not self._is_stopping:
                        await self.sync(tenant_id, mailbox_id, inbox)
                        await self._note(tenant_id, mailbox_id, None)
                        wait_s = self.timing.retry_base_s
                        if inbox.supports_idle:
                            await inbox.wait_for_news(self.timing.idle_s)
                        else:
                            await asyncio.sleep(row.poll_interval_s)
                finally:
                    await inbox.close()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a mailbox's trouble must not end its reader
                log.warning("email: mailbox %s: %s", mailbox_id, error)
                with contextlib.suppress(Exception):
                    await self._note(tenant_id, mailbox_id, str(error)[:2000])
                await asyncio.sleep(wait_s)
                wait_s = min(wait_s * 2, self.timing.retry_max_s)

    async def sync(self, tenant_id: str, mailbox_id: str, inbox: ImapInbox,
                   progress: ImportProgress | None = None) -> int:
        """Store every message above the read position, `RECEIVE_BATCH` at a time: a batch is
        stored in one transaction (all or nothing: a crash reads it again) and then flagged
        seen in one command; returns how many were new. The next batch is fetched and parsed
        while one is being stored (the database works in its own thread meanwhile).
        `progress` is told (done, total) before the first batch and after each."""
        desk = await self.desk(tenant_id)
        row = await self._mailbox(tenant_id, mailbox_id)
        after = row.last_uid if row.uid_validity == inbox.uid_validity else 0
        uids = await inbox.new_uids(after)
        batches = [uids[start:start + RECEIVE_BATCH]
                   for start in range(0, len(uids), RECEIVE_BATCH)]
        new = done = 0
        if progress is not None:
            progress(0, len(uids))
        coming = asyncio.create_task(_fetched(inbox, batches[0])) if batches else None
        try:
            for index, batch in enumerate(batches):
                assert coming is not None
                emails = await coming
                coming = (asyncio.create_task(_fetched(inbox, batches[index + 1]))
                          if index + 1 < len(batches) else None)
                receipts = await desk.receive_batch(mailbox_id, emails,
                                                    uid_validity=inbox.uid_validity)
                new += sum(receipt.is_new for receipt in receipts)
                if coming is not None:
                    await asyncio.wait([coming])  # one IMAP command at a time
                await inbox.mark_seen([uid for _, uid in emails if uid is not None])
                done += len(batch)
                if progress is not None:
                    progress(done, len(uids))
        finally:
            if coming is not None and not coming.done():
                coming.cancel()
                with contextlib.suppress(BaseException):
                    await coming
        return new

    async def import_mailbox(self, tenant_id: str, mailbox_id: str,
                             progress: ImportProgress | None = None) -> int:
        """Read the whole folder again from its first message (nothing stored twice)."""
        row = await self._mailbox(tenant_id, mailbox_id)
        inbox = ImapInbox(imap_account(row, self._ssl_context))
        await inbox.open()
        try:
            async with self._database.session() as session:
                stored = await EmailMailboxes(session, tenant_id).get(mailbox_id)
                stored.last_uid = 0
            return await self.sync(tenant_id, mailbox_id, inbox, progress)
        finally:
            await inbox.close()

    # --- sending -----------------------------------------------------------------------------

    async def _send_loop(self, tenant_id: str) -> None:
        desk = await self.desk(tenant_id)
        while not self._is_stopping:
            desk.outbox_changed.clear()
            wait_s = self.timing.retry_max_s
            try:
                for outgoing in await desk.outbox():
                    due = self._retry_at.get(outgoing.email_id, 0.0) - time.monotonic()
                    if due > 0:
                        wait_s = min(wait_s, due)
                        continue
                    retry_s = await self._send_one(tenant_id, desk, outgoing)
                    if retry_s is not None:
                        wait_s = min(wait_s, retry_s)
            except asyncio.CancelledError:
                raise
            except Exception:  # the outbox must outlive a bad moment of the database
                log.exception("email: the outbox of tenant %s failed", tenant_id)
                wait_s = self.timing.retry_base_s
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation
            # that arrives as the event is set, and the sender would never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await desk.outbox_changed.wait()

    async def _send_one(self, tenant_id: str, desk: EmailDesk,
                        outgoing: OutgoingEmail) -> float | None:
        """Send one email; the seconds until its retry when it failed and is not given up."""
        try:
            row = await self._mailbox(tenant_id, outgoing.mailbox_id)
            await send(smtp_account(row, self._ssl_context), compose(outgoing),
                       sender=row.address, recipients=list(outgoing.to))
        except (SmtpError, ImapError, LookupError) as error:
            is_final = await desk.failed(outgoing.email_id, str(error))
            log.warning("email %s not sent (%s): %s", outgoing.message_id,
                        "given up" if is_final else "will retry", error)
            if is_final:
                self._retry_at.pop(outgoing.email_id, None)
                self._failures.pop(outgoing.email_id, None)
                return None
            attempts = self._failures[outgoing.email_id] = (
                self._failures.get(outgoing.email_id, 0) + 1)
            retry_s: float = min(self.timing.retry_base_s * 2.0 ** (attempts - 1),
                                 self.timing.retry_max_s)
            self._retry_at[outgoing.email_id] = time.monotonic() + retry_s
            return retry_s
        await desk.sent(outgoing.email_id)
        self._retry_at.pop(outgoing.email_id, None)
        self._failures.pop(outgoing.email_id, None)
        return None

    # --- first-response service level --------------------------------------------------------

    async def _watch_service_levels(self) -> None:
        while not self._is_stopping:
            await asyncio.sleep(self.timing.service_level_check_s)
            for desk in list(self._desks.values()):
                try:
                    await desk.escalate_due()
                except Exception:  # one tenant's trouble must not stop the others' watch
                    log.exception("email: service-level check of tenant %s failed",
                                  desk.tenant_id)


async def _fetched(inbox: ImapInbox, uids: list[int]) -> list[tuple[InboundEmail, int | None]]:
    """These messages read and parsed, with their UIDs (an expunged one is left out)."""
    raws = await inbox.fetch(uids)
    return [(read_email(raws[uid]), uid) for uid in uids if uid in raws]

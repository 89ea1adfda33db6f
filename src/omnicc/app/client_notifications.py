"""Client notifications (outsourcing): the client company's contact for a queue is emailed about
every contact the queue handled, urgent ones at once.

A reader of the event log (`event_cursors`, reader `client_notifications`) turns each completed
`task.ended` of a queue with an enabled `client_contacts` row into one `client_notifications`
row, in the transaction that moves the cursor: a restart neither loses one (the cursor has not
moved past an uncommitted row) nor makes one twice (the idempotency key is the task's and unique).

A contact is urgent when its task's priority reached the queue's `urgent_priority` or its
wrap-up code is one of the queue's `urgent_codes`: it is emailed alone, at once. The others are
emailed one per contact at once when `batch_minutes` is 0; otherwise they wait up to that long
and the recipient gets them together in one email (at most one such email per period).

Sending is through the SMTP client of the email channel, from the queue's mailbox (else the
tenant's first enabled one). An email's Message-ID is stored on its rows and committed before
the SMTP server sees it, and the rows are marked sent when the server accepted it. A failure is
retried with backoff under the same Message-ID, then marked failed (the admin lists those).
Only a crash between the server's acceptance and that commit sends an email again, with the same
Message-ID; there is no way to ask an SMTP server whether it has one already.
"""

from __future__ import annotations

import logging
import random
import secrets
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.app.crm import NOTIFY_READER, finished_contact, read_finished
from omnicc.app.webhooks import DeliveryPolicy
from omnicc.channels.email.smtp import SmtpAccount, SmtpError, send
from omnicc.core.clock import Clock
from omnicc.store.database import Database
from omnicc.store.tables import (
    ClientContact,
    ClientNotification,
    EmailMailbox,
    Task,
)

log = logging.getLogger("omnicc.client_notifications")

READER = NOTIFY_READER
MAX_ERROR_CHARS = 500


NOTIFY_POLICY = DeliveryPolicy(backoff_s=(30, 120, 600, 1800, 3600), max_attempts=8, batch=200)
"""How hard client emails are tried: the webhooks' policy with a mail server's pace."""


def is_urgent(rule: ClientContact, priority: int, code: str | None) -> bool:
    if rule.urgent_priority is not None and priority >= rule.urgent_priority:
        return True
    return code is not None and code in (rule.urgent_codes or [])


def _line(label: str, value: Any) -> str | None:
    return None if value in (None, "") else f"{label}: {value}"


def describe(contact: dict[str, Any]) -> str:
    """One handled contact in plain text, as the client's contact reads it."""
    customer = contact.get("customer") or {}
    agent = contact.get("agent") or {}
    disposition = contact.get("disposition") or {}
    lines = [
        _line("When", contact.get("ended_at")),
        _line("Channel", f"{contact.get('channel')} ({contact.get('direction')})"),
        _line("Queue", (contact.get("queue") or {}).get("name")),
        _line("Customer", " / ".join(str(part) for part in (
            customer.get("name"), customer.get("phone"), customer.get("email")) if part)),
        _line("VIP", "yes" if customer.get("vip") else None),
        _line("Handled by", agent.get("name")),
        _line("Outcome", " - ".join(part for part in (
            disposition.get("code"), disposition.get("label")) if part)),
        _line("Priority", contact.get("priority")),
        _line("Waited (s)", contact.get("wait_s")),
        _line("Handled (s)", contact.get("handle_s")),
        _line("Subject", contact.get("subject")),
        _line("Recording", contact.get("recording_url")),
    ]
    summary = str(contact.get("summary") or "").strip()
    text = "\n".join(line for line in lines if line)
    return f"{text}\n\n{summary}\n" if summary else f"{text}\n"


def compose(rows: Sequence[ClientNotification], *, sender: str, message_id: str,
            now: datetime) -> EmailMessage:
    """The email of one urgent contact, one contact, or a period's contacts together."""
    first = rows[0].payload
    queue = (first.get("queue") or {}).get("name") or "your queue"
    message = EmailMessage()
    if len(rows) == 1:
        customer = (first.get("customer") or {}).get("name") or "a customer"
        prefix = "URGENT: " if rows[0].is_urgent else ""
        message["Subject"] = f"{prefix}Handled {first.get('channel')} contact in {queue} - " \
                             f"{customer}"
        body = describe(first)
    else:
        message["Subject"] = f"{len(rows)} handled contacts in {queue}"
        body = "\n".join(f"--- {index} of {len(rows)} ---\n{describe(row.payload)}"
                         for index, row in enumerate(rows, 1))
    if rows[0].is_urgent:
        message["Importance"] = "high"
        message["X-Priority"] = "1"
    message["From"] = sender
    message["To"] = rows[0].recipient
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body)
    return message


def _datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class ClientNotifier:
    """One tenant's client notifications: the log to the outbox, and the outbox to SMTP."""

    def __init__(self, database: Database, tenant_id: str, clock: Clock, *,
                 base_url: str = "", ssl_context: ssl.SSLContext | None = None,
                 policy: DeliveryPolicy | None = None, rng: random.Random | None = None) -> None:
        self._database = database
        self.tenant_id = tenant_id
        self._clock = clock
        self._base_url = base_url
        self._ssl_context = ssl_context
        self.policy = policy or NOTIFY_POLICY
        self._rng = rng or random.Random()

    async def step(self, _client: httpx.AsyncClient | None = None) -> None:
        now = _datetime(self._clock.now())
        while await read_finished(self._database, self.tenant_id, READER, self._add, now):
            pass
        while await self.send_due():
            pass

    async def _add(self, session: AsyncSession, seq: int, task_id: str, now: datetime) -> None:
        task = (await session.scalars(select(Task).where(
            Task.tenant_id == self.tenant_id, Task.id == task_id))).first()
        if task is None or task.queue_id is None:
            return
        rule = (await session.scalars(select(ClientContact).where(
            ClientContact.tenant_id == self.tenant_id,
            ClientContact.queue_id == task.queue_id))).first()
        if rule is None or not rule.is_enabled:
            return
        payload = await finished_contact(session, self.tenant_id, task_id, self._base_url)
        if payload is None:
            return
        code = (payload.get("disposition") or {}).get("code")
        urgent = is_urgent(rule, task.priority, code)
        due = now if urgent or rule.batch_minutes <= 0 else now + timedelta(
            minutes=rule.batch_minutes)
        session.add(ClientNotification(
            tenant_id=self.tenant_id, queue_id=task.queue_id, task_id=task_id,
            idempotency_key=f"notify.{task_id}.{rule.email.lower()}", recipient=rule.email,
            is_urgent=urgent, payload=payload, next_attempt_at=due, created_at=now))

    async def send_due(self) -> int:
        """Send one email that is due; returns how many notifications it carried (0: none
        due)."""
        now = _datetime(self._clock.now())
        async with self._database.session() as session:
            row = (await session.scalars(select(ClientNotification).where(
                ClientNotification.tenant_id == self.tenant_id,
                ClientNotification.state == "pending",
                ClientNotification.next_attempt_at <= now)
                .order_by(ClientNotification.is_urgent.desc(),
                          ClientNotification.next_attempt_at).limit(1))).first()
            if row is None:
                return 0
            rows = await self._email_of(session, row)
            message_id = rows[0].message_id or self._new_message_id(rows[0])
            for member in rows:
                member.message_id = message_id
            mailbox = await self._mailbox(session, row.queue_id)
            ids = [member.id for member in rows]
            message = None if mailbox is None else compose(
                rows, sender=mailbox.address, message_id=message_id, now=now)
        # The Message-ID is committed: from here on a retry sends this same email.
        error = None
        if mailbox is None or message is None:
            error = "no enabled email mailbox to send from (add one under Email)"
        else:
            try:
                await send(SmtpAccount(
                    host=mailbox.smtp_host, port=mailbox.smtp_port,
                    security=mailbox.smtp_security, username=mailbox.smtp_username,
                    password=mailbox.smtp_password, ssl_context=self._ssl_context),
                    message, sender=mailbox.address, recipients=[rows[0].recipient])
            except SmtpError as failure:
                error = str(failure)[:MAX_ERROR_CHARS]
        await self._record(ids, error)
        return len(ids)

    async def _email_of(self, session: AsyncSession,
                        row: ClientNotification) -> list[ClientNotification]:
        """The notifications that go in the same email as `row`: the ones already given its
        Message-ID, else (not urgent) every pending non-urgent one of the recipient."""
        if row.message_id is not None:
            return list((await session.scalars(select(ClientNotification).where(
                ClientNotification.tenant_id == self.tenant_id,
                ClientNotification.message_id == row.message_id,
                ClientNotification.state == "pending")
                .order_by(ClientNotification.created_at, ClientNotification.id))).all())
        if row.is_urgent:
            return [row]
        return list((await session.scalars(select(ClientNotification).where(
            ClientNotification.tenant_id == self.tenant_id,
            ClientNotification.state == "pending",
            ClientNotification.is_urgent.is_(False),
            ClientNotification.message_id.is_(None),
            func.lower(ClientNotification.recipient) == row.recipient.lower())
            .order_by(ClientNotification.created_at, ClientNotification.id)
            .limit(self.policy.batch))).all())

    async def _mailbox(self, session: AsyncSession, queue_id: str | None) -> EmailMailbox | None:
        mailboxes = list((await session.scalars(select(EmailMailbox).where(
            EmailMailbox.tenant_id == self.tenant_id, EmailMailbox.is_enabled.is_(True))
            .order_by(EmailMailbox.name))).all())
        own = [mailbox for mailbox in mailboxes if mailbox.queue_id == queue_id]
        chosen = own or mailboxes
        return chosen[0] if chosen else None

    def _new_message_id(self, row: ClientNotification) -> str:
        return f"<notify.{secrets.token_hex(8)}.{row.task_id}@omnicc>"

    async def _record(self, ids: list[str], error: str | None) -> None:
        now_s = self._clock.now()
        async with self._database.session() as session:
            rows = list((await session.scalars(select(ClientNotification).where(
                ClientNotification.tenant_id == self.tenant_id,
                ClientNotification.id.in_(ids)))).all())
            for row in rows:
                if self.policy.count_attempt(row, error, now_s, self._rng, done="sent"):
                    row.sent_at = _datetime(now_s)
        if error is not None:
            log.warning("client notification not sent", extra={
                "tenant": self.tenant_id, "error": error})

    async def next_due_s(self) -> float | None:
        async with self._database.session() as session:
            next_at: datetime | None = (await session.execute(select(
                func.min(ClientNotification.next_attempt_at)).where(
                ClientNotification.tenant_id == self.tenant_id,
                ClientNotification.state == "pending"))).scalar()
        if next_at is None:
            return None
        return max((next_at - _datetime(self._clock.now())) / timedelta(seconds=1), 0.0)


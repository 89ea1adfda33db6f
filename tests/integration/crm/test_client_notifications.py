"""Client notifications through a real SMTP server (aiosmtpd), on SQLite and PostgreSQL: the
urgent contact at once, the others together after the queue's period, each exactly once across
restarts and a refused attempt (retried with the same Message-ID)."""

from __future__ import annotations

import email
import email.policy
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session
from sqlalchemy import select

from omnicc.app.client_notifications import ClientNotifier
from omnicc.app.crm import start_reading
from omnicc.app.webhooks import DeliveryPolicy
from omnicc.core.clock import ManualClock
from omnicc.store.database import Database
from omnicc.store.tables import ClientContact, ClientNotification, EmailMailbox
from tests.integration.api.live import Seeded, free_port, seed
from tests.integration.crm.contacts import abandon_contact, finish_contact

pytestmark = pytest.mark.anyio

START_S = 1_795_000_000.0
CLIENT = "Paula.Client@client.example"
POLICY = DeliveryPolicy(backoff_s=(30,), max_attempts=5, jitter=0, batch=200)


class Collecting:
    """Keeps what it accepts; `refuse` answers 451, as a server in trouble does."""

    def __init__(self) -> None:
        self.refuse = False
        self.received: list[email.message.EmailMessage] = []
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        if self.refuse:
            return "451 4.3.0 Try again later"
        message = email.message_from_bytes(envelope.original_content or b"",
                                           policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        self.received.append(message)
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Collecting, int]]:
    handler = Collecting()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.fixture
async def seeded(migrated_database_url: str) -> AsyncIterator[tuple[Database, Seeded]]:
    database = Database(migrated_database_url)
    yield database, await seed(migrated_database_url)
    await database.dispose()


async def test_each_handled_contact_is_emailed_once_urgent_ones_at_once(
        seeded: tuple[Database, Seeded], smtp: tuple[Collecting, int]) -> None:
    database, acme = seeded
    handler, port = smtp
    tenant, support, alice = acme.tenant_id, acme.queues["support"], acme.agents["alice"]
    async with database.session() as session:
        session.add(EmailMailbox(
            tenant_id=tenant, name="support", address="support@acme.example", queue_id=support,
            imap_host="127.0.0.1", imap_username="x", imap_password="x", smtp_host="127.0.0.1",
            smtp_port=port, smtp_security="plain"))
        session.add(ClientContact(tenant_id=tenant, queue_id=support, email=CLIENT,
                                  urgent_priority=50, urgent_codes=["escalate"],
                                  batch_minutes=10))
        await start_reading(session, tenant, "client_notifications")
    normal = await finish_contact(database, tenant, support, alice, name="Maija")
    urgent = await finish_contact(database, tenant, support, alice, name="Pekka",
                                  phone="+358407654321", priority=60, note="Line down")
    later = await finish_contact(database, tenant, support, alice, name="Liisa",
                                 phone="+358405555555", channel="chat")
    await finish_contact(database, tenant, acme.queues["billing"], alice, name="Other",
                         phone="+358401111111")  # billing has no client contact
    await abandon_contact(database, tenant)

    clock = ManualClock(START_S)
    handler.refuse = True
    await ClientNotifier(database, tenant, clock, policy=POLICY).step()
    assert handler.received == []
    async with database.session() as session:
        (tried,) = (await session.scalars(select(ClientNotification).where(
            ClientNotification.attempts > 0))).all()
    assert tried.task_id == urgent and tried.state == "pending"
    assert tried.last_error is not None and "451" in tried.last_error

    # A restart; the server is back; the urgent email goes once its retry is due.
    handler.refuse = False
    restarted = ClientNotifier(database, tenant, clock, policy=POLICY)
    await restarted.step()
    assert handler.received == []
    clock.advance(30)
    await restarted.step()
    (first,) = handler.received
    assert first["Message-ID"] == tried.message_id  # the same email as the refused one
    assert first["Subject"] == "URGENT: Handled voice contact in support - Pekka"
    assert first["From"] == "support@acme.example" and handler.recipients == [[CLIENT]]
    assert "Line down" in first.get_content() and "Priority: 60" in first.get_content()

    # The others wait for the queue's ten minutes, then come together in one email.
    clock.advance(9 * 60)
    await restarted.step()
    assert len(handler.received) == 1
    clock.advance(60)
    await ClientNotifier(database, tenant, clock, policy=POLICY).step()
    assert len(handler.received) == 2
    digest = handler.received[1]
    assert digest["Subject"] == "2 handled contacts in support"
    assert "Maija" in digest.get_content() and "Liisa" in digest.get_content()
    assert "Outcome: solved - Solved" in digest.get_content()

    clock.advance(3600)
    await ClientNotifier(database, tenant, clock, policy=POLICY).step()
    assert len(handler.received) == 2
    async with database.session() as session:
        rows = (await session.scalars(select(ClientNotification))).all()
    assert sorted((row.task_id, row.state, row.is_urgent) for row in rows) == sorted(
        [(normal, "sent", False), (urgent, "sent", True), (later, "sent", False)])

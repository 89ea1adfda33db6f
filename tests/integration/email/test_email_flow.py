"""The email channel against real servers: dovecot for IMAP (IDLE), aiosmtpd for SMTP (it
delivers into dovecot, so replies are read back from the customer's mailbox over IMAP), on
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import func, select

from omnicc.app.attachments import AttachmentStore
from omnicc.app.emails import EmailDesk
from omnicc.app.routing import WallClock
from omnicc.app.runtime import ContactCenter, TenantRuntime
from omnicc.bus import Bus
from omnicc.channels.email.imap import ImapAccount, ImapInbox
from omnicc.channels.email.mime import parse_bytes, read_email
from omnicc.channels.email.service import EmailService, EmailTiming
from omnicc.core.errors import InvalidConfiguration
from omnicc.core.model import TaskPhase
from omnicc.store.database import Database
from omnicc.store.repositories import (
    Agents,
    Attachments,
    Contacts,
    EmailMailboxes,
    EmailMessages,
    EmailTickets,
    Events,
    Messages,
)
from omnicc.store.tables import Customer, EmailMailbox, EmailMessage, EmailTicket, Message
from tests.integration.api.live import Seeded, seed
from tests.integration.email.servers import MailServers, corpus, mail_servers

# The test SMTP server asks for AUTH over plain loopback on purpose (aiosmtpd warns).
pytestmark = [pytest.mark.anyio,
              pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")]

SUPPORT = "support@support.example"
MARIA = "maria.virtanen@example.fi"
WAIT_S = 30.0
T = TypeVar("T")


@pytest.fixture
def servers() -> Iterator[MailServers]:
    yield from mail_servers([SUPPORT, MARIA])


@dataclass
class Rig:
    database: Database
    seeded: Seeded
    center: ContactCenter
    runtime: TenantRuntime
    service: EmailService
    desk: EmailDesk
    mailbox_id: str

    @property
    def alice(self) -> str:
        return self.seeded.agents["alice"]


@contextlib.asynccontextmanager
async def running(url: str, data_dir: Path, servers: MailServers | None, *,
                  start: bool = True, poll_interval_s: int = 60) -> AsyncIterator[Rig]:
    seeded = await seed(url)
    database = Database(url)
    async with database.session() as session:
        for agent_id in seeded.agents.values():
            agent = await Agents(session, seeded.tenant_id).get(agent_id)
            agent.capacity = {"chat": 2, "voice": 1, "email": 5}
        mailbox = await EmailMailboxes(session, seeded.tenant_id).add(EmailMailbox(
            name="Acme Support", address=SUPPORT, queue_id=seeded.queues["support"],
            imap_host="127.0.0.1", imap_port=servers.dovecot.port if servers else 9,
            imap_security="plain", imap_username=SUPPORT,
            imap_password=servers.dovecot.password if servers else "x",
            smtp_host="127.0.0.1", smtp_port=servers.smtp.port if servers else 9,
            smtp_security="plain", smtp_username=servers.smtp_user if servers else "",
            smtp_password=servers.smtp_password if servers else "", first_response_s=3600,
            poll_interval_s=poll_interval_s))
    center = ContactCenter(database, WallClock(), Bus())
    service = EmailService(database, center, AttachmentStore(data_dir, max_bytes=1_000_000),
                           timing=EmailTiming(idle_s=30, retry_base_s=0.05, retry_max_s=0.2,
                                              service_level_check_s=3600))
    try:
        await center.start()
        runtime = await center.tenant(seeded.tenant_id)
        if start:
            await service.start()
        yield Rig(database, seeded, center, runtime, service,
                  await service.desk(seeded.tenant_id), mailbox.id)
    finally:
        await service.stop()
        await center.stop()
        await database.dispose()


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str) -> T:
    """The probe's first truthy answer; fails (it does not skip) when none comes."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = await probe()
        if value:
            return value
        await asyncio.sleep(0.05)
    pytest.fail(f"never happened: {what}")


async def tickets(rig: Rig) -> list[EmailTicket]:
    async with rig.database.session() as session:
        return await EmailTickets(session, rig.seeded.tenant_id).list_all()


async def emails(rig: Rig, conversation_id: str) -> list[EmailMessage]:
    async with rig.database.session() as session:
        return await EmailMessages(session, rig.seeded.tenant_id).of_conversation(
            conversation_id)


async def history(rig: Rig, conversation_id: str) -> list[Message]:
    async with rig.database.session() as session:
        return await Messages(session, rig.seeded.tenant_id).history(conversation_id)


async def count(rig: Rig, table: type[object]) -> int:
    async with rig.database.session() as session:
        statement = select(func.count()).select_from(table)  # type: ignore[arg-type]
        return int((await session.execute(statement)).scalar_one())


def inbox_of(servers: MailServers, user: str) -> list[bytes]:
    return [raw for _, raw in servers.dovecot.messages(user)]


async def offer_to(rig: Rig, task_id: str, agent_id: str) -> str:
    async def probe() -> str | None:
        engine = rig.runtime.routing.engine
        for offer_id in engine.agent_figures(agent_id).offer_ids:
            if engine.offer(offer_id).task_id == task_id:
                return offer_id
        return None
    return await eventually(probe, f"an offer of {task_id} to {agent_id}")


async def test_an_email_is_routed_answered_and_its_thread_continues(
        migrated_database_url: str, servers: MailServers, tmp_path: Path) -> None:
    async with running(migrated_database_url, tmp_path, servers) as rig:
        await rig.runtime.routing.run(lambda e: e.set_status(rig.alice, "available"))
        servers.dovecot.append(SUPPORT, corpus("alternative.eml"))

        [ticket] = await eventually(lambda: tickets(rig), "the email became a ticket")
        assert ticket.customer_address == MARIA
        assert ticket.subject == "Lasku maksettiin kahdesti – tilaus 4567"
        task = rig.runtime.routing.engine.task(ticket.task_id or "")
        assert (task.channel, task.queue_id) == ("email", rig.seeded.queues["support"])
        offer_id = await offer_to(rig, task.id, rig.alice)
        await rig.runtime.chats.accept(rig.alice, offer_id)
        async with rig.database.session() as session:
            contact = await Contacts(session, rig.seeded.tenant_id).get(ticket.contact_id)
            assert (contact.channel, contact.agent_id) == ("email", rig.alice)

        # The acknowledgement reached the customer's mailbox, with the ticket's token.
        [ack_raw] = await eventually(lambda: _inbox(servers, MARIA, 1), "the acknowledgement")
        ack = parse_bytes(ack_raw)
        assert f"[#{ticket.reference}]" in str(ack["Subject"])
        assert ack["Auto-Submitted"] == "auto-replied"
        assert ack["In-Reply-To"] == "<CAF9x2h=K8u7QpL3@mail.example.fi>"

        await rig.desk.reply(rig.alice, ticket.conversation_id,
                             "Hei Maria, we refunded the second payment.", "r1")
        raws = await eventually(lambda: _inbox(servers, MARIA, 2), "the agent's reply")
        reply = parse_bytes(raws[1])
        assert reply["In-Reply-To"] == "<CAF9x2h=K8u7QpL3@mail.example.fi>"
        assert "<CAF9x2h=K8u7QpL3@mail.example.fi>" in str(reply["References"])
        assert str(reply["Subject"]) == (
            f"Re: Lasku maksettiin kahdesti – tilaus 4567 [#{ticket.reference}]")
        assert reply["From"].addresses[0].addr_spec == SUPPORT
        assert "we refunded the second payment" in reply.get_content()
        assert reply.get("Auto-Submitted") is None
        assert [row.status for row in await emails(rig, ticket.conversation_id)
                if row.direction == "outbound"] == ["sent", "sent"]

        # The customer answers the reply: same conversation, the open task keeps it.
        servers.dovecot.append(SUPPORT, corpus(
            "reply-chain.eml", reference=ticket.reference, in_reply_to=reply["Message-ID"],
            references=f"<CAF9x2h=K8u7QpL3@mail.example.fi> {reply['Message-ID']}"))
        await eventually(lambda: _has_text(rig, ticket.conversation_id, "Palautus näkyy"),
                         "the customer's answer in the conversation")
        assert (await tickets(rig))[0].task_id == task.id

        # Done; the next email only carries the token and opens a new task in the thread.
        await rig.desk.finish(rig.alice, ticket.conversation_id)
        await rig.runtime.routing.run(lambda e: e.wrap_up(task.id, "solved"))
        servers.dovecot.append(SUPPORT, (
            f"From: Maria <{MARIA}>\r\nTo: {SUPPORT}\r\nSubject: One more thing "
            f"[#{ticket.reference}]\r\nMessage-ID: <third@example.fi>\r\n\r\nAlso: the "
            "receipt?\r\n").encode())

        async def new_task() -> str | None:
            [row] = await tickets(rig)
            return row.task_id if row.task_id != task.id else None

        second = await eventually(new_task, "a new task for the follow-up")
        assert rig.runtime.routing.engine.task(second).conversation_id == (
            ticket.conversation_id)
        await offer_to(rig, second, rig.alice)
        assert len(await tickets(rig)) == 1
        assert all(b"\\Seen" in flags for flags, _ in servers.dovecot.messages(SUPPORT))


async def _inbox(servers: MailServers, user: str, at_least: int) -> list[bytes] | None:
    found = await asyncio.to_thread(inbox_of, servers, user)
    return found if len(found) >= at_least else None


async def _has_text(rig: Rig, conversation_id: str, text: str) -> bool:
    return any(text in m.text for m in await history(rig, conversation_id))


PERSON_CORPUS = ("alternative.eml", "inline-image.eml", "attachment.eml", "latin1.eml",
                 "shift-jis.eml", "malicious.eml", "no-message-id.eml")


async def test_a_mailbox_read_again_and_a_crash_before_the_flag_store_nothing_twice(
        migrated_database_url: str, servers: MailServers, tmp_path: Path) -> None:
    for name in PERSON_CORPUS:
        servers.dovecot.append(SUPPORT, corpus(name))
    async with running(migrated_database_url, tmp_path, servers, start=False) as rig:
        # A crash after the commit, before the IMAP flag: stored, not flagged, position not
        # moved. Reading the mailbox then must not store it again.
        first = await rig.desk.receive(rig.mailbox_id, read_email(corpus("latin1.eml")))
        assert first.is_new
        assert await rig.service.import_mailbox(rig.seeded.tenant_id, rig.mailbox_id) == 6
        assert await rig.service.import_mailbox(rig.seeded.tenant_id, rig.mailbox_id) == 0
        assert await count(rig, EmailTicket) == 7
        assert await count(rig, Customer) == 7
        inbound = [row for row in await _all_emails(rig) if row.direction == "inbound"]
        assert len(inbound) == 7
        assert all(b"\\Seen" in flags for flags, _ in servers.dovecot.messages(SUPPORT))

        by_subject = {row.subject: row for row in inbound}
        evil = by_subject["Your invoice"]
        for bad in ("<script", "onerror", "onload", "javascript:", "tracker.example.net",
                    "<iframe", "<form"):
            assert bad not in evil.safe_html.lower()
        assert "注文した商品がまだ届いていません" in by_subject["注文について"].text
        assert "Où est-elle ?" in by_subject["Commande non reçue"].text

        invoice = by_subject["Rechnung für März"]
        async with rig.database.session() as session:
            repository = Attachments(session, rig.seeded.tenant_id)
            files = await repository.all(repository.select())
            message = await Messages(session, rig.seeded.tenant_id).get(invoice.message_id or "")
        assert sorted((f.filename, f.content_type) for f in files) == [
            ("Rechnung März.pdf", "application/pdf"), ("shot.png", "image/png")]
        assert "Attachments not accepted: invoice.pdf.exe" in message.text
        assert 'src="data:image/png;base64,' in by_subject["Screenshot of the error"].safe_html


async def _all_emails(rig: Rig) -> list[EmailMessage]:
    async with rig.database.session() as session:
        return await EmailMessages(session, rig.seeded.tenant_id).list_all()


async def test_bounces_and_auto_replies_are_recorded_and_never_answered(
        migrated_database_url: str, servers: MailServers, tmp_path: Path) -> None:
    async with running(migrated_database_url, tmp_path, servers) as rig:
        await rig.runtime.routing.run(lambda e: e.set_status(rig.alice, "available"))
        servers.dovecot.append(SUPPORT, corpus("alternative.eml"))
        [ticket] = await eventually(lambda: tickets(rig), "the email became a ticket")
        await rig.runtime.chats.accept(rig.alice, await offer_to(rig, ticket.task_id or "",
                                                                 rig.alice))
        await rig.desk.reply(rig.alice, ticket.conversation_id, "Hello Maria", "r1")

        async def sent_reply() -> EmailMessage | None:
            return next((row for row in await emails(rig, ticket.conversation_id)
                         if row.kind == "reply" and row.status == "sent"), None)

        reply = await eventually(sent_reply, "the reply was sent")
        envelopes = len(servers.handler.envelopes)

        servers.dovecot.append(SUPPORT, corpus(
            "bounce.eml", recipient=MARIA, original_message_id=reply.header_message_id))
        servers.dovecot.append(SUPPORT, corpus("auto-reply.eml",
                                               in_reply_to=reply.header_message_id))
        servers.dovecot.append(SUPPORT, corpus("auto-reply.eml", in_reply_to="<unknown@x>")
                               .replace(b"oof-98765", b"oof-other"))

        await eventually(lambda: _has_text(rig, ticket.conversation_id, "Delivery failed"),
                         "the bounce in the conversation")
        await eventually(lambda: _has_text(rig, ticket.conversation_id, "Automatic reply"),
                         "the auto-reply in the conversation")
        await eventually(lambda: _count_inbound(rig, 4), "every robot's email stored")
        notes = [m for m in await history(rig, ticket.conversation_id)
                 if m.text.startswith("Delivery failed")]
        assert [(n.author_kind, n.visibility) for n in notes] == [("system", "internal")]
        assert f"Delivery failed to {MARIA} (5.1.1): smtp; 550 5.1.1 User unknown" == (
            notes[0].text)
        rows = {row.kind: row for row in await emails(rig, ticket.conversation_id)}
        assert rows["reply"].status == "failed"
        assert "bounced" in (rows["reply"].last_error or "")
        unmatched = [row for row in await _all_emails(rig) if row.conversation_id is None]
        assert [row.kind for row in unmatched] == ["auto_reply"]
        assert len(await tickets(rig)) == 1
        assert (await tickets(rig))[0].task_id == ticket.task_id
        # Nothing was sent to a robot: no acknowledgement, no answer.
        await asyncio.sleep(0.3)  # give a wrong acknowledgement the chance to be sent
        assert len(servers.handler.envelopes) == envelopes


async def _count_inbound(rig: Rig, wanted: int) -> bool:
    return len([r for r in await _all_emails(rig) if r.direction == "inbound"]) >= wanted


async def test_a_send_that_keeps_failing_is_retried_then_shown_as_failed(
        migrated_database_url: str, servers: MailServers, tmp_path: Path) -> None:
    servers.handler.refuse = True
    async with running(migrated_database_url, tmp_path, servers) as rig:
        await rig.runtime.routing.run(lambda e: e.set_status(rig.alice, "available"))
        servers.dovecot.append(SUPPORT, corpus("latin1.eml"))
        [ticket] = await eventually(lambda: tickets(rig), "the email became a ticket")
        await rig.runtime.chats.accept(rig.alice, await offer_to(rig, ticket.task_id or "",
                                                                 rig.alice))
        await rig.desk.reply(rig.alice, ticket.conversation_id, "Bonjour Renée", "r1")

        async def failed() -> EmailMessage | None:
            return next((row for row in await emails(rig, ticket.conversation_id)
                         if row.kind == "reply" and row.status == "failed"), None)

        row = await eventually(failed, "the reply given up")
        assert row.attempts == 5 and "451" in (row.last_error or "")
        assert await _has_text(rig, ticket.conversation_id, "could not be sent after 5")
        assert servers.handler.envelopes == []


async def test_the_first_response_deadline_raises_the_priority(
        migrated_database_url: str, tmp_path: Path) -> None:
    async with running(migrated_database_url, tmp_path, None, start=False) as rig:
        receipt = await rig.desk.receive(rig.mailbox_id, read_email(corpus("alternative.eml")))
        [ticket] = await tickets(rig)
        assert ticket.first_response_due_at is not None
        assert ticket.first_response_due_at - ticket.created_at == timedelta(hours=1)
        engine = rig.runtime.routing.engine
        assert engine.task(receipt.task_id or "").priority == 0

        assert await rig.desk.escalate_due(ticket.created_at + timedelta(minutes=10)) == []
        assert await rig.desk.escalate_due(ticket.created_at + timedelta(minutes=46)) == [
            ticket.reference]
        [ticket] = await tickets(rig)
        assert ticket.task_id == receipt.task_id  # the same task, raised in place
        task = engine.task(ticket.task_id or "")
        assert (ticket.escalation, task.priority, task.phase) == (1, 10, TaskPhase.WAITING)
        assert await rig.desk.escalate_due(ticket.created_at + timedelta(minutes=61)) == [
            ticket.reference]
        [ticket] = await tickets(rig)
        assert (ticket.escalation, engine.task(ticket.task_id or "").priority) == (2, 20)
        assert await rig.desk.escalate_due(ticket.created_at + timedelta(hours=5)) == []

        async with rig.database.session() as session:
            logged = [e.type for e in await Events(session, rig.seeded.tenant_id).since()]
        assert logged.count("task.reprioritised") == 2
        assert "task.cancelled" not in logged and logged.count("task.created") == 1
        await rig.runtime.routing.reload()  # a restart reads the task row back
        assert rig.runtime.routing.engine.task(receipt.task_id or "").priority == 20


NO_IDLE = "imap_capability = IMAP4rev1 LITERAL+ SASL-IR\n"


async def test_a_server_without_idle_is_polled(migrated_database_url: str,
                                               tmp_path: Path) -> None:
    for servers in mail_servers([SUPPORT, MARIA], dovecot_config=NO_IDLE):
        inbox = ImapInbox(ImapAccount("127.0.0.1", servers.dovecot.port, "plain", SUPPORT,
                                      servers.dovecot.password))
        await inbox.open()
        assert not inbox.supports_idle
        await inbox.close()
        async with running(migrated_database_url, tmp_path, servers, poll_interval_s=1) as rig:
            servers.dovecot.append(SUPPORT, corpus("shift-jis.eml"))
            [ticket] = await eventually(lambda: tickets(rig), "the polled email as a ticket")
            assert ticket.subject == "注文について"
            servers.dovecot.append(SUPPORT, corpus("latin1.eml"))
            await eventually(lambda: _count_inbound(rig, 2), "the second polled email")


def _email_from(sender: str, number: int) -> bytes:
    return (f"From: {sender}\r\nTo: {SUPPORT}\r\nSubject: Question {number}\r\n"
            f"Message-ID: <q{number}.{sender}>\r\n\r\nHello {number}\r\n").encode()


async def test_acknowledgements_are_limited_and_never_go_to_our_own_mailboxes(
        migrated_database_url: str, tmp_path: Path) -> None:
    async with running(migrated_database_url, tmp_path, None, start=False) as rig:
        for number in range(5):  # a robot without robot headers, each email a new ticket
            await rig.desk.receive(rig.mailbox_id, read_email(_email_from("bot@example.org",
                                                                          number)))
        await rig.desk.receive(rig.mailbox_id, read_email(_email_from(SUPPORT, 9)))
        acknowledgements = await rig.desk.outbox()
        assert [email.to for email in acknowledgements] == [("bot@example.org",)] * 3
        assert all(email.is_automatic for email in acknowledgements)
        assert len(await tickets(rig)) == 6


async def test_a_reply_stored_before_a_restart_is_sent_after_it(
        migrated_database_url: str, servers: MailServers, tmp_path: Path) -> None:
    async with running(migrated_database_url, tmp_path, servers, start=False) as rig:
        await rig.runtime.routing.run(lambda e: e.set_status(rig.alice, "available"))
        receipt = await rig.desk.receive(rig.mailbox_id, read_email(corpus("alternative.eml")))
        await rig.runtime.chats.accept(rig.alice, await offer_to(rig, receipt.task_id or "",
                                                                 rig.alice))
        await rig.desk.reply(rig.alice, receipt.conversation_id or "", "Sent after all.", "r1")
        assert [e.to for e in await rig.desk.outbox()] == [(MARIA,), (MARIA,)]
        assert servers.handler.envelopes == []
        # The process with the outbox is gone; a new service finds the emails and sends them.
        fresh = EmailService(rig.database, rig.center, None,
                             timing=EmailTiming(retry_base_s=0.05, retry_max_s=0.2))
        await fresh.start()
        try:
            raws = await eventually(lambda: _inbox(servers, MARIA, 2), "both emails delivered")
            assert all(str(parse_bytes(raw)["Subject"]).startswith("Re: ") for raw in raws)
            assert await (await fresh.desk(rig.seeded.tenant_id)).outbox() == []
        finally:
            await fresh.stop()


async def test_a_mailbox_without_a_queue_stores_nothing_and_says_why(
        migrated_database_url: str, tmp_path: Path) -> None:
    async with running(migrated_database_url, tmp_path, None, start=False) as rig:
        async with rig.database.session() as session:
            row = await EmailMailboxes(session, rig.seeded.tenant_id).get(rig.mailbox_id)
            row.queue_id = None
        with pytest.raises(InvalidConfiguration, match="has no queue"):
            await rig.desk.receive(rig.mailbox_id, read_email(corpus("latin1.eml")), imap_uid=1)
        assert await count(rig, EmailMessage) == 0
        async with rig.database.session() as session:
            row = await EmailMailboxes(session, rig.seeded.tenant_id).get(rig.mailbox_id)
            assert row.last_uid == 0  # it will be read again

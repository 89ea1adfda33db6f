"""Emails received in batches (a mailbox import): one transaction per batch, threading inside the
batch, all or nothing, flagged seen after the commit, progress told (issue 5, "Speed")."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from omnicc.app import emails as email_module
from omnicc.channels.email import service as service_module
from omnicc.channels.email.mime import read_email
from omnicc.cli import app
from omnicc.store.database import Database
from omnicc.store.repositories import EmailMailboxes, Queues, RoutingPolicies
from omnicc.store.tables import (
    Customer,
    EmailMailbox,
    EmailMessage,
    EmailTicket,
    Identity,
    Message,
    RoutingPolicy,
    Task,
)
from tests.integration.api.live import seed
from tests.integration.email.servers import MailServers
from tests.integration.email.test_email_flow import (
    SUPPORT,
    count,
    history,
    running,
    servers,  # noqa: F401 - the fixture
    tickets,
)

pytestmark = [pytest.mark.anyio,
              pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")]


def _email(number: int, *, sender: str = "ann@example.org", reply_to: int | None = None,
           subject: str = "") -> bytes:
    parent = f"<m{reply_to}@example.org>"
    threading = (f"In-Reply-To: {parent}\r\nReferences: {parent}\r\n"
                 if reply_to is not None else "")
    return (f"From: Ann <{sender}>\r\nTo: {SUPPORT}\r\nSubject: {subject or f'Question {number}'}"
            f"\r\nMessage-ID: <m{number}@example.org>\r\n{threading}\r\nText {number}\r\n"
            ).encode()


async def test_a_batch_threads_inside_itself_and_is_idempotent(migrated_database_url: str,
                                                                tmp_path: Path) -> None:
    async with running(migrated_database_url, tmp_path, None, start=False) as rig:
        batch = [(read_email(_email(1)), 11),
                 (read_email(_email(2, reply_to=1)), 12),  # answers the first, same batch
                 (read_email(_email(1)), 13),  # the first again (a second copy)
                 (read_email(_email(3)), 14)]  # a second ticket of the same new customer
        receipts = await rig.desk.receive_batch(rig.mailbox_id, batch, uid_validity=7)
        first, reply, again, other = receipts
        assert [r.is_new for r in receipts] == [True, True, False, True]
        assert reply.conversation_id == first.conversation_id == again.conversation_id
        assert reply.task_id is None  # the first email's task is still open
        assert other.conversation_id != first.conversation_id
        engine = rig.runtime.routing.engine
        assert {t.id for t in engine.tasks()} == {first.task_id, other.task_id}
        assert await count(rig, EmailTicket) == 2
        assert await count(rig, EmailMessage) == 3 + 2  # three received, two acknowledgements
        assert (await count(rig, Customer), await count(rig, Identity)) == (1, 1)
        texts = [m.text for m in await history(rig, first.conversation_id or "")]
        assert texts == ["Text 1", "Text 2"]
        async with rig.database.session() as session:
            mailbox = await EmailMailboxes(session, rig.seeded.tenant_id).get(rig.mailbox_id)
            assert (mailbox.last_uid, mailbox.uid_validity) == (14, 7)

        # the same batch again, and a later email answering the first by its reference
        assert not any(r.is_new for r in await rig.desk.receive_batch(rig.mailbox_id, batch))
        [ticket, _] = sorted(await tickets(rig), key=lambda t: t.created_at)
        later = await rig.desk.receive(rig.mailbox_id, read_email(_email(
            4, sender="bob@example.org", subject=f"Re: x [#{first.reference}]")))
        assert later.conversation_id == ticket.conversation_id == first.conversation_id


async def test_a_batch_that_fails_half_way_stores_nothing(migrated_database_url: str,
                                                          tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(migrated_database_url, tmp_path, None, start=False) as rig:
        batch = [(read_email(_email(n)), n) for n in range(1, 6)]
        real = email_module.EmailDesk._write_one
        written: list[int] = []

        async def crashing(self: email_module.EmailDesk, *args: object) -> object:
            written.append(1)
            if len(written) == 3:
                raise OSError("disk gone")
            return await real(self, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(email_module.EmailDesk, "_write_one", crashing)
        with pytest.raises(OSError, match="disk gone"):
            await rig.desk.receive_batch(rig.mailbox_id, batch, uid_validity=7)
        engine = rig.runtime.routing.engine
        assert list(engine.tasks()) == []
        for table in (EmailTicket, EmailMessage, Message, Customer):
            assert await count(rig, table) == 0
        async with rig.database.session() as session:
            mailbox = await EmailMailboxes(session, rig.seeded.tenant_id).get(rig.mailbox_id)
            assert mailbox.last_uid in (None, 0)

        monkeypatch.setattr(email_module.EmailDesk, "_write_one", real)
        receipts = await rig.desk.receive_batch(rig.mailbox_id, batch, uid_validity=7)
        assert all(r.is_new for r in receipts)
        assert len(list(engine.tasks())) == 5


async def test_an_import_goes_in_batches_flags_each_after_its_commit_and_tells_progress(
        migrated_database_url: str, servers: MailServers,  # noqa: F811 - the fixture
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_module, "RECEIVE_BATCH", 3)
    for number in range(1, 8):
        servers.dovecot.append(SUPPORT, _email(number, reply_to=1 if number == 4 else None))
    async with running(migrated_database_url, tmp_path, servers, start=False) as rig:
        told: list[tuple[int, int]] = []
        new = await rig.service.import_mailbox(rig.seeded.tenant_id, rig.mailbox_id,
                                               lambda done, total: told.append((done, total)))
        assert new == 7
        assert told == [(0, 7), (3, 7), (6, 7), (7, 7)]
        assert all(b"\\Seen" in flags for flags, _ in servers.dovecot.messages(SUPPORT))
        assert await count(rig, EmailTicket) == 6  # the fourth answers the first
        assert await rig.service.import_mailbox(rig.seeded.tenant_id, rig.mailbox_id) == 0
        assert await count(rig, EmailTicket) == 6


async def _seeded_mailbox(url: str, mail: MailServers) -> None:
    seeded = await seed(url)
    database = Database(url)
    try:
        async with database.session() as session:
            await EmailMailboxes(session, seeded.tenant_id).add(EmailMailbox(
                name="Acme Support", address=SUPPORT, queue_id=seeded.queues["support"],
                imap_host="127.0.0.1", imap_port=mail.dovecot.port, imap_security="plain",
                imap_username=SUPPORT, imap_password=mail.dovecot.password,
                smtp_host="127.0.0.1", smtp_port=9, smtp_security="plain"))
    finally:
        await database.dispose()


def test_the_command_line_import_reads_the_mailbox_once(
        migrated_database_url: str, servers: MailServers,  # noqa: F811 - the fixture
        tmp_path: Path) -> None:
    for number in range(1, 4):
        servers.dovecot.append(SUPPORT, _email(number))
    asyncio.run(_seeded_mailbox(migrated_database_url, servers))
    env = {"OMNICC_DATABASE_URL": migrated_database_url, "OMNICC_DATA_DIR": str(tmp_path)}
    runner = CliRunner()
    first = runner.invoke(app, ["email", "import", SUPPORT, "--quiet"], env=env)
    assert first.exit_code == 0, first.output
    assert "3 emails read, 3 new" in first.stdout
    again = runner.invoke(app, ["email", "import", "Acme Support", "--quiet"], env=env)
    assert "3 emails read, 0 new" in again.stdout
    assert all(b"\\Seen" in flags for flags, _ in servers.dovecot.messages(SUPPORT))
    unknown = runner.invoke(app, ["email", "import", "nobody@example.org"], env=env)
    assert unknown.exit_code != 0 and "no mailbox" in unknown.output


async def test_a_stored_ticket_answered_twice_in_a_batch_keeps_its_new_task(
        migrated_database_url: str, tmp_path: Path) -> None:
    async with running(migrated_database_url, tmp_path, None, start=False) as rig:
        first = await rig.desk.receive(rig.mailbox_id, read_email(_email(1)))
        await rig.runtime.routing.run(lambda engine: engine.cancel(first.task_id or ""))
        robot = b"Auto-Submitted: auto-replied\r\n" + _email(2, reply_to=1)
        [by_robot, by_customer] = await rig.desk.receive_batch(rig.mailbox_id, [
            (read_email(robot), None), (read_email(_email(3, reply_to=1)), None)])
        assert by_robot.task_id is None and by_customer.task_id is not None
        [ticket] = await tickets(rig)
        assert ticket.task_id == by_customer.task_id  # stored, not only planned
        assert rig.runtime.routing.engine.task(ticket.task_id or "").phase.value == "waiting"


async def test_emails_follow_their_queues_routing_policy(migrated_database_url: str,
                                                         tmp_path: Path) -> None:
    """A mailbox's queue with a policy (e.g. VIPs to their account manager first): the batch's
    tasks are made through the policy like a chat's or a call's."""
    async with running(migrated_database_url, tmp_path, None, start=False) as rig:
        async with rig.database.session() as session:
            mailbox = await EmailMailboxes(session, rig.seeded.tenant_id).get(rig.mailbox_id)
            queues = Queues(session, rig.seeded.tenant_id)
            queue = await queues.get(mailbox.queue_id or "")
            policy = await RoutingPolicies(session, rig.seeded.tenant_id).add(RoutingPolicy(
                name="account manager first",
                steps=[{"queue": queue.id, "agents": ["preferred"], "timeout_s": 60.0},
                       {"queue": queue.id}]))
            queue.policy_id = policy.id
            await queues.save(queue)
        await rig.runtime.routing.reload()
        receipts = await rig.desk.receive_batch(
            rig.mailbox_id, [(read_email(_email(n)), n) for n in (1, 2)], uid_validity=7)
        async with rig.database.session() as session:
            tasks = (await session.execute(select(Task))).scalars().all()
        assert {task.id for task in tasks} == {r.task_id for r in receipts}
        assert [task.policy_id for task in tasks] == [policy.id] * 2

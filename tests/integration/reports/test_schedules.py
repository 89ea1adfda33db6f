"""Scheduled reports by email through a real SMTP server (aiosmtpd): a daily schedule mails
the day's report once, a second pass (as after a restart) sends nothing again, a day later the
next day's report goes (nothing skipped), and a failed send is retried until it goes, once.
Also `omnicc reports rebuild` and `show`. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from datetime import datetime, timedelta
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from typer.testing import CliRunner

from omnicc.cli import app
from omnicc.reports.builder import ReportBuilder
from omnicc.reports.schedules import ReportMailer
from omnicc.store.database import Database
from omnicc.store.tables import EmailMailbox, ReportSchedule, ReportSend
from tests.integration.email.servers import free_port
from tests.integration.reports.day import DAY_START_S, run_day, set_up

ZONE = ZoneInfo("Europe/Helsinki")
DAY = datetime.fromtimestamp(DAY_START_S, ZONE).date()


class Inbox:
    """aiosmtpd handler keeping what it was given."""

    def __init__(self) -> None:
        self.received: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp() -> Any:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller, inbox
    finally:
        controller.stop()


def _local(day_offset: int, hour: int) -> datetime:
    return datetime.combine(DAY + timedelta(days=day_offset), datetime.min.time(),
                            ZONE).replace(hour=hour)


async def test_a_daily_report_is_mailed_once_per_day(database: Database, smtp: Any) -> None:
    controller, inbox = smtp
    center = await set_up(database)
    await run_day(database, center, length_s=2 * 3600.0)
    await ReportBuilder(database, center.tenant_id).catch_up()
    async with database.session() as session:
        mailbox = EmailMailbox(
            tenant_id=center.tenant_id, name="Support", address="support@acme.example",
            imap_host="127.0.0.1", imap_username="x", imap_password="x",
            smtp_host="127.0.0.1", smtp_port=9, smtp_security="plain")  # wrong port first
        session.add(mailbox)
        session.add(ReportSchedule(
            tenant_id=center.tenant_id, name="Daily queues", frequency="daily",
            recipients=["boss@example.com", "team@example.com"], dimension="queue",
            created_at=_local(0, 5)))
    mailer = ReportMailer(database, center.tenant_id)

    assert await mailer.send_due(_local(1, 0)) == []  # the day ended, the hour after not yet
    failed = await mailer.send_due(_local(1, 2))
    assert [(s.period, s.error is not None) for s in failed] == [(DAY, True)]
    assert inbox.received == []
    async with database.session() as session:
        (await session.execute(select(EmailMailbox))).scalar_one().smtp_port = controller.port

    sent = await ReportMailer(database, center.tenant_id).send_due(_local(1, 3))  # "restarted"
    assert [(s.period, s.error) for s in sent] == [(DAY, None)]
    assert await ReportMailer(database, center.tenant_id).send_due(_local(1, 4)) == []
    [(recipients, message)] = inbox.received
    assert recipients == ["boss@example.com", "team@example.com"]
    assert message["Subject"] == f"OmniCC report: Daily queues, {DAY.isoformat()}"
    body = next(part for part in message.walk() if part.get_content_type() == "text/plain")
    text = body.get_payload(decode=True).decode()
    assert "support" in text and "billing" in text and "Total" in text
    workbook = next(p for p in message.walk() if p.get_filename())
    assert "xl/worksheets/sheet1.xml" in zipfile.ZipFile(
        io.BytesIO(workbook.get_payload(decode=True))).namelist()

    later = await mailer.send_due(_local(3, 9))  # two days later: both days, in order
    assert [s.period for s in later] == [DAY + timedelta(days=1), DAY + timedelta(days=2)]
    async with database.session() as session:
        sends = (await session.execute(select(ReportSend).order_by(
            ReportSend.period_start))).scalars().all()
        assert [(s.period_start, s.state) for s in sends] == [
            (DAY + timedelta(days=n), "sent") for n in range(3)]
        assert sends[0].attempts == 2
    assert len(inbox.received) == 3
    assert len({m["Message-ID"] for _, m in inbox.received}) == 3


def test_the_command_line_rebuilds_and_shows(migrated_database_url: str, tmp_path: Path) -> None:
    async def play() -> str:
        database = Database(migrated_database_url)
        try:
            center = await set_up(database)
            await run_day(database, center, length_s=3600.0)
            return center.tenant_id
        finally:
            await database.dispose()

    asyncio.run(play())
    env = {"OMNICC_DATABASE_URL": migrated_database_url, "OMNICC_DATA_DIR": str(tmp_path)}
    runner = CliRunner()
    arguments = ["reports", "show", "--start", DAY.isoformat(), "--grain", "all", "--by",
                 "total", "--json"]
    shown = runner.invoke(app, arguments, env=env)
    assert shown.exit_code == 0, shown.output
    before = json.loads(shown.stdout)
    assert before[-1]["Period"] == "Total" and before[-1]["Offered"] > 20
    rebuilt = runner.invoke(app, ["reports", "rebuild"], env=env)
    assert rebuilt.exit_code == 0 and "acme:" in rebuilt.stdout
    assert json.loads(runner.invoke(app, arguments, env=env).stdout) == before
    table = runner.invoke(app, ["reports", "show", "--start", DAY.isoformat()], env=env)
    assert "support" in table.stdout
    wrong = runner.invoke(app, ["reports", "show", "--start", "2026-13-01"], env=env)
    assert wrong.exit_code == 2

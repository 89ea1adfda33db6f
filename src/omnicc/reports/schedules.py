"""Scheduled reports by email: each schedule mails the previous day's or week's report (per
its dimension, CSV-like summary in the body, XLSX attached) through the SMTP server of one of
the tenant's mailboxes.

Durable: a period's email is a `report_sends` row, unique per (schedule, period), committed
*before* the email goes out and marked sent after. A restart finds every period due since the
last row (none skipped) and never creates a second row for one (none doubled); the one window -
the process dies after the SMTP server took the email but before the row says so - resends
the same email with the same Message-ID, which mail clients show once.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.channels.email.service import smtp_account
from omnicc.channels.email.smtp import SmtpError, send
from omnicc.reports.exports import FIGURE_TITLES, RATIOS, report_xlsx
from omnicc.reports.queries import Report, ReportRequest, build_report, key_names, tenant_zone
from omnicc.store.database import Database
from omnicc.store.tables import EmailMailbox, ReportSchedule, ReportSend, utc_now

SEND_AFTER = timedelta(hours=1)
"""A period is mailed this long after it ends (local time), so late events are folded in."""
MAX_ATTEMPTS = 10
SUMMARY_FIGURES = ("offered", "handled", "abandonment_rate", "service_level_sl2", "asa_s",
                   "aht_s", "fcr_rate", "csat", "occupancy")


def period_start(day: date, frequency: str) -> date:
    return day - timedelta(days=day.weekday()) if frequency == "weekly" else day


def period_days(frequency: str) -> int:
    return 7 if frequency == "weekly" else 1


def periods_due(frequency: str, first: date, now: datetime, zone: ZoneInfo) -> list[date]:
    """Starts of the periods from the one holding `first` whose end (+ `SEND_AFTER`) has
    passed at `now`."""
    step = timedelta(days=period_days(frequency))
    start = period_start(first, frequency)
    due = []
    while datetime.combine(start + step, time(), zone) + SEND_AFTER <= now:
        due.append(start)
        start += step
    return due


@dataclass(frozen=True, slots=True)
class SentReport:
    schedule: str
    period: date
    error: str | None


class ReportMailer:
    """Sends a tenant's due scheduled reports."""

    def __init__(self, database: Database, tenant_id: str,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._database = database
        self._tenant_id = tenant_id
        self._ssl_context = ssl_context

    async def send_due(self, now: datetime | None = None) -> list[SentReport]:
        """Record every period now due, then send every pending one (oldest first)."""
        now = now or utc_now()
        await self._record_due(now)
        async with self._database.session() as session:
            pending = (await session.execute(
                select(ReportSend.id).join(ReportSchedule,
                                           ReportSchedule.id == ReportSend.schedule_id)
                .where(ReportSend.tenant_id == self._tenant_id, ReportSend.state == "pending",
                       ReportSchedule.is_enabled.is_(True))
                .order_by(ReportSend.period_start, ReportSend.id))).scalars().all()
        return [await self._send(send_id, now) for send_id in pending]

    async def _record_due(self, now: datetime) -> None:
        async with self._database.session() as session:
            zone = await tenant_zone(session, self._tenant_id)
            schedules = (await session.execute(select(ReportSchedule).where(
                ReportSchedule.tenant_id == self._tenant_id,
                ReportSchedule.is_enabled.is_(True)))).scalars().all()
            wanted: list[tuple[str, date]] = []
            for schedule in schedules:
                last = (await session.execute(select(func.max(ReportSend.period_start)).where(
                    ReportSend.schedule_id == schedule.id))).scalar_one()
                first = (last + timedelta(days=period_days(schedule.frequency)) if last
                         else schedule.created_at.astimezone(zone).date())
                wanted += [(schedule.id, start)
                           for start in periods_due(schedule.frequency, first, now, zone)]
        for schedule_id, start in wanted:
            try:
                async with self._database.session() as session:
                    session.add(ReportSend(tenant_id=self._tenant_id, schedule_id=schedule_id,
                                           period_start=start))
            except IntegrityError:
                continue  # another process recorded it first: one row per period

    async def _send(self, send_id: str, now: datetime) -> SentReport:
        async with self._database.session() as session:
            row = await session.get(ReportSend, send_id)
            assert row is not None
            schedule = await session.get(ReportSchedule, row.schedule_id)
            assert schedule is not None
            mailbox = await self._mailbox(session, schedule.mailbox_id)
            last_day = row.period_start + timedelta(days=period_days(schedule.frequency) - 1)
            request = ReportRequest(start=row.period_start, end=last_day, grain="all",
                                    dimension=schedule.dimension)
            report = await build_report(session, self._tenant_id, request)
            names = await key_names(session, self._tenant_id, schedule.dimension)
            row.message_id = row.message_id or f"<report.{row.id}@omnicc.invalid>"
            message = None if mailbox is None else compose_report(
                schedule.name, report, names, sender=mailbox.address,
                recipients=[str(r) for r in schedule.recipients], message_id=row.message_id,
                now=now)
            account = None if mailbox is None else smtp_account(mailbox, self._ssl_context)
            sender = "" if mailbox is None else mailbox.address
            schedule_name, period, recipients = schedule.name, row.period_start, [
                str(r) for r in schedule.recipients]
        error: str | None = None
        if message is None or account is None:
            error = "no enabled email mailbox to send from"
        else:
            try:
                await send(account, message, sender=sender, recipients=recipients)
            except SmtpError as failure:
                error = str(failure)[:1000]
        async with self._database.session() as session:
            row = await session.get(ReportSend, send_id)
            assert row is not None
            row.attempts += 1
            if error is None:
                row.state, row.sent_at, row.last_error = "sent", utc_now(), None
            else:
                row.last_error = error
                if row.attempts >= MAX_ATTEMPTS:
                    row.state = "failed"
        return SentReport(schedule_name, period, error)

    async def _mailbox(self, session: AsyncSession,
                       mailbox_id: str | None) -> EmailMailbox | None:
        statement = select(EmailMailbox).where(EmailMailbox.tenant_id == self._tenant_id,
                                               EmailMailbox.is_enabled.is_(True))
        if mailbox_id is not None:
            statement = statement.where(EmailMailbox.id == mailbox_id)
        return (await session.execute(statement.order_by(EmailMailbox.created_at)
                                      .limit(1))).scalar_one_or_none()


def _cell(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    if name in RATIOS:
        return f"{value:.1%}"
    if name.endswith("_s"):
        return f"{value:.0f} s"
    return f"{value:g}"


def compose_report(name: str, report: Report, names: dict[str, str], *, sender: str,
                   recipients: list[str], message_id: str, now: datetime) -> EmailMessage:
    """The email: a plain-text summary (the total, then each key) and the XLSX."""
    request = report.request
    span = (request.start.isoformat() if request.start == request.end
            else f"{request.start.isoformat()} to {request.end.isoformat()}")
    message = EmailMessage()
    message["Subject"] = f"OmniCC report: {name}, {span}"
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(now.astimezone(UTC))
    message["Message-ID"] = message_id
    width = max([12, *[len(names.get(r.key, r.key)) for r in report.rows]]) + 2
    lines = [f"{name}: {span} ({report.timezone}), by {request.dimension}.", "",
             "".ljust(width) + "".join(f"{FIGURE_TITLES[f][:14]:>16}" for f in SUMMARY_FIGURES)]
    for row in [*report.rows, report.total]:
        label = "Total" if not row.period else (names.get(row.key, row.key) or "(none)")
        lines.append(label[:width - 1].ljust(width) + "".join(
            f"{_cell(f, row.figures[f]):>16}" for f in SUMMARY_FIGURES))
    lines += ["", "SL2 is handled within the queue's threshold / (handled + abandoned after it);"
              " the attached workbook has every figure (definitions: OmniCC's docs/reports.md)."]
    message.set_content("\n".join(lines))
    message.add_attachment(report_xlsx(report, names, title=name), maintype="application",
                           subtype="vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                           filename=f"report-{request.start.isoformat()}.xlsx")
    return message

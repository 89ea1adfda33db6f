"""Historical reports over HTTP: totals and figures per period and key, CSV and XLSX exports,
the contacts behind a total, agent status intervals, and scheduled report emails.

Every read folds the event log's new events first (`ReportBuilder.catch_up`), so a report
includes everything committed before the request. Who may see the wallboard may see reports
and manage their schedules (supervisors and admins).
"""

from __future__ import annotations

from datetime import date, datetime
from importlib.resources import files
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from omnicc.api.auth import require_permission
from omnicc.api.database import request_database
from omnicc.app.permissions import Permission
from omnicc.app.principals import Principal
from omnicc.core.errors import Conflict, InvalidConfiguration, NotFound
from omnicc.reports.exports import FIGURE_TITLES, report_csv, report_xlsx
from omnicc.reports.queries import (
    DRILL_LIMIT,
    EARLIEST,
    FIGURES,
    LATEST,
    Report,
    ReportError,
    ReportRequest,
    ReportRow,
    agent_status_intervals,
    build_report,
    day_window,
    drill_down,
    key_names,
)
from omnicc.reports.service import ReportKeeper
from omnicc.store.tables import EmailMailbox, ReportSchedule, ReportSend

router = APIRouter(prefix="/api/reports", tags=["reports"])
Viewer = Annotated[Principal, Depends(require_permission(Permission.VIEW_WALLBOARD))]
Grain = Literal["15min", "30min", "60min", "day", "week", "month", "all"]
Dimension = Literal["total", "queue", "channel", "agent", "team", "disposition", "segment"]
Outcome = Literal["handled", "abandoned", "timed_out", "cancelled", "moved"]
ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"description": "Invalid range, grain or dimension; the problem says which."}}


def keeper(request: Request) -> ReportKeeper:
    """The server's keeper (started with the app), or one for this app made on first use."""
    found = getattr(request.app.state, "reports", None)
    if found is None:
        found = request.app.state.reports = ReportKeeper(request_database(request))
    assert isinstance(found, ReportKeeper)
    return found


class ReportQuery(BaseModel):
    """Days `start`..`end` inclusive, in the tenant's time zone."""

    start: date
    end: date
    grain: Grain = "day"
    dimension: Dimension = "total"
    key: list[str] = Field(default_factory=list, description="Only these keys.")

    def request(self) -> ReportRequest:
        return ReportRequest(start=self.start, end=self.end, grain=self.grain,
                             dimension=self.dimension, keys=tuple(self.key))


Query_ = Annotated[ReportQuery, Query()]


async def _report(request: Request, principal: Principal, query: ReportQuery,
                  *, overall: bool = False) -> tuple[Report, dict[str, str], Report | None]:
    """The report, its keys' names and (`overall`) the range's total of all contacts and
    agents, whatever the dimension (agent time counts in no queue or channel)."""
    await keeper(request).builder(principal.tenant_id).catch_up(surveys=False)
    async with request_database(request).session() as session:
        report = await build_report(session, principal.tenant_id, query.request())
        names = await key_names(session, principal.tenant_id, query.dimension)
        whole = None if not overall else await build_report(
            session, principal.tenant_id,
            ReportRequest(start=query.start, end=query.end, grain="all", dimension="total"))
    return report, names, whole


def _row(row: ReportRow, names: dict[str, str]) -> dict[str, Any]:
    return {"period": row.period, "key": row.key, "name": names.get(row.key, row.key),
            "figures": dict(row.figures), "totals": dict(row.totals)}


@router.get("", summary="Totals and figures per period and key", responses=ERRORS)
async def report(request: Request, principal: Viewer, query: Query_) -> dict[str, Any]:
    """Offered, handled, abandoned, service level (SL1, SL2, SL3), ASA, AHT, talk, hold and
    wrap-up, transfers, FCR, CSAT, occupancy and utilisation (METRICS.md), one row per period
    and key of the dimension, the total of all rows, and `overall`: the range's total of every
    contact and agent (occupancy and utilisation count per agent, team and overall only)."""
    built, names, whole = await _report(request, principal, query, overall=True)
    assert whole is not None
    first, last = day_window(query.start, query.end, ZoneInfo(built.timezone))
    return {"timezone": built.timezone, "start": query.start.isoformat(),
            "end": query.end.isoformat(), "window": [first.isoformat(), last.isoformat()],
            "grain": query.grain, "dimension": query.dimension,
            "figures": [{"name": f, "title": FIGURE_TITLES[f]} for f in FIGURES],
            "rows": [_row(row, names) for row in built.rows],
            "total": _row(built.total, names), "overall": _row(whole.total, {})}


def _filename(query: ReportQuery, suffix: str) -> str:
    return f"report-{query.dimension}-{query.start.isoformat()}-{query.end.isoformat()}.{suffix}"


@router.get("/export.csv", summary="The report as CSV", responses=ERRORS,
            response_class=Response)
async def export_csv(request: Request, principal: Viewer, query: Query_) -> Response:
    built, names, _ = await _report(request, principal, query)
    return Response(report_csv(built, names), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition":
                             f'attachment; filename="{_filename(query, "csv")}"'})


@router.get("/export.xlsx", summary="The report as an Excel workbook", responses=ERRORS,
            response_class=Response)
async def export_xlsx(request: Request, principal: Viewer, query: Query_) -> Response:
    built, names, _ = await _report(request, principal, query)
    return Response(
        report_xlsx(built, names),
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": f'attachment; filename="{_filename(query, "xlsx")}"'})


@router.get("/contacts", summary="The contacts behind a total (drill-down)", responses=ERRORS)
async def contacts(
    request: Request, principal: Viewer, query: Query_,
    period: Annotated[str | None, Query(description="A row's period; none: the whole range")]
    = None,
    row_key: Annotated[str | None, Query(description="A row's key of the dimension")] = None,
    outcome: Outcome | None = None,
) -> dict[str, Any]:
    """Each contact's task and conversation ids, queue, agent and what was measured; at most
    1000 (`truncated` says when there were more)."""
    await keeper(request).builder(principal.tenant_id).catch_up(surveys=False)
    async with request_database(request).session() as session:
        found = await drill_down(session, principal.tenant_id, query.request(), period=period,
                                 key=row_key, outcome=outcome, limit=DRILL_LIMIT + 1)
        queues = await key_names(session, principal.tenant_id, "queue")
        agents = await key_names(session, principal.tenant_id, "agent")
    return {"truncated": len(found) > DRILL_LIMIT, "contacts": [{
        "task_id": c.task_id, "visit": c.visit, "conversation_id": c.conversation_id,
        "contact_id": c.contact_id, "queue_id": c.queue_id,
        "queue": queues.get(c.queue_id, c.queue_id), "channel": c.channel,
        "agent_id": c.agent_id, "agent": agents.get(c.agent_id or "", c.agent_id),
        "team": c.team, "disposition": c.disposition, "segment": c.segment,
        "entered_at": c.entered_at.isoformat(), "outcome": c.outcome, "wait_s": c.wait_s,
        "talk_s": c.talk_s, "hold_s": c.hold_s, "wrap_s": c.wrap_s,
        "transferred": c.transferred, "csat_score": c.csat_score,
    } for c in found[:DRILL_LIMIT]]}


@router.get("/agent-statuses", summary="Agents' status intervals between two times")
async def agent_statuses(
    request: Request, principal: Viewer, start: datetime, end: datetime,
    agent: Annotated[list[str], Query(description="Only these agents")] = [],  # noqa: B006
) -> dict[str, Any]:
    """Login, ready, break and wrap-up periods (status and presence) clipped to the window;
    a status still lasting ends now."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ReportError("start and end need a UTC offset")
    if not all(EARLIEST.year < moment.year < LATEST.year for moment in (start, end)):
        raise ReportError(f"times from {EARLIEST} to {LATEST}")
    await keeper(request).builder(principal.tenant_id).catch_up(surveys=False)
    async with request_database(request).session() as session:
        intervals = await agent_status_intervals(session, principal.tenant_id, start, end,
                                                 agent)
        agents = await key_names(session, principal.tenant_id, "agent")
    return {"intervals": [{
        "agent_id": i.agent_id, "agent": agents.get(i.agent_id, i.agent_id),
        "status": i.status, "presence": i.presence, "reason": i.reason,
        "start": i.start.isoformat(), "end": i.end.isoformat()} for i in intervals]}


# --- scheduled reports ---------------------------------------------------------------------------

Address = Annotated[str, StringConstraints(strip_whitespace=True, max_length=320,
                                           pattern=r"^[^@\s<>,]+@[^@\s<>,]+\.[^@\s<>,]+$")]


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")
    recipients: list[Address] = Field(min_length=1, max_length=50)
    frequency: Literal["daily", "weekly"] = "daily"
    dimension: Dimension = "queue"
    mailbox_id: str | None = Field(default=None, description="Its SMTP server sends; none: "
                                   "the tenant's first enabled mailbox.")
    is_enabled: bool = True


def _schedule(row: ReportSchedule, sends: list[ReportSend] | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": row.id, "name": row.name, "recipients": list(row.recipients),
        "frequency": row.frequency, "dimension": row.dimension, "mailbox_id": row.mailbox_id,
        "is_enabled": row.is_enabled, "created_at": row.created_at.isoformat()}
    if sends is not None:
        view["sends"] = [{"period_start": s.period_start.isoformat(), "state": s.state,
                          "attempts": s.attempts, "last_error": s.last_error,
                          "sent_at": s.sent_at.isoformat() if s.sent_at else None}
                         for s in sends]
    return view


@router.get("/schedules", summary="Scheduled report emails, with their last sends")
async def list_schedules(request: Request, principal: Viewer) -> list[dict[str, Any]]:
    async with request_database(request).session() as session:
        rows = (await session.execute(select(ReportSchedule).where(
            ReportSchedule.tenant_id == principal.tenant_id)
            .order_by(ReportSchedule.name))).scalars().all()
        views = []
        for row in rows:
            sends = (await session.execute(select(ReportSend).where(
                ReportSend.schedule_id == row.id).order_by(ReportSend.period_start.desc())
                .limit(10))).scalars().all()
            views.append(_schedule(row, list(sends)))
    return views


@router.post("/schedules", status_code=201, summary="Email a report every day or week")
async def create_schedule(request: Request, principal: Viewer,
                          body: ScheduleIn) -> dict[str, Any]:
    async with request_database(request).session() as session:
        await _check_mailbox(session, principal, body.mailbox_id)
        row = ReportSchedule(tenant_id=principal.tenant_id, **body.model_dump())
        session.add(row)
        await _flush_named(session, body.name)
        return _schedule(row, [])


async def _check_mailbox(session: Any, principal: Principal, mailbox_id: str | None) -> None:
    if mailbox_id is None:
        return
    found = await session.get(EmailMailbox, mailbox_id)
    if found is None or found.tenant_id != principal.tenant_id:
        raise InvalidConfiguration(f"no email mailbox {mailbox_id}")


async def _flush_named(session: Any, name: str) -> None:
    try:
        await session.flush()
    except IntegrityError as error:
        raise Conflict(f"a report schedule is already named {name!r}") from error


async def _own_schedule(session: Any, principal: Principal, schedule_id: str) -> ReportSchedule:
    row = await session.get(ReportSchedule, schedule_id)
    if row is None or row.tenant_id != principal.tenant_id:
        raise NotFound(f"no report schedule {schedule_id}")
    assert isinstance(row, ReportSchedule)
    return row


@router.put("/schedules/{schedule_id}", summary="Change a scheduled report")
async def update_schedule(schedule_id: str, request: Request, principal: Viewer,
                          body: ScheduleIn) -> dict[str, Any]:
    async with request_database(request).session() as session:
        row = await _own_schedule(session, principal, schedule_id)
        await _check_mailbox(session, principal, body.mailbox_id)
        for name, value in body.model_dump().items():
            setattr(row, name, value)
        await _flush_named(session, body.name)
        return _schedule(row)


@router.delete("/schedules/{schedule_id}", status_code=204, summary="Stop a scheduled report")
async def delete_schedule(schedule_id: str, request: Request, principal: Viewer) -> None:
    async with request_database(request).session() as session:
        await session.delete(await _own_schedule(session, principal, schedule_id))


@router.get("/plotly.min.js", include_in_schema=False)
async def plotly_js() -> FileResponse:
    """plotly.js as shipped in the plotly wheel (no CDN)."""
    path = files("plotly") / "package_data" / "plotly.min.js"
    return FileResponse(str(path), media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})

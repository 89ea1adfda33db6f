"""Workforce management for supervisors: schedules built from a forecast, their coverage,
schedule adherence from the event log, and what-if simulations of a day.

A schedule is solved from a forecast per queue (volume and AHT per interval, what
`omnicc wfm forecast` produces) for the tenant's agents: each queue is a skill group, served by
the agents holding its `skill` (every agent when the queue names none). Solving and simulating
run in a worker thread, so the server keeps answering meanwhile. Same permission as the
wallboard: supervisors and admins.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field, model_validator

from omnicc.api.auth import require_permission
from omnicc.api.database import request_database
from omnicc.api.reports import keeper
from omnicc.app.permissions import Permission
from omnicc.app.principals import Principal
from omnicc.core.errors import InvalidConfiguration, NotFound
from omnicc.reports.queries import agent_status_intervals
from omnicc.store.repositories import Agents, Queues, Skills
from omnicc.store.tables import WfmSchedule
from omnicc.wfm.adherence import adherence
from omnicc.wfm.plans import (
    coverage_table,
    delete_schedule,
    get_schedule,
    iso,
    list_schedules,
    rules_from_dict,
    save_schedule,
    schedule_shifts,
    shift_to_dict,
    stored_requirement,
)
from omnicc.wfm.schedule import AgentPlan, ScheduleError, build_schedule
from omnicc.wfm.series import IntervalSeries
from omnicc.wfm.staffing import QueueDemand, ServiceTarget, staffing_requirement
from omnicc.wfm.whatif import duty_by_skills, what_if

router = APIRouter(prefix="/api/wfm", tags=["wfm"])
Planner = Annotated[Principal, Depends(require_permission(Permission.VIEW_WALLBOARD))]

MAX_INTERVALS = 14 * 96
MAX_LOAD_ERL = 5_000
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


class TargetIn(BaseModel):
    service_level: float = Field(default=0.8, gt=0, lt=1)
    threshold_s: float = Field(default=20.0, ge=0, le=3600)
    max_occupancy: float | None = Field(default=0.85, ge=0.1, le=1)
    shrinkage: float = Field(default=0.0, ge=0, le=0.9)
    patience_s: float | None = Field(default=None, ge=1, le=86_400)


class BreakIn(BaseModel):
    minutes: int = Field(gt=0)
    earliest_min: int = Field(ge=0)
    latest_min: int = Field(ge=0)


class ShiftIn(BaseModel):
    minutes: int = Field(gt=0, le=16 * 60)
    breaks: list[BreakIn] = Field(default_factory=list)


class RulesIn(BaseModel):
    shifts: list[ShiftIn] = Field(min_length=1)
    earliest_start_min: int = Field(default=6 * 60, ge=0, lt=1440)
    latest_start_min: int = Field(default=14 * 60, ge=0, lt=1440)
    start_step_min: int = Field(default=30, gt=0)
    max_days: int = Field(default=5, ge=1, le=7)
    min_rest_min: int = Field(default=11 * 60, ge=0)
    time_limit_s: float = Field(default=30.0, gt=0, le=60)


class QueueForecastIn(BaseModel):
    queue_id: str
    skill: str | None = None
    volume: list[Annotated[float, Field(ge=0, le=100_000)]] = Field(
        min_length=1, max_length=MAX_INTERVALS)
    aht_s: list[Annotated[float, Field(ge=0, le=14_400)]] = Field(
        min_length=1, max_length=MAX_INTERVALS)


class AvailabilityIn(BaseModel):
    """One agent's own limits: days off, the part of the day they can work (minutes, the end
    may pass midnight), their contract and days a week."""

    agent_id: str
    unavailable: list[date] = Field(default_factory=list, max_length=366)
    window: tuple[int, int] = (0, 2880)
    min_minutes: int | None = Field(default=None, ge=0)
    max_minutes: int | None = Field(default=None, gt=0)
    max_days: int | None = Field(default=None, ge=1, le=7)


class ScheduleIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    start: datetime
    interval_s: Literal[300, 600, 900, 1200, 1800, 3600] = 1800
    queues: list[QueueForecastIn] = Field(min_length=1, max_length=20)
    target: TargetIn = TargetIn()
    rules: RulesIn
    agent_ids: list[str] | None = None
    availability: list[AvailabilityIn] = Field(default_factory=list, max_length=2000)
    min_minutes: int = Field(default=0, ge=0)
    max_minutes: int = Field(default=40 * 60, gt=0)

    @model_validator(mode="after")
    def _aligned(self) -> ScheduleIn:
        lengths = {len(q.volume) for q in self.queues} | {len(q.aht_s) for q in self.queues}
        if len(lengths) != 1:
            raise ValueError("every queue's volume and aht_s need as many intervals")
        if self.start.tzinfo is None:
            raise ValueError("start needs a time zone (UTC)")
        if not EARLIEST <= self.start <= LATEST:
            raise ValueError("start must lie between 2000 and 2100")
        peak_erl = max(v * a / self.interval_s for q in self.queues
                       for v, a in zip(q.volume, q.aht_s, strict=True))
        if peak_erl > MAX_LOAD_ERL:
            raise ValueError(f"an interval's offered load ({peak_erl:.0f} Erlang) is more "
                             f"than one tenant's schedule covers ({MAX_LOAD_ERL} Erlang)")
        return self


class WhatIfIn(BaseModel):
    day: date | None = None


def _group_id(name: str) -> str:
    """A queue's name as a skill-group id the simulator's expressions accept."""
    token = re.sub(r"\W", "_", name.strip().lower()) or "queue"
    return token if token[0].isalpha() else f"q_{token}"


def _document(row: WfmSchedule) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "start": iso(row.start),
            "interval_s": row.interval_s, "intervals": row.intervals, "status": row.status,
            "summary": row.summary, "created_at": iso(row.created_at)}


@router.get("/options", summary="What a new schedule can name: queues and skills")
async def options(request: Request, principal: Planner) -> dict[str, Any]:
    async with request_database(request).session() as session:
        queues = await Queues(session, principal.tenant_id).list_all()
        skills = await Skills(session, principal.tenant_id).list_all()
        agents = await Agents(session, principal.tenant_id).list_all()
    return {"queues": [{"id": q.id, "name": q.name} for q in sorted(queues, key=lambda q: q.name)],
            "skills": sorted(s.name for s in skills), "agents": len(agents)}


@router.get("/schedules", summary="Schedules, the newest period first")
async def schedules(request: Request, principal: Planner) -> list[dict[str, Any]]:
    async with request_database(request).session() as session:
        return [_document(row) for row in await list_schedules(session, principal.tenant_id)]


@router.post("/schedules", status_code=201,
             summary="Staff a forecast and solve a schedule for the tenant's agents")
async def create_schedule(body: ScheduleIn, request: Request,
                          principal: Planner) -> dict[str, Any]:
    tenant_id = principal.tenant_id
    async with request_database(request).session() as session:
        queues = {q.id: q for q in await Queues(session, tenant_id).list_all()}
        agent_rows = await Agents(session, tenant_id).list_all()
    target = ServiceTarget(**body.target.model_dump())
    demands: list[QueueDemand] = []
    eligibility: dict[str, str | None] = {}
    for item in body.queues:
        queue = queues.get(item.queue_id)
        if queue is None:
            raise NotFound(f"queue {item.queue_id} not found")
        group = _group_id(queue.name)
        if group in eligibility:
            raise InvalidConfiguration(f"queue {queue.name!r} is given twice")
        eligibility[group] = item.skill
        series = IntervalSeries(body.start.astimezone(UTC), body.interval_s,
                                tuple(item.volume), tuple(item.aht_s))
        demands.append(QueueDemand(group, group, series, target))
    chosen = [a for a in agent_rows if body.agent_ids is None or a.id in body.agent_ids]
    if not chosen:
        raise InvalidConfiguration("no agent to schedule")
    limits = {item.agent_id: item for item in body.availability}
    staff = []
    for agent in chosen:
        own = limits.get(agent.id, AvailabilityIn(agent_id=agent.id))
        staff.append(AgentPlan(
            id=agent.id, name=agent.name,
            skills=frozenset(g for g, skill in eligibility.items()
                             if skill is None or skill in agent.skills),
            unavailable=frozenset(own.unavailable), window=own.window,
            min_minutes=body.min_minutes if own.min_minutes is None else own.min_minutes,
            max_minutes=body.max_minutes if own.max_minutes is None else own.max_minutes,
            max_days=own.max_days))
    rules = rules_from_dict(body.rules.model_dump())

    def solve() -> Any:
        requirement = staffing_requirement(demands, [a.skills for a in staff])
        return build_schedule(requirement, staff, rules)

    try:
        schedule = await asyncio.to_thread(solve)
    except (ScheduleError, ValueError) as error:
        raise InvalidConfiguration(str(error)) from None
    forecast = [{"queue": d.queue, "volume": list(d.series.volume),
                 "aht_s": list(d.series.aht_s), "target": body.target.model_dump()}
                for d in demands]
    async with request_database(request).session() as session:
        row = await save_schedule(session, tenant_id, body.name, schedule, rules, forecast)
        document = _document(row)
    return document


@router.get("/schedules/{schedule_id}",
            summary="A schedule: requirement against coverage per interval, and every shift")
async def schedule_detail(schedule_id: str, request: Request,
                          principal: Planner) -> dict[str, Any]:
    async with request_database(request).session() as session:
        row = await get_schedule(session, principal.tenant_id, schedule_id)
        shifts = await schedule_shifts(session, principal.tenant_id, schedule_id)
        names = {a.id: a.name for a in await Agents(session, principal.tenant_id).list_all()}
    requirement = stored_requirement(row)
    return {
        **_document(row),
        "rules": row.rules,
        "groups": row.requirement,
        "coverage": row.coverage,
        "rows": coverage_table(requirement, row.coverage),
        "agents": [{"id": agent_id, "name": names.get(agent_id, agent_id)}
                   for agent_id in sorted({s.agent_id for s in shifts},
                                          key=lambda i: names.get(i, i))],
        "shifts": [shift_to_dict(s) for s in shifts],
        "whatif": row.whatif,
    }


@router.delete("/schedules/{schedule_id}", status_code=204, summary="Delete a schedule")
async def remove_schedule(schedule_id: str, request: Request, principal: Planner) -> Response:
    async with request_database(request).session() as session:
        await delete_schedule(session, principal.tenant_id, schedule_id)
    return Response(status_code=204)


@router.get("/schedules/{schedule_id}/adherence",
            summary="Planned against actual status per agent: adherence, conformance and the "
                    "out-of-adherence periods")
async def schedule_adherence(schedule_id: str, request: Request, principal: Planner,
                             start: datetime | None = None, end: datetime | None = None,
                             grace_s: float = 0.0) -> dict[str, Any]:
    tenant_id = principal.tenant_id
    now = datetime.now(UTC)
    async with request_database(request).session() as session:
        row = await get_schedule(session, tenant_id, schedule_id)
        shifts = await schedule_shifts(session, tenant_id, schedule_id)
        names = {a.id: a.name for a in await Agents(session, tenant_id).list_all()}
    window_start = start or row.start
    window_end = end or min(now, row.start + timedelta(seconds=row.interval_s * row.intervals))
    if window_start.tzinfo is None or window_end.tzinfo is None or not (
            EARLIEST <= window_start < window_end <= LATEST):
        raise InvalidConfiguration("start and end need time zones, start before end, "
                                   "both between 2000 and 2100")
    # The reports' status periods, folded from the event log up to its newest event.
    await keeper(request).builder(tenant_id).catch_up(surveys=False)
    async with request_database(request).session() as session:
        spans = await agent_status_intervals(session, tenant_id, window_start, window_end,
                                             now=now)
    figures = adherence(shifts, spans, window_start, window_end, grace_s)
    return {
        "start": iso(window_start), "end": iso(window_end), "grace_s": grace_s,
        "agents": [{
            "agent_id": f.agent_id, "name": names.get(f.agent_id, f.agent_id),
            "scheduled_s": f.scheduled_s, "in_adherence_s": f.in_adherence_s,
            "adherence": f.adherence, "planned_work_s": f.planned_work_s,
            "worked_s": f.worked_s, "conformance": f.conformance,
            "out_of_adherence": [{"start": iso(o.start), "end": iso(o.end),
                                  "planned": o.planned, "actual": o.actual}
                                 for o in f.out_of_adherence],
        } for f in figures],
    }


@router.post("/schedules/{schedule_id}/whatif",
             summary="Simulate a day of the schedule on its forecast: service level per interval")
async def schedule_whatif(schedule_id: str, body: WhatIfIn, request: Request,
                          principal: Planner) -> dict[str, Any]:
    tenant_id = principal.tenant_id
    async with request_database(request).session() as session:
        row = await get_schedule(session, tenant_id, schedule_id)
        shifts = await schedule_shifts(session, tenant_id, schedule_id)
        forecast = list(row.forecast)
    requirement = stored_requirement(row)
    day = body.day or requirement.start.date()
    per_day = 86_400 // row.interval_s
    first = int((datetime.combine(day, datetime.min.time(), UTC) - row.start).total_seconds()
                ) // row.interval_s
    if not 0 <= first < row.intervals:
        raise InvalidConfiguration(f"{day} is not in the schedule")
    count = min(per_day, row.intervals - first)
    day_start = row.start + timedelta(seconds=first * row.interval_s)
    skills = {agent_id: frozenset(held)
              for agent_id, held in row.summary.get("agent_groups", {}).items()}
    demands = [QueueDemand(
        f["queue"], f["queue"],
        IntervalSeries(day_start, row.interval_s, tuple(f["volume"][first:first + count]),
                       tuple(f["aht_s"][first:first + count])),
        ServiceTarget(**f["target"])) for f in forecast]
    duty = {held: counts[first:first + count]
            for held, counts in duty_by_skills(requirement, shifts, skills).items()}
    result = await asyncio.to_thread(what_if, demands, duty)
    document = {
        "day": day.isoformat(), "service_level": result.service_level(),
        "simulations": result.simulations,
        "intervals": [{"start": iso(o.start), "offered_per_hour": o.offered_per_hour,
                       "agents": o.agents, "service_level": o.service_level,
                       "asa_s": o.asa_s, "p_abandon": o.p_abandon, "occupancy": o.occupancy}
                      for o in result.intervals],
    }
    async with request_database(request).session() as session:
        stored = await get_schedule(session, tenant_id, schedule_id)
        stored.whatif = document
    return document


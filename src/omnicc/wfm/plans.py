"""Schedules as documents and as rows: the JSON the CLI writes and the API returns, and the
`wfm_schedules`/`wfm_shifts` rows the supervisor's page and adherence read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.core.errors import NotFound
from omnicc.store.tables import WfmSchedule, WfmShift
from omnicc.wfm.schedule import (
    AgentPlan,
    Break,
    BreakRule,
    Schedule,
    ScheduleRules,
    Shift,
    ShiftRule,
)
from omnicc.wfm.staffing import GroupRequirement, Requirement, coverage_rows


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def rules_from_dict(data: Mapping[str, Any]) -> ScheduleRules:
    shifts = tuple(
        ShiftRule(int(s["minutes"]), tuple(BreakRule(int(b["minutes"]), int(b["earliest_min"]),
                                                     int(b["latest_min"]))
                                           for b in s.get("breaks", ())))
        for s in data["shifts"]
    )
    others = {key: value for key, value in data.items() if key != "shifts"}
    return ScheduleRules(shifts=shifts, **others)


def rules_to_dict(rules: ScheduleRules) -> dict[str, Any]:
    return asdict(rules)


def agent_to_dict(agent: AgentPlan) -> dict[str, Any]:
    return {"id": agent.id, "name": agent.name, "skills": sorted(agent.skills),
            "unavailable": sorted(d.isoformat() for d in agent.unavailable),
            "window": list(agent.window), "min_minutes": agent.min_minutes,
            "max_minutes": agent.max_minutes, "max_days": agent.max_days}


def agent_from_dict(data: Mapping[str, Any]) -> AgentPlan:
    window = data.get("window", (0, 2880))
    return AgentPlan(
        id=str(data["id"]),
        name=str(data.get("name", "")),
        skills=frozenset(str(s) for s in data.get("skills", ())),
        unavailable=frozenset(date.fromisoformat(str(d)) for d in data.get("unavailable", ())),
        window=(int(window[0]), int(window[1])),
        min_minutes=int(data.get("min_minutes", 0)),
        max_minutes=int(data.get("max_minutes", 2400)),
        max_days=None if data.get("max_days") is None else int(data["max_days"]),
    )


def requirement_to_list(requirement: Requirement) -> list[dict[str, Any]]:
    return [{"id": g.id, "skills": list(g.skills), "method": g.method,
             "required": list(g.required), "scheduled": list(g.scheduled),
             "floors": {skill: list(needs) for skill, needs in g.floors}}
            for g in requirement.groups]


def requirement_from_list(start: datetime, interval_s: int,
                          groups: Sequence[Mapping[str, Any]]) -> Requirement:
    return Requirement(start, interval_s, tuple(
        GroupRequirement(str(g["id"]), tuple(g["skills"]), g["method"],
                         tuple(int(n) for n in g["required"]),
                         tuple(int(n) for n in g["scheduled"]),
                         tuple((str(skill), tuple(int(n) for n in needs))
                               for skill, needs in g.get("floors", {}).items()))
        for g in groups))


def shift_to_dict(shift: Shift) -> dict[str, Any]:
    return {"agent_id": shift.agent_id, "day": shift.day.isoformat(),
            "start": iso(shift.start), "end": iso(shift.end),
            "breaks": [[iso(b.start), iso(b.end)] for b in shift.breaks],
            "paid_minutes": shift.paid_minutes}


def shift_from_dict(data: Mapping[str, Any]) -> Shift:
    return Shift(str(data["agent_id"]), date.fromisoformat(str(data["day"])),
                 parse_time(data["start"]), parse_time(data["end"]),
                 tuple(Break(parse_time(b[0]), parse_time(b[1])) for b in data["breaks"]))


def summary(schedule: Schedule) -> dict[str, Any]:
    return {"status": schedule.status, "objective": round(schedule.objective, 3),
            "under_staffed": round(schedule.under_staffed(), 3),
            "over_staffed": round(schedule.over_staffed(), 3),
            "shifts": len(schedule.shifts), "variables": schedule.variables,
            "wall_s": round(schedule.wall_s, 3)}


def schedule_document(schedule: Schedule, rules: ScheduleRules) -> dict[str, Any]:
    """Everything about a schedule in one JSON object: `omnicc wfm schedule --json` and
    `--out` write it, `omnicc wfm simulate --schedule` reads it back."""
    requirement = schedule.requirement
    return {
        "start": iso(requirement.start),
        "interval_s": requirement.interval_s,
        "intervals": len(requirement),
        "summary": summary(schedule),
        "rules": rules_to_dict(rules),
        "requirement": requirement_to_list(requirement),
        "coverage": {k: [round(v, 3) for v in values]
                     for k, values in schedule.coverage.items()},
        "agents": [agent_to_dict(a) for a in schedule.agents],
        "shifts": [shift_to_dict(s) for s in schedule.shifts],
    }


def coverage_table(requirement: Requirement,
                   coverage: Mapping[str, Sequence[float]]) -> list[dict[str, Any]]:
    """Per interval and group: needed, given and the difference (the API's and CLI's rows)."""
    return [{"start": iso(row.start), "group": row.group, "required": row.required,
             "covered": round(row.covered, 3), "difference": round(row.difference, 3)}
            for row in coverage_rows(requirement, {k: list(v) for k, v in coverage.items()})]


# --- rows ----------------------------------------------------------------------------------


async def save_schedule(session: AsyncSession, tenant_id: str, name: str, schedule: Schedule,
                        rules: ScheduleRules, forecast: list[dict[str, Any]]) -> WfmSchedule:
    """Store a schedule and its shifts; `forecast` is what a what-if will simulate again, and
    the groups each agent served are kept with the solver's figures."""
    requirement = schedule.requirement
    figures = {**summary(schedule),
               "agent_groups": {a.id: sorted(a.skills) for a in schedule.agents}}
    row = WfmSchedule(
        tenant_id=tenant_id, name=name, start=requirement.start,
        interval_s=requirement.interval_s, intervals=len(requirement),
        status=schedule.status, rules=rules_to_dict(rules), forecast=forecast,
        requirement=requirement_to_list(requirement),
        coverage={k: list(v) for k, v in schedule.coverage.items()},
        summary=figures, whatif=None,
    )
    session.add(row)
    await session.flush()
    session.add_all(
        WfmShift(tenant_id=tenant_id, schedule_id=row.id, agent_id=shift.agent_id,
                 day=shift.day, start_at=shift.start, end_at=shift.end,
                 breaks=[[iso(b.start), iso(b.end)] for b in shift.breaks])
        for shift in schedule.shifts)
    await session.flush()
    return row


async def list_schedules(session: AsyncSession, tenant_id: str) -> list[WfmSchedule]:
    return list((await session.execute(
        select(WfmSchedule).where(WfmSchedule.tenant_id == tenant_id)
        .order_by(WfmSchedule.start.desc(), WfmSchedule.created_at.desc()))).scalars())


async def get_schedule(session: AsyncSession, tenant_id: str, schedule_id: str) -> WfmSchedule:
    row = (await session.execute(select(WfmSchedule).where(
        WfmSchedule.tenant_id == tenant_id, WfmSchedule.id == schedule_id))).scalar_one_or_none()
    if row is None:
        raise NotFound(f"schedule {schedule_id} not found")
    return row


async def delete_schedule(session: AsyncSession, tenant_id: str, schedule_id: str) -> None:
    await get_schedule(session, tenant_id, schedule_id)
    await session.execute(delete(WfmShift).where(WfmShift.tenant_id == tenant_id,
                                                 WfmShift.schedule_id == schedule_id))
    await session.execute(delete(WfmSchedule).where(WfmSchedule.tenant_id == tenant_id,
                                                    WfmSchedule.id == schedule_id))


async def schedule_shifts(session: AsyncSession, tenant_id: str,
                          schedule_id: str) -> list[Shift]:
    rows = (await session.execute(select(WfmShift).where(
        WfmShift.tenant_id == tenant_id, WfmShift.schedule_id == schedule_id)
        .order_by(WfmShift.agent_id, WfmShift.start_at))).scalars()
    return [Shift(row.agent_id, row.day, row.start_at, row.end_at,
                  tuple(Break(parse_time(b[0]), parse_time(b[1])) for b in row.breaks))
            for row in rows]


def stored_requirement(row: WfmSchedule) -> Requirement:
    return requirement_from_list(row.start, row.interval_s, row.requirement)

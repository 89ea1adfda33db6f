"""Workforce plans: schedules (the requirement they cover, their coverage, their what-if) and
the shifts of named agents, which the supervisor's page and schedule adherence read."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from omnicc.store.tables.accounts import TenantOwned
from omnicc.store.tables.base import (
    ID_LENGTH,
    Base,
    JsonList,
    JsonObject,
    created_column,
    id_column,
)


class WfmSchedule(TenantOwned, Base):
    """One solved schedule over `intervals` intervals of `interval_s` from `start` (UTC).

    `forecast` holds each queue's volume and AHT per interval and its target (what-if runs on
    it again), `requirement` the groups' required and scheduled agents per interval,
    `coverage` the agents the shifts give each group, `rules` the rules it was solved under,
    `summary` the solver's figures; `whatif` the latest simulated day, if any.
    """

    __tablename__ = "wfm_schedules"
    __table_args__ = (Index("ix_wfm_schedules_start", "tenant_id", "start"),)

    id: Mapped[str] = id_column()
    name: Mapped[str] = mapped_column(String(200))
    start: Mapped[datetime]
    interval_s: Mapped[int]
    intervals: Mapped[int]
    status: Mapped[str] = mapped_column(String(16))
    rules: Mapped[dict[str, Any]] = mapped_column(JsonObject, default=dict)
    forecast: Mapped[list[Any]] = mapped_column(JsonList, default=list)
    requirement: Mapped[list[Any]] = mapped_column(JsonList, default=list)
    coverage: Mapped[dict[str, Any]] = mapped_column(JsonObject, default=dict)
    summary: Mapped[dict[str, Any]] = mapped_column(JsonObject, default=dict)
    whatif: Mapped[dict[str, Any] | None] = mapped_column(JsonObject)
    created_at: Mapped[datetime] = created_column()


class WfmShift(TenantOwned, Base):
    """An agent's shift in a schedule; `breaks` is a list of [start, end] ISO times."""

    __tablename__ = "wfm_shifts"
    __table_args__ = (
        Index("ix_wfm_shifts_schedule", "tenant_id", "schedule_id"),
        Index("ix_wfm_shifts_agent", "tenant_id", "agent_id", "start_at"),
    )

    id: Mapped[str] = id_column()
    schedule_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("wfm_schedules.id", ondelete="CASCADE"))
    agent_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("agents.id", ondelete="CASCADE"))
    day: Mapped[date]
    start_at: Mapped[datetime]
    end_at: Mapped[datetime]
    breaks: Mapped[list[Any]] = mapped_column(JsonList, default=list)

"""Calls lost in a restart: their SIP dialogs and media died with the old process.

The routing tasks of calls come back from the store (`RoutingService` restores every open
task), but nobody is on the line any more: an inbound call's task restored assigned would keep
its agent busy for ever, one restored waiting or offered would wait for a caller who is gone,
and their call records would stay `in_progress`. At start, before any SIP is answered, the
voice service ends them (`end_lost_calls`):

- a task in line (waiting, offered) is **cancelled** with the reason `LOST_REASON`, not
  abandoned: the caller did not choose to leave, so abandonment rate and service level (which
  count the customers' own abandons) are not charged with our crash; it stays offered,
  so SL3 (handled within T / offered) counts it against, as any unserved call;
- an assigned task **completes** as hung up by the system: the agent did talk, and wrap-up is
  where they note what was said and that the line dropped;
- callback tasks (`callback` attribute) are not calls yet: `Callbacks.recover` puts them back
  in line; the agents' own outbound calls are `OutboundCalls.recover`'s;
- every call record left open gets `ended_at` (the restart: the real end is unknown),
  `hangup_side` "system", the outcome `lost_in_restart` if it had none yet (an answered
  call stays `answered`: it was handled) and `details.lost_in_restart`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from omnicc.app.voice import VOICE, VoiceContact
from omnicc.core.model import TaskPhase
from omnicc.store.tables import CallRecord, Task

if TYPE_CHECKING:
    from omnicc.app.runtime import ContactCenter
    from omnicc.store.database import Database

log = logging.getLogger("omnicc.voice.recovery")

LOST_REASON = "the call was lost in a restart"
LOST_OUTCOME = "lost_in_restart"
LIVE_PHASES = (TaskPhase.WAITING, TaskPhase.OFFERED, TaskPhase.ASSIGNED)


@dataclass(slots=True)
class LostCalls:
    """What `end_lost_calls` ended."""

    cancelled: int = 0
    """Inbound calls that were waiting or ringing an agent."""
    completed: int = 0
    """Inbound calls an agent was talking on (their wrap-up follows)."""
    records: int = 0
    """Call records left open (any direction)."""


async def end_lost_calls(database: Database, center: ContactCenter, since: float) -> LostCalls:
    """End the inbound calls whose tasks were created before `since` (POSIX seconds: this
    process's start) and close every call record started before it."""
    lost = LostCalls()
    async with database.session() as session:
        rows = await session.execute(select(Task.tenant_id).where(
            Task.phase.in_([phase.value for phase in LIVE_PHASES]),
            Task.channel == VOICE).distinct())
        tenant_ids = list(rows.scalars())
    for tenant_id in tenant_ids:
        runtime = await center.tenant(tenant_id)
        for task in list(runtime.routing.engine.tasks()):
            if (task.channel != VOICE or task.phase not in LIVE_PHASES
                    or task.initiated_by is not None or task.attributes.get("callback")
                    or task.created_at >= since):
                continue
            assigned = task.phase is TaskPhase.ASSIGNED
            await runtime.voice.hung_up(VoiceContact(
                conversation_id=task.conversation_id or "",
                contact_id=str(task.attributes.get("contact_id", "")), customer_id="",
                task_id=task.id, queue_id=task.queue_id), side="system", lost=LOST_REASON)
            if assigned:
                lost.completed += 1
            else:
                lost.cancelled += 1
    lost.records = await _close_records(database, datetime.fromtimestamp(since, UTC))
    return lost


async def _close_records(database: Database, before: datetime) -> int:
    now = datetime.now(UTC)
    async with database.session() as session:
        rows = list((await session.execute(select(CallRecord).where(
            CallRecord.ended_at.is_(None), CallRecord.started_at < before))).scalars())
        for row in rows:
            row.ended_at = now
            row.hangup_side = "system"
            if row.outcome == "in_progress":
                row.outcome = LOST_OUTCOME
            row.details = {**(row.details or {}), "lost_in_restart": now.isoformat()}
    return len(rows)

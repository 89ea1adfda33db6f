"""Keeps a tenant's report tables up to date with its event log: incremental, resumable,
rebuildable.

Each batch of events after the tenant's cursor is folded (`fold.VisitFold`) in one transaction
that writes the visits and status periods it changed, adds its deltas to the 15-minute and daily
totals and moves the cursor - compare-and-set, so two builders racing on one tenant (two
readers, two processes) cannot count a batch twice: the loser rolls back and reads again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import asdict, fields
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Table, and_, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.reports.fold import (
    DEFAULT_SHORT_ABANDON_S,
    DEFAULT_THRESHOLD_S,
    FCR_WINDOW,
    Deltas,
    LoggedEvent,
    QueueRules,
    StatusPeriod,
    TaskFacts,
    Visit,
    VisitFold,
    mark_repeat,
    task_facts,
    visit_keys,
)
from omnicc.store.database import Database
from omnicc.store.tables import (
    Agent,
    CallRecord,
    Contact,
    Event,
    Queue,
    ReportAgentStatus,
    ReportContact,
    ReportCursor,
    ReportDay,
    ReportInterval,
    Task,
    Tenant,
    utc_now,
)
from omnicc.store.tables.reports import MEASURES

BATCH_EVENTS = 5000
MAX_CONTENDED = 5
CSAT_LOOKBACK = timedelta(days=7)
"""How long after a contact its survey answer is still taken into the totals."""
_VISIT_COLUMNS = tuple(f.name for f in fields(Visit))
_IN_CHUNK = 500


class CursorMoved(RuntimeError):
    """Another builder folded the same events first; this batch was rolled back."""


class ReportBuilder:
    """Folds one tenant's new events into its report tables."""

    def __init__(self, database: Database, tenant_id: str) -> None:
        self._database = database
        self._tenant_id = tenant_id
        self._lock = asyncio.Lock()

    async def catch_up(self, *, batch_events: int = BATCH_EVENTS, surveys: bool = True) -> int:
        """Fold every event not folded yet; returns how many were folded by this call.

        `surveys` also takes survey answers given since (a scan of the last week's handled
        contacts: the server's keeper does it once a minute, a read does not wait for it)."""
        folded = 0
        contended = 0
        async with self._lock:
            while True:
                try:
                    count = await self._fold_batch(batch_events)
                except CursorMoved:
                    continue
                except DBAPIError:
                    # Another process folding or writing at the same moment: SQLite's stale
                    # snapshot ("database is locked") or a PostgreSQL deadlock. The batch was
                    # rolled back; try again a few times, then let the error through.
                    contended += 1
                    if contended > MAX_CONTENDED:
                        raise
                    await asyncio.sleep(0.05 * contended)
                    continue
                folded += count
                if count < batch_events:
                    break
            if surveys:
                await self.take_surveys()
        return folded

    async def rebuild(self) -> int:
        """Drop the tenant's report rows and fold its whole event log again."""
        async with self._lock, self._database.session() as session:
            for table in (ReportContact, ReportAgentStatus, ReportInterval, ReportDay,
                          ReportCursor):
                await session.execute(delete(table).where(table.tenant_id == self._tenant_id))
        return await self.catch_up()

    # --- one batch ------------------------------------------------------------------------------

    async def _fold_batch(self, limit: int) -> int:
        tenant_id = self._tenant_id
        async with self._database.session() as session:
            cursor = await session.get(ReportCursor, tenant_id)
            last_seq = 0 if cursor is None else cursor.last_seq
            rows = (await session.execute(
                select(Event.seq, Event.type, Event.at, Event.payload)
                .where(Event.tenant_id == tenant_id, Event.seq > last_seq)
                .order_by(Event.seq).limit(limit))).all()
            if not rows:
                return 0
            events = [LoggedEvent(seq, kind, at, payload) for seq, kind, at, payload in rows]
            fold = await self._fold_for(session, events)
            for event in events:
                fold.apply(event)
            await self._look_back_for_repeats(session, fold)
            await self._write(session, fold)
            await self._move_cursor(session, cursor is None, last_seq, events[-1].seq)
        return len(events)

    async def _fold_for(self, session: AsyncSession, events: list[LoggedEvent]) -> VisitFold:
        """A fold with the visits, task facts and status periods the batch's events touch."""
        tenant_id = self._tenant_id
        task_ids = {str(e.payload["task_id"]) for e in events if "task_id" in e.payload}
        created = {str(e.payload["task_id"]) for e in events if e.type == "task.created"}
        agent_ids = {str(e.payload["agent_id"]) for e in events
                     if e.type == "agent.status_changed"}
        visits: dict[str, Visit] = {}
        for chunk in _chunks(task_ids):
            for row in (await session.execute(select(ReportContact).where(
                    ReportContact.tenant_id == tenant_id,
                    ReportContact.task_id.in_(chunk)))).scalars():
                known = visits.get(row.task_id)
                if known is None or row.visit > known.visit:
                    visits[row.task_id] = _visit(row)
        facts: dict[str, TaskFacts] = {
            task_id: TaskFacts(channel=v.channel, conversation_id=v.conversation_id,
                               contact_id=v.contact_id, customer_key=v.customer_key,
                               segment=v.segment)
            for task_id, v in visits.items()}
        missing = task_ids - created - facts.keys()
        for chunk in _chunks(missing):
            for task_row in (await session.execute(select(Task).where(
                    Task.tenant_id == tenant_id, Task.id.in_(chunk)))).scalars():
                facts[task_row.id] = task_facts(task_row.attributes, task_row.channel,
                                                task_row.conversation_id)
        periods: dict[str, StatusPeriod] = {}
        for chunk in _chunks(agent_ids):
            for period in (await session.execute(select(ReportAgentStatus).where(
                    ReportAgentStatus.tenant_id == tenant_id,
                    ReportAgentStatus.agent_id.in_(chunk),
                    ReportAgentStatus.ended_at.is_(None)))).scalars():
                periods[period.agent_id] = StatusPeriod(
                    seq=period.seq, agent_id=period.agent_id, status=period.status,
                    presence=period.presence, reason=period.reason,
                    started_at=period.started_at)
        contact_ids = {f.contact_id for f in facts.values() if f.contact_id} | {
            str(e.payload["attributes"]["contact_id"]) for e in events
            if e.type == "task.created" and (e.payload.get("attributes") or {}).get("contact_id")}
        hold_s: dict[str, float] = {}
        for chunk in _chunks(contact_ids):
            for contact_id, held in (await session.execute(
                    select(CallRecord.contact_id, func.sum(CallRecord.hold_s))
                    .where(CallRecord.tenant_id == tenant_id, CallRecord.contact_id.in_(chunk))
                    .group_by(CallRecord.contact_id))).all():
                hold_s[str(contact_id)] = float(held or 0.0)
        rules = {row.id: QueueRules(
            threshold_s=float(row.config.get("sl_threshold_s", DEFAULT_THRESHOLD_S)),
            short_abandon_s=float(row.config.get("short_abandon_s", DEFAULT_SHORT_ABANDON_S)))
            for row in (await session.execute(select(Queue).where(
                Queue.tenant_id == tenant_id))).scalars()}
        teams = {agent_id: str(attributes.get("team") or "")[:64]
                 for agent_id, attributes in (await session.execute(
                     select(Agent.id, Agent.attributes).where(
                         Agent.tenant_id == tenant_id))).all()}
        return VisitFold(zone=await self._zone(session), visits=visits, facts=facts,
                         periods=periods, rules=rules, teams=teams, hold_s=hold_s)

    async def _zone(self, session: AsyncSession) -> ZoneInfo:
        name = (await session.execute(select(Tenant.timezone).where(
            Tenant.id == self._tenant_id))).scalar_one()
        return ZoneInfo(name or "UTC")

    async def _look_back_for_repeats(self, session: AsyncSession, fold: VisitFold) -> None:
        """FCR: stored handled contacts of this batch's new contacts' customers, not in memory."""
        if not fold.new_contacts:
            return
        in_memory = {(v.task_id, v.visit) for v in fold.visits.values()}
        earliest = min(at for _, at in fold.new_contacts) - FCR_WINDOW
        by_customer: dict[str, list[datetime]] = {}
        for customer, at in fold.new_contacts:
            by_customer.setdefault(customer, []).append(at)
        for chunk in _chunks(by_customer):
            rows = (await session.execute(select(ReportContact).where(
                ReportContact.tenant_id == self._tenant_id,
                ReportContact.customer_key.in_(chunk),
                ReportContact.ended_at >= earliest, ReportContact.outcome == "handled",
                ReportContact.transferred.is_(False),
                ReportContact.fcr_repeat.is_(False)))).scalars().all()
            for row in rows:
                if (row.task_id, row.visit) in in_memory:
                    continue
                visit = _visit(row)
                if any(mark_repeat(visit, at, fold.deltas)
                       for at in by_customer[row.customer_key or ""]):
                    fold.changed_visits[(visit.task_id, visit.visit)] = visit

    async def _write(self, session: AsyncSession, fold: VisitFold) -> None:
        tenant_id = self._tenant_id
        await _upsert(session, ReportContact.__table__, [
            {"tenant_id": tenant_id, **asdict(v)} for v in fold.changed_visits.values()],
            ("tenant_id", "task_id", "visit"))
        await _upsert(session, ReportAgentStatus.__table__, [
            {"tenant_id": tenant_id, **asdict(p)} for p in fold.changed_periods.values()],
            ("tenant_id", "seq"))
        await add_deltas(session, tenant_id, fold.deltas)

    async def _move_cursor(self, session: AsyncSession, is_new: bool, last_seq: int,
                           seq: int) -> None:
        if is_new:
            session.add(ReportCursor(tenant_id=self._tenant_id, last_seq=seq))
            try:
                await session.flush()
            except IntegrityError as error:  # a concurrent first batch took the primary key
                raise CursorMoved(f"tenant {self._tenant_id}: report cursor created") from error
            return
        moved = await session.execute(
            update(ReportCursor)
            .where(ReportCursor.tenant_id == self._tenant_id, ReportCursor.last_seq == last_seq)
            .values(last_seq=seq, updated_at=utc_now()))
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            raise CursorMoved(f"tenant {self._tenant_id}: report cursor moved past {last_seq}")

    # --- survey answers arrive after the contact ------------------------------------------------

    async def take_surveys(self) -> int:
        """CSAT: surveys answered since the contacts were counted add to their totals once."""
        tenant_id = self._tenant_id
        async with self._database.session() as session:
            since = utc_now() - CSAT_LOOKBACK
            rows = (await session.execute(
                select(ReportContact, Contact.csat_score)
                .join(Contact, and_(Contact.id == ReportContact.contact_id,
                                    Contact.tenant_id == tenant_id))
                .where(ReportContact.tenant_id == tenant_id, ReportContact.is_final.is_(True),
                       ReportContact.outcome == "handled", ReportContact.transferred.is_(False),
                       ReportContact.csat_score.is_(None), ReportContact.ended_at >= since,
                       Contact.csat_score.is_not(None)))).all()
            if not rows:
                return 0
            deltas = Deltas(await self._zone(session))
            for row, score in rows:
                row.csat_score = int(score or 0)
                deltas.add(row.entered_at, visit_keys(_visit(row)),
                           {"csat_answers": 1, "csat_good": int(row.csat_score >= 4)})
            await add_deltas(session, tenant_id, deltas)
        return len(rows)


async def add_deltas(session: AsyncSession, tenant_id: str, deltas: Deltas) -> None:
    """Add a batch's deltas to the 15-minute and daily totals (insert or add)."""
    await _upsert(session, ReportInterval.__table__, [
        {"tenant_id": tenant_id, "dimension": dimension, "start": start, "key": key,
         **_full(measures)} for (dimension, start, key), measures in deltas.intervals.items()],
        ("tenant_id", "dimension", "start", "key"), add=MEASURES)
    await _upsert(session, ReportDay.__table__, [
        {"tenant_id": tenant_id, "dimension": dimension, "day": day, "key": key,
         **_full(measures)} for (dimension, day, key), measures in deltas.days.items()],
        ("tenant_id", "dimension", "day", "key"), add=MEASURES)


async def _upsert(session: AsyncSession, table: Any, rows: Sequence[dict[str, Any]],
                  keys: tuple[str, ...], add: Iterable[str] = ()) -> None:
    """Insert rows; on a key conflict add the `add` columns and overwrite the others."""
    if not rows:
        return
    assert isinstance(table, Table)
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    added = set(add)
    values = {name: (table.c[name] + insert.excluded[name]) if name in added
              else insert.excluded[name]
              for name in rows[0] if name not in keys}
    await session.execute(insert.on_conflict_do_update(index_elements=list(keys), set_=values),
                          list(rows))


def _full(measures: dict[str, float]) -> dict[str, float]:
    return {name: measures.get(name, 0) for name in MEASURES}


def _visit(row: ReportContact) -> Visit:
    return Visit(**{name: getattr(row, name) for name in _VISIT_COLUMNS})


def _chunks(values: Iterable[str]) -> Iterable[list[str]]:
    listed = sorted(values)
    for start in range(0, len(listed), _IN_CHUNK):
        yield listed[start:start + _IN_CHUNK]

"""Call recordings on disk: where a call's WAV is, and how long it is kept.

Recordings live under `<data_dir>/recordings` (rtpengine's raw pcaps and metadata in `raw/`);
`call_records.recording_path` names a call's WAV relative to that directory. A path is only
ever followed inside it: a row that names anything else (an absolute path, `..`, a symbolic
link out) is refused, so a bad row cannot serve or delete another file of the server.

Retention: a call's recording goes when the call started longer ago than its tenant keeps
recordings - the tenant's own `recording_retention_days` when set (0: forever), else the
installation's setting; its row stays, without the path, and says when the recording expired.
Files no row names go by their age: under a tenant's directory (`<tenant id>/`) by the
tenant's retention, elsewhere (rtpengine's pcaps and metadata in `raw/`, orphans) by the
installation's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.channels.voice.media.recordings import delete_older_than
from omnicc.store.database import Database
from omnicc.store.repositories import Contacts, Tenants
from omnicc.store.tables import CallRecord

log = logging.getLogger("omnicc.recordings")

RECORDINGS = "recordings"
DAY_S = 86_400.0
RETRY_S = 3_600.0
BATCH = 500


def recordings_dir(data_dir: Path) -> Path:
    return data_dir / RECORDINGS


def recording_file(base: Path, relative: str) -> Path | None:
    """The file a row's `recording_path` names, or None when it resolves outside `base`."""
    root = base.resolve()
    target = (root / relative).resolve()
    return target if target != root and target.is_relative_to(root) else None


def recording_url(record: CallRecord) -> str | None:
    """Where the call's recording is played (`GET /api/recordings/{id}`), None without one."""
    return f"/api/recordings/{record.id}" if record.recording_path else None


async def handled_by(session: AsyncSession, tenant_id: str, record: CallRecord,
                     agent_id: str) -> bool:
    """Whether the agent took part in the call: its agent, or an agent of a contact in its
    conversation (a transfer's). Such an agent may hear the recording; other agents may not."""
    if record.agent_id == agent_id:
        return True
    if record.conversation_id is None:
        return False
    contacts = await Contacts(session, tenant_id).of_conversation(record.conversation_id)
    return any(contact.agent_id == agent_id for contact in contacts)


async def retention_days(database: Database, days: int) -> dict[str, int]:
    """Each tenant's retention in days (0: forever): its own, or the installation's `days`."""
    async with database.session() as session:
        tenants = await Tenants(session).list_all()
    return {tenant.id: days if tenant.recording_retention_days is None
            else tenant.recording_retention_days for tenant in tenants}


async def expire_recordings(database: Database, base: Path, days: int, *,
                            now: datetime | None = None) -> int:
    """Delete the recordings of calls that started longer ago than their tenant keeps them
    (`days` unless the tenant has its own retention; 0 keeps everything) and clear their
    rows' paths, then older leftover files; returns how many calls lost their recording."""
    at = now or datetime.now(UTC)
    kept = await retention_days(database, days)
    expired = 0
    for tenant_id, tenant_days in kept.items():
        if tenant_days > 0:
            expired += await _expire_calls(database, base, tenant_id,
                                           at - timedelta(days=tenant_days), at)
            if (base / tenant_id).is_dir():
                await asyncio.to_thread(delete_older_than, base / tenant_id, tenant_days,
                                        now=at.timestamp())
    if days > 0 and base.is_dir():
        for child in base.iterdir():
            if child.is_dir() and child.name not in kept:
                await asyncio.to_thread(delete_older_than, child, days, now=at.timestamp())
    if expired:
        log.info("recordings: %d expired (installation retention %d days, %d tenants with "
                 "their own)", expired, days, sum(1 for d in kept.values() if d != days))
    return expired


async def _expire_calls(database: Database, base: Path, tenant_id: str, cutoff: datetime,
                        at: datetime) -> int:
    """One tenant's calls that started before `cutoff`: their WAVs go, their rows say so."""
    expired = 0
    while True:
        async with database.session() as session:
            rows = list((await session.execute(
                select(CallRecord)
                .where(CallRecord.tenant_id == tenant_id,
                       CallRecord.recording_path.is_not(None), CallRecord.started_at < cutoff)
                .order_by(CallRecord.started_at, CallRecord.id).limit(BATCH))).scalars())
            for row in rows:
                assert row.recording_path is not None
                path = recording_file(base, row.recording_path)
                if path is None:
                    log.warning("call record %s names a recording outside %s; path cleared",
                                row.id, base)
                else:
                    path.unlink(missing_ok=True)
                row.recording_path = None
                row.details = {**row.details, "recording_expired_at": at.isoformat()}
        expired += len(rows)
        if len(rows) < BATCH:
            return expired


async def _every_day(database: Database, base: Path, days: int, every_s: float) -> None:
    while True:
        try:
            await expire_recordings(database, base, days)
            wait = every_s
        except Exception as error:  # the database may be away for a while: try again sooner
            log.warning("recordings: retention run failed (%s); retrying", error)
            wait = min(every_s, RETRY_S)
        await asyncio.sleep(wait)


@asynccontextmanager
async def recording_retention(database: Database, base: Path, days: int, *,
                              every_s: float = DAY_S) -> AsyncIterator[None]:
    """While the block runs (the server's life): expire recordings at once, then daily (also
    when the installation keeps them forever: a tenant may have its own retention)."""
    task = asyncio.create_task(_every_day(database, base, days, every_s),
                               name="recording-retention")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

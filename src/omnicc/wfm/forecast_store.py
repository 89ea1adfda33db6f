"""History for forecasting from OmniCC's own store: a queue's offered contacts and AHT per
interval, as the report tables (`omnicc.reports`) hold them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.core.errors import NotFound
from omnicc.reports.queries import queue_interval_series
from omnicc.store.database import Database
from omnicc.store.repositories import Queues, Tenants
from omnicc.wfm.forecast_history import HistoryError
from omnicc.wfm.series import IntervalSeries


async def queue_history(session: AsyncSession, tenant_id: str, queue: str, *, days: int,
                        end: datetime) -> IntervalSeries:
    """`days` whole UTC days of a queue (by id or name) up to the midnight at or before `end`."""
    if days < 1:
        raise HistoryError(f"the history must cover at least one day, got {days}")
    queues = Queues(session, tenant_id)
    found = await queues.find(queue)
    if found is None:
        try:
            found = await queues.by_name(queue)
        except NotFound:
            raise HistoryError(f"no queue with id or name {queue!r}") from None
    last = datetime.combine(end.astimezone(UTC).date(), datetime.min.time(), UTC)
    return await queue_interval_series(session, tenant_id, found.id,
                                       last - timedelta(days=days), last)


def load_queue_history(database_url: str, queue: str, *, tenant: str | None = None,
                       days: int = 56, end: datetime | None = None) -> IntervalSeries:
    """A queue's history read from the database at `database_url` (tenant by slug, or the only
    one), ending at the last midnight before `end` (default: now)."""

    async def run() -> IntervalSeries:
        database = Database(database_url)
        try:
            async with database.session() as session:
                listed = await Tenants(session).list_all()
                chosen = [t for t in listed if tenant is None or t.slug == tenant]
                if len(chosen) != 1:
                    raise HistoryError(
                        f"no tenant {tenant!r}" if tenant is not None and not chosen
                        else "no tenant" if not chosen
                        else "several tenants exist: name one with --tenant")
                return await queue_history(session, chosen[0].id, queue, days=days,
                                           end=end or datetime.now(UTC))
        finally:
            await database.dispose()

    return asyncio.run(run())

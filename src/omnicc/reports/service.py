"""Reports in the running server: every tenant's report tables kept folded, and scheduled
reports sent.

Reads also fold before answering (`ReportBuilder.catch_up`), so a report is always as fresh
as the log; this loop keeps the work a read does small (at most a minute of events) and is
what sends scheduled emails when nobody reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator

from sqlalchemy import select

from omnicc.reports.builder import ReportBuilder
from omnicc.reports.schedules import ReportMailer
from omnicc.store.database import Database
from omnicc.store.tables import Tenant

log = logging.getLogger(__name__)
PASS_EVERY_S = 60.0


class ReportKeeper:
    """One `ReportBuilder` per tenant (shared by the API's reads and the loop)."""

    def __init__(self, database: Database, ssl_context: ssl.SSLContext | None = None) -> None:
        self._database = database
        self._ssl_context = ssl_context
        self._builders: dict[str, ReportBuilder] = {}

    def builder(self, tenant_id: str) -> ReportBuilder:
        builder = self._builders.get(tenant_id)
        if builder is None:
            builder = self._builders[tenant_id] = ReportBuilder(self._database, tenant_id)
        return builder

    async def run_once(self) -> None:
        """Fold every tenant's new events, then send its due scheduled reports."""
        async with self._database.session() as session:
            tenant_ids = list((await session.execute(select(Tenant.id))).scalars())
        for tenant_id in tenant_ids:
            await self.builder(tenant_id).catch_up()
            for sent in await ReportMailer(self._database, tenant_id,
                                           self._ssl_context).send_due():
                log.info("scheduled report", extra={
                    "tenant_id": tenant_id, "schedule": sent.schedule,
                    "period": sent.period.isoformat(), "error": sent.error})

    async def run(self, every_s: float = PASS_EVERY_S) -> None:
        """A pass every `every_s`, the first one after a pause: start-up has enough to do."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.run_once()
            except Exception:  # a database outage must not end the loop
                log.exception("report pass failed")


@contextlib.asynccontextmanager
async def report_keeping(database: Database) -> AsyncIterator[ReportKeeper]:
    """Run the keeper's loop while the server runs."""
    keeper = ReportKeeper(database)
    task = asyncio.create_task(keeper.run(), name="reports")
    try:
        yield keeper
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

"""Forecasting from OmniCC's own history: a queue's report intervals read back as whole days,
resampled, and forecast through `omnicc wfm forecast --queue`, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from omnicc.cli import app
from omnicc.store.database import Database
from omnicc.store.repositories import Queues, Tenants
from omnicc.store.tables import Queue, ReportInterval
from omnicc.wfm.forecast import forecast
from omnicc.wfm.forecast_history import HistoryError, resample
from omnicc.wfm.forecast_store import load_queue_history

FIRST_DAY = datetime(2026, 10, 5, tzinfo=UTC)  # a Monday
DAYS = 21
END = FIRST_DAY + timedelta(days=DAYS, hours=13)  # mid-day: that day is not read


async def seed(url: str) -> None:
    """Weekdays 09:00-17:00: 4 offered per 15 minutes (6 on Mondays), all handled, 300 s each
    (talk 240 + hold 20 + wrap-up 40); a second queue and the `total` row are not read."""
    database = Database(url)
    try:
        async with database.session() as session:
            tenant = await Tenants(session).create("acme", "Acme")
            support = await Queues(session, tenant.id).add(Queue(name="support"))
            other = await Queues(session, tenant.id).add(Queue(name="billing"))
            rows = []
            for day in range(DAYS):
                start = FIRST_DAY + timedelta(days=day)
                if start.weekday() >= 5:
                    continue
                offered = 6 if start.weekday() == 0 else 4
                for slot in range(36, 68):
                    at = start + timedelta(minutes=15 * slot)
                    for dimension, key in (("queue", support.id), ("queue", other.id),
                                           ("total", "")):
                        rows.append(ReportInterval(
                            tenant_id=tenant.id, dimension=dimension, key=key, start=at,
                            offered=offered, handled=offered, talk_s=240.0 * offered,
                            hold_s=20.0 * offered, wrap_s=40.0 * offered))
            session.add_all(rows)
    finally:
        await database.dispose()


def test_queue_history_and_forecast(migrated_database_url: str) -> None:
    asyncio.run(seed(migrated_database_url))
    history = load_queue_history(migrated_database_url, "support", tenant="acme", days=DAYS,
                                 end=END)
    assert history.start == FIRST_DAY and history.interval_s == 900
    assert len(history) == DAYS * 96
    assert sum(history.volume) == 3 * (6 + 4 * 4) * 32
    assert set(history.aht_s) == {0.0, 300.0}

    half_hours = resample(history, 1800)
    assert len(half_hours) == DAYS * 48 and max(half_hours.volume) == 12
    plan = forecast(half_hours, 7, model="seasonal-naive")
    assert plan.start == FIRST_DAY + timedelta(days=DAYS)
    assert sum(plan.volume) == (6 + 4 * 4) * 32

    with pytest.raises(HistoryError, match="no queue"):
        load_queue_history(migrated_database_url, "sales", tenant="acme", days=7, end=END)
    with pytest.raises(HistoryError, match="no tenant"):
        load_queue_history(migrated_database_url, "support", tenant="nope", days=7, end=END)

    # The command, on the configured database; history up to last midnight of the real clock,
    # so read back far enough to reach the seeded weeks.
    back = (datetime.now(UTC) - FIRST_DAY).days + 1
    result = CliRunner(env={"OMNICC_DATABASE_URL": migrated_database_url}).invoke(app, [
        "wfm", "forecast", "--queue", "support", "--tenant", "acme", "--history", f"{back}d",
        "--horizon", "1d", "--interval", "1h", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["interval_s"] == 3600 and payload["intervals"] == 24

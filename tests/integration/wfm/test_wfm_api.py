"""Workforce planning through the API on SQLite and PostgreSQL: a schedule solved from a
forecast for the tenant's agents, stored, read back with its coverage, adherence from the
event log, a what-if day, permissions and deletion."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.api.live import Browser, LiveServer, Seeded, live_server, seed

pytestmark = pytest.mark.anyio


@pytest.fixture
def seeded(migrated_database_url: str) -> Seeded:
    return asyncio.run(seed(migrated_database_url))


@pytest.fixture
def server(migrated_database_url: str, seeded: Seeded, tmp_path: Path) -> Iterator[LiveServer]:
    yield from live_server(migrated_database_url, tmp_path / "data")


async def test_schedule_coverage_adherence_and_whatif(server: LiveServer, seeded: Seeded) -> None:
    sam = await Browser(server, "sam").login()
    alice = await Browser(server, "alice").login()
    # Alice works a little, so the event log has statuses to compare the plan with.
    assert (await alice.http.put("/api/desk/status", json={"status": "available"})).is_success
    assert (await alice.http.put("/api/desk/status", json={"status": "break"})).is_success

    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    body = {
        "name": "Today", "start": midnight.isoformat(), "interval_s": 3600,
        # Two calls an hour of 180 s: one agent meets 80/20, all day long.
        "queues": [{"queue_id": seeded.queues["support"], "volume": [2.0] * 24,
                    "aht_s": [180.0] * 24}],
        "rules": {"shifts": [{"minutes": 480, "breaks": [
            {"minutes": 60, "earliest_min": 180, "latest_min": 240}]}],
            "earliest_start_min": 0, "latest_start_min": 960, "start_step_min": 60},
    }
    assert (await alice.http.post("/api/wfm/schedules", json=body)).status_code == 403
    created = await sam.http.post("/api/wfm/schedules", json=body)
    assert created.status_code == 201, created.text
    schedule_id = created.json()["id"]
    listed = (await sam.http.get("/api/wfm/schedules")).json()
    assert [s["id"] for s in listed] == [schedule_id]

    detail = (await sam.http.get(f"/api/wfm/schedules/{schedule_id}")).json()
    (group,) = detail["groups"]
    assert group["required"] == [1] * 24 and group["method"] == "erlang_c"
    # Two agents, one 8-hour shift a day each with an hour's break: 14 of 24 hours covered.
    shifts = detail["shifts"]
    assert {s["agent_id"] for s in shifts} == {seeded.agents["alice"], seeded.agents["bob"]}
    assert all(s["paid_minutes"] == 420 for s in shifts)
    assert sum(r["covered"] for r in detail["rows"]) == 14
    assert detail["summary"]["under_staffed"] == 10
    assert len(detail["rows"]) == 24 and {a["name"] for a in detail["agents"]} == {"Alice", "Bob"}

    adherence = (await sam.http.get(f"/api/wfm/schedules/{schedule_id}/adherence",
                                    params={"start": midnight.isoformat(),
                                            "end": (midnight + timedelta(days=1)).isoformat()})
                 ).json()
    by_name = {a["name"]: a for a in adherence["agents"]}
    assert set(by_name) == {"Alice", "Bob"}
    # Alice was available for a moment: worked time, wherever her shift is.
    assert by_name["Alice"]["worked_s"] > 0
    assert by_name["Bob"]["worked_s"] == 0
    assert by_name["Bob"]["conformance"] == 0.0
    for figures in by_name.values():
        assert 0 <= figures["in_adherence_s"] <= figures["scheduled_s"] <= 8 * 3600

    whatif = await sam.http.post(f"/api/wfm/schedules/{schedule_id}/whatif", json={})
    assert whatif.status_code == 200, whatif.text
    day = whatif.json()
    assert day["day"] == midnight.date().isoformat() and len(day["intervals"]) == 24
    covered = {r["start"] for r in detail["rows"] if r["covered"] > 0}
    for outcome in day["intervals"]:
        if outcome["start"] in covered:
            assert outcome["agents"] == 1 and outcome["service_level"] > 0.8
        else:
            assert outcome["agents"] == 0 and outcome["service_level"] == 0.0
    again = (await sam.http.get(f"/api/wfm/schedules/{schedule_id}")).json()
    assert again["whatif"]["service_level"] == day["service_level"]

    # Bob's day off: Alice alone, within her hours.
    body["name"] = "Bob off"
    body["availability"] = [{"agent_id": seeded.agents["bob"],
                             "unavailable": [midnight.date().isoformat()]},
                            {"agent_id": seeded.agents["alice"], "window": [600, 1200]}]
    created = await sam.http.post("/api/wfm/schedules", json=body)
    assert created.status_code == 201, created.text
    alone = (await sam.http.get(f"/api/wfm/schedules/{created.json()['id']}")).json()
    (shift,) = alone["shifts"]
    assert shift["agent_id"] == seeded.agents["alice"]
    assert shift["start"] >= midnight.replace(hour=10).isoformat().replace("+00:00", "Z")
    assert shift["end"] <= midnight.replace(hour=20).isoformat().replace("+00:00", "Z")

    page = await sam.http.get("/wfm")
    assert page.status_code == 200 and "Workforce" in page.text
    assert (await sam.http.delete(f"/api/wfm/schedules/{schedule_id}")).status_code == 204
    assert (await sam.http.get(f"/api/wfm/schedules/{schedule_id}")).status_code == 404
    await sam.close()
    await alice.close()

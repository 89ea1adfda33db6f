"""Reports over real HTTP on SQLite and PostgreSQL, from contacts made through the real
widget and desk: a chat handled, wrapped up and rated in support, one abandoned in billing.
A read folds the newest events first; a second builder (as another process would) counts
nothing twice and takes the survey answer; drill-down, exports, permissions, schedules."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import websockets

from omnicc.reports.builder import ReportBuilder
from omnicc.store.database import Database
from tests.integration.api.live import Browser, LiveServer, Seeded, live_server, receive, seed

pytestmark = pytest.mark.anyio


@pytest.fixture
def seeded(migrated_database_url: str) -> Seeded:
    return asyncio.run(seed(migrated_database_url))


@pytest.fixture
def server(migrated_database_url: str, seeded: Seeded, tmp_path: Path) -> Iterator[LiveServer]:
    yield from live_server(migrated_database_url, tmp_path / "data")


async def customer(server: LiveServer, queue_id: str, text: str) -> tuple[Any, dict[str, Any]]:
    ws = await websockets.connect(server.ws_url + "/api/chat/ws?tenant=acme")
    await ws.send(json.dumps({"type": "hello", "visitor": None, "name": "Carol"}))
    await receive(ws, "welcome")
    await ws.send(json.dumps({"type": "start", "queue_id": queue_id, "text": text, "id": "1",
                              "name": "Carol"}))
    return ws, await receive(ws, "chat")


def by_key(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row["figures"] for row in report["rows"]}


async def test_reports_from_real_contacts(server: LiveServer, seeded: Seeded,
                                          migrated_database_url: str) -> None:
    alice = await Browser(server, "alice").login()
    sam = await Browser(server, "sam").login()
    await alice.http.put("/api/desk/status", json={"status": "available"})
    async with alice.socket("/api/desk/ws") as desk:
        await receive(desk, "state")
        carol, chat = await customer(server, seeded.queues["support"], "my bill")
        offer = await receive(desk, "offer.created")
        assert (await alice.http.post(f"/api/desk/offers/{offer['offer_id']}/accept")
                ).status_code == 200
        ended = await alice.http.post(f"/api/desk/conversations/{chat['conversation_id']}/end")
        task_id = ended.json()["tasks"][0]["task_id"]
        gone = await receive(carol, "chat_ended")
        await carol.send(json.dumps({"type": "rate", "contact_id": gone["contact_id"],
                                     "score": 5}))
        await receive(carol, "rated")
        wrapped = await alice.http.post(f"/api/desk/tasks/{task_id}/wrap-up",
                                        json={"code": "solved"})
        assert wrapped.status_code == 200, wrapped.text
        await carol.close()
    await alice.http.put("/api/desk/status", json={"status": "offline"})
    dave, _ = await customer(server, seeded.queues["billing"], "hello?")
    await dave.send(json.dumps({"type": "leave"}))
    await receive(dave, "chat_ended")
    await dave.close()

    today = datetime.now(ZoneInfo("Europe/Helsinki")).date().isoformat()
    query = {"start": today, "end": today, "grain": "day", "dimension": "queue"}
    assert (await alice.http.get("/api/reports", params=query)).status_code == 403
    report = (await sam.http.get("/api/reports", params=query)).json()
    rows = by_key(report)
    assert (rows["support"]["offered"], rows["support"]["handled"]) == (1, 1)
    assert (rows["billing"]["offered"], rows["billing"]["abandoned"]) == (1, 1)
    assert report["overall"]["figures"]["offered"] == 2
    assert report["overall"]["figures"]["logged_in_s"] > 0  # alice's time, not a queue's
    assert rows["support"]["csat_answers"] == 0  # surveys are the keeper's, once a minute

    # Another builder on the same tables (as a second process would): nothing twice.
    database = Database(migrated_database_url)
    try:
        assert await ReportBuilder(database, seeded.tenant_id).catch_up() == 0
    finally:
        await database.dispose()
    again = by_key((await sam.http.get("/api/reports", params=query)).json())
    assert again["support"]["offered"] == 1
    assert (again["support"]["csat"], again["support"]["csat_answers"]) == (1.0, 1)

    support = seeded.queues["support"]
    drilled = (await sam.http.get("/api/reports/contacts", params={
        **query, "period": today, "row_key": support})).json()
    [contact] = drilled["contacts"]
    assert contact["conversation_id"] == chat["conversation_id"] and contact["agent"] == "Alice"
    assert contact["task_id"] == task_id and contact["disposition"] == "solved"
    codes = (await sam.http.get("/api/reports", params={**query, "dimension": "disposition"})
             ).json()
    assert by_key(codes)["Solved"]["handled"] == 1
    exported = await sam.http.get("/api/reports/export.csv", params=query)
    assert exported.headers["content-type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(exported.text)))
    assert lines[-1][0] == "Total" and lines[-1][2] == "2"
    bad = await sam.http.get("/api/reports", params={**query, "grain": "15min",
                                                    "end": "2099-01-01"})
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"

    schedule = {"name": "Daily", "recipients": ["boss@example.com"], "frequency": "daily"}
    created = await sam.http.post("/api/reports/schedules", json=schedule)
    assert created.status_code == 201, created.text
    assert (await sam.http.post("/api/reports/schedules", json=schedule)).status_code == 409
    foreign = await sam.http.post("/api/reports/schedules",
                                  json={**schedule, "name": "x", "mailbox_id": "nope"})
    assert foreign.status_code == 422
    changed = await sam.http.put(f"/api/reports/schedules/{created.json()['id']}",
                                 json={**schedule, "frequency": "weekly"})
    assert changed.json()["frequency"] == "weekly"
    [listed] = (await sam.http.get("/api/reports/schedules")).json()
    assert listed["sends"] == []
    deleted = await sam.http.delete(f"/api/reports/schedules/{listed['id']}")
    assert deleted.status_code == 204
    plotly = await sam.http.get("/api/reports/plotly.min.js")
    assert plotly.status_code == 200 and "plotly" in plotly.text[:2000].lower()
    for browser in (alice, sam):
        await browser.close()

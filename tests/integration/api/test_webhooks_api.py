"""Webhook subscriptions over REST and the WebSocket event stream, on a real server, on SQLite
and PostgreSQL: a status change in the agent desk reaches a CRM's endpoint and the stream, and
the stream resumes from a seq without a gap or a repeat."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from fastapi.testclient import TestClient
from sqlalchemy import select
from starlette.websockets import WebSocketDisconnect

from omnicc.api.app import create_app
from omnicc.app.tokens import digest_api_token, generate_api_token
from omnicc.bus import Bus, Notice
from omnicc.config import load_settings
from omnicc.store.database import Database
from omnicc.store.repositories import ApiTokens
from omnicc.store.tables import ApiToken, Event
from tests.integration.api.live import Browser, LiveServer, Seeded, live_server, seed
from tests.integration.webhook_receiver import Receiver, running_receiver

pytestmark = pytest.mark.anyio

WAIT_S = 10.0


@pytest.fixture
def seeded(migrated_database_url: str) -> Seeded:
    return asyncio.run(seed(migrated_database_url))


@pytest.fixture
def server(migrated_database_url: str, seeded: Seeded, tmp_path: Path) -> Iterator[LiveServer]:
    yield from live_server(migrated_database_url, tmp_path / "data")


async def api_token(url: str, tenant_id: str, role: str) -> str:
    secret = generate_api_token()
    database = Database(url)
    try:
        async with database.session() as session:
            await ApiTokens(session, tenant_id).add(ApiToken(
                name=f"crm-{role}", role=role, token_hash=digest_api_token(secret)))
    finally:
        await database.dispose()
    return secret


async def logged_seqs(url: str) -> list[int]:
    database = Database(url)
    try:
        async with database.session() as session:
            return list((await session.execute(select(Event.seq).order_by(Event.seq))).scalars())
    finally:
        await database.dispose()


async def next_event(ws: Any) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
    return frame


async def test_a_subscription_receives_desk_events_signed(
        server: LiveServer, seeded: Seeded) -> None:
    ada, sam, alice = [await Browser(server, name).login() for name in ("ada", "sam", "alice")]
    assert (await sam.http.get("/api/webhooks")).status_code == 403
    refused = await ada.http.post("/api/webhooks", json={"url": "http://x.test/",
                                                         "event_types": ["Task created"]})
    assert refused.status_code == 422

    receivers = running_receiver("unset")
    receiver: Receiver = next(receivers)
    try:
        created = await ada.http.post("/api/webhooks", json={
            "url": receiver.url, "event_types": ["agent.*"]})
        assert created.status_code == 201
        subscription = created.json()
        receiver.secret = subscription["secret"]
        listed = (await ada.http.get("/api/webhooks")).json()
        assert [s["id"] for s in listed] == [subscription["id"]]
        assert "secret" not in listed[0]

        changed = await alice.http.put("/api/desk/status", json={"status": "available"})
        assert changed.status_code == 200
        assert await asyncio.to_thread(receiver.arrived.wait, WAIT_S)
        ((key, envelope),) = receiver.requests
        assert envelope["type"] == "agent.status_changed"
        assert envelope["data"]["agent_id"] == seeded.agents["alice"]
        assert key == f"{subscription['id']}.{envelope['seq']}"
        assert receiver.bad_signatures == 0

        deliveries: list[dict[str, Any]] = []
        for _ in range(int(WAIT_S / 0.05)):  # the row is marked right after the 2xx
            deliveries = (await ada.http.get(
                f"/api/webhooks/{subscription['id']}/deliveries")).json()
            if deliveries and deliveries[0]["state"] == "delivered":
                break
            await asyncio.sleep(0.05)
        assert [(d["idempotency_key"], d["state"], d["attempts"]) for d in deliveries] == [
            (key, "delivered", 1)]

        rotated = (await ada.http.post(
            f"/api/webhooks/{subscription['id']}/rotate-secret")).json()
        assert rotated["secret"] != subscription["secret"]
        receiver.secret = rotated["secret"]
        tested = (await ada.http.post(f"/api/webhooks/{subscription['id']}/test")).json()
        assert (tested["delivered"], tested["status_code"]) == (True, 200)
        assert receiver.requests[-1][1]["type"] == "webhook.test"

        paused = await ada.http.patch(f"/api/webhooks/{subscription['id']}",
                                      json={"is_enabled": False})
        assert paused.json()["is_enabled"] is False
        assert (await ada.http.delete(f"/api/webhooks/{subscription['id']}")).status_code == 204
        assert (await ada.http.get(f"/api/webhooks/{subscription['id']}")).status_code == 404
    finally:
        receivers.close()
        for browser in (ada, sam, alice):
            await browser.close()


async def test_the_stream_replays_from_a_seq_then_goes_live(
        server: LiveServer, seeded: Seeded, migrated_database_url: str) -> None:
    alice = await Browser(server, "alice").login()
    sam = await Browser(server, "sam").login()
    try:
        for status in ("available", "offline", "available"):
            await alice.http.put("/api/desk/status", json={"status": status})
        logged = await logged_seqs(migrated_database_url)
        async with sam.socket(f"/api/events/stream?after_seq={logged[1]}") as stream:
            replayed = [await next_event(stream) for _ in logged[2:]]
            assert [e["seq"] for e in replayed] == logged[2:]
            await alice.http.put("/api/desk/status", json={"status": "offline"})
            live = await next_event(stream)
            assert live["seq"] == logged[-1] + 1
            assert (live["type"], live["data"]["agent_id"]) == (
                "agent.status_changed", seeded.agents["alice"])
        token = await api_token(migrated_database_url, seeded.tenant_id, "admin")
        async with websockets.connect(
                server.ws_url + "/api/events/stream",
                additional_headers={"Authorization": f"Bearer {token}"}) as stream:
            await asyncio.sleep(0.2)  # give the server time to wrongly replay the past
            await alice.http.put("/api/desk/status", json={"status": "available"})
            first = await next_event(stream)  # from now on: the past is not replayed
            assert first["seq"] == logged[-1] + 2
    finally:
        await alice.close()
        await sam.close()


async def test_the_stream_refuses_who_may_not_use_the_api(
        server: LiveServer, seeded: Seeded) -> None:
    alice = await Browser(server, "alice").login()
    try:
        for socket in (alice.socket("/api/events/stream"),
                       websockets.connect(server.ws_url + "/api/events/stream")):
            async with socket as stream:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await asyncio.wait_for(stream.recv(), WAIT_S)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    finally:
        await alice.close()


def test_a_slow_stream_reader_is_closed_with_where_to_resume(
        migrated_database_url: str, seeded: Seeded, tmp_path: Path) -> None:
    token = asyncio.run(api_token(migrated_database_url, seeded.tenant_id, "supervisor"))
    app = create_app(load_settings(data_dir=tmp_path / "data",
                                   database_url=migrated_database_url))
    with TestClient(app) as client:
        assert client.portal.call(_started, app)  # its start-up commits events
        app.state.bus = Bus(max_pending=2)  # the stream's; the running center keeps its own
        with client.websocket_connect("/api/events/stream",
                                      headers={"Authorization": f"Bearer {token}"}) as stream:
            _flood_when_live(client, app, seeded.tenant_id, stream)


def _flood_when_live(client: TestClient, app: Any, tenant_id: str, stream: Any) -> None:
    last = client.portal.call(_last_seq, app)
    assert client.portal.call(_followed, app.state.bus, tenant_id)

    def flood() -> None:  # more notices at once than the stream's queue holds
        for seq in range(last + 1, last + 6):
            app.state.bus.publish(tenant_id, ["events"], Notice("x", {"seq": seq}))

    client.portal.call(_run_soon, flood)
    with pytest.raises(WebSocketDisconnect) as closed:
        stream.receive_json()
    assert closed.value.code == 1013
    assert f"after_seq={last}" in closed.value.reason


async def _last_seq(app: Any) -> int:
    async with app.state.database.session() as session:
        seq = (await session.execute(select(Event.seq).order_by(Event.seq.desc()))).scalar()
        return int(seq or 0)


async def _run_soon(function: Any) -> None:
    function()


async def _followed(bus: Bus, tenant_id: str) -> bool:
    for _ in range(int(WAIT_S / 0.01)):
        if bus.followers(tenant_id, "events"):
            return True
        await asyncio.sleep(0.01)
    return False


async def _started(app: Any) -> bool:
    for _ in range(int(WAIT_S / 0.01)):
        if app.state.center.is_started:
            return True
        await asyncio.sleep(0.01)
    return False

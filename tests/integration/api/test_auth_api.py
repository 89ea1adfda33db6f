"""Logging in and out over HTTP: throttling, logout, sessions versus API tokens, CSRF."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from omnicc.app.principals import Role
from omnicc.app.tokens import issue_api_token
from omnicc.store.database import Database
from omnicc.store.repositories import ApiTokens
from omnicc.store.tables import ApiToken
from tests.integration.api.live import PASSWORD, Browser, LiveServer, Seeded, live_server, seed

pytestmark = pytest.mark.anyio


@pytest.fixture
def seeded(migrated_database_url: str) -> Seeded:
    return asyncio.run(seed(migrated_database_url))


@pytest.fixture
def server(migrated_database_url: str, seeded: Seeded, tmp_path: Path) -> Iterator[LiveServer]:
    yield from live_server(migrated_database_url, tmp_path / "data")


async def test_repeated_wrong_passwords_are_throttled(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        for _ in range(5):
            wrong = await client.post("/api/auth/login", json={
                "username": "alice", "password": "not it", "tenant": "acme"})
            assert wrong.status_code == 401
            assert wrong.json()["detail"] == "wrong username or password"
        throttled = await client.post("/api/auth/login", json={
            "username": "alice", "password": PASSWORD, "tenant": "acme"})
        assert throttled.status_code == 429
        assert int(throttled.headers["retry-after"]) > 0
        unknown = await client.post("/api/auth/login", json={
            "username": "nobody", "password": "x", "tenant": "acme"})
        assert unknown.json()["detail"] == "wrong username or password"


async def test_logout_ends_the_session(server: LiveServer) -> None:
    alice = await Browser(server, "alice").login()
    me = await alice.http.get("/api/auth/me")
    assert me.status_code == 200 and me.json()["role"] == "agent"
    cookie = alice.http.cookies.get("omnicc_session")
    assert (await alice.http.post("/api/auth/logout")).status_code == 204
    async with httpx.AsyncClient(base_url=server.url,
                                 cookies={"omnicc_session": cookie or ""}) as old:
        refused = await old.get("/api/desk/state")
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    await alice.close()


async def test_an_api_token_opens_the_api_without_csrf(
        server: LiveServer, seeded: Seeded, migrated_database_url: str) -> None:
    issued = issue_api_token(tenant_id=seeded.tenant_id, role=Role.SUPERVISOR, name="crm",
                             now_s=datetime.now(UTC).timestamp())
    database = Database(migrated_database_url)
    try:
        async with database.session() as session:
            await ApiTokens(session, seeded.tenant_id).add(ApiToken(
                name="crm", token_hash=issued.record.digest, role="supervisor"))
    finally:
        await database.dispose()
    async with httpx.AsyncClient(base_url=server.url) as client:
        headers = {"Authorization": f"Bearer {issued.secret}"}
        board = await client.get("/api/supervisor/wallboard", headers=headers)
        assert board.status_code == 200
        assert {q["name"] for q in board.json()["queues"]} == {"support", "billing"}
        changed = await client.put(f"/api/supervisor/agents/{seeded.agents['bob']}/status",
                                   json={"status": "break"}, headers=headers)
        assert changed.status_code == 200 and changed.json()["status"] == "break"
        forged = await client.get("/api/supervisor/wallboard",
                                  headers={"Authorization": "Bearer omnicc_notatoken"})
        assert forged.status_code == 401

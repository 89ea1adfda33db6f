"""A tenant's own recording retention: set in the voice admin API, it overrides the
installation's `recording_retention_days` for that tenant's calls and files only.

The expiry test runs the retention pass itself on a database without a server (a server
runs one at start, which could race with the test's rows)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from omnicc.api.app import create_app
from omnicc.app.recordings import expire_recordings, recordings_dir
from omnicc.config import load_settings
from omnicc.store.database import Database
from omnicc.store.repositories import CallRecords, Tenants
from omnicc.store.tables import CallRecord
from tests.integration.api.live import PASSWORD, TEST_PASSWORDS, Seeded, seed

pytestmark = pytest.mark.anyio

URL = "/api/admin/voice/recording-retention"


@dataclass
class Server:
    app: FastAPI
    clients: list[httpx.AsyncClient]

    async def user(self, username: str, tenant: str = "acme") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
        client = httpx.AsyncClient(transport=transport, base_url="http://omnicc.test")
        self.clients.append(client)
        answer = await client.post("/api/auth/login", json={
            "username": username, "password": PASSWORD, "tenant": tenant})
        assert answer.status_code == 200, answer.text
        client.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
        return client


@dataclass
class Store:
    database: Database
    acme: Seeded
    globex: Seeded
    base: Path

    async def keep_for(self, seeded: Seeded, days: int | None) -> None:
        """The tenant's own retention, as the admin API sets it."""
        async with self.database.session() as session:
            (await Tenants(session).get(seeded.tenant_id)).recording_retention_days = days

    async def expire(self, installation_days: int) -> int:
        return await expire_recordings(self.database, self.base, installation_days)

    async def recorded_call(self, seeded: Seeded, days_ago: float, name: str) -> str:
        """A call that started `days_ago` days ago, its WAV where the call controller puts
        it (`<tenant id>/<month>/`); returns the row's id."""
        relative = f"{seeded.tenant_id}/2026-11/{name}.wav"
        (self.base / relative).parent.mkdir(parents=True, exist_ok=True)
        (self.base / relative).write_bytes(b"RIFF")
        async with self.database.session() as session:
            row = await CallRecords(session, seeded.tenant_id).add(CallRecord(
                call_id=name, started_at=datetime.now(UTC) - timedelta(days=days_ago),
                recording_path=relative))
        return row.id

    async def recording_of(self, seeded: Seeded, record_id: str) -> str | None:
        async with self.database.session() as session:
            row = await CallRecords(session, seeded.tenant_id).get(record_id)
        return row.recording_path

    def leftover(self, relative: str, days_ago: float) -> Path:
        """A file no row names, last modified `days_ago` days ago."""
        path = self.base / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        at = (datetime.now(UTC) - timedelta(days=days_ago)).timestamp()
        os.utime(path, (at, at))
        return path


@pytest.fixture
async def server(migrated_database_url: str, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Server]:
    for name in ("OMNICC_CONFIG", "OMNICC_DATABASE_URL", "OMNICC_SECRET_KEY",
                 "OMNICC_RECORDING_RETENTION_DAYS"):
        monkeypatch.delenv(name, raising=False)
    await seed(migrated_database_url)
    await seed(migrated_database_url, slug="globex")
    app = create_app(load_settings(data_dir=tmp_path / "data", database_url=migrated_database_url,
                                   recording_retention_days=30))
    app.state.security.passwords = TEST_PASSWORDS
    app.state.security.logins._passwords = TEST_PASSWORDS
    async with app.router.lifespan_context(app):
        while not app.state.center.is_started:
            await asyncio.sleep(0.01)
        running = Server(app, [])
        try:
            yield running
        finally:
            for client in running.clients:
                await client.aclose()


@pytest.fixture
async def store(migrated_database_url: str, tmp_path: Path) -> AsyncIterator[Store]:
    acme = await seed(migrated_database_url)
    globex = await seed(migrated_database_url, slug="globex")
    database = Database(migrated_database_url)
    try:
        yield Store(database, acme, globex, recordings_dir(tmp_path / "data"))
    finally:
        await database.dispose()


async def test_an_admin_sets_the_tenants_own_retention(server: Server) -> None:
    ada = await server.user("ada")
    assert (await ada.get(URL)).json() == {
        "days": None, "installation_days": 30, "effective_days": 30}
    answer = await ada.put(URL, json={"days": 7})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"days": 7, "installation_days": 30, "effective_days": 7}
    assert (await ada.get(URL)).json()["days"] == 7
    # The other tenant still has the installation's.
    globex_admin = await server.user("ada", tenant="globex")
    assert (await globex_admin.get(URL)).json()["effective_days"] == 30

    for bad in ({"days": -1}, {"days": "a week"}, {"days": 7, "extra": 1}, {}):
        assert (await ada.put(URL, json=bad)).status_code == 422, bad
    alice = await server.user("alice")
    assert (await alice.get(URL)).status_code == 403
    assert (await alice.put(URL, json={"days": 0})).status_code == 403

    forever = await ada.put(URL, json={"days": 0})
    assert forever.json() == {"days": 0, "installation_days": 30, "effective_days": 0}
    back = await ada.put(URL, json={"days": None})
    assert back.json() == {"days": None, "installation_days": 30, "effective_days": 30}


async def test_a_tenants_retention_overrides_the_installations_for_its_calls_only(
    store: Store,
) -> None:
    acme, globex = store.acme, store.globex
    await store.keep_for(acme, 7)
    acme_old = await store.recorded_call(acme, 10, "acme-old")
    acme_new = await store.recorded_call(acme, 5, "acme-new")
    globex_old = await store.recorded_call(globex, 10, "globex-old")
    globex_older = await store.recorded_call(globex, 40, "globex-older")
    acme_leftover = store.leftover(f"{acme.tenant_id}/2026-11/orphan.wav", 10)
    globex_leftover = store.leftover(f"{globex.tenant_id}/2026-11/orphan.wav", 10)
    raw_old = store.leftover("raw/pcaps/old-call.pcap", 40)
    raw_recent = store.leftover("raw/pcaps/recent-call.pcap", 10)

    assert await store.expire(30) == 2
    assert await store.recording_of(acme, acme_old) is None  # acme keeps 7 days
    assert not (store.base / f"{acme.tenant_id}/2026-11/acme-old.wav").exists()
    assert await store.recording_of(acme, acme_new) is not None
    assert await store.recording_of(globex, globex_old) is not None  # globex keeps 30
    assert await store.recording_of(globex, globex_older) is None
    assert not acme_leftover.exists() and globex_leftover.exists()
    assert not raw_old.exists() and raw_recent.exists()  # no tenant's: the installation's

    # The installation keeps recordings forever; acme still expires its own.
    acme_later = await store.recorded_call(acme, 8, "acme-later")
    assert await store.expire(0) == 1
    assert await store.recording_of(acme, acme_later) is None
    assert await store.recording_of(globex, globex_old) is not None

    # A tenant that keeps recordings forever loses none, whatever the installation says.
    await store.keep_for(globex, 0)
    globex_ancient = await store.recorded_call(globex, 400, "globex-ancient")
    assert await store.expire(30) == 0
    assert await store.recording_of(globex, globex_ancient) is not None
    assert globex_leftover.exists()

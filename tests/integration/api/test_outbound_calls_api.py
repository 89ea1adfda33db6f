"""The desk's outbound call endpoints on a live server: the number is checked and made E.164
before anything is dialled, and a server without a carrier trunk says so. (The call itself -
the agent's phone first, then the carrier - is tested with real peers in
tests/integration/voice/test_outbound_call.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnicc.channels.voice.media.daemon import random_port_window
from tests.integration.api.live import Browser, LiveServer, Seeded, free_port, seed
from tests.integration.api.test_calls_api import voice_of

pytestmark = pytest.mark.anyio


@pytest.fixture
def seeded(migrated_database_url: str) -> Seeded:
    return asyncio.run(seed(migrated_database_url))


def voice_server(url: str, data: Path, **trunk: object) -> LiveServer:
    from tests.integration.api.live import start_live_server

    low, high = random_port_window()
    return start_live_server(url, data, sip_port=0, media_ports=f"{low}-{high}", **trunk)


@pytest.fixture
def with_trunk(migrated_database_url: str, seeded: Seeded, tmp_path: Path) -> Iterator[LiveServer]:
    # A carrier that is not there: the number checks come first, the dialling fails later.
    server = voice_server(migrated_database_url, tmp_path / "data",
                          sip_trunk=f"sip:omnicc@127.0.0.1:{free_port()}", phone_region="FI")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def without_trunk(migrated_database_url: str, seeded: Seeded,
                  tmp_path: Path) -> Iterator[LiveServer]:
    server = voice_server(migrated_database_url, tmp_path / "data")
    try:
        yield server
    finally:
        server.stop()


async def test_a_number_is_checked_and_dialled_as_e164(with_trunk: LiveServer) -> None:
    voice_of(with_trunk)
    alice = await Browser(with_trunk, "alice").login()
    try:
        bad = await alice.http.post("/api/desk/calls/outbound", json={"number": "call me"})
        assert bad.status_code == 422, bad.text
        assert "not a phone number" in bad.json()["detail"]
        good = await alice.http.post("/api/desk/calls/outbound",
                                     json={"number": "040 123 4567"})
        assert good.status_code == 202, good.text
        assert good.json()["number"] == "+358401234567" and good.json()["record_id"]
        # alice has no phone: the call ends by itself; then there is nothing to hang up.
        for _ in range(200):
            gone = await alice.http.post("/api/desk/calls/outbound/hangup")
            if gone.status_code == 404:
                break
            await asyncio.sleep(0.05)
        assert gone.status_code == 404, gone.text
        # ... answered by the outbound route itself (not taken for a task named "outbound")
        assert gone.json()["detail"] == "you have no outbound call"
    finally:
        await alice.close()


async def test_without_a_trunk_outbound_calls_are_off(without_trunk: LiveServer) -> None:
    voice_of(without_trunk)
    alice = await Browser(without_trunk, "alice").login()
    try:
        response = await alice.http.post("/api/desk/calls/outbound",
                                         json={"number": "+358401234567"})
        assert response.status_code == 503, response.text
        assert "sip_trunk" in response.json()["detail"]
    finally:
        await alice.close()

"""Supervising a call over real HTTP: a live server with voice on, a caller (1 kHz) talking
with alice's baresip phone (440 Hz); sam, a supervisor whose agent profile holds a SIP
account, has a baresip desk phone (660 Hz). Sam's `POST .../monitor` rings that phone,
switches listen -> whisper -> barge, and `DELETE` leaves; what the caller hears proves
each step. Refusals: a waiting call (409), another supervisor (409), no phone (409), an
agent (403), a bad mode (422), no such call (404), voice off (503)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from omnicc.channels.voice.media.daemon import random_port_window
from omnicc.channels.voice.media.tones import tone_share
from omnicc.store.database import Database
from omnicc.store.repositories import Agents, SipAccounts, Users
from omnicc.store.tables import Agent
from tests.integration.api.live import (
    Browser,
    LiveServer,
    Seeded,
    live_server,
    seed,
    start_live_server,
)
from tests.integration.api.test_calls_api import eventually, live_calls, voice_of
from tests.integration.voice.harness import (
    PHONE_PASSWORD,
    SUPPORT_LINE,
    Caller,
    open_support_line,
    start_phone,
    tone,
)

pytestmark = pytest.mark.anyio

ALICE_HZ, SAM_HZ = 440.0, 660.0


async def give_sam_a_phone(url: str, seeded: Seeded) -> None:
    """An agent profile for sam (offline: no calls are routed to it) with a SIP account."""
    database = Database(url)
    try:
        async with database.session() as session:
            sam = await Users(session, seeded.tenant_id).by_username("sam")
            agent = await Agents(session, seeded.tenant_id).add(Agent(user_id=sam.id,
                                                                      name="Sam"))
            await SipAccounts(session, seeded.tenant_id).set_password(
                agent.id, "sam", "acme", PHONE_PASSWORD)
    finally:
        await database.dispose()


@pytest.fixture
def seeded(migrated_database_url: str) -> Seeded:
    seeded = asyncio.run(seed(migrated_database_url))
    asyncio.run(open_support_line(migrated_database_url, seeded))
    asyncio.run(give_sam_a_phone(migrated_database_url, seeded))
    return seeded


@pytest.fixture
def voice_server(migrated_database_url: str, seeded: Seeded,
                 tmp_path: Path) -> Iterator[LiveServer]:
    low, high = random_port_window()
    server = start_live_server(migrated_database_url, tmp_path / "data", sip_port=0,
                               media_ports=f"{low}-{high}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def people(voice_server: LiveServer) -> AsyncIterator[dict[str, Browser]]:
    browsers = {name: await Browser(voice_server, name).login()
                for name in ("alice", "sam", "ada")}
    yield browsers
    for browser in browsers.values():
        await browser.close()


def both(first_hz: float, second_hz: float) -> Any:
    return lambda s: tone_share(s, first_hz) > 0.3 and tone_share(s, second_hz) > 0.3


async def test_a_supervisor_listens_whispers_barges_and_leaves_a_call(
        voice_server: LiveServer, people: dict[str, Browser], tmp_path: Path) -> None:
    alice, sam, ada = people["alice"], people["sam"], people["ada"]
    voice = voice_of(voice_server)
    phones = [await start_phone(tmp_path, voice, "alice", tone_hz=ALICE_HZ),
              await start_phone(tmp_path, voice, "sam", tone_hz=SAM_HZ)]
    caller = Caller(voice.stack.udp.port)
    try:
        missing = await sam.http.post("/api/supervisor/calls/no-such-task/monitor",
                                      json={"mode": "listen"})
        assert missing.status_code == 404

        await caller.call(SUPPORT_LINE)  # alice is offline: the call waits in line
        caller.talk()

        async def waiting() -> list[dict[str, Any]]:
            board = (await sam.http.get("/api/supervisor/wallboard")).json()
            return [c for c in board["calls"] if c["state"] == "waiting"]

        [queued] = await eventually(waiting, "the call to wait in line")
        task = queued["task_id"]
        url = f"/api/supervisor/calls/{task}/monitor"

        async def refused() -> Any:  # the call names its task a moment after it is queued
            early = await sam.http.post(url, json={"mode": "listen"})
            return early if early.status_code != 404 else None

        early = await eventually(refused, "the waiting call to be known by its task")
        assert early.status_code == 409, early.text

        (await alice.http.put("/api/desk/status", json={"status": "available"})).raise_for_status()
        [call] = await eventually(lambda: live_calls(alice), "alice's phone to answer")
        assert call["task_id"] == task
        await caller.hears(tone(ALICE_HZ), "alice")

        assert (await alice.http.post(url, json={"mode": "listen"})).status_code == 403
        assert (await sam.http.post(url, json={"mode": "shout"})).status_code == 422

        started = await sam.http.post(url, json={"mode": "listen"})
        assert started.status_code == 202, started.text
        assert started.json()["mode"] == "listen"

        async def active() -> bool:
            state = (await sam.http.get(url)).json()
            return bool(state["state"] == "active")

        await eventually(active, "sam's phone to answer")
        await phones[1].wait_for("CALL_ESTABLISHED")
        heard = await caller.heard(1.0)
        assert tone_share(heard, SAM_HZ) < 0.05 and tone_share(heard, ALICE_HZ) > 0.5

        switched = await sam.http.post(url, json={"mode": "whisper"})
        assert switched.status_code == 200 and switched.json()["mode"] == "whisper"
        heard = await caller.heard(1.0)
        assert tone_share(heard, SAM_HZ) < 0.05 and tone_share(heard, ALICE_HZ) > 0.5

        assert (await sam.http.post(url, json={"mode": "barge"})).status_code == 200
        await caller.hears(both(ALICE_HZ, SAM_HZ), "alice and sam")

        taken = await ada.http.post(url, json={"mode": "listen"})
        assert taken.status_code == 409, taken.text  # sam is on it
        assert (await ada.http.delete(url)).status_code == 404

        assert (await sam.http.delete(url)).status_code == 204
        await phones[1].wait_for("CALL_CLOSED")
        await caller.hears(tone(ALICE_HZ), "alice alone again")
        heard = await caller.heard(1.0)
        assert tone_share(heard, SAM_HZ) < 0.05
        ended = (await sam.http.get(url)).json()
        assert (ended["state"], ended["end_reason"]) == ("ended", "left")
        assert (await sam.http.delete(url)).status_code == 404

        no_phone = await ada.http.post(url, json={"mode": "listen"})
        assert no_phone.status_code == 409 and "phone" in no_phone.text
        await caller.hang_up()
    finally:
        await caller.close()
        for phone in phones:
            await phone.stop()


@pytest.fixture
def plain_server(migrated_database_url: str, seeded: Seeded,
                 tmp_path: Path) -> Iterator[LiveServer]:
    yield from live_server(migrated_database_url, tmp_path / "data")


async def test_supervising_calls_is_503_without_voice(plain_server: LiveServer) -> None:
    sam = await Browser(plain_server, "sam").login()
    try:
        response = await sam.http.post("/api/supervisor/calls/any/monitor",
                                       json={"mode": "listen"})
        assert response.status_code == 503
        assert (await sam.http.delete("/api/supervisor/calls/any/monitor")).status_code == 503
    finally:
        await sam.close()

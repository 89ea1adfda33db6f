"""A pool of external rtpengines: two real daemons (own ng ports and media port windows) behind
one OmniCC.  Calls spread over both; killing one ends its calls only and new calls go to the
other; with none left INVITEs get 503; a restarted engine rejoins and takes calls again."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from omnicc.api import health
from omnicc.channels.voice.media.daemon import RtpengineDaemon, random_port_window
from omnicc.channels.voice.media.pool import engine_addresses
from omnicc.channels.voice.outbound import OutboundCalls
from omnicc.channels.voice.service import VoiceService
from omnicc.channels.voice.sip.stack import SipStack
from omnicc.channels.voice.sip.transaction import Timers
from omnicc.channels.voice.sip.transport import Peer
from omnicc.channels.voice.trunk import Trunk
from omnicc.store.repositories import CallRecords
from tests.integration.voice.harness import (
    SCENARIOS,
    SUPPORT_LINE,
    Caller,
    Carrier,
    Exchange,
    open_exchange,
    open_outbound_line,
    open_support_line,
    start_phone,
    wait_until,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def engines(tmp_path: Path) -> AsyncIterator[list[RtpengineDaemon]]:
    started: list[RtpengineDaemon] = []
    low = random_port_window(400)[0]
    try:
        for index, window in enumerate(((low, low + 199), (low + 200, low + 399))):
            daemon = RtpengineDaemon(port_range=window, work_dir=tmp_path / f"engine-{index}")
            await daemon.start()
            started.append(daemon)
        yield started
    finally:
        for daemon in started:
            await daemon.stop()


def engine_of(voice: VoiceService, caller: Caller) -> int:
    """Which engine (index in the setting) carries the caller's call."""
    assert caller.dialog is not None
    call = voice.calls[caller.dialog.call_id]
    engine = voice.engines.engine_of(call.media.client)
    assert engine is not None
    return voice.engines.engines.index(engine)


def _bound(sock: socket.socket, port: int) -> bool:
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True


async def readiness(exchange: Exchange) -> dict[str, Any]:
    """/readyz of an app whose state holds this exchange's database, center and voice."""
    app = FastAPI()
    app.include_router(health.router)
    app.state.database = exchange.database
    app.state.center = SimpleNamespace(is_started=True)
    app.state.voice = exchange.voice
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://omnicc.test") as client:
        answer = await client.get("/readyz")
    assert answer.status_code == 200, answer.text  # media is reported, not required
    body: dict[str, Any] = answer.json()
    return body


async def invite_status(sip_port: int) -> tuple[int, str | None]:
    """An INVITE to the support line: its final status and Retry-After."""
    stack = SipStack("127.0.0.1", udp_port=0, tcp_port=None, timers=Timers(t1=0.1))
    await stack.start()
    try:
        server = Peer("UDP", "127.0.0.1", sip_port)
        sdp = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
               "m=audio 4000 RTP/AVP 0\r\n")
        request = stack.request(
            "INVITE", f"sip:{SUPPORT_LINE}@127.0.0.1:{sip_port}", to=server,
            from_uri="sip:+358401112222@127.0.0.1", to_uri=f"sip:{SUPPORT_LINE}@127.0.0.1",
            body=sdp.encode(), content_type="application/sdp")
        final = await stack.invite(request, server).final()
        return final.status, final.headers.get("Retry-After")
    finally:
        await stack.stop()


async def test_calls_spread_over_the_pool_and_survive_the_loss_of_one_engine(
    migrated_database_url: str, tmp_path: Path, engines: list[RtpengineDaemon],
) -> None:
    setting = ",".join(f"{host}:{port}" for host, port in (d.ng_address for d in engines))
    assert engine_addresses(setting) == [d.ng_address for d in engines]
    callers: list[Caller] = []
    async with open_exchange(migrated_database_url, tmp_path, open_support_line,
                             rtpengine=setting) as exchange:
        voice = exchange.voice
        assert voice.daemon is None  # no embedded engine with a pool

        async def call() -> Caller:
            caller = Caller(voice.stack.udp.port)
            callers.append(caller)
            await caller.call(SUPPORT_LINE)  # answered: the caller waits in the queue
            return caller

        try:
            ready = await readiness(exchange)
            assert ready["checks"]["media"] == "ok"
            assert [e["address"] for e in ready["media_engines"]] == setting.split(",")
            first = [await call() for _ in range(4)]
            placed = [engine_of(voice, caller) for caller in first]
            assert sorted(set(placed)) == [0, 1], placed
            for index, daemon in enumerate(engines):
                assert len(await daemon.client.list_calls()) == placed.count(index)

            # Engine 0 dies: its calls end, engine 1's go on, new calls go to engine 1.
            assert engines[0].pid is not None
            os.kill(engines[0].pid, signal.SIGKILL)
            for caller, engine in zip(first, placed, strict=True):
                if engine == 0:
                    await caller.hung_up_on()
            await wait_until(lambda: not voice.engines.engines[0].up, "engine 0 reported down")
            assert [e["up"] for e in voice.engines.status()] == [False, True]
            ready = await readiness(exchange)
            assert ready["checks"]["media"] == "degraded"
            assert "not answering" in ready["media_engines"][0]["detail"]
            assert voice.media_lost is None
            for caller, engine in zip(first, placed, strict=True):
                if engine == 1:
                    assert caller.dialog is not None
                    assert not caller.dialog.terminated.is_set()
            assert [engine_of(voice, await call()) for _ in range(2)] == [1, 1]

            # Engine 1 dies too: every call ends, and INVITEs get 503 with Retry-After.
            assert engines[1].pid is not None
            os.kill(engines[1].pid, signal.SIGKILL)
            await wait_until(lambda: voice.media_lost is not None, "no engine left")
            for caller in callers:
                assert caller.dialog is not None
                await caller.hung_up_on()
            assert await invite_status(voice.stack.udp.port) == (503, "30")
            assert (await readiness(exchange))["checks"]["media"] == "failing"

            # Engine 0 comes back on its ng port: it rejoins and takes the next call.
            await engines[0].restart()
            await wait_until(lambda: voice.engines.engines[0].up, "engine 0 rejoined")
            assert engine_of(voice, await call()) == 0
            assert voice.engines.status()[0]["placed"] >= 1 + placed.count(0)
        finally:
            for caller in callers:
                await caller.close()


async def test_stopping_omnicc_mid_teardown_leaves_no_call_on_an_external_engine(
    migrated_database_url: str, tmp_path: Path, engines: list[RtpengineDaemon],
) -> None:
    """A call whose teardown is cancelled by the service stopping (here: its BYE to a caller
    that went silent is still being retransmitted) has its media deleted all the same: an
    rtpengine call left behind would keep recording (and crash a 10.5.3 engine when it
    stops, see test_media_daemon)."""
    host, port = engines[0].ng_address
    caller = Caller(0)
    async with open_exchange(migrated_database_url, tmp_path, open_support_line,
                             rtpengine=f"{host}:{port}") as exchange:
        caller.sip_port = exchange.voice.stack.udp.port
        try:
            await caller.call(SUPPORT_LINE)
            assert caller.dialog is not None
            call = exchange.voice.calls[caller.dialog.call_id]
            assert call.dialog is not None
            assert await engines[0].client.list_calls() == [call.call_id]
            # The caller goes silent: its port stays bound but nothing answers there.
            assert caller.stack.udp is not None
            caller_port = caller.stack.udp.port
            await caller.close()
            silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            await wait_until(lambda: _bound(silent, caller_port), "the caller's port to free")
            with silent:
                sent = call.dialog.local_cseq
                call.ended.set()  # OmniCC hangs up: BYE, retransmitted for 64 T1
                await wait_until(lambda: call.dialog is not None
                                 and call.dialog.local_cseq > sent, "the BYE to go out")
                assert call.call_id in exchange.voice.calls  # still tearing down
        finally:
            await caller.close()
    # The service stopped (cancelling the teardown); the engine has nothing left.
    assert await engines[0].client.list_calls() == []


async def test_an_outbound_call_on_a_lost_engine_ends_on_both_legs(
    migrated_database_url: str, tmp_path: Path, engines: list[RtpengineDaemon],
) -> None:
    """The agent's call to a customer (baresip agent, sipp as the carrier) whose engine dies
    is hung up on both sides and recorded as `media_lost`."""
    setting = ",".join(f"{host}:{port}" for host, port in (d.ng_address for d in engines))
    async with open_exchange(migrated_database_url, tmp_path, open_outbound_line,
                             rtpengine=setting) as exchange:
        seeded, voice = exchange.seeded, exchange.voice
        carrier = Carrier(SCENARIOS / "outbound_customer_talks_until_bye.xml",
                          exchange.workdir / "carrier")
        voice.outbound = OutboundCalls(voice, Trunk(voice.stack, carrier.trunk_config()))
        phone = await start_phone(exchange.workdir, voice, "alice")
        try:
            await carrier.start()
            call = await voice.outbound.dial(await exchange.runtime(),
                                             agent_id=seeded.agents["alice"],
                                             number="+358401234567",
                                             queue_id=seeded.queues["support"])
            await wait_until(call.connected.is_set, "the customer to answer")
            await phone.wait_for("CALL_RTPESTAB")
            engine = voice.engines.engine_of(call.media.client)
            assert engine is not None
            lost = engines[voice.engines.engines.index(engine)]
            assert lost.pid is not None
            os.kill(lost.pid, signal.SIGKILL)
            code, output = await carrier.finish()
            assert code == 0, output  # the customer got a BYE
            await phone.wait_for("CALL_CLOSED")  # and so did the agent
            await wait_until(lambda: not voice.outbound.calls if voice.outbound else True,
                             "the call to end")
        finally:
            voice.outbound = None
            await carrier.stop()
            await phone.stop()
        assert (call.result.outcome, call.result.hangup_side) == ("media_lost", "system")
        async with exchange.database.session() as session:
            record = await CallRecords(session, seeded.tenant_id).get(call.record_id)
        assert record.outcome == "media_lost"

"""Outbound calls for real on loopback: alice's baresip phone rings first (agent-first), then
OmniCC dials the customer through the carrier trunk - sipp playing the carrier: it answers with
early media and talks (the G.711 pcap sip-tester ships), challenges the INVITE and says busy,
rings until cancelled, or talks until OmniCC hangs up; and sipp as the carrier's registrar,
challenging OmniCC's REGISTERs with digest."""

from __future__ import annotations

import asyncio
import socket
import wave
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from omnicc.app.routing import WallClock
from omnicc.app.runtime import ContactCenter, TenantRuntime
from omnicc.bus import Bus
from omnicc.channels.voice.devices import agent_topic
from omnicc.channels.voice.media.daemon import random_port_window
from omnicc.channels.voice.outbound import NOTICE, OutboundCall
from omnicc.channels.voice.service import VoiceService, VoiceSettings
from omnicc.channels.voice.sip.transaction import Timers
from omnicc.channels.voice.trunk import Trunk, TrunkConfig, TrunkState, TrunkStatus
from omnicc.store.database import Database
from omnicc.store.repositories import (
    CallRecords,
    Contacts,
    Identities,
    SipAccounts,
    VoiceNumbers,
)
from omnicc.store.tables import VoiceNumber
from tests.integration.api.live import Seeded, seed
from tests.integration.voice.peers import Baresip, free_port

pytestmark = pytest.mark.anyio

SCENARIOS = Path(__file__).parent / "scenarios"
PHONE_PASSWORD = "phone-secret-1"
TRUNK_PASSWORD = "trunk-secret"
QUEUE_NUMBER = "+358201234567"
SIPP_TIMEOUT_S = 60


@dataclass
class Exchange:
    seeded: Seeded
    database: Database
    center: ContactCenter
    voice: VoiceService
    workdir: Path

    async def runtime(self) -> TenantRuntime:
        return await self.center.tenant(self.seeded.tenant_id)


@pytest.fixture
async def exchange(migrated_database_url: str, tmp_path: Path) -> AsyncIterator[Exchange]:
    seeded = await seed(migrated_database_url)
    database = Database(migrated_database_url)
    tenant_id = seeded.tenant_id
    async with database.session() as session:
        await SipAccounts(session, tenant_id).set_password(
            seeded.agents["alice"], "alice", "acme", PHONE_PASSWORD)
        await VoiceNumbers(session, tenant_id).add(VoiceNumber(
            number=QUEUE_NUMBER, outbound_queue_id=seeded.queues["support"]))
    center = ContactCenter(database, WallClock(), Bus())
    await center.start()
    voice = VoiceService(database, center, tmp_path / "data", VoiceSettings(
        sip_port=0, media_ports=random_port_window(), timers=Timers(t1=0.1),
        announce_every_s=3600))
    await voice.start()
    try:
        yield Exchange(seeded, database, center, voice, tmp_path)
    finally:
        await voice.stop()
        await center.stop()
        await database.dispose()


class Carrier:
    """sipp running a server scenario: the carrier (and the customer behind it)."""

    def __init__(self, scenario: Path, workdir: Path, *, calls: int = 1) -> None:
        self.scenario = scenario
        self.calls = calls
        self.dir = workdir
        self.port = free_port(socket.SOCK_DGRAM)
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        media_port = random_port_window(2, 20000, 29000)[0]
        self.process = await asyncio.create_subprocess_exec(
            "sipp", "-sf", str(self.scenario), "-m", str(self.calls), "-i", "127.0.0.1",
            "-p", str(self.port), "-mi", "127.0.0.1", "-mp", str(media_port),
            "-timeout", f"{SIPP_TIMEOUT_S}s", "-timeout_error", "-trace_err", "-nostdin",
            cwd=self.dir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        await asyncio.sleep(0.3)  # sipp binds its port before reading the scenario's first recv

    async def finish(self) -> tuple[int, str]:
        assert self.process is not None
        output, _ = await self.process.communicate()
        errors = "\n".join(p.read_text(errors="replace") for p in self.dir.glob("*_errors.log"))
        assert self.process.returncode is not None
        return self.process.returncode, output.decode(errors="replace")[-2000:] + errors[-3000:]

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()

    def trunk_config(self, **overrides: object) -> TrunkConfig:
        settings: dict[str, object] = {"uri": f"sip:omnicc@127.0.0.1:{self.port}",
                                       "password": TRUNK_PASSWORD, "default_region": "FI",
                                       "retry_s": 0.5, **overrides}
        return TrunkConfig(**settings)  # type: ignore[arg-type]


async def registered(voice: VoiceService, username: str) -> None:
    for _ in range(200):
        if voice.registrar("acme").bindings(username):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{username}'s phone never registered")


async def wait_until(predicate: Callable[[], object], what: str, timeout_s: float = 20) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def loudness(path: Path, skip_s: float = 0.5) -> float:
    """RMS of a 16-bit mono WAV after its first `skip_s` seconds."""
    with wave.open(str(path)) as wav:
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        rate = wav.getframerate()
    body = samples[int(rate * skip_s):].astype(np.float64)
    return float(np.sqrt(np.mean(body ** 2))) if body.size else 0.0


async def alice_phone(exchange: Exchange) -> Baresip:
    phone = Baresip(exchange.workdir / "alice", user="alice", password=PHONE_PASSWORD,
                    registrar=("127.0.0.1", exchange.voice.stack.udp.port))
    await phone.start()
    await registered(exchange.voice, "alice")
    return phone


async def test_the_agent_answers_first_then_talks_with_the_customer(exchange: Exchange) -> None:
    seeded, voice = exchange.seeded, exchange.voice
    alice, support = seeded.agents["alice"], seeded.queues["support"]
    carrier = Carrier(SCENARIOS / "outbound_customer_answers.xml", exchange.workdir / "carrier")
    phone = await alice_phone(exchange)
    desk = exchange.center.bus.subscribe(seeded.tenant_id, agent_topic(alice))
    try:
        await carrier.start()
        trunk = Trunk(voice.stack, carrier.trunk_config())
        call = OutboundCall(voice, await exchange.runtime(), trunk, agent_id=alice,
                            number="040 123 4567", queue_id=support)
        result = await call.run()
        code, output = await carrier.finish()
        assert code == 0, output
        await phone.wait_for("CALL_CLOSED")
    finally:
        await carrier.stop()
        await phone.stop()

    assert (result.outcome, result.sip_status, result.hangup_side) == ("answered", 200, "caller")
    assert result.agent_answered and result.talk_s > 5
    established = await phone.wait_for("CALL_ESTABLISHED")
    assert "Call to +358401234567" in str(established), established
    states = []
    desk.close()
    while (notice := await desk.get()) is not None:
        if notice.type == NOTICE:
            states.append(notice.data["state"])
    assert states == ["dialling", "early_media", "answered", "ended"]

    async with exchange.database.session() as session:
        record = await CallRecords(session, seeded.tenant_id).get(result.record_id)
        assert record.direction == "outbound" and record.outcome == "answered"
        assert (record.from_number, record.to_number) == (QUEUE_NUMBER, "+358401234567")
        assert record.agent_id == alice and record.queue_id == support
        assert record.answered_at is not None and record.ended_at is not None
        assert record.hangup_side == "caller" and record.talk_s > 5
        contact = await Contacts(session, seeded.tenant_id).get(record.contact_id or "")
        assert (contact.channel, contact.direction) == ("voice", "outbound")
        assert contact.agent_id == alice and contact.ended_at is not None
        identity = await Identities(session, seeded.tenant_id).by_value("phone", "+358401234567")
        assert identity is not None and identity.customer_id == record.customer_id
    # The customer's pcap is speech: the agent heard it (silence would be near 0).
    assert loudness(phone.heard()[-1]) > 300


async def test_a_busy_customer_is_told_to_the_agent_and_kept_in_the_record(
        exchange: Exchange) -> None:
    seeded, voice = exchange.seeded, exchange.voice
    alice = seeded.agents["alice"]
    carrier = Carrier(SCENARIOS / "outbound_customer_busy.xml", exchange.workdir / "carrier")
    phone = await alice_phone(exchange)
    # Her desk's softphone is on too: an agent-first call still rings the SIP phone.
    voice.browser_phones.online(seeded.tenant_id, alice)
    try:
        await carrier.start()
        trunk = Trunk(voice.stack, carrier.trunk_config())
        result = await OutboundCall(voice, await exchange.runtime(), trunk, agent_id=alice,
                                    number="+358401234567", queue_id=None).run()
        code, output = await carrier.finish()
        assert code == 0, output
        await phone.wait_for("CALL_CLOSED")
    finally:
        await carrier.stop()
        await phone.stop()

    assert (result.outcome, result.sip_status) == ("busy", 486)
    async with exchange.database.session() as session:
        record = await CallRecords(session, seeded.tenant_id).get(result.record_id)
    assert record.outcome == "busy" and record.details["sip_status"] == 486
    assert record.answered_at is None and record.agent_id == alice
    # No queue named: the caller ID is the default outbound number, none here.
    assert record.from_number == ""
    # The agent heard why: "The number is busy." (spoken), then OmniCC hung up.
    assert loudness(phone.heard()[-1], skip_s=0.2) > 300


async def test_the_trunk_registers_with_digest_refreshes_and_recovers(
        exchange: Exchange) -> None:
    carrier = Carrier(SCENARIOS / "outbound_trunk_registrar.xml", exchange.workdir / "carrier")
    seen: list[TrunkStatus] = []
    try:
        await carrier.start()
        trunk = Trunk(exchange.voice.stack, carrier.trunk_config(register=True),
                      on_status=seen.append)
        assert trunk.healthy is False
        trunk.start()
        # granted 1 s, refreshed (503: failing), retried 0.5 s later and granted 60 s
        await wait_until(lambda: trunk.registrations == 2, "the second registration")
        assert trunk.healthy and trunk.status.expires_at is not None
        await trunk.stop()
        code, output = await carrier.finish()
        assert code == 0, output
    finally:
        await carrier.stop()
    states = [(status.state, status.reason) for status in seen]
    assert states == [(TrunkState.REGISTERING, ""), (TrunkState.REGISTERED, ""),
                      (TrunkState.FAILING, "503 Service Unavailable"),
                      (TrunkState.REGISTERING, "503 Service Unavailable"),
                      (TrunkState.REGISTERED, ""), (TrunkState.UNREGISTERED, "")]


async def test_the_agent_hangs_up_at_the_desk_and_both_phones_get_a_bye(exchange: Exchange) -> None:
    seeded, voice = exchange.seeded, exchange.voice
    alice = seeded.agents["alice"]
    carrier = Carrier(SCENARIOS / "outbound_customer_talks_until_bye.xml",
                      exchange.workdir / "carrier")
    phone = await alice_phone(exchange)
    try:
        await carrier.start()
        trunk = Trunk(voice.stack, carrier.trunk_config())
        call = OutboundCall(voice, await exchange.runtime(), trunk, agent_id=alice,
                            number="+358401234567", queue_id=seeded.queues["support"])
        running = asyncio.create_task(call.run())
        await wait_until(call.connected.is_set, "the customer to answer")
        await phone.wait_for("CALL_RTPESTAB")
        await call.hang_up()   # the desk's hang-up button
        result = await running
        code, output = await carrier.finish()
        assert code == 0, output   # sipp got its BYE
        await phone.wait_for("CALL_CLOSED")   # and so did the agent's phone
    finally:
        await carrier.stop()
        await phone.stop()
    assert (result.outcome, result.hangup_side) == ("answered", "agent")
    async with exchange.database.session() as session:
        record = await CallRecords(session, seeded.tenant_id).get(result.record_id)
    assert (record.outcome, record.hangup_side) == ("answered", "agent")


async def test_a_customer_who_does_not_answer_is_cancelled(exchange: Exchange) -> None:
    seeded, voice = exchange.seeded, exchange.voice
    alice = seeded.agents["alice"]
    carrier = Carrier(SCENARIOS / "outbound_customer_never_answers.xml",
                      exchange.workdir / "carrier")
    phone = await alice_phone(exchange)
    try:
        await carrier.start()
        trunk = Trunk(voice.stack, carrier.trunk_config(ring_timeout_s=2.0))
        result = await OutboundCall(voice, await exchange.runtime(), trunk, agent_id=alice,
                                    number="+358401234567", queue_id=None).run()
        code, output = await carrier.finish()
        assert code == 0, output
        await phone.wait_for("CALL_CLOSED")
    finally:
        await carrier.stop()
        await phone.stop()
    assert (result.outcome, result.agent_answered) == ("no_answer", True)
    async with exchange.database.session() as session:
        record = await CallRecords(session, seeded.tenant_id).get(result.record_id)
    assert record.outcome == "no_answer" and record.answered_at is None


async def test_the_agent_hangs_up_while_the_customer_rings(exchange: Exchange) -> None:
    seeded, voice = exchange.seeded, exchange.voice
    carrier = Carrier(SCENARIOS / "outbound_customer_never_answers.xml",
                      exchange.workdir / "carrier")
    phone = await alice_phone(exchange)
    try:
        await carrier.start()
        trunk = Trunk(voice.stack, carrier.trunk_config())
        call = OutboundCall(voice, await exchange.runtime(), trunk,
                            agent_id=seeded.agents["alice"], number="+358401234567",
                            queue_id=None)
        running = asyncio.create_task(call.run())
        await wait_until(lambda: call.customer_invite is not None, "the customer's INVITE")
        await call.hang_up()
        result = await running
        code, output = await carrier.finish()
        assert code == 0, output   # sipp got its CANCEL
        await phone.wait_for("CALL_CLOSED")
    finally:
        await carrier.stop()
        await phone.stop()
    assert (result.outcome, result.hangup_side) == ("cancelled", "agent")

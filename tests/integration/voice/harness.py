"""What the voice tests share: an exchange (OmniCC's VoiceService with rtpengine, on a seeded
database, with one of the phone lines below), a caller (OmniCC's own SIP stack and an RTP
endpoint that talks a sine tone and keeps what it hears), sipp as a caller or as the carrier,
agents' baresip phones, and the small waits and measurements the tests make.

Pytest fixtures built from these live in conftest.py."""

from __future__ import annotations

import asyncio
import socket
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from omnicc.app.routing import WallClock
from omnicc.app.runtime import ContactCenter, TenantRuntime
from omnicc.bus import Bus
from omnicc.channels.voice.ivr.flow import parse_flow
from omnicc.channels.voice.media.daemon import random_port_window
from omnicc.channels.voice.media.rtp import PayloadType, RtpEndpoint
from omnicc.channels.voice.media.tones import Samples, tone_share
from omnicc.channels.voice.service import VoiceService, VoiceSettings
from omnicc.channels.voice.sip.dialog import Dialog
from omnicc.channels.voice.sip.stack import IncomingRequest, SipStack
from omnicc.channels.voice.sip.transaction import Timers
from omnicc.channels.voice.sip.transport import Peer
from omnicc.channels.voice.trunk import TrunkConfig
from omnicc.store.database import Database
from omnicc.store.repositories import IvrFlows, SipAccounts, VoiceNumbers
from omnicc.store.tables import IvrFlow, VoiceNumber
from tests.integration.api.live import Seeded, seed
from tests.integration.conftest import BACKENDS
from tests.integration.voice.peers import Baresip, free_port

__all__ = [
    "CALLER_NAME",
    "CALLER_NUMBER",
    "CUSTOMER",
    "CUSTOMER_HZ",
    "PHONE_PASSWORD",
    "QUEUE_NUMBER",
    "SCENARIOS",
    "SIPP_TIMEOUT_S",
    "SUPPORT_LINE",
    "TRUNK_PASSWORD",
    "Caller",
    "Carrier",
    "Customer",
    "Exchange",
    "Line",
    "Sound",
    "free_port",
    "loudness",
    "music_instead_of",
    "on_both_databases",
    "open_both_ways",
    "open_exchange",
    "open_menu_line",
    "open_outbound_line",
    "open_support_line",
    "recording",
    "registered",
    "run_sipp",
    "start_phone",
    "tone",
    "wait_until",
]

SCENARIOS = Path(__file__).parent / "scenarios"
CALLER_NUMBER = "+358401234567"
CALLER_NAME = "Maija"
SUPPORT_LINE = "1000"
QUEUE_NUMBER = "+358201234567"
PHONE_PASSWORD = "phone-secret-1"
TRUNK_PASSWORD = "trunk-secret"
SIPP_TIMEOUT_S = 60
CUSTOMER = "+358401112223"
CUSTOMER_HZ = 1000.0
"""The customer behind the carrier trunk (`Customer`): their number and tone."""

on_both_databases = pytest.mark.parametrize("backend", BACKENDS, indirect=True)
"""Runs a voice test on PostgreSQL as well as SQLite (they default to SQLite: conftest.py)."""


# -- phone lines: what a test database holds besides the seed ------------------------------

Line = Callable[[str, Seeded], Awaitable[None]]
"""Provisions a seeded database (its URL) with SIP accounts, flows and numbers."""


async def _provision(database_url: str, seeded: Seeded, phones: tuple[str, ...],
                     numbers: Callable[[Any], Awaitable[list[VoiceNumber]]]) -> None:
    database = Database(database_url)
    try:
        async with database.session() as session:
            for name in phones:
                await SipAccounts(session, seeded.tenant_id).set_password(
                    seeded.agents[name], name, "acme", PHONE_PASSWORD)
            for number in await numbers(session):
                await VoiceNumbers(session, seeded.tenant_id).add(number)
    finally:
        await database.dispose()


async def open_support_line(database_url: str, seeded: Seeded) -> None:
    """Number 1000 goes straight to the support queue; alice and bob get SIP accounts."""
    async def numbers(session: Any) -> list[VoiceNumber]:
        flow = await IvrFlows(session, seeded.tenant_id).add(IvrFlow(
            name="support line", definition=parse_flow({
                "entry": "support",
                "nodes": {"support": {"kind": "queue", "queue_id": seeded.queues["support"]}},
            }).as_json()))
        return [VoiceNumber(number=SUPPORT_LINE, flow_id=flow.id)]

    await _provision(database_url, seeded, ("alice", "bob"), numbers)


def menu_flow(queue_id: str) -> dict[str, object]:
    """1: recorded, to the queue; 2: voicemail for the queue; anything else: goodbye."""
    return parse_flow({
        "entry": "menu",
        "language": "en",
        "nodes": {
            "menu": {"kind": "menu", "choices": {"1": "record", "2": "message"},
                     "prompt": {"text": "Welcome. Calls are recorded. For support, press 1."},
                     "fallback": "bye"},
            "record": {"kind": "set", "attributes": {"record": True}, "next": "support"},
            "support": {"kind": "queue", "queue_id": queue_id},
            "bye": {"kind": "hangup"},
            "message": {"kind": "voicemail", "queue_id": queue_id, "max_s": 30,
                        "prompt": {"text": "Please leave a message after the tone."}},
        },
    }).as_json()


async def open_menu_line(database_url: str, seeded: Seeded) -> None:
    """Number 1000 answers with `menu_flow` for the support queue; alice and bob get SIP
    accounts."""
    async def numbers(session: Any) -> list[VoiceNumber]:
        flow = await IvrFlows(session, seeded.tenant_id).add(
            IvrFlow(name="main", definition=menu_flow(seeded.queues["support"])))
        return [VoiceNumber(number=SUPPORT_LINE, flow_id=flow.id)]

    await _provision(database_url, seeded, ("alice", "bob"), numbers)


async def open_outbound_line(database_url: str, seeded: Seeded) -> None:
    """QUEUE_NUMBER is the support queue's caller ID for outbound calls; alice gets a SIP
    account."""
    async def numbers(session: Any) -> list[VoiceNumber]:
        return [VoiceNumber(number=QUEUE_NUMBER, outbound_queue_id=seeded.queues["support"])]

    await _provision(database_url, seeded, ("alice",), numbers)


async def open_both_ways(database_url: str, seeded: Seeded) -> None:
    """Number 1000 rings the support queue; QUEUE_NUMBER is the default caller ID, and the
    support queue's; alice and bob have SIP accounts."""
    await open_support_line(database_url, seeded)
    database = Database(database_url)
    try:
        async with database.session() as session:
            await VoiceNumbers(session, seeded.tenant_id).add(VoiceNumber(
                number=QUEUE_NUMBER, outbound_queue_id=seeded.queues["support"],
                is_default_outbound=True))
    finally:
        await database.dispose()


# -- the exchange ---------------------------------------------------------------------------

@dataclass
class Exchange:
    """A running OmniCC voice service on a seeded database; `workdir` is the test's own."""

    seeded: Seeded
    database: Database
    center: ContactCenter
    voice: VoiceService
    workdir: Path

    async def runtime(self) -> TenantRuntime:
        return await self.center.tenant(self.seeded.tenant_id)


@asynccontextmanager
async def open_exchange(database_url: str, workdir: Path, line: Line,
                        **settings: Any) -> AsyncIterator[Exchange]:
    """Seed the database, provision `line`, start the contact center and the voice service
    (SIP on a free UDP port, fast SIP timers, no position announcements unless `settings`,
    VoiceSettings fields, say otherwise) and stop them all on the way out."""
    seeded = await seed(database_url)
    await line(database_url, seeded)
    database = Database(database_url)
    center = ContactCenter(database, WallClock(), Bus())
    await center.start()
    voice = VoiceService(database, center, workdir / "data", VoiceSettings(**{
        "sip_port": 0, "media_ports": random_port_window(), "timers": Timers(t1=0.1),
        "announce_every_s": 3600, **settings}))
    await voice.start()
    try:
        yield Exchange(seeded, database, center, voice, workdir)
    finally:
        await voice.stop()
        await center.stop()
        await database.dispose()


# -- waiting and measuring ------------------------------------------------------------------

async def wait_until(predicate: Callable[[], object], what: str, timeout_s: float = 20) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def registered(voice: VoiceService, username: str) -> None:
    """Until `username`'s phone has a binding in tenant acme's registrar."""
    await wait_until(lambda: voice.registrar("acme").bindings(username),
                     f"{username}'s phone to register", timeout_s=10)


async def start_phone(workdir: Path, voice: VoiceService, user: str, *,
                      tone_hz: float = 440.0, **options: Any) -> Baresip:
    """`user`'s baresip phone in `workdir / user`, started and registered to `voice`
    (`options` are Baresip's)."""
    phone = Baresip(workdir / user, user=user, password=PHONE_PASSWORD,
                    registrar=("127.0.0.1", voice.stack.udp.port), tone_hz=tone_hz, **options)
    await phone.start()
    try:
        await registered(voice, user)
    except BaseException:
        await phone.stop()
        raise
    return phone


def recording(path: Path) -> Samples:
    """The samples of a 16-bit mono 8 kHz WAV (what a baresip phone heard)."""
    with wave.open(str(path)) as wav:
        assert wav.getframerate() == 8000
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")


def loudness(path: Path, skip_s: float = 0.5) -> float:
    """RMS of a 16-bit mono 8 kHz WAV after its first `skip_s` seconds."""
    body = recording(path)[int(8000 * skip_s):].astype(np.float64)
    return float(np.sqrt(np.mean(body ** 2))) if body.size else 0.0


Sound = Callable[[np.ndarray], bool]


def tone(hz: float) -> Sound:
    """The other side's sine tone at `hz`."""
    return lambda samples: tone_share(samples, hz) > 0.5


def music_instead_of(hz: float) -> Sound:
    """Music on hold: loud, and not the other side's tone."""
    return lambda samples: tone_share(samples, hz) < 0.05 and float(np.abs(samples).mean()) > 100


# -- the caller -----------------------------------------------------------------------------

class Caller:
    """Calls a number on OmniCC's SIP port (UDP, loopback) as CALLER_NUMBER; talks a sine tone
    (so what the other side hears can be measured) and keeps everything it hears."""

    def __init__(self, sip_port: int, *, tone_hz: float = 1000.0,
                 payload_type: int = PayloadType.PCMU) -> None:
        self.sip_port = sip_port
        self.tone_hz = tone_hz
        self.stack = SipStack("127.0.0.1", udp_port=0, tcp_port=None, timers=Timers(t1=0.1))
        self.rtp = RtpEndpoint(payload_type=payload_type)
        self.dialog: Dialog | None = None
        self._talking: asyncio.Task[None] | None = None

    async def call(self, number: str, *, request_user: str | None = None) -> None:
        """Call `number` (in To and, unless `request_user` says otherwise, the Request-URI);
        fails unless answered."""
        await self.stack.start()
        await self.rtp.open()
        server = Peer("UDP", "127.0.0.1", self.sip_port)
        request = self.stack.request(
            "INVITE", f"sip:{request_user or number}@127.0.0.1:{self.sip_port}", to=server,
            from_uri=f"sip:{CALLER_NUMBER}@127.0.0.1", from_display=CALLER_NAME,
            to_uri=f"sip:{number}@127.0.0.1", body=self.rtp.sdp().encode(),
            content_type="application/sdp")
        invite = self.stack.invite(request, server)
        final = await invite.final()
        assert final.status == 200, final.status
        self.dialog = invite.dialog
        self.rtp.connect(final.body.decode())

    async def press(self, digit: str) -> None:
        await self.rtp.send_dtmf(digit)

    def talk(self) -> None:
        """Send the tone from now until hanging up."""
        async def keep_sending() -> None:
            while True:
                await self.rtp.send_tone(self.tone_hz, 1.0)

        self._talking = asyncio.create_task(keep_sending())

    async def heard(self, seconds: float) -> np.ndarray:
        """What the caller hears during the next `seconds` (after a short settling time)."""
        await asyncio.sleep(0.4)
        start = len(self.rtp.packets)
        await asyncio.sleep(seconds)
        return self.rtp.audio(since=start)

    async def hears(self, sound: Sound, what: str, *, windows: int = 15) -> None:
        """Listen in one-second windows until `sound` is heard (media takes a moment to move
        after a change, longer on a busy machine); fails after `windows` windows."""
        for _ in range(windows):
            if sound(await self.heard(1.0)):
                return
        raise AssertionError(f"the caller never heard {what}")

    async def hung_up_on(self, timeout_s: float = 20) -> None:
        """Until OmniCC sends BYE (the dialog ends)."""
        assert self.dialog is not None
        await asyncio.wait_for(self.dialog.terminated.wait(), timeout_s)

    async def hang_up(self) -> None:
        """Stop talking and send BYE."""
        self._stop_talking()
        assert self.dialog is not None
        await self.dialog.bye()

    async def close(self) -> None:
        self._stop_talking()
        await self.rtp.close()
        await self.stack.stop()

    def _stop_talking(self) -> None:
        if self._talking is not None:
            self._talking.cancel()


class Customer(Caller):
    """The customer behind the carrier: answers the trunk's INVITE with A-law (the trunk's
    first codec), talks its tone and keeps what it hears (`Caller`'s ears, the other way)."""

    def __init__(self) -> None:
        super().__init__(0, tone_hz=CUSTOMER_HZ, payload_type=PayloadType.PCMA)

    async def answer_calls(self) -> int:
        """Start answering; the SIP port the trunk is to call."""
        self.stack.set_handler(self._on_request)
        await self.stack.start()
        await self.rtp.open()
        return self.stack.udp.port

    async def _on_request(self, incoming: IncomingRequest) -> None:
        if incoming.method != "INVITE":
            return
        self.rtp.connect(incoming.message.body.decode())
        await incoming.respond(200, body=self.rtp.sdp().encode(), content_type="application/sdp")
        self.dialog = incoming.dialog


# -- sipp -----------------------------------------------------------------------------------

async def _start_sipp(scenario: Path, workdir: Path, *args: str,
                      calls: int = 1) -> asyncio.subprocess.Process:
    """sipp running `scenario` `calls` times on loopback, with its own RTP port pair and a
    global timeout (it never hangs); its unexpected messages go to `workdir`'s errors log."""
    media_port = random_port_window(2, 20000, 29000)[0]
    return await asyncio.create_subprocess_exec(
        "sipp", *args, "-sf", str(scenario), "-m", str(calls), "-i", "127.0.0.1",
        "-mi", "127.0.0.1", "-mp", str(media_port), "-timeout", f"{SIPP_TIMEOUT_S}s",
        "-timeout_error", "-trace_err", "-nostdin",
        cwd=workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)


async def _sipp_outcome(process: asyncio.subprocess.Process, workdir: Path) -> tuple[int, str]:
    """sipp's exit code (0: every call went as the scenario says) and what explains it."""
    output, _ = await process.communicate()
    errors = "\n".join(p.read_text(errors="replace") for p in workdir.glob("*_errors.log"))
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")[-2000:] + errors[-3000:]


async def run_sipp(scenario: Path, port: int, workdir: Path, *, service: str) -> tuple[int, str]:
    """sipp calls `service` on 127.0.0.1:`port` once with a client scenario; its exit code
    and output."""
    process = await _start_sipp(scenario, workdir, f"127.0.0.1:{port}", "-s", service,
                                "-p", "0")
    return await _sipp_outcome(process, workdir)


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
        self.process = await _start_sipp(self.scenario, self.dir, "-p", str(self.port),
                                         calls=self.calls)
        await asyncio.sleep(0.3)  # sipp binds its port before reading the scenario's first recv

    async def finish(self) -> tuple[int, str]:
        """Until sipp ends: its exit code and output."""
        assert self.process is not None
        return await _sipp_outcome(self.process, self.dir)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()

    def trunk_config(self, **overrides: object) -> TrunkConfig:
        """A trunk to this carrier (digest password TRUNK_PASSWORD, Finnish numbers)."""
        settings: dict[str, object] = {"uri": f"sip:omnicc@127.0.0.1:{self.port}",
                                       "password": TRUNK_PASSWORD, "default_region": "FI",
                                       "retry_s": 0.5, **overrides}
        return TrunkConfig(**settings)  # type: ignore[arg-type]

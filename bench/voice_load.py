"""The voice load benchmark: sipp callers through OmniCC's IVR and queue to sipp agent phones.

    .venv/bin/python bench/voice_load.py [--calls 500] [--cps 50] [--hold-s S] [--talkers N]
        [--agents N] [--rates 10,20,...] [--sweep-s S] [--sweep-hold-s S] [--no-sippy]
        [--backend sqlite|postgresql] [--profile DIR] [--workdir DIR] [--quick]

What is measured (issue 4, "Speed"), everything on loopback on this machine:

- OmniCC is one `omnicc serve` process (as in production) on SQLite in a temporary directory
  (or `--backend postgresql`: a throwaway cluster), with the embedded rtpengine it starts
  (userspace; media ports 10000-19999). The tenant has one queue, `--agents`
  agents (voice capacity 1, no wrap-up time) and number 1000, whose IVR flow plays a short
  spoken greeting (espeak-ng, cached before the run like any prompt after its first call) and
  queues the call.
- Every agent has a SIP account; the phones register over SIP with digest (sipp,
  `bench/voice/register.xml`, one REGISTER pair per agent from an injection file whose third
  field is sipp's `[authentication ...]` keyword with that agent's credentials), all from the
  address where one sipp UAS (`bench/voice/agent.xml`) then answers every agent's INVITE at
  once and holds the call until OmniCC's BYE. Agents go available through the supervisor API.
- Load phase: sipp callers (`bench/voice/caller.xml`) place `--calls` calls at `--cps` per
  second (at most `--calls` at once); each stays `--hold-s` after the 200 OK, then hangs up.
  `--talkers` of them (a second sipp, started with the first) stream G.711 A-law both ways:
  their sipp sends a looped WAV with rtp_stream, the agents' sipp echoes it (`-rtp_echo`). The
  others send no RTP (sipp's media costs CPU on the same two cores).
  Figures: failed calls = calls placed minus calls OmniCC's call records show bridged to an
  agent (outcome `answered`); setup time = sipp's INVITE -> 200 (OmniCC answers before its
  IVR); time to agent = the record's start -> agent answered (greeting, queue, ring); peak
  concurrent bridged calls = the most records whose [answered, ended] overlap, and the agents'
  sipp's most calls up at once; CPU (utime + stime from /proc) of the OmniCC process and of
  its rtpengine over the phase, per call, and over the plateau (every call up, no set-ups).
- Sweep: short calls at rising rates (`--rates`, `--sweep-s` seconds each) until a rate fails
  (0.1 % failed or more, or under 95 % of the rate achieved): the highest rate that passed
  is the sustained call setups per second. A sweep caller hangs up `--sweep-hold-s` after the
  200 OK, so an OmniCC call counts as set up only when it reached an agent by then (greeting,
  queue, ring and answer within 8 s); for Sippy, when sipp's call completed.
- Sippy (PyPI `sippy`, `pip install -e '.[bench]'`): its `b2bua_simple` between the same
  sipp callers and a sipp UAS, the same load phase and sweep (signalling only: it anchors no
  media and runs no IVR or queue). OmniCC's sustained rate is reported as a ratio to Sippy's.
- Calls per GHz: the plateau's CPU of OmniCC and rtpengine per concurrent call (talkers' media
  counted per talking call) at the machine's clock, to compare with Asterisk's published
  ~100 G.711 calls per GHz.

`--profile DIR` records the OmniCC process with py-spy (raw folded stacks) from the load phase
on (`pip install -e '.[bench]'`).
The last printed line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import math
import os
import platform
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

SCENARIOS = Path(__file__).with_name("voice")
TENANT = "load"
NUMBER = "1000"
GREETING = "Thank you for calling."
PASSWORD = "load-test-supervisor-1"
PHONE_PASSWORD = "load-phone-1"
MEDIA_PORTS = "10000-19999"
HOST = "127.0.0.1"
START_TIMEOUT_S = 90.0
FAILED_SHARE_GOAL = 0.001
ACHIEVED_SHARE = 0.95


# --- processes and CPU ------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (its threads included), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def command_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    """A port free for both UDP and TCP on loopback (SIP listens on both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((HOST, 0))
            port: int = udp.getsockname()[1]
            with socket.socket() as tcp:
                try:
                    tcp.bind((HOST, port))
                except OSError:
                    continue
                return port


def ng_address(pid: int) -> tuple[str, int]:
    """rtpengine's control socket, from its command line (--listen-ng=host:port)."""
    for argument in command_of(pid).split():
        if argument.startswith("--listen-ng="):
            host, _, port = argument.split("=", 1)[1].rpartition(":")
            return host, int(port)
    raise RuntimeError(f"process {pid} has no --listen-ng")


def relayed_packets(address: tuple[str, int]) -> int:
    """RTP packets rtpengine has forwarded since it started (ng `statistics`)."""
    from omnicc.channels.voice.media.ng import NgClient

    async def ask() -> int:
        async with NgClient(address) as client:
            reply = await client.request("statistics")
        return int(reply["statistics"]["totalstatistics"]["relayedpackets"])

    return asyncio.run(ask())


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all cores, /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def free_media_port() -> int:
    """An even UDP port with the next three free (sipp's audio and video, RTP and RTCP), in
    20000-29999: away from the rtpengine's window and from the ephemeral ports."""
    while True:
        base = random.randrange(20000, 29996, 2)
        sockets = []
        try:
            for port in range(base, base + 4):
                probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(probe)
                probe.bind((HOST, port))
            return base
        except OSError:
            continue
        finally:
            for probe in sockets:
                probe.close()


def cpu_mhz() -> float:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz"):
            return float(line.split(":")[1])
    return 0.0


class CpuSampler:
    """CPU seconds of some processes every `interval_s`, with the wall clock (UTC), so any
    window of a phase can be priced afterwards."""

    def __init__(self, pids: Mapping[str, int], interval_s: float = 0.25) -> None:
        self.pids = dict(pids)
        self.interval_s = interval_s
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        values = {"machine": machine_busy_s()}
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError):
                values[name] = cpu_seconds(pid)
        self.samples.append((time.time(), values))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def start(self) -> None:
        self._sample()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def used(self, name: str, start: float, end: float) -> float:
        """CPU seconds `name` used between two wall-clock times (nearest samples inside)."""
        inside = [(at, values[name]) for at, values in self.samples
                  if start <= at <= end and name in values]
        if len(inside) < 2:
            return 0.0
        return inside[-1][1] - inside[0][1]

    def span(self, start: float, end: float) -> float:
        inside = [at for at, _ in self.samples if start <= at <= end]
        return inside[-1] - inside[0] if len(inside) >= 2 else 0.0


# --- sipp ------------------------------------------------------------------------------------


@dataclass
class SippRun:
    """One sipp process and the files it leaves in its own directory."""

    name: str
    workdir: Path
    process: subprocess.Popen[bytes]
    started_at: float = field(default_factory=time.time)

    def wait(self, timeout_s: float) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise RuntimeError(f"sipp {self.name} did not finish in {timeout_s:.0f} s") from None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGUSR1)  # sipp: quit at once, statistics written
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def statistics(self) -> list[dict[str, str]]:
        """The rows of sipp's -trace_stat file (one per -fd period, the last is final)."""
        rows: list[dict[str, str]] = []
        for path in self.workdir.glob("*_.csv"):
            with path.open(newline="") as handle:
                rows.extend(csv.DictReader(handle, delimiter=";"))
        return rows

    def final(self) -> dict[str, str]:
        rows = self.statistics()
        return rows[-1] if rows else {}

    def setup_times_ms(self) -> list[tuple[float, float]]:
        """(wall time of the 200 in s, INVITE -> 200 in ms) of every answered call; sipp
        writes the time since its start, in ms."""
        rows = self.statistics()
        started = _stat_time(rows[0], "StartTime") if rows else self.started_at
        times = []
        for path in self.workdir.glob("*_rtt.csv"):
            with path.open(newline="") as handle:
                for row in csv.reader(handle, delimiter=";"):
                    with contextlib.suppress(ValueError, IndexError):
                        times.append((started + float(row[0]) / 1000, float(row[1])))
        return times

    def errors(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-2000:]
                         for p in self.workdir.glob("*_errors.log"))


def sipp(name: str, workdir: Path, target: str, scenario: Path, *extra: str) -> SippRun:
    directory = workdir / name
    directory.mkdir(parents=True, exist_ok=True)
    command = ["sipp", *([target] if target else []), "-sf", str(scenario), "-i", HOST,
               "-nostdin", "-trace_err", "-trace_stat", "-fd", "1", *extra]
    process = subprocess.Popen(command, cwd=directory, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, preexec_fn=raise_fd_limit)
    return SippRun(name, directory, process)


def caller_scenario(workdir: Path, talk_file: Path | None, hold_s: float) -> Path:
    """caller.xml, with the rtp_stream action before the pause for callers who talk. The pause
    becomes a wait that ignores a late 100 Trying (a B2BUA's answer to a retransmitted INVITE
    that arrives after its 200 OK: RFC 3261 has the UAC ignore it, sipp would fail the call;
    Sippy sent one in about 1 of 400 calls at 40/s)."""
    text = (SCENARIOS / "caller.xml").read_text()
    wait = (f'  <label id="9"/>\n  <recv response="100" timeout="{int(hold_s * 1000)}" '
            'ontimeout="10" next="9"/>\n  <label id="10"/>')
    if talk_file is not None:
        wait = (f'  <nop><action><exec rtp_stream="{talk_file},-1,8"/></action></nop>\n\n'
                + wait)
    text = text.replace("  <pause/>", wait, 1)
    path = workdir / ("talker.xml" if talk_file is not None else "caller.xml")
    path.write_text(text)
    return path


def talk_wav(workdir: Path) -> Path:
    """Ten seconds of speech-like tones as 8 kHz A-law (what rtp_stream sends)."""
    path = workdir / "talk.wav"
    subprocess.run(["sox", "-n", "-r", "8000", "-c", "1", "-e", "a-law", str(path), "synth",
                    "10", "sine", "300-900", "tremolo", "3", "60"], check=True)
    return path


@dataclass
class CallerLoad:
    calls: int
    cps: float
    hold_s: float
    limit: int

    def args(self) -> list[str]:
        return ["-s", NUMBER, "-m", str(self.calls), "-r", f"{self.cps:g}", "-rp", "1000",
                "-l", str(self.limit), "-d", str(int(self.hold_s * 1000)),
                "-trace_rtt", "-rtt_freq", "1", "-timeout", f"{self.timeout_s():.0f}s",
                "-max_recv_loops", "10000", "-max_sched_loops", "10000"]

    def timeout_s(self) -> float:
        return self.calls / self.cps + self.hold_s + 60


# --- OmniCC ------------------------------------------------------------------------------------


@dataclass
class Seeded:
    tenant_id: str
    queue_id: str
    agents: list[tuple[str, str]]  # (agent id, SIP user)


async def seed(url: str, data_dir: Path, agents: int) -> Seeded:
    """The load tenant, its queue, agents with SIP accounts, a supervisor, number and flow;
    the greeting spoken once (the prompt cache every later call uses)."""
    from omnicc.app.passwords import Passwords
    from omnicc.channels.voice.ivr.flow import parse_flow
    from omnicc.channels.voice.media.prompts import TextToSpeech
    from omnicc.store.database import Database
    from omnicc.store.repositories import (
        Agents,
        IvrFlows,
        Queues,
        SipAccounts,
        Tenants,
        Users,
        VoiceNumbers,
    )
    from omnicc.store.tables import Agent, IvrFlow, Queue, User, VoiceNumber

    database = Database(url)
    try:
        await database.ensure_schema()
        async with database.session() as session:
            tenant = await Tenants(session).create(TENANT, "Voice Load", "UTC")
            queue = await Queues(session, tenant.id).add(Queue(
                name="support", description="Every call",
                config={"expression": "true", "offer_timeout_s": 30.0}))
            await Users(session, tenant.id).add(User(
                username="sam", role="supervisor", display_name="Sam",
                password_hash=Passwords().hash(PASSWORD)))
            definition = parse_flow({
                "entry": "greeting", "language": "en",
                "nodes": {"greeting": {"kind": "play", "prompt": {"text": GREETING},
                                       "next": "support"},
                          "support": {"kind": "queue", "queue_id": queue.id}},
            }).as_json()
            flow = await IvrFlows(session, tenant.id).add(IvrFlow(name="main",
                                                                  definition=definition))
            await VoiceNumbers(session, tenant.id).add(VoiceNumber(number=NUMBER,
                                                                   flow_id=flow.id))
            seeded = Seeded(tenant.id, queue.id, [])
            for index in range(agents):
                username = f"agent{index:04d}"
                user = await Users(session, tenant.id).add(User(
                    username=username, role="agent", display_name=f"Agent {index}",
                    password_hash="!"))
                agent = await Agents(session, tenant.id).add(Agent(
                    user_id=user.id, name=f"Agent {index}", skills={},
                    capacity={"voice": 1}))
                await SipAccounts(session, tenant.id).set_password(
                    agent.id, username, TENANT, PHONE_PASSWORD)
                seeded.agents.append((agent.id, username))
    finally:
        await database.dispose()
    await TextToSpeech(data_dir / "prompts" / "speech").speak(GREETING, voice="en")
    return seeded


async def call_records(url: str, tenant_id: str) -> list[Any]:
    from omnicc.store.database import Database
    from omnicc.store.repositories import CallRecords

    database = Database(url)
    try:
        async with database.session() as session:
            return list(await CallRecords(session, tenant_id).list_all())
    finally:
        await database.dispose()


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str
    sip_port: int
    rtpengine_pid: int
    profiler: subprocess.Popen[bytes] | None = None

    def profile(self, to: Path) -> None:
        """Sample the server with py-spy from now on (raw folded stacks, idle left out)."""
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.profiler = subprocess.Popen([py_spy, "record", "--pid", str(self.process.pid),
                                          "--format", "raw", "--output", str(to), "--rate",
                                          "250", "--nonblocking"],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.profiler is not None:
            self.profiler.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.profiler.wait(timeout=60)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_omnicc(database_url: str, data_dir: Path) -> Server:
    sip_port = free_port()
    omnicc = Path(sys.executable).with_name("omnicc")
    env = {**os.environ, "OMNICC_DATABASE_URL": database_url, "OMNICC_DATA_DIR": str(data_dir),
           "OMNICC_LOG_LEVEL": "warning", "OMNICC_SIP_PORT": str(sip_port),
           "OMNICC_SIP_HOST": HOST, "OMNICC_MEDIA_PORTS": MEDIA_PORTS}
    process = subprocess.Popen([str(omnicc), "serve", "--host", HOST, "--port", "0"], env=env,
                               stdout=subprocess.PIPE, text=True, preexec_fn=raise_fd_limit)
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    url = ""
    while not url:
        line = process.stdout.readline()
        if not line or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"omnicc serve did not start (exit {process.poll()})")
        if "serving on" in line:
            url = line.split("serving on", 1)[1].split()[0].rstrip(";")
    threading.Thread(target=process.stdout.read, daemon=True).start()  # keep the pipe drained
    engines: list[int] = []
    while not engines:  # voice may start after the HTTP side (the database comes first)
        engines = [pid for pid in children_of(process.pid) if "rtpengine" in command_of(pid)]
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("omnicc serve started no rtpengine")
        time.sleep(0.2)
    while not sip_answers(sip_port):
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("omnicc serve does not answer SIP")
    return Server(process, url, sip_port, engines[0])


def sip_answers(port: int) -> bool:
    """Whether something answers an OPTIONS on the SIP port (within 0.5 s)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((HOST, 0))
        probe.settimeout(0.5)
        local, unique = probe.getsockname()[1], time.monotonic_ns()
        probe.sendto((f"OPTIONS sip:{HOST}:{port} SIP/2.0\r\n"
                      f"Via: SIP/2.0/UDP {HOST}:{local};branch=z9hG4bK-ready{unique}\r\n"
                      f"From: <sip:bench@{HOST}>;tag=ready\r\nTo: <sip:{HOST}:{port}>\r\n"
                      f"Call-ID: ready-{unique}@{HOST}\r\nCSeq: 1 OPTIONS\r\n"
                      "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode(), (HOST, port))
        try:
            return probe.recv(65536).startswith(b"SIP/2.0")
        except OSError:
            return False


def agents_available(url: str, agent_ids: Sequence[str]) -> None:
    """What a supervisor does from the wallboard: set every agent available."""
    async def run() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            login = await client.post("/api/auth/login", json={
                "username": "sam", "password": PASSWORD, "tenant": TENANT})
            login.raise_for_status()
            headers = {"X-CSRF-Token": login.json()["csrf_token"]}
            gate = asyncio.Semaphore(16)

            async def one(agent_id: str) -> None:
                async with gate:
                    answer = await client.put(f"/api/supervisor/agents/{agent_id}/status",
                                              json={"status": "available"}, headers=headers)
                    answer.raise_for_status()

            await asyncio.gather(*(one(agent_id) for agent_id in agent_ids))

    asyncio.run(run())


def register_phones(workdir: Path, sip_port: int, agent_port: int,
                    users: Sequence[str]) -> dict[str, Any]:
    """Every agent's phone registers (digest) from the agents' sipp address."""
    injection = workdir / "phones.csv"
    # sipp takes the credentials from the file when a field holds the whole keyword.
    injection.write_text("SEQUENTIAL\n" + "".join(
        f"{user};{TENANT};[authentication username={user} password={PHONE_PASSWORD}]\n"
        for user in users))
    started = time.monotonic()
    run = sipp("register", workdir, f"{HOST}:{sip_port}", SCENARIOS / "register.xml",
               "-inf", str(injection), "-m", str(len(users)), "-r", "200", "-l", "50",
               "-p", str(agent_port), "-timeout", "120s")
    code = run.wait(150)
    final = run.final()
    registered = int(final.get("SuccessfulCall(C)", 0))
    if code != 0 or registered != len(users):
        raise RuntimeError(f"{registered} of {len(users)} phones registered (sipp exit {code}):"
                           f"\n{run.errors()}")
    return {"phones_registered": registered,
            "registration_s": round(time.monotonic() - started, 2)}


# --- Sippy ---------------------------------------------------------------------------------


def start_sippy(workdir: Path, uas_port: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    b2bua = shutil.which("b2bua_simple") or str(Path(sys.executable).with_name("b2bua_simple"))
    if not Path(b2bua).exists():
        raise RuntimeError("Sippy is not installed: .venv/bin/pip install -e '.[bench]'")
    process = subprocess.Popen([b2bua, "-f", "-l", HOST, "-p", str(port), "-n",
                                f"{HOST}:{uas_port}", "-L", str(workdir / "sippy.log")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               preexec_fn=raise_fd_limit)
    for _ in range(100):  # listening?
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                return process, port
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("b2bua_simple did not start")


# --- the phases ----------------------------------------------------------------------------------


@dataclass
class Peer:
    """The system under test, as the phases see it."""

    name: str
    target: str
    pid: int
    media_pid: int | None
    database_url: str | None = None
    tenant_id: str | None = None
    ng: tuple[str, int] | None = None

    def pids(self) -> dict[str, int]:
        pids = {"server": self.pid}
        if self.media_pid is not None:
            pids["rtpengine"] = self.media_pid
        return pids


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def peak_overlap(intervals: Sequence[tuple[float, float]]) -> int:
    points = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
                    key=lambda p: (p[0], p[1]))
    peak = current = 0
    for _, step in points:
        current += step
        peak = max(peak, current)
    return peak


def stamp(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def records_between(peer: Peer, start: float, end: float) -> list[Any]:
    if peer.database_url is None or peer.tenant_id is None:
        return []
    records = asyncio.run(call_records(peer.database_url, peer.tenant_id))
    return [r for r in records if start <= (stamp(r.started_at) or 0) <= end]


def settle(peer: Peer, start: float, timeout_s: float = 60) -> None:
    """Wait until OmniCC has closed the record of every call of the phase."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        records = records_between(peer, start, time.time())
        if all(r.ended_at is not None for r in records):
            return
        time.sleep(0.5)


def run_phase(peer: Peer, workdir: Path, name: str, load: CallerLoad, *, talkers: int = 0,
              talk_file: Path | None = None, agents: SippRun | None = None) -> dict[str, Any]:
    """One load: sipp callers (and talkers) against the peer; figures from sipp, from the
    peer's call records and from /proc."""
    sampler = CpuSampler(peer.pids())
    extra_pids: dict[str, int] = {}
    sampler.start()
    packets_before = relayed_packets(peer.ng) if peer.ng is not None else 0
    start = time.time()
    callers = sipp(f"{name}-callers", workdir, peer.target,
                   caller_scenario(workdir, None, load.hold_s),
                   *CallerLoad(load.calls - talkers, load.cps * (1 - talkers / load.calls),
                               load.hold_s, load.limit).args(),
                   "-p", "0", "-mp", str(free_media_port()))
    runs = [callers]
    if talkers:
        assert talk_file is not None
        runs.append(sipp(f"{name}-talkers", workdir, peer.target,
                         caller_scenario(workdir, talk_file, load.hold_s),
                         *CallerLoad(talkers, load.cps * talkers / load.calls, load.hold_s,
                                     talkers).args(),
                         "-p", "0", "-mp", str(free_media_port())))
    for run in runs:
        extra_pids[run.name] = run.process.pid
        sampler.pids[run.name] = run.process.pid
    codes = [run.wait(load.timeout_s() + 30) for run in runs]
    end = time.time()
    if peer.database_url is not None:
        settle(peer, start)
    sampler.stop()
    packets = relayed_packets(peer.ng) - packets_before if peer.ng is not None else None
    finals = [run.final() for run in runs]
    placed = sum(int(f.get("OutgoingCall(C)", 0)) for f in finals)
    sipp_ok = sum(int(f.get("SuccessfulCall(C)", 0)) for f in finals)
    sipp_failed = sum(int(f.get("FailedCall(C)", 0)) for f in finals)
    setups = [t for run in runs for t in run.setup_times_ms()]
    setup_ms = [ms for _, ms in setups]
    answered_at = sorted(at for at, _ in setups)
    result: dict[str, Any] = {
        "calls": load.calls, "cps_target": load.cps, "hold_s": load.hold_s, "talkers": talkers,
        "sipp_exit": codes, "placed": placed, "sipp_successful": sipp_ok,
        "sipp_failed": sipp_failed,
        "setup_ms_p50": percentile(setup_ms, 0.5), "setup_ms_p99": percentile(setup_ms, 0.99),
        "setup_ms_max": max(setup_ms) if setup_ms else None,
        "cps_achieved": (round((len(answered_at) - 1) / (answered_at[-1] - answered_at[0]), 1)
                         if len(answered_at) > 1 and answered_at[-1] > answered_at[0]
                         else None),
        "wall_s": round(end - start, 1),
    }
    if packets is not None:
        # A talker's stream is forwarded both ways (the agents' sipp echoes it): about
        # 2 x 50 packets per second of talk; calls that do not talk send nothing.
        result["rtp_packets_relayed"] = packets
        result["rtp_packets_per_talker_s_incl_prompts"] = (
            round(packets / (talkers * load.hold_s), 1) if talkers else None)
    records = records_between(peer, start - 1, end)
    if peer.database_url is not None:
        bridged = [r for r in records if r.outcome == "answered" and r.agent_id]
        to_agent = [(stamp(r.answered_at) or 0) - (stamp(r.started_at) or 0) for r in bridged]
        talk = [((stamp(r.answered_at) or 0), (stamp(r.ended_at) or 0)) for r in bridged]
        failed = max(0, placed - len(bridged))
        outcomes: dict[str, int] = {}
        for r in records:
            outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
        result.update({
            "records": len(records), "bridged": len(bridged), "failed": failed,
            "outcomes": outcomes,
            "to_agent_s_p50": _round(percentile(to_agent, 0.5), 3),
            "to_agent_s_p99": _round(percentile(to_agent, 0.99), 3),
            "peak_bridged": peak_overlap(talk),
        })
        plateau = (max(a for a, _ in talk), min(e for _, e in talk)) if talk else (0.0, 0.0)
    else:
        failed = max(0, placed - sipp_ok)
        result["failed"] = failed
        plateau = (0.0, 0.0)
        if answered_at:  # every call up: from the last 200 to the first call's end
            plateau = (answered_at[-1], answered_at[0] + load.hold_s)
    if agents is not None:
        up = [int(row.get("CurrentCall", 0)) for row in agents.statistics()
              if start <= _stat_time(row) <= end + 5]
        result["peak_agent_legs"] = max(up, default=0)
    result["failed_share"] = round(failed / placed, 5) if placed else None
    for process_name in ("server", "rtpengine", *extra_pids):
        if process_name in sampler.pids:
            used = sampler.used(process_name, start, time.time())
            result[f"cpu_s_{process_name}"] = round(used, 2)
    now = time.time()
    span = max(sampler.span(start, now), 1e-9)
    result["machine_cpu_share"] = round(sampler.used("machine", start, now) / span, 3)
    # The cores other work (other tests, other sessions) took meanwhile: not ours to count.
    ours = sum(sampler.used(name, start, now) for name in sampler.pids)
    result["others_cpu_share"] = round(max(0.0, result["machine_cpu_share"] - ours / span), 3)
    result["cpu_ms_per_call"] = round(1000 * result["cpu_s_server"] / max(placed, 1), 2)
    if "cpu_s_rtpengine" in result:
        result["rtpengine_cpu_ms_per_call"] = round(
            1000 * result["cpu_s_rtpengine"] / max(placed, 1), 2)
    result["plateau"] = plateau_figures(sampler, plateau, result)
    if sipp_failed or any(code not in (0, 1) for code in codes):
        result["sipp_errors"] = "\n".join(run.errors() for run in runs)[-1500:]
    return result


def _stat_time(row: Mapping[str, str], column: str = "CurrentTime") -> float:
    """A time of a sipp statistics row ('YYYY-MM-DD<tab>HH:MM:SS.ffffff<tab><epoch>')."""
    with contextlib.suppress(ValueError, IndexError):
        return float(row.get(column, "").split("\t")[-1])
    return 0.0


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def plateau_figures(sampler: CpuSampler, window: tuple[float, float],
                    result: Mapping[str, Any]) -> dict[str, Any] | None:
    """CPU while every call is up and none is being set up: the cost of calls in progress."""
    start, end = window[0] + 0.5, window[1] - 0.5
    seconds = sampler.span(start, end)
    if seconds < 2:
        return None
    figures: dict[str, Any] = {"seconds": round(seconds, 1)}
    for name in ("machine", *sampler.pids):
        figures[f"share_{name}"] = round(sampler.used(name, start, end) / seconds, 4)
    return figures


def sweep(peer: Peer, workdir: Path, rates: Sequence[float], seconds: float, hold_s: float,
          limit: int) -> dict[str, Any]:
    """Rising call rates until one fails; the highest that passed is the sustained rate.
    `limit` is the most calls the far end takes at once (OmniCC: its agents)."""
    steps: list[dict[str, Any]] = []
    sustained = 0.0
    for rate in rates:
        if rate * (hold_s + 4) > limit:
            steps.append({"cps": rate, "passed": None, "agent_bound": True})
            print(f"  {peer.name} sweep stops before {rate:g} cps: too few agents", flush=True)
            break
        calls = max(1, int(rate * seconds))
        figures = run_phase(peer, workdir, f"{peer.name}-sweep-{rate:g}",
                            CallerLoad(calls, rate, hold_s, limit))
        achieved = figures["cps_achieved"] or 0.0
        passed = (figures["failed_share"] is not None
                  and figures["failed_share"] < FAILED_SHARE_GOAL
                  and achieved >= ACHIEVED_SHARE * rate)
        steps.append({"cps": rate, "passed": passed, "achieved": achieved,
                      "failed": figures["failed"], "placed": figures["placed"],
                      "outcomes": figures.get("outcomes"), "sipp_failed": figures["sipp_failed"],
                      "sipp_errors": figures.get("sipp_errors"),
                      "setup_ms_p99": figures["setup_ms_p99"],
                      "to_agent_s_p99": figures.get("to_agent_s_p99"),
                      "cpu_ms_per_call": figures["cpu_ms_per_call"],
                      "peer_cpu_share": round(figures["cpu_s_server"] / figures["wall_s"], 3),
                      "machine_cpu_share": figures["machine_cpu_share"],
                      "others_cpu_share": figures["others_cpu_share"]})
        print(f"  {peer.name} sweep {rate:g} cps: {'pass' if passed else 'FAIL'} "
              f"achieved {achieved} failed {figures['failed']}/{figures['placed']} "
              f"setup p99 {figures['setup_ms_p99']} ms, CPU {figures['cpu_ms_per_call']} "
              f"ms/call, machine busy {figures['machine_cpu_share']} of 2 cores "
              f"(other work {figures['others_cpu_share']})", flush=True)
        if not passed:
            break
        sustained = rate
    return {"sustained_cps": sustained, "steps": steps}


# --- the two peers -----------------------------------------------------------------------


@dataclass
class Options:
    calls: int
    cps: float
    hold_s: float
    talkers: int
    agents: int
    rates: list[float]
    sweep_s: float
    sweep_hold_s: float
    sippy: bool
    backend: str
    profile: Path | None
    workdir: Path | None


def agent_phones(workdir: Path, name: str, port: int) -> SippRun:
    return sipp(name, workdir, "", SCENARIOS / "agent.xml", "-p", str(port), "-mp",
                str(free_media_port()), "-rtp_echo")


def omnicc_run(options: Options, workdir: Path) -> dict[str, Any]:
    data_dir = workdir / "omnicc"
    data_dir.mkdir()
    if options.backend == "postgresql":
        from chat_load import postgres_database  # the same throwaway cluster

        with postgres_database() as url:
            return omnicc_on(url, data_dir, options, workdir)
    return omnicc_on(f"sqlite+aiosqlite:///{data_dir / 'omnicc.db'}", data_dir, options,
                     workdir)


def omnicc_on(url: str, data_dir: Path, options: Options, workdir: Path) -> dict[str, Any]:
    started = time.monotonic()
    seeded = asyncio.run(seed(url, data_dir, options.agents))
    result: dict[str, Any] = {"seed_s": round(time.monotonic() - started, 1)}
    server = start_omnicc(url, data_dir)
    phones: SippRun | None = None
    try:
        agent_port = free_port()
        result.update(register_phones(workdir, server.sip_port, agent_port,
                                      [user for _, user in seeded.agents]))
        agents_available(server.url, [agent_id for agent_id, _ in seeded.agents])
        phones = agent_phones(workdir, "omnicc-agents", agent_port)
        time.sleep(1)
        peer = Peer("omnicc", f"{HOST}:{server.sip_port}", server.process.pid,
                    server.rtpengine_pid, url, seeded.tenant_id, ng_address(server.rtpengine_pid))
        talk_file = talk_wav(workdir)
        idle = CpuSampler(peer.pids())
        idle.start()
        time.sleep(3)
        idle.stop()
        now = time.time()
        result["idle_share"] = round(idle.used("server", 0, now) / idle.span(0, now), 4)
        if options.profile is not None:
            server.profile(options.profile / "omnicc.txt")
        print(f"omnicc: load {options.calls} calls at {options.cps:g} cps, hold "
              f"{options.hold_s:g} s, {options.talkers} talking", flush=True)
        result["load"] = run_phase(peer, workdir, "omnicc-load", CallerLoad(
            options.calls, options.cps, options.hold_s, options.calls),
            talkers=options.talkers, talk_file=talk_file, agents=phones)
        print(f"  {json.dumps(result['load'])}", flush=True)
        if options.rates:
            result["sweep"] = sweep(peer, workdir, options.rates, options.sweep_s,
                                    options.sweep_hold_s, options.agents)
    finally:
        if phones is not None:
            phones.stop()
        server.stop()
    return result


def sippy_run(options: Options, workdir: Path) -> dict[str, Any]:
    uas_port = free_port()
    phones = agent_phones(workdir, "sippy-agents", uas_port)
    b2bua, port = start_sippy(workdir, uas_port)
    try:
        time.sleep(1)
        peer = Peer("sippy", f"{HOST}:{port}", b2bua.pid, None)
        print(f"sippy: load {options.calls} calls at {options.cps:g} cps", flush=True)
        result: dict[str, Any] = {"load": run_phase(peer, workdir, "sippy-load", CallerLoad(
            options.calls, options.cps, options.hold_s, options.calls), agents=phones)}
        print(f"  {json.dumps(result['load'])}", flush=True)
        if options.rates:
            result["sweep"] = sweep(peer, workdir, options.rates, options.sweep_s,
                                    options.sweep_hold_s, 10_000)
        return result
    finally:
        b2bua.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            b2bua.wait(timeout=10)
        if b2bua.poll() is None:
            b2bua.kill()
        phones.stop()


def summary(options: Options, omnicc: Mapping[str, Any],
            sippy: Mapping[str, Any] | None) -> dict[str, Any]:
    load = omnicc["load"]
    mhz = cpu_mhz()
    plateau = load.get("plateau") or {}
    per_call_share = None
    calls_per_ghz = None
    if plateau and load["peak_bridged"]:
        talkers = max(load["talkers"], 1)
        # rtpengine's plateau CPU is the talkers' media; OmniCC's is spread over every call.
        per_call_share = (plateau.get("share_server", 0) / load["peak_bridged"]
                          + plateau.get("share_rtpengine", 0) / talkers)
        if per_call_share > 0 and mhz:
            calls_per_ghz = round(1 / (per_call_share * mhz / 1000), 1)
    out: dict[str, Any] = {
        "bench": "voice_load", "python": platform.python_version(), "cpus": os.cpu_count(),
        "cpu_mhz": round(mhz), "options": {**options.__dict__, "profile": str(options.profile),
                                    "workdir": str(options.workdir)},
        "omnicc": omnicc, "sippy": sippy,
        "peak_bridged": load.get("peak_bridged"),
        "failed_share": load.get("failed_share"),
        "signalling_cpu_ms_per_call": load.get("cpu_ms_per_call"),
        "rtpengine_cpu_ms_per_call": load.get("rtpengine_cpu_ms_per_call"),
        "calls_per_ghz_with_media": calls_per_ghz,
    }
    sustained = omnicc.get("sweep", {}).get("sustained_cps")
    sippy_sustained = (sippy or {}).get("sweep", {}).get("sustained_cps")
    out["sustained_cps"] = sustained
    out["sippy_sustained_cps"] = sippy_sustained
    out["cps_ratio_to_sippy"] = (round(sustained / sippy_sustained, 3)
                                 if sustained is not None and sippy_sustained else None)
    out["goals"] = {
        "concurrent_bridged_500": (load.get("peak_bridged") or 0) >= 500,
        "cps_50": (sustained or 0) >= 50,
        "failed_below_0.1%": (load.get("failed_share") is not None
                              and load["failed_share"] < FAILED_SHARE_GOAL),
    }
    return out


def print_table(result: Mapping[str, Any]) -> None:
    load = result["omnicc"]["load"]
    rows = [
        ("calls placed / bridged / failed", f"{load['placed']} / {load['bridged']} / "
                                            f"{load['failed']} ({load['failed_share']})"),
        ("peak concurrent bridged (records / agents' sipp)",
         f"{load['peak_bridged']} / {load.get('peak_agent_legs')}"),
        ("setup INVITE->200 p50 / p99 ms", f"{load['setup_ms_p50']} / {load['setup_ms_p99']}"),
        ("to agent p50 / p99 s", f"{load['to_agent_s_p50']} / {load['to_agent_s_p99']}"),
        ("OmniCC CPU ms per call (whole call)", load["cpu_ms_per_call"]),
        ("rtpengine CPU ms per call", load.get("rtpengine_cpu_ms_per_call")),
        ("plateau", load.get("plateau")),
        ("calls per GHz (with media)", result["calls_per_ghz_with_media"]),
        ("sustained cps OmniCC / Sippy", f"{result['sustained_cps']} / "
                                         f"{result['sippy_sustained_cps']} "
                                         f"(ratio {result['cps_ratio_to_sippy']})"),
    ]
    if result["sippy"]:
        rows.append(("Sippy CPU ms per call", result["sippy"]["load"]["cpu_ms_per_call"]))
    for label, value in rows:
        print(f"{label:52} {value}")


def parse(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--cps", type=float, default=50.0)
    parser.add_argument("--hold-s", type=float, default=None,
                        help="after the 200 OK; default: calls/cps + 10 s, so all overlap")
    parser.add_argument("--talkers", type=int, default=None,
                        help="calls that stream RTP (default: a tenth)")
    parser.add_argument("--agents", type=int, default=None,
                        help="default: enough for the load and for sweep rates up to 100/s")
    parser.add_argument("--rates", default="10,20,25,30,40,50,60,80,100,150,200,250,300,400",
                        help="the sweep's call rates; empty: no sweep")
    parser.add_argument("--sweep-s", type=float, default=10.0)
    parser.add_argument("--sweep-hold-s", type=float, default=8.0,
                        help="a sweep caller's patience: hangs up this long after the 200 OK")
    parser.add_argument("--no-sippy", action="store_true")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite",
                        help="OmniCC's database (postgresql: a throwaway cluster, as chat_load)")
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="a new directory to work in and keep (default: a temporary one)")
    parser.add_argument("--quick", action="store_true",
                        help="30 calls at 10 cps, sweep 10 and 25 cps (under 2 minutes)")
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.cps, args.rates, args.sweep_s = 30, 10.0, "10,25", 4.0
    hold_s = args.hold_s if args.hold_s is not None else args.calls / args.cps + 10
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    # A sweep call needs its agent from the greeting's end to its hang-up (hold + ~2 s).
    sweep_agents = math.ceil(min(max(rates, default=0), 100) * (args.sweep_hold_s + 4))
    return Options(
        calls=args.calls, cps=args.cps, hold_s=hold_s,
        talkers=args.talkers if args.talkers is not None else args.calls // 10,
        agents=args.agents or max(args.calls + 100, sweep_agents), rates=rates,
        sweep_s=args.sweep_s, sweep_hold_s=args.sweep_hold_s, sippy=not args.no_sippy,
        backend=args.backend,
        profile=args.profile, workdir=args.workdir)


@contextlib.contextmanager
def workspace(keep: Path | None) -> Iterator[Path]:
    """A temporary directory, or `keep` (left in place: the database, sipp's logs)."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=False)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="voice-load-") as directory:
        yield Path(directory)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    options = parse(argv)
    for tool in ("sipp", "rtpengine", "espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: scripts/test_packages.sh installs it")
    raise_fd_limit()
    if options.profile is not None:
        options.profile.mkdir(parents=True, exist_ok=True)
    with workspace(options.workdir) as workdir:
        omnicc = omnicc_run(options, workdir)
        sippy = sippy_run(options, workdir) if options.sippy else None
    result = summary(options, omnicc, sippy)
    print_table(result)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

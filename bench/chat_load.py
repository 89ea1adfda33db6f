"""The web chat load benchmark: customers and agents over real WebSockets against one server.

    .venv/bin/python bench/chat_load.py [--backend sqlite|postgresql|both] [--agents N]
        [--customers N] [--rate MSGS_PER_S] [--duration-s S] [--saturate-s S]
        [--generators N] [--profile DIR] [--quick]

What is measured (issue 3, "Speed"):

- One `omnicc serve` process (uvicorn, as in production) on a database seeded with a tenant of
  `--agents` agents, each with chat capacity ceil(customers / agents), all in one queue. The
  load generator runs in `--generators` other processes (asyncio and the `websockets` client);
  each drives every N-th agent and customer.
- Set-up: agents log in over REST (the server's real password hashing), open `/api/desk/ws`
  and go available; customers open `/api/chat/ws`, say hello and `start` a chat; agents accept
  the offers their socket pushes. The server's resident memory (VmRSS) is read before the first
  connection and once every chat is accepted: the difference per open connection (customers
  plus agents, each with its chat, its sockets and its share of the engine) is the memory figure.
- Paced phase: each customer sends a `message` frame at a fixed period so that customers send
  rate/2 messages/s in all; the agent that receives it (desk socket, `message.created`) answers
  at once over REST, and the reply reaches the customer's socket: rate messages/s in all.
  Latency is from just before the sender writes to when the receiver has parsed the frame (the
  send time travels in the text; the clock is the machine's monotonic clock, shared by all
  processes). After a warm-up, `--duration-s` seconds are measured; then sending stops and every
  message is awaited: each one sent must arrive exactly once on the other side (lost,
  duplicated).
- Saturation phase: every customer sends its next message as soon as the reply to its last one
  arrives (a closed loop with every session in flight), for `--saturate-s` seconds: the most
  messages/s the server delivers.
- The ceiling: `bench/chat_relay.py`, a bare relay on the same uvicorn stack (no storage, no
  routing), driven by the same generator through the same two phases. OmniCC's figures are
  reported as ratios to it.
- CPU: the share of one core the server and each generator used in each phase (a generator
  near 1.0 is saturated: add `--generators`).

PostgreSQL is a throwaway cluster (initdb in a temporary directory, loopback, fsync on), like
the integration tests'. The last printed line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import json
import math
import multiprocessing
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
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import websockets

GOAL_SESSIONS = 2_000
GOAL_AGENTS = 200
GOAL_MSGS_PER_S = 1_000.0
GOAL_P99_MS = 100.0

TENANT = "load"
PASSWORD = "a load-test password, long enough"
BACKENDS = ("sqlite", "postgresql")
SERVER_START_TIMEOUT_S = 60.0
LOGINS_IN_FLIGHT = 4
LOGIN_TIMEOUT_S = 120.0
STARTS_IN_FLIGHT = 64
FRAME_TIMEOUT_S = 30.0
ACCEPT_ATTEMPTS = 3
RELOAD_AFTER_S = 20.0


@dataclass(frozen=True, slots=True)
class Load:
    agents: int = GOAL_AGENTS
    customers: int = GOAL_SESSIONS
    rate: float = GOAL_MSGS_PER_S
    """Messages/s in all: half from customers, half the agents' replies."""
    duration_s: float = 30.0
    warmup_s: float = 5.0
    saturate_s: float = 15.0
    drain_s: float = 30.0
    setup_timeout_s: float = 300.0
    generators: int = 1
    relay_generators: int = 2

    @property
    def capacity(self) -> int:
        return max(1, math.ceil(self.customers / self.agents))


QUICK = Load(agents=4, customers=12, rate=40.0, duration_s=2.0, warmup_s=0.5, saturate_s=1.0,
             drain_s=15.0, setup_timeout_s=120.0)


@dataclass(frozen=True, slots=True)
class Target:
    """Where the generator connects, and how a session is set up there."""

    kind: str
    """`omnicc` (log in, route, accept) or `relay` (sockets paired by index)."""
    url: str
    queue_id: str = ""
    usernames: tuple[str, ...] = ()

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[len("http"):]


# --- the load generator (one process per shard) -----------------------------------------------


@dataclass
class Tally:
    """What one generator saw in one phase. Keys are (customer index, sequence number)."""

    sent: list[tuple[int, int]] = field(default_factory=list)
    """Customer messages written to the socket."""
    acked: int = 0
    received: list[tuple[int, int]] = field(default_factory=list)
    """Customer messages that reached an agent's socket."""
    replies_sent: list[tuple[int, int]] = field(default_factory=list)
    """Agent replies the server answered 201 to."""
    replies_received: list[tuple[int, int]] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    """Customer -> agent, for messages sent inside the measured window."""
    reply_latencies_ms: list[float] = field(default_factory=list)
    delivered_in_window: int = 0
    """Deliveries (either way) whose arrival fell inside the measured window."""
    errors: list[str] = field(default_factory=list)
    cpu_s: float = 0.0


def parse_text(text: str) -> tuple[int, int, int] | None:
    """`m <customer> <seq> <sent_ns>` or `r ...` -> (customer, seq, sent_ns)."""
    parts = text.split()
    if len(parts) != 4 or parts[0] not in ("m", "r"):
        return None
    return int(parts[1]), int(parts[2]), int(parts[3])


class Shard:
    """The agents and customers of one generator process, and the current phase's tally."""

    def __init__(self, target: Target, load: Load, shard: int) -> None:
        self.target = target
        self.load = load
        self.shard = shard
        self.agents = [i for i in range(load.agents) if i % load.generators == shard]
        self.customers = [i for i in range(load.customers) if i % load.generators == shard]
        self.tally = Tally()
        self.window = (0, 0)
        self.sockets: list[Any] = []
        self.clients: dict[int, httpx.AsyncClient] = {}
        self.readers: list[asyncio.Task[None]] = []
        self.replies: set[asyncio.Task[None]] = set()
        self.joined: dict[int, asyncio.Event] = {}
        self.conversations: dict[int, str] = {}
        self.waiting: dict[int, tuple[int, asyncio.Future[None]]] = {}
        self.accepted: set[str] = set()
        self.ready_agents = 0
        self.offers_missed = 0
        self.customer_sockets: dict[int, Any] = {}

    # set-up

    async def connect_agents(self) -> dict[str, Any]:
        started = time.monotonic()
        logins = asyncio.Semaphore(LOGINS_IN_FLIGHT)
        await asyncio.gather(*(self._agent(i, logins) for i in self.agents))
        return {"agents": self.ready_agents, "agents_s": round(time.monotonic() - started, 2)}

    async def connect_customers(self) -> dict[str, Any]:
        started = time.monotonic()
        starts = asyncio.Semaphore(STARTS_IN_FLIGHT)
        await asyncio.gather(*(self._customer(i, starts) for i in self.customers))
        deadline = time.monotonic() + self.load.setup_timeout_s
        everyone = asyncio.gather(*(e.wait() for e in self.joined.values()))
        try:
            while True:
                try:
                    await asyncio.wait_for(asyncio.shield(everyone), RELOAD_AFTER_S)
                    break
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise
                    await self._reload_offers()
        except TimeoutError:
            waiting = sum(not e.is_set() for e in self.joined.values())
            raise RuntimeError(f"{waiting} chats were not accepted within "
                               f"{self.load.setup_timeout_s:.0f} s; errors: "
                               f"{self.tally.errors[:5]}") from None
        return {"customers": len(self.conversations), "offers_missed": self.offers_missed,
                "customers_s": round(time.monotonic() - started, 2),
                "errors": self.tally.errors[:5]}

    async def _agent(self, index: int, logins: asyncio.Semaphore) -> None:
        client = httpx.AsyncClient(base_url=self.target.url, timeout=FRAME_TIMEOUT_S,
                                   limits=httpx.Limits(max_connections=8))
        self.clients[index] = client
        headers = {"Origin": self.target.url}
        path = f"/api/desk/ws?agent={index}"
        if self.target.kind == "omnicc":
            async with logins:
                response = await client.post("/api/auth/login", json={
                    "username": self.target.usernames[index], "password": PASSWORD,
                    "tenant": TENANT}, timeout=LOGIN_TIMEOUT_S)
            response.raise_for_status()
            client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
            path = "/api/desk/ws"
        ws = await websockets.connect(self.target.ws_url + path, additional_headers=headers,
                                      open_timeout=FRAME_TIMEOUT_S, max_size=2**22,
                                      ping_interval=None)
        self.sockets.append(ws)
        first = json.loads(await asyncio.wait_for(ws.recv(), FRAME_TIMEOUT_S))
        if first.get("type") != "state":
            raise RuntimeError(f"agent {index}: expected the state frame, got {first}")
        self.readers.append(asyncio.create_task(self._agent_reader(index, ws, client)))
        if self.target.kind == "omnicc":
            response = await client.put("/api/desk/status", json={"status": "available"})
            response.raise_for_status()
        self.ready_agents += 1

    async def _customer(self, index: int, starts: asyncio.Semaphore) -> None:
        path = f"/api/chat/ws?tenant={TENANT}"
        if self.target.kind == "relay":
            path += f"&pair={index % self.load.agents}"
        joined = self.joined[index] = asyncio.Event()
        async with starts:
            ws = await websockets.connect(self.target.ws_url + path,
                                          additional_headers={"Origin": self.target.url},
                                          open_timeout=FRAME_TIMEOUT_S, max_size=2**22,
                                      ping_interval=None)
            self.sockets.append(ws)
            await ws.send(json.dumps({"type": "hello", "visitor": None,
                                      "name": f"Customer {index}"}))
            welcome = json.loads(await asyncio.wait_for(ws.recv(), FRAME_TIMEOUT_S))
            if welcome.get("type") != "welcome":
                raise RuntimeError(f"customer {index}: expected welcome, got {welcome}")
            await ws.send(json.dumps({"type": "start", "queue_id": self.target.queue_id,
                                      "text": "Hello, I have a question.",
                                      "id": f"start-{index}"}))
            while index not in self.conversations:
                frame = json.loads(await asyncio.wait_for(ws.recv(), FRAME_TIMEOUT_S))
                if frame.get("type") == "chat":
                    self.conversations[index] = frame["conversation_id"]
                elif frame.get("type") == "error":
                    raise RuntimeError(f"customer {index}: {frame}")
                elif frame.get("type") == "agent_joined":
                    joined.set()
        self.readers.append(asyncio.create_task(self._customer_reader(index, ws)))
        self.customer_sockets[index] = ws

    # the frames

    def _in_window(self, at_ns: int) -> bool:
        return self.window[0] <= at_ns < self.window[1]

    async def _agent_reader(self, index: int, ws: Any, client: httpx.AsyncClient) -> None:
        try:
            async for raw in ws:
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "message.created" and frame.get("author_kind") == "customer":
                    now = time.monotonic_ns()
                    parsed = parse_text(frame.get("text", ""))
                    if parsed is None:
                        continue
                    customer, seq, sent_ns = parsed
                    self.tally.received.append((customer, seq))
                    if self._in_window(sent_ns):
                        self.tally.latencies_ms.append((now - sent_ns) / 1e6)
                    if self._in_window(now):
                        self.tally.delivered_in_window += 1
                    reply = asyncio.create_task(self._reply(ws, frame["conversation_id"],
                                                            customer, seq))
                    self.replies.add(reply)
                    reply.add_done_callback(self.replies.discard)
                elif kind == "ack" and str(frame.get("id", "")).startswith("r-"):
                    _, customer_text, seq_text = frame["id"].split("-")
                    self.tally.replies_sent.append((int(customer_text), int(seq_text)))
                elif kind == "error":
                    self.tally.errors.append(f"agent {index}: {frame.get('detail')}")
                elif kind == "offer.created" and frame.get("offer_id") not in self.accepted:
                    self.accepted.add(frame["offer_id"])
                    await self._accept(client, frame["offer_id"])
        except Exception as error:  # a dead reader must be reported, not hang the set-up
            self.tally.errors.append(f"agent {index} reader: {error!r}")

    async def _reload_offers(self) -> None:
        """What a desktop does when it reloads its state: accept the pending offers listed
        there. Counted, because each is an offer whose notice the desk socket did not bring."""
        if self.target.kind != "omnicc":
            return
        for client in self.clients.values():
            response = await client.get("/api/desk/state")
            for offer in response.json().get("offers", []) if response.is_success else []:
                if offer["offer_id"] not in self.accepted:
                    self.offers_missed += 1
                    self.tally.errors.append(f"offer {offer['offer_id']} not pushed")
                self.accepted.add(offer["offer_id"])
                await self._accept(client, offer["offer_id"])

    async def _accept(self, client: httpx.AsyncClient, offer_id: str) -> None:
        """Accept an offer as an agent would: click again if the server answered an error."""
        for attempt in range(ACCEPT_ATTEMPTS):
            try:
                response = await client.post(f"/api/desk/offers/{offer_id}/accept")
            except httpx.HTTPError as error:
                self.tally.errors.append(f"accept {offer_id}: {error!r}")
            else:
                if response.status_code == 200:
                    return
                self.tally.errors.append(f"accept {offer_id}: {response.status_code} "
                                         f"{response.text[:200]}")
                if response.status_code < 500:
                    return
            await asyncio.sleep(0.5 * (attempt + 1))

    async def _reply(self, ws: Any, conversation_id: str, customer: int, seq: int) -> None:
        """The agent answers over the desk's WebSocket (the `ack` comes back to the reader)."""
        text = f"r {customer} {seq} {time.monotonic_ns()}"
        try:
            await ws.send(json.dumps({"type": "message", "conversation_id": conversation_id,
                                      "text": text, "id": f"r-{customer}-{seq}"}))
        except websockets.ConnectionClosed as error:
            self.tally.errors.append(f"reply: {error!r}")

    async def _customer_reader(self, index: int, ws: Any) -> None:
        try:
            async for raw in ws:
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "message" and frame["message"].get("author_kind") == "agent":
                    now = time.monotonic_ns()
                    parsed = parse_text(frame["message"].get("text", ""))
                    if parsed is None:
                        continue
                    customer, seq, sent_ns = parsed
                    self.tally.replies_received.append((customer, seq))
                    if self._in_window(sent_ns):
                        self.tally.reply_latencies_ms.append((now - sent_ns) / 1e6)
                    if self._in_window(now):
                        self.tally.delivered_in_window += 1
                    waiting = self.waiting.get(index)
                    if waiting is not None and waiting[0] == seq and not waiting[1].done():
                        waiting[1].set_result(None)
                elif kind == "ack" and str(frame.get("id", "")).startswith("m-"):
                    self.tally.acked += 1
                elif kind == "agent_joined":
                    self.joined[index].set()
                elif kind == "error":
                    self.tally.errors.append(f"customer {index}: {frame}")
        except Exception as error:
            self.tally.errors.append(f"customer {index} reader: {error!r}")

    # the phases

    async def _send(self, index: int, seq: int) -> None:
        ws = self.customer_sockets[index]
        text = f"m {index} {seq} {time.monotonic_ns()}"
        # Counted as sent before the write: a frame lost with a closing socket is lost.
        self.tally.sent.append((index, seq))
        await ws.send(json.dumps({"type": "message", "text": text, "id": f"m-{index}-{seq}"}))

    async def paced(self, index: int, start_ns: int, stop_ns: int, first_seq: int) -> int:
        period_ns = int(self.load.customers / (self.load.rate / 2) * 1e9)
        at = start_ns + period_ns * index // self.load.customers
        seq = first_seq
        while at < stop_ns:
            await asyncio.sleep(max(0.0, (at - time.monotonic_ns()) / 1e9))
            try:
                await self._send(index, seq)
            except websockets.ConnectionClosed as closed:
                self.tally.errors.append(f"customer {index}: {closed}")
                return seq + 1
            seq += 1
            at += period_ns
        return seq

    async def closed_loop(self, index: int, start_ns: int, stop_ns: int, first_seq: int) -> int:
        await asyncio.sleep(max(0.0, (start_ns - time.monotonic_ns()) / 1e9))
        # Spread the first sends over 100 ms so the sessions do not move in lockstep.
        await asyncio.sleep(random.random() / 10)
        seq = first_seq
        loop = asyncio.get_running_loop()
        while time.monotonic_ns() < stop_ns:
            replied: asyncio.Future[None] = loop.create_future()
            self.waiting[index] = (seq, replied)
            try:
                await self._send(index, seq)
            except websockets.ConnectionClosed as closed:
                self.tally.errors.append(f"customer {index}: {closed}")
                return seq + 1
            seq += 1
            try:
                await asyncio.wait_for(replied, FRAME_TIMEOUT_S)
            except TimeoutError:
                self.tally.errors.append(f"customer {index}: no reply to {seq - 1}")
                break
        self.waiting.pop(index, None)
        return seq

    async def phase(self, mode: str, go_ns: int, next_seq: dict[int, int]) -> None:
        self.tally = Tally()
        load = self.load
        measure_s = load.duration_s if mode == "paced" else load.saturate_s
        start_measure = go_ns + int(load.warmup_s * 1e9)
        stop_ns = start_measure + int(measure_s * 1e9)
        self.window = (start_measure, stop_ns)
        cpu = time.process_time()
        driver = self.paced if mode == "paced" else self.closed_loop
        ends = await asyncio.gather(*(driver(i, go_ns, stop_ns, next_seq[i])
                                      for i in self.customers))
        next_seq.update(zip(self.customers, ends, strict=True))
        self.tally.cpu_s = time.process_time() - cpu

    async def drain(self) -> None:
        """Wait until every reply to this shard's customers arrived (or the drain timeout)."""
        deadline = time.monotonic() + self.load.drain_s
        while time.monotonic() < deadline:
            if len(set(self.tally.replies_received)) >= len(set(self.tally.sent)) and \
                    not self.replies:
                return
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        for task in [*self.readers, *self.replies]:
            task.cancel()
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)
        await asyncio.gather(*(c.aclose() for c in self.clients.values()),
                             return_exceptions=True)


async def run_shard(target: Target, load: Load, shard_index: int, pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    shard = Shard(target, load, shard_index)
    next_seq = dict.fromkeys(shard.customers, 0)
    try:
        pipe.send(("agents", await shard.connect_agents()))
        await loop.run_in_executor(None, pipe.recv)
        pipe.send(("ready", await shard.connect_customers()))
        while True:
            command, argument = await loop.run_in_executor(None, pipe.recv)
            if command == "phase":
                mode, go_ns = argument
                await shard.phase(mode, go_ns, next_seq)
                await shard.drain()
                pipe.send(("drained", None))
            elif command == "report":
                await asyncio.sleep(0.2)
                pipe.send(("tally", asdict(shard.tally)))
            else:
                break
    except Exception as error:  # the parent reports it; the child must not hang
        pipe.send(("failed", f"{type(error).__name__}: {error}"))
    finally:
        await shard.close()


def shard_process(target: Target, load: Load, shard_index: int, pipe: Connection) -> None:
    raise_fd_limit()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(run_shard(target, load, shard_index, pipe))


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- the server processes ---------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    url: str
    profiler: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

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


def start_server(command: list[str], env: Mapping[str, str], marker: str,
                 profile_to: Path | None = None) -> ServerProcess:
    """Start a server that prints `<marker> <url>` when it accepts connections."""
    process = subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.PIPE,
                               stderr=None, text=True, preexec_fn=raise_fd_limit)
    assert process.stdout is not None
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    url = ""
    while not url:
        line = process.stdout.readline()
        if not line or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{command[0]} did not start (exit {process.poll()})")
        if marker in line:
            url = line.split(marker, 1)[1].split()[0].rstrip(";")
    profiler = None
    if profile_to is not None:
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        profiler = subprocess.Popen([py_spy, "record", "--pid", str(process.pid), "--format",
                                     "raw", "--output", str(profile_to), "--nonblocking"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return ServerProcess(process, url, profiler)


def start_omnicc(database_url: str, data_dir: Path, profile_to: Path | None) -> ServerProcess:
    omnicc = Path(sys.executable).with_name("omnicc")
    return start_server([str(omnicc), "serve", "--host", "127.0.0.1", "--port", "0"], {
        "OMNICC_DATABASE_URL": database_url, "OMNICC_DATA_DIR": str(data_dir),
        "OMNICC_LOG_LEVEL": "warning"}, "serving on", profile_to)


def start_relay() -> ServerProcess:
    return start_server([sys.executable, str(Path(__file__).with_name("chat_relay.py"))], {},
                        "relay serving on")


async def seed(url: str, load: Load) -> Target:
    """The load tenant: one queue, `load.agents` agents with users who can log in."""
    from omnicc.app.passwords import Passwords
    from omnicc.store.database import Database
    from omnicc.store.repositories import Agents, Queues, Tenants, Users
    from omnicc.store.tables import Agent, Queue, User

    database = Database(url)
    try:
        await database.ensure_schema()
        async with database.session() as session:
            tenant = await Tenants(session).create(TENANT, "Load Test", "UTC")
            queue = await Queues(session, tenant.id).add(Queue(
                name="support", description="Everything",
                config={"expression": "true", "wrap_up_s": 0.0, "offer_timeout_s": 300.0}))
            hashed = Passwords().hash(PASSWORD)  # production parameters: logins pay for them
            usernames = []
            for index in range(load.agents):
                username = f"agent{index:04d}"
                user = await Users(session, tenant.id).add(User(
                    username=username, role="agent", display_name=f"Agent {index}",
                    password_hash=hashed))
                await Agents(session, tenant.id).add(Agent(
                    user_id=user.id, name=f"Agent {index}", skills={},
                    capacity={"chat": load.capacity}))
                usernames.append(username)
            return Target("omnicc", "", queue.id, tuple(usernames))
    finally:
        await database.dispose()


# --- PostgreSQL: a throwaway cluster -----------------------------------------------------------


def _postgres_binary(name: str) -> str:
    found = shutil.which(name) or max(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                                      key=lambda p: int(Path(p).parts[-3]), default=None)
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed")
    return found


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A database in a new cluster that lives for the block (as the integration tests')."""
    directory = Path(tempfile.mkdtemp(prefix="omnicc-bench-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root
        shutil.chown(directory, user="postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    data = directory / "data"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pg_ctl = _postgres_binary("pg_ctl")
    try:
        subprocess.run([*prefix, _postgres_binary("initdb"), "-D", str(data), "-U", "omnicc",
                        "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"],
                       check=True, capture_output=True)
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-l", str(directory / "log"), "-w",
                        "-o", f"-k {directory} -p {port} -c listen_addresses=127.0.0.1 "
                              "-c fsync=on -c max_connections=200", "start"],
                       check=True, capture_output=True)
        name = f"load_{uuid.uuid4().hex[:8]}"
        subprocess.run([*prefix, _postgres_binary("createdb"), "-h", str(directory), "-p",
                        str(port), "-U", "omnicc", name], check=True, capture_output=True)
        yield f"postgresql+asyncpg://omnicc@/{name}?host={directory}&port={port}"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, check=False)
        shutil.rmtree(directory, ignore_errors=True)


# --- one run: a server, the generators, the phases --------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarise(tallies: list[dict[str, Any]], measure_s: float, server_cpu_s: float,
              wall_s: float) -> dict[str, Any]:
    """Merge the shards' tallies of one phase: delivery counts, throughput, latency."""
    def merged(key: str) -> list[Any]:
        return [item for tally in tallies for item in tally[key]]

    sent, received = merged("sent"), merged("received")
    replies_sent, replies_received = merged("replies_sent"), merged("replies_received")
    latencies, reply_latencies = merged("latencies_ms"), merged("reply_latencies_ms")
    unique_received = set(map(tuple, received))
    unique_replies = set(map(tuple, replies_received))
    lost = len(set(map(tuple, sent)) - unique_received) + len(
        set(map(tuple, replies_sent)) - unique_replies)
    duplicated = (len(received) - len(unique_received)) + (
        len(replies_received) - len(unique_replies))
    delivered = sum(t["delivered_in_window"] for t in tallies)

    def ms(values: list[float], q: float) -> float | None:
        value = percentile(values, q)
        return None if value is None else round(value, 2)

    return {
        "messages_per_s": round(delivered / measure_s, 1),
        "sent": len(sent) + len(replies_sent),
        "delivered": len(unique_received) + len(unique_replies),
        "lost": lost,
        "duplicated": duplicated,
        "unacked": len(sent) - sum(t["acked"] for t in tallies),
        "p50_ms": ms(latencies, 0.50),
        "p95_ms": ms(latencies, 0.95),
        "p99_ms": ms(latencies, 0.99),
        "max_ms": round(max(latencies), 2) if latencies else None,
        "reply_p50_ms": ms(reply_latencies, 0.50),
        "reply_p99_ms": ms(reply_latencies, 0.99),
        "latency_samples": len(latencies),
        "server_cpu": round(server_cpu_s / wall_s, 3),
        "generator_cpu": [round(t["cpu_s"] / wall_s, 3) for t in tallies],
        "errors": [e for t in tallies for e in t["errors"]][:5],
        "error_count": sum(len(t["errors"]) for t in tallies),
    }


def expect(pipe: Connection, wanted: str, timeout_s: float) -> Any:
    if not pipe.poll(timeout_s):
        raise RuntimeError(f"a generator sent no {wanted!r} within {timeout_s:.0f} s")
    kind, payload = pipe.recv()
    if kind == "failed":
        raise RuntimeError(f"a generator failed: {payload}")
    if kind != wanted:
        raise RuntimeError(f"a generator sent {kind!r}, expected {wanted!r}")
    return payload


def drive(server: ServerProcess, target: Target, load: Load) -> dict[str, Any]:
    """Connect every session, then run the paced and the saturation phases."""
    context = multiprocessing.get_context("fork")
    pipes: list[Connection] = []
    processes = []
    rss_before = rss_bytes(server.pid)
    for index in range(load.generators):
        parent_end, child_end = context.Pipe()
        process = context.Process(target=shard_process, args=(target, load, index, child_end),
                                  daemon=True)
        process.start()
        pipes.append(parent_end)
        processes.append(process)
    try:
        agents = [expect(p, "agents", load.setup_timeout_s) for p in pipes]
        time.sleep(0.5)
        rss_agents = rss_bytes(server.pid)
        for pipe in pipes:
            pipe.send(("customers", None))
        setups = [expect(p, "ready", load.setup_timeout_s + 60) for p in pipes]
        time.sleep(1.0)  # let the last accepts' messages and positions settle
        rss_after = rss_bytes(server.pid)
        sessions = sum(s["customers"] for s in setups)
        connections = sessions + sum(a["agents"] for a in agents)
        result: dict[str, Any] = {
            "agents": sum(a["agents"] for a in agents),
            "sessions": sessions,
            "agents_s": max(a["agents_s"] for a in agents),
            "sessions_s": max(s["customers_s"] for s in setups),
            "offers_missed": sum(s["offers_missed"] for s in setups),
            "rss_before_mb": round(rss_before / 2**20, 1),
            "rss_agents_mb": round(rss_agents / 2**20, 1),
            "rss_connected_mb": round(rss_after / 2**20, 1),
            "bytes_per_session": round((rss_after - rss_agents) / max(1, sessions)),
            "bytes_per_connection": round((rss_after - rss_before) / max(1, connections)),
        }
        for mode, measure_s in (("paced", load.duration_s), ("saturate", load.saturate_s)):
            go_ns = time.monotonic_ns() + 500_000_000
            cpu, wall = cpu_seconds(server.pid), time.monotonic()
            for pipe in pipes:
                pipe.send(("phase", (mode, go_ns)))
            budget = load.warmup_s + measure_s + load.drain_s + 60
            for pipe in pipes:
                expect(pipe, "drained", budget)
            server_cpu, wall_s = cpu_seconds(server.pid) - cpu, time.monotonic() - wall
            for pipe in pipes:
                pipe.send(("report", None))
            tallies = [expect(p, "tally", 60) for p in pipes]
            result[mode] = summarise(tallies, measure_s, server_cpu, wall_s)
        result["rss_end_mb"] = round(rss_bytes(server.pid) / 2**20, 1)
        return result
    finally:
        for pipe in pipes:
            with contextlib.suppress(OSError):
                pipe.send(("close", None))
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()


def run_omnicc(backend: str, load: Load, profile_dir: Path | None) -> dict[str, Any]:
    from omnicc.store.database import sqlite_url

    with contextlib.ExitStack() as stack:
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="omnicc-load-")))
        url = (sqlite_url(data_dir / "omnicc.db") if backend == "sqlite"
               else stack.enter_context(postgres_database()))
        print(f"{backend}: seeding {load.agents} agents ...", file=sys.stderr, flush=True)
        seeded = asyncio.run(seed(url, load))
        profile_to = None if profile_dir is None else profile_dir / f"server-{backend}.txt"
        server = start_omnicc(url, data_dir, profile_to)
        try:
            target = Target("omnicc", server.url, seeded.queue_id, seeded.usernames)
            print(f"{backend}: {load.customers} customers, {load.agents} agents on "
                  f"{server.url} ...", file=sys.stderr, flush=True)
            return drive(server, target, load)
        finally:
            server.stop()


def run_relay(load: Load) -> dict[str, Any]:
    server = start_relay()
    try:
        print(f"relay: {load.customers} customers, {load.agents} agents ...", file=sys.stderr,
              flush=True)
        # One generator saturates a core against the relay before the relay does.
        return drive(server, Target("relay", server.url),
                     replace(load, generators=load.relay_generators))
    finally:
        server.stop()


# --- the report --------------------------------------------------------------------------------


def goals(result: Mapping[str, Any], load: Load) -> dict[str, bool | None]:
    paced = result.get("paced")
    if not isinstance(paced, Mapping):
        return {}
    full_size = load.customers >= GOAL_SESSIONS and load.agents >= GOAL_AGENTS
    return {
        "sessions_ge_2000_and_agents_ge_200": full_size and result["sessions"] >= GOAL_SESSIONS
        and result["agents"] >= GOAL_AGENTS,
        "msgs_per_s_ge_1000": paced["messages_per_s"] >= GOAL_MSGS_PER_S * 0.98,
        "p99_le_100ms": paced["p99_ms"] is not None and paced["p99_ms"] <= GOAL_P99_MS,
        "none_lost_or_duplicated": all(
            result[m]["lost"] == 0 and result[m]["duplicated"] == 0
            for m in ("paced", "saturate")),
    }


ROWS: tuple[tuple[str, Callable[[Mapping[str, Any]], str]], ...] = (
    ("sessions / agents", lambda r: f"{r['sessions']:,} / {r['agents']:,}"),
    ("agents log in / sessions start s", lambda r: f"{r['agents_s']:.1f} / "
                                                   f"{r['sessions_s']:.1f}"),
    ("paced msgs/s", lambda r: f"{r['paced']['messages_per_s']:,.1f}"),
    ("p50 / p95 / p99 ms", lambda r: "{} / {} / {}".format(
        r["paced"]["p50_ms"], r["paced"]["p95_ms"], r["paced"]["p99_ms"])),
    ("reply p50 / p99 ms", lambda r: "{} / {}".format(
        r["paced"]["reply_p50_ms"], r["paced"]["reply_p99_ms"])),
    ("lost / duplicated", lambda r: "{} / {}".format(
        r["paced"]["lost"] + r["saturate"]["lost"],
        r["paced"]["duplicated"] + r["saturate"]["duplicated"])),
    ("saturated msgs/s", lambda r: f"{r['saturate']['messages_per_s']:,.1f}"),
    ("saturated p50 ms", lambda r: f"{r['saturate']['p50_ms']}"),
    ("vs relay", lambda r: f"{r['ratio_to_relay']:.2f}" if r.get("ratio_to_relay") else "-"),
    ("server CPU paced / sat.", lambda r: "{} / {}".format(
        r["paced"]["server_cpu"], r["saturate"]["server_cpu"])),
    ("generator CPU paced / sat.", lambda r: "{} / {}".format(
        r["paced"]["generator_cpu"], r["saturate"]["generator_cpu"])),
    ("RSS before / agents / all MB", lambda r: f"{r['rss_before_mb']} / "
                                               f"{r['rss_agents_mb']} / {r['rss_connected_mb']}"),
    ("bytes per session (customer socket + chat)",
     lambda r: f"{r['bytes_per_session']:,}"),
    ("bytes per connection (incl. agents, logins)",
     lambda r: f"{r['bytes_per_connection']:,}"),
)


def print_table(results: Mapping[str, Mapping[str, Any]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        for name, result in results.items():
            print(name, {title: row(result) for title, row in ROWS})
        return
    table = Table(title="Web chat load (one server process)")
    table.add_column("figure")
    for name in results:
        table.add_column(name, justify="right")
    for title, row in ROWS:
        table.add_row(title, *(row(r) for r in results.values()))
    Console(width=140).print(table)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--agents", type=int)
    parser.add_argument("--customers", type=int, help="concurrent chat sessions")
    parser.add_argument("--rate", type=float, help="messages/s in all in the paced phase")
    parser.add_argument("--duration-s", type=float, help="measured seconds of the paced phase")
    parser.add_argument("--saturate-s", type=float, help="measured seconds of saturation")
    parser.add_argument("--generators", type=int,
                        help="load generator processes against OmniCC (default 1: "
                             "several lose track of chats routed across them, see docs)")
    parser.add_argument("--relay-generators", type=int,
                        help="load generator processes against the relay (default 2)")
    parser.add_argument("--no-relay", action="store_true", help="skip the relay ceiling")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="py-spy the OmniCC server; raw stacks into DIR")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the smoke test)")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else Load()
    overrides = {key: value for key, value in (
        ("agents", args.agents), ("customers", args.customers), ("rate", args.rate),
        ("duration_s", args.duration_s), ("saturate_s", args.saturate_s),
        ("generators", args.generators), ("relay_generators", args.relay_generators))
        if value is not None}
    load = Load(**{**asdict(base), **overrides})
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    raise_fd_limit()
    # SIGTERM unwinds like Ctrl-C, so the servers and the PostgreSQL cluster are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    results: dict[str, dict[str, Any]] = {}
    if not args.no_relay:
        results["relay"] = run_relay(load)
    failures: dict[str, str] = {}
    for backend in backends:
        try:
            result = run_omnicc(backend, load, args.profile)
        except RuntimeError as error:
            failures[backend] = str(error)
            print(f"{backend}: FAILED: {error}", file=sys.stderr, flush=True)
            continue
        relay = results.get("relay")
        if relay is not None:
            result["ratio_to_relay"] = round(
                result["saturate"]["messages_per_s"]
                / max(relay["saturate"]["messages_per_s"], 1e-9), 3)
        result["goals"] = goals(result, load)
        results[backend] = result
    print_table(results)
    report = {
        "benchmark": "chat_load",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load": asdict(load),
        "results": results,
        "failures": failures,
    }
    print(json.dumps(report, separators=(",", ":")))
    return report


if __name__ == "__main__":
    main()

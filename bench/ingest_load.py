"""The ingest benchmark: a real mailbox imported, and inbound webhooks under load.

    .venv/bin/python -m bench.ingest_load [--part mailbox|webhooks|both]
        [--backend sqlite|postgresql|both] [--messages N] [--rate N] [--duration-s S]
        [--saturate-s S] [--connections N] [--quick] [--seed N] [--profile DIR]

Run from the repository root with `-m` (it reuses the email tests' dovecot and the chat
benchmark's throwaway PostgreSQL cluster and server start-up). `--quick`: 1,000 emails and 4 s
of webhooks.

Part 1, mailbox import (issue 5, "Speed": a 10,000-message mailbox at >= 200 messages/s with a
progress bar):

- A real dovecot (the email tests' `Dovecot`: loopback, passwd-file user, IDLE) gets
  `--messages` messages over IMAP APPEND, shaped like the test corpus
  (`tests/integration/email/corpus/`): every seventh of the person emails is each of
  multipart/alternative, an inline image, attachments (one an `.exe`, refused), ISO-8859-1,
  Shift_JIS with an ISO-2022-JP subject, malicious HTML, no Message-ID; each with a Message-ID
  of its own and one of 3,000 senders. Of every 20 messages, 14 are such emails, 4 answer an
  earlier one by In-Reply-To/References (they thread to its ticket, often inside the same
  batch), one is an out-of-office answering an earlier one and one a bounce about an email we
  never sent (kept, not routed).
- The database is migrated and given a tenant, a queue and the mailbox (no agents: every ticket
  waits in the queue, as after a migration from another helpdesk). The mailbox acknowledges
  new tickets (the default): the acknowledgements are queued in the outbox (at most three an
  hour per address), not sent - nothing sends during the command.
- `omnicc email import <mailbox>` runs as its own process on that database, as an admin would
  run it, progress bar on stderr. Its time is the import's: it reads and stores every message,
  creates and routes every task, flags every message seen. The figure is messages/s = messages /
  that time (from the command's own report, which excludes Python's start-up).
- Then the result is checked: one inbound email row per message, every message `\\Seen`, one
  waiting task per ticket. A second import of the same mailbox must store nothing new (and its
  speed is reported too: that is the pace of a re-read after a lost `UIDVALIDITY`).

Part 2, inbound webhooks (issue 5, "Speed": >= 500 messages/s on one process, p99 answer
<= 200 ms, zero loss - each message stored and routed exactly once):

- One `omnicc serve` process (uvicorn, as in production) on a migrated database with a tenant,
  one queue (no agent signed in: every task waits, as at night) and one account per provider.
- The generator (this process, asyncio streams, keep-alive HTTP/1.1 over `--connections`
  connections) posts the providers' webhooks as each documents and signs them: Twilio's form
  with `X-Twilio-Signature`, WhatsApp Cloud API and Messenger JSON with `X-Hub-Signature-256`,
  Telegram's Update with its secret-token header - a customer stays on one provider, the four
  in turn. Each customer writes two messages on average (the first opens a conversation and a
  task, the next joins them). 3% of the messages are delivered twice, as a provider retries:
  half right behind the first copy (the two land in one batch), half a few hundred deliveries
  later. Every webhook is built and signed before the clock starts.
- Paced phase: `--duration-s` seconds at `--rate` deliveries/s, open loop - delivery i is due at
  start + i/rate whatever the answers do, and waits for a free connection if none is (that wait
  counts: latency is from the due time to the whole answer read). Then the saturation phase:
  every connection posts its next webhook as soon as the last is answered, for
  `--saturate-s` seconds (new messages from the same customers: they join open tasks).
- Figures per phase: answered/s (answers 200 / time from the first due to the last answer),
  p50/p99/max latency, the server's CPU (share of one core, and CPU ms per message), this
  generator's, PostgreSQL's (its cluster's processes; SQLite's work is in the server's), and
  `machine_busy` - the share of all CPUs busy during the phase (from
  /proc/stat): on a shared machine, busy near 1.0 with the server well under one core means
  it waited for a CPU, and the figures are a floor.
- Zero loss is read from the store afterwards: one inbound `messaging_messages` row and one
  conversation message per distinct message answered 200 (copies stored once), one thread per
  customer, one task per thread (the thread's task, on its conversation), every delivery of the
  paced phase answered 200.

The last printed line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import imaplib
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from tests.integration.email.servers import CORPUS, Dovecot

from bench.chat_load import cpu_seconds, percentile, postgres_database, start_server
from omnicc.store.database import Database, migrate, sqlite_url
from omnicc.store.repositories import EmailMailboxes, Queues, Tenants
from omnicc.store.tables import EmailMailbox, EmailMessage, EmailTicket, Queue, Task

MAILBOX = "support@support.example"
GOAL_MESSAGES_PER_S = 200.0
PERSON_CORPUS = ("alternative.eml", "inline-image.eml", "attachment.eml", "latin1.eml",
                 "shift-jis.eml", "malicious.eml", "no-message-id.eml")
SENDERS = 3000
MESSAGE_ID = re.compile(rb"(?mi)^Message-ID: .*$")
FROM_ADDRESS = re.compile(rb"(?mi)^(From: .*?)<[^>]+>")
OMNICC = Path(sys.executable).with_name("omnicc")


# --- the mailbox -------------------------------------------------------------------------------

def messages(count: int, seed: int) -> Iterator[bytes]:
    """`count` corpus-shaped messages (see the module's docstring), in arrival order."""
    rng = random.Random(seed)
    templates = {name: (CORPUS / name).read_bytes() for name in
                 (*PERSON_CORPUS, "reply-chain.eml", "auto-reply.eml", "bounce.eml")}
    earlier: list[tuple[str, str]] = []  # (Message-ID, sender) of person emails so far
    for number in range(count):
        slot = number % 20
        own_id = f"<bench-{number}.{seed}@ingest.example>"
        if slot < 14 or not earlier:
            name = PERSON_CORPUS[(number // 20 * 14 + slot) % len(PERSON_CORPUS)]
            sender = f"customer{rng.randrange(SENDERS)}@example.org"
            raw = _from(templates[name], sender)
            if name == "no-message-id.eml":  # told apart by its bytes
                raw = f"X-Bench-Number: {number}\r\n".encode() + raw
            else:
                raw = MESSAGE_ID.sub(f"Message-ID: {own_id}".encode(), raw, count=1)
                earlier.append((own_id, sender))
            yield raw
            continue
        parent, sender = earlier[rng.randrange(max(0, len(earlier) - 400), len(earlier))]
        if slot < 18:
            raw = (templates["reply-chain.eml"].replace(b"{in_reply_to}", parent.encode())
                   .replace(b"{references}", parent.encode())
                   .replace(b"{reference}", b"NOREF0"))
            raw = _from(raw, sender)
        elif slot == 18:
            raw = templates["auto-reply.eml"].replace(b"{in_reply_to}", parent.encode())
        else:
            raw = (templates["bounce.eml"]
                   .replace(b"{original_message_id}", f"<never-sent-{number}@x.example>".encode())
                   .replace(b"{recipient}", b"gone@example.org"))
        yield MESSAGE_ID.sub(f"Message-ID: {own_id}".encode(), raw, count=1)


def _from(raw: bytes, sender: str) -> bytes:
    """The message with its (first) From address replaced, display name kept."""
    return FROM_ADDRESS.sub(lambda m: m.group(1) + f"<{sender}>".encode(), raw, count=1)


def fill(dovecot: Dovecot, count: int, seed: int) -> float:
    """APPEND the messages over one IMAP connection; the seconds it took."""
    started = time.perf_counter()
    client = dovecot.client(MAILBOX)
    try:
        for number, raw in enumerate(messages(count, seed)):
            status, _ = client.append("INBOX", "", imaplib.Time2Internaldate(time.time()), raw)
            if status != "OK":
                raise RuntimeError(f"APPEND of message {number} failed")
    finally:
        client.logout()
    return time.perf_counter() - started


def unseen(dovecot: Dovecot) -> int:
    client = dovecot.client(MAILBOX)
    try:
        client.select("INBOX", readonly=True)
        _, data = client.uid("SEARCH", "UNSEEN")
        return len(data[0].split())
    finally:
        client.logout()


# --- the database ------------------------------------------------------------------------------

async def prepare(url: str, dovecot: Dovecot) -> None:
    """A tenant with one queue and the mailbox reading the dovecot user's INBOX."""
    database = Database(url)
    try:
        async with database.session() as session:
            tenant = await Tenants(session).create("acme", "Acme Support", "Europe/Helsinki")
            queue = await Queues(session, tenant.id).add(Queue(
                name="email", description="Email", config={"expression": "true"}))
            await EmailMailboxes(session, tenant.id).add(EmailMailbox(
                name="Support", address=MAILBOX, queue_id=queue.id, imap_host="127.0.0.1",
                imap_port=dovecot.port, imap_security="plain", imap_username=MAILBOX,
                imap_password=dovecot.password, smtp_host="127.0.0.1", smtp_port=9,
                smtp_security="plain"))
    finally:
        await database.dispose()


async def tally(url: str) -> dict[str, int]:
    database = Database(url)
    try:
        async with database.session() as session:
            async def count(statement: Any) -> int:
                return int((await session.execute(statement)).scalar_one())

            return {
                "inbound_emails": await count(select(func.count()).select_from(EmailMessage)
                                              .where(EmailMessage.direction == "inbound")),
                "tickets": await count(select(func.count()).select_from(EmailTicket)),
                "waiting_tasks": await count(select(func.count()).select_from(Task)
                                             .where(Task.phase == "waiting")),
            }
    finally:
        await database.dispose()


# --- the import --------------------------------------------------------------------------------

REPORT = re.compile(r"(\d+) emails read, (\d+) new, in ([\d.]+) s")


def run_import(url: str, data_dir: Path) -> tuple[int, int, float, float]:
    """`omnicc email import` as its own process: (read, new, its seconds, wall seconds)."""
    env = {**os.environ, "OMNICC_DATABASE_URL": url, "OMNICC_DATA_DIR": str(data_dir)}
    started = time.perf_counter()
    done = subprocess.run([str(OMNICC), "email", "import", "Support"], env=env, check=True,
                          stdout=subprocess.PIPE, text=True)
    wall_s = time.perf_counter() - started
    found = REPORT.search(done.stdout)
    if found is None:
        raise RuntimeError(f"unexpected output of omnicc email import: {done.stdout!r}")
    print(done.stdout.strip(), file=sys.stderr, flush=True)
    return int(found.group(1)), int(found.group(2)), float(found.group(3)), wall_s


def mailbox_import(backend: str, count: int, seed: int) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        root = Path(tempfile.mkdtemp(prefix="omnicc-ingest-"))
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        root.chmod(0o755)  # dovecot's user reaches the mailbox's home below it
        dovecot = Dovecot(root / "dovecot", [MAILBOX])
        dovecot.start()
        stack.callback(dovecot.stop)
        data_dir = root / "data"
        data_dir.mkdir()
        url = (sqlite_url(data_dir / "omnicc.db") if backend == "sqlite"
               else stack.enter_context(postgres_database()))
        migrate(url)
        asyncio.run(prepare(url, dovecot))
        print(f"{backend}: filling dovecot with {count:,} messages ...", file=sys.stderr,
              flush=True)
        fill_s = fill(dovecot, count, seed)
        print(f"{backend}: importing ...", file=sys.stderr, flush=True)
        read, new, import_s, wall_s = run_import(url, data_dir)
        stored = asyncio.run(tally(url))
        left_unseen = unseen(dovecot)
        print(f"{backend}: importing the same mailbox again ...", file=sys.stderr, flush=True)
        again_read, again_new, again_s, _ = run_import(url, data_dir)
        rate = read / import_s
        return {
            "messages": count, "fill_s": round(fill_s, 1), "read": read, "new": new,
            "import_s": round(import_s, 2), "messages_per_s": round(rate, 1),
            "process_wall_s": round(wall_s, 2), **stored, "unseen_after": left_unseen,
            "reimport_new": again_new, "reimport_messages_per_s": round(again_read / again_s, 1),
            "complete": (read == count and new == count and stored["inbound_emails"] == count
                         and left_unseen == 0 and again_new == 0
                         and stored["waiting_tasks"] == stored["tickets"]),
            "goal_met": rate >= GOAL_MESSAGES_PER_S,
        }


# --- inbound webhooks --------------------------------------------------------------------------

PUBLIC_BASE_URL = "https://omnicc.bench.example"
"""What the server believes its public address is: Twilio signs the URL it called."""
TWILIO_TOKEN = "bench-twilio-auth-token"
META_SECRET = "bench-meta-app-secret"
TELEGRAM_SECRET = "bench-telegram-secret-token"
GOAL_WEBHOOKS_PER_S = 500.0
GOAL_P99_MS = 200.0
ANSWER_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class WebhookLoad:
    rate: float = GOAL_WEBHOOKS_PER_S
    duration_s: float = 30.0
    saturate_s: float = 10.0
    connections: int = 128
    messages_per_peer: float = 2.0
    """On average: a peer's first message opens a conversation and a task, the others join."""
    duplicate_share: float = 0.03
    """Messages the provider delivers twice: half at once (same batch), half seconds later."""


QUICK_WEBHOOKS = WebhookLoad(duration_s=4.0, saturate_s=3.0, connections=64)


@dataclass(frozen=True, slots=True)
class Hook:
    """One webhook delivery, ready on the wire; `key` names the provider message."""

    key: str
    peer: str
    raw: bytes


class Accounts:
    """The four provider accounts of the bench tenant (ids filled in by `prepare_webhooks`)."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}


def _wire(path: str, content_type: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n{head}\r\n").encode() + body


def hook(accounts: Accounts, provider: str, peer_index: int, number: int, text: str) -> Hook:
    """A provider's webhook for message `number` of peer `peer_index`, signed as it signs."""
    from urllib.parse import urlencode

    from omnicc.channels.messaging.meta import hub_signature
    from omnicc.channels.messaging.twilio import twilio_signature

    path = f"/api/messaging/{accounts.ids[provider]}/webhook"
    if provider == "twilio":
        peer = f"+1555{peer_index:07d}"
        form = {"ToCountry": "US", "SmsMessageSid": f"SM{number:032d}", "NumMedia": "0",
                "SmsSid": f"SM{number:032d}", "SmsStatus": "received", "Body": text,
                "To": "+15005550006", "NumSegments": "1", "MessageSid": f"SM{number:032d}",
                "AccountSid": "AC" + "0" * 32, "From": peer, "ApiVersion": "2010-04-01"}
        signature = twilio_signature(TWILIO_TOKEN, PUBLIC_BASE_URL + path, form.items())
        return Hook(f"twilio:SM{number:032d}", peer, _wire(
            path, "application/x-www-form-urlencoded", urlencode(form).encode(),
            {"X-Twilio-Signature": signature}))
    if provider == "whatsapp":
        peer = f"4470{peer_index:08d}"
        body = json.dumps({"object": "whatsapp_business_account", "entry": [{
            "id": "102290129340398", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550783881",
                             "phone_number_id": "106540352242922"},
                "contacts": [{"profile": {"name": f"Customer {peer_index}"}, "wa_id": peer}],
                "messages": [{"from": peer, "id": f"wamid.BENCH{number}", "timestamp":
                              str(int(time.time())), "type": "text",
                              "text": {"body": text}}]}}]}]}).encode()
        return Hook(f"whatsapp:wamid.BENCH{number}", "+" + peer, _wire(
            path, "application/json", body,
            {"X-Hub-Signature-256": hub_signature(META_SECRET, body)}))
    if provider == "messenger":
        peer = f"PSID{peer_index}"
        body = json.dumps({"object": "page", "entry": [{
            "id": "PAGE1", "time": int(time.time() * 1000), "messaging": [{
                "sender": {"id": peer}, "recipient": {"id": "PAGE1"},
                "timestamp": int(time.time() * 1000),
                "message": {"mid": f"m_bench{number}", "text": text}}]}]}).encode()
        return Hook(f"messenger:m_bench{number}", peer, _wire(
            path, "application/json", body,
            {"X-Hub-Signature-256": hub_signature(META_SECRET, body)}))
    chat_id = 700_000_000 + peer_index
    body = json.dumps({"update_id": number, "message": {
        "message_id": number, "date": int(time.time()),
        "from": {"id": chat_id, "is_bot": False, "first_name": f"Customer {peer_index}"},
        "chat": {"id": chat_id, "type": "private"}, "text": text}}).encode()
    return Hook(f"telegram:{chat_id}:{number}", str(chat_id), _wire(
        path, "application/json", body, {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}))


PROVIDER_MIX = ("twilio", "whatsapp", "telegram", "messenger")


def hooks(accounts: Accounts, count: int, first: int, peers: int, seed: int) -> list[Hook]:
    """`count` distinct messages numbered from `first`, each from one of `peers` customers
    (the provider follows the customer: the four providers in turn)."""
    rng = random.Random(seed * 7919 + first)
    made = []
    for number in range(first, first + count):
        peer_index = rng.randrange(peers)
        provider = PROVIDER_MIX[peer_index % len(PROVIDER_MIX)]
        made.append(hook(accounts, provider, peer_index, number,
                         f"Hello, this is message {number}: where is my order?"))
    return made


def with_retries(made: list[Hook], share: float, seed: int) -> list[tuple[Hook, float]]:
    """The deliveries in order with their offsets in the sending order: a retried message
    comes again right behind itself (half of them) or a few hundred deliveries later."""
    rng = random.Random(seed)
    deliveries: list[tuple[Hook, float]] = []
    for position, item in enumerate(made):
        deliveries.append((item, float(position)))
        if rng.random() < share:
            later = 0.5 if rng.random() < 0.5 else rng.uniform(200, 1500)
            deliveries.append((item, position + later))
    deliveries.sort(key=lambda pair: pair[1])
    return deliveries


@dataclass
class Answers:
    """What the generator saw of one phase."""

    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    answered_keys: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    first_ns: int = 0
    last_ns: int = 0


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    raw: bytes) -> int:
    """One request on a kept-alive connection; the answer's status (its body is read)."""
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def _connect(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(host, port)


async def paced(url: str, deliveries: list[tuple[Hook, float]], load: WebhookLoad
                ) -> Answers:
    """Open loop: delivery i is due at start + i / rate whatever the answers do; a delivery
    waits for a free connection (and that wait counts in its latency, as a provider's would)."""
    host, port = _host_port(url)
    answers = Answers()
    due: asyncio.Queue[tuple[Hook, int] | None] = asyncio.Queue()

    async def connection() -> None:
        reader, writer = await _connect(host, port)
        try:
            while (item := await due.get()) is not None:
                delivery, due_ns = item
                try:
                    status = await asyncio.wait_for(_exchange(reader, writer, delivery.raw),
                                                    ANSWER_TIMEOUT_S)
                except (OSError, asyncio.IncompleteReadError, TimeoutError) as error:
                    answers.errors.append(f"{delivery.key}: {error!r}")
                    writer.close()
                    reader, writer = await _connect(host, port)
                    continue
                done = time.monotonic_ns()
                answers.statuses[status] = answers.statuses.get(status, 0) + 1
                answers.latencies_ms.append((done - due_ns) / 1e6)
                answers.last_ns = max(answers.last_ns, done)
                if status == 200:
                    answers.answered_keys.add(delivery.key)
        finally:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(load.connections)]
    await asyncio.sleep(0.2)  # connected
    period_ns = 1e9 / load.rate
    start = answers.first_ns = time.monotonic_ns()
    for index, (delivery, _) in enumerate(deliveries):
        due_ns = start + int(index * period_ns)
        wait_ns = due_ns - time.monotonic_ns()
        if wait_ns > 0:
            await asyncio.sleep(wait_ns / 1e9)
        due.put_nowait((delivery, due_ns))
        answers.sent += 1
    for _ in workers:
        due.put_nowait(None)
    await asyncio.gather(*workers)
    return answers


async def saturate(url: str, made: list[Hook], load: WebhookLoad) -> Answers:
    """Closed loop: every connection sends its next webhook as soon as the last is answered,
    until the deliveries run out or `saturate_s` passed: the most the server answers."""
    host, port = _host_port(url)
    answers = Answers()
    queue = list(reversed(made))
    stop_ns = time.monotonic_ns() + int(load.saturate_s * 1e9)

    async def connection() -> None:
        reader, writer = await _connect(host, port)
        try:
            while queue and time.monotonic_ns() < stop_ns:
                delivery = queue.pop()
                answers.sent += 1
                sent_ns = time.monotonic_ns()
                try:
                    status = await asyncio.wait_for(_exchange(reader, writer, delivery.raw),
                                                    ANSWER_TIMEOUT_S)
                except (OSError, asyncio.IncompleteReadError, TimeoutError) as error:
                    answers.errors.append(f"{delivery.key}: {error!r}")
                    return
                done = time.monotonic_ns()
                answers.statuses[status] = answers.statuses.get(status, 0) + 1
                answers.latencies_ms.append((done - sent_ns) / 1e6)
                answers.last_ns = max(answers.last_ns, done)
                if status == 200:
                    answers.answered_keys.add(delivery.key)
        finally:
            writer.close()

    answers.first_ns = time.monotonic_ns()
    await asyncio.gather(*(connection() for _ in range(load.connections)))
    return answers


def _host_port(url: str) -> tuple[str, int]:
    host, _, port = url.split("://", 1)[1].rstrip("/").rpartition(":")
    return host, int(port)


def answered_figures(answers: Answers, server_cpu_s: float, generator_cpu_s: float,
                     database_cpu_s: float, machine_busy: float,
                     wall_s: float) -> dict[str, Any]:
    span_s = max(1e-9, (answers.last_ns - answers.first_ns) / 1e9)
    ok = answers.statuses.get(200, 0)
    return {
        "sent": answers.sent, "answered_200": ok,
        "statuses": {str(k): v for k, v in sorted(answers.statuses.items())},
        "answered_per_s": round(ok / span_s, 1),
        "p50_ms": _round(percentile(answers.latencies_ms, 0.50)),
        "p99_ms": _round(percentile(answers.latencies_ms, 0.99)),
        "max_ms": _round(max(answers.latencies_ms, default=None)),
        "errors": len(answers.errors), "first_errors": answers.errors[:3],
        "server_cpu": round(server_cpu_s / wall_s, 3),
        "server_cpu_ms_per_message": round(server_cpu_s * 1000 / max(1, ok), 2),
        "generator_cpu": round(generator_cpu_s / wall_s, 3),
        "database_cpu": round(database_cpu_s / wall_s, 3),
        "machine_busy": round(machine_busy, 3),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def database_cpu_seconds(url: str) -> float:
    """CPU seconds of a PostgreSQL cluster's processes (the postmaster and its children);
    0 for SQLite (its work is in the server's own CPU)."""
    if not url.startswith("postgresql"):
        return 0.0
    directory = Path(url.split("host=", 1)[1].split("&", 1)[0])
    postmaster = int((directory / "data" / "postmaster.pid").read_text().split()[0])
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            pid = int(stat.parent.name)
            if pid == postmaster or int(fields[1]) == postmaster:
                total += cpu_seconds(pid)
    return total


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of every CPU since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


async def prepare_webhooks(url: str) -> Accounts:
    """A tenant with one queue (no agent signed in: every task waits, as at night) and one
    account per provider, with the secrets the generator signs with."""
    from omnicc.store.repositories import MessagingAccounts
    from omnicc.store.tables import MessagingAccount

    database = Database(url)
    accounts = Accounts()
    try:
        async with database.session() as session:
            tenant = await Tenants(session).create("acme", "Acme Support", "UTC")
            queue = await Queues(session, tenant.id).add(Queue(
                name="messages", description="Messaging", config={"expression": "true"}))
            repository = MessagingAccounts(session, tenant.id)
            for provider, channel, address in (
                    ("twilio", "sms", "+15005550006"),
                    ("whatsapp", "whatsapp", "106540352242922"),
                    ("telegram", "telegram", "bench_bot"), ("messenger", "messenger", "PAGE1")):
                row = await repository.add(MessagingAccount(
                    name=provider, provider=provider, channel=channel, queue_id=queue.id,
                    address=address, account_sid="AC" + "0" * 32,
                    auth_token=TWILIO_TOKEN if provider == "twilio" else "token",
                    app_secret=TELEGRAM_SECRET if provider == "telegram" else META_SECRET,
                    verify_token="verify", api_base_url="http://127.0.0.1:9"))
                accounts.ids[provider] = row.id
    finally:
        await database.dispose()
    return accounts


async def webhook_tally(url: str) -> dict[str, int]:
    """What the store holds after the load: messages, threads, tasks, and the doubles."""
    from omnicc.store.tables import Message, MessagingMessage, MessagingThread

    database = Database(url)
    try:
        async with database.session() as session:
            async def count(statement: Any) -> int:
                return int((await session.execute(statement)).scalar_one())

            inbound = MessagingMessage.direction == "inbound"
            return {
                "stored": await count(select(func.count()).select_from(MessagingMessage)
                                      .where(inbound)),
                "stored_distinct": await count(select(func.count(func.distinct(
                    MessagingMessage.account_id + ":" + MessagingMessage.provider_message_id)))
                    .where(inbound)),
                "conversation_messages": await count(select(func.count()).select_from(Message)
                                                     .where(Message.author_kind == "customer")),
                "threads": await count(select(func.count()).select_from(MessagingThread)),
                "tasks": await count(select(func.count()).select_from(Task)),
                "tasks_distinct_conversations": await count(select(func.count(func.distinct(
                    Task.conversation_id)))),
                "threads_with_their_task": await count(
                    select(func.count()).select_from(MessagingThread).join(
                        Task, Task.id == MessagingThread.task_id)),
            }
    finally:
        await database.dispose()


def webhook_run(backend: str, load: WebhookLoad, seed: int,
                profile_dir: Path | None = None) -> dict[str, Any]:

    with contextlib.ExitStack() as stack:
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="omnicc-webhooks-")))
        url = (sqlite_url(data_dir / "omnicc.db") if backend == "sqlite"
               else stack.enter_context(postgres_database()))
        migrate(url)
        accounts = asyncio.run(prepare_webhooks(url))
        count = int(load.rate * load.duration_s)
        peers = max(1, int(count / load.messages_per_peer))
        print(f"{backend}: preparing {count:,} webhooks from {peers:,} customers ...",
              file=sys.stderr, flush=True)
        made = hooks(accounts, count, 1, peers, seed)
        deliveries = with_retries(made, load.duplicate_share, seed)
        ceiling = hooks(accounts, int(load.saturate_s * 2000), count + 1, peers, seed)
        server = start_server([str(OMNICC), "serve", "--host", "127.0.0.1", "--port", "0"], {
            "OMNICC_DATABASE_URL": url, "OMNICC_DATA_DIR": str(data_dir),
            "OMNICC_LOG_LEVEL": "warning", "OMNICC_PUBLIC_BASE_URL": PUBLIC_BASE_URL},
            "serving on", None if profile_dir is None else profile_dir / f"webhooks-{backend}.txt")
        stack.callback(server.stop)
        result: dict[str, Any] = {"rate": load.rate, "messages": count, "peers": peers,
                                  "deliveries": len(deliveries),
                                  "retried": len(deliveries) - count,
                                  "connections": load.connections}
        for phase in ("paced", "saturate"):
            print(f"{backend}: {phase} ...", file=sys.stderr, flush=True)
            cpu, machine, database = (cpu_seconds(server.pid), machine_jiffies(),
                                      database_cpu_seconds(url))
            own_cpu, wall = time.process_time(), time.monotonic()
            answers = asyncio.run(paced(server.url, deliveries, load) if phase == "paced"
                                  else saturate(server.url, ceiling, load))
            wall_s = time.monotonic() - wall
            busy, total = (now - then for now, then in zip(machine_jiffies(), machine,
                                                             strict=True))
            result[phase] = answered_figures(
                answers, cpu_seconds(server.pid) - cpu, time.process_time() - own_cpu,
                database_cpu_seconds(url) - database, busy / max(1, total), wall_s)
            result[phase]["keys"] = answers.answered_keys
        stored = asyncio.run(webhook_tally(url))
        answered = result["paced"].pop("keys") | result["saturate"].pop("keys")
        expected_threads = len({(h.key.split(":", 1)[0], h.peer) for h in made}
                               | {(h.key.split(":", 1)[0], h.peer) for h in ceiling
                                  if h.key in answered})
        expected = len(answered)
        result["stored"] = stored
        result["expected_messages"] = expected
        result["expected_threads"] = expected_threads
        paced_figures = result["paced"]
        result["zero_loss"] = (
            paced_figures["answered_200"] == len(deliveries) and paced_figures["errors"] == 0
            and {h.key for h in made} <= answered
            and stored["stored"] == stored["stored_distinct"] == expected
            and stored["conversation_messages"] == expected
            and stored["threads"] == expected_threads
            and stored["tasks"] == stored["threads"] == stored["threads_with_their_task"]
            == stored["tasks_distinct_conversations"])
        result["goal_met"] = bool(
            result["zero_loss"] and paced_figures["answered_per_s"] >= GOAL_WEBHOOKS_PER_S * 0.98
            and paced_figures["p99_ms"] is not None and paced_figures["p99_ms"] <= GOAL_P99_MS)
        return result


# --- the command -------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--part", choices=("mailbox", "webhooks", "both"), default="both")
    parser.add_argument("--messages", type=int, default=10_000,
                        help="mailbox: messages in the mailbox")
    parser.add_argument("--rate", type=float, default=None, help="webhooks: deliveries/s")
    parser.add_argument("--duration-s", type=float, default=None)
    parser.add_argument("--saturate-s", type=float, default=None)
    parser.add_argument("--connections", type=int, default=None)
    parser.add_argument("--quick", action="store_true",
                        help="a short run of each part (1,000 emails, 3 s of webhooks)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="webhooks: py-spy's raw profile of the server into DIR")
    args = parser.parse_args()
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    load = QUICK_WEBHOOKS if args.quick else WebhookLoad()
    load = replace(load, **{name: value for name, value in (
        ("rate", args.rate), ("duration_s", args.duration_s),
        ("saturate_s", args.saturate_s), ("connections", args.connections))
        if value is not None})
    count = min(args.messages, 1_000) if args.quick else args.messages
    mailbox: dict[str, Any] | None = None
    webhooks: dict[str, Any] | None = None
    if args.part in ("mailbox", "both"):
        mailbox = {backend: mailbox_import(backend, count, args.seed) for backend in backends}
        print(f"{'backend':<11} {'messages':>9} {'import s':>9} {'msgs/s':>8} {'tickets':>8} "
              f"{'re-import msgs/s':>17} {'complete':>9}")
        for backend, figures in mailbox.items():
            print(f"{backend:<11} {figures['messages']:>9,} {figures['import_s']:>9.1f} "
                  f"{figures['messages_per_s']:>8.1f} {figures['tickets']:>8,} "
                  f"{figures['reimport_messages_per_s']:>17.1f} {figures['complete']!s:>9}")
    if args.part in ("webhooks", "both"):
        webhooks = {backend: webhook_run(backend, load, args.seed, args.profile)
                    for backend in backends}
        print(f"{'backend':<11} {'phase':<9} {'sent':>7} {'200':>7} {'answered/s':>11} "
              f"{'p50 ms':>7} {'p99 ms':>7} {'server cpu':>11} {'db cpu':>7} {'machine':>8} "
              f"{'no loss':>8}")
        for backend, figures in webhooks.items():
            for phase in ("paced", "saturate"):
                f = figures[phase]
                print(f"{backend:<11} {phase:<9} {f['sent']:>7,} {f['answered_200']:>7,} "
                      f"{f['answered_per_s']:>11.1f} {f['p50_ms']!s:>7} {f['p99_ms']!s:>7} "
                      f"{f['server_cpu']:>11.2f} {f['database_cpu']:>7.2f} "
                      f"{f['machine_busy']:>8.2f} "
                      f"{figures['zero_loss']!s:>8}")
    goals: dict[str, bool] = {}
    if mailbox is not None:
        goals["mailbox_import_ge_200_per_s"] = all(r["goal_met"] for r in mailbox.values())
        goals["mailbox_import_complete"] = all(r["complete"] for r in mailbox.values())
    if webhooks is not None:
        goals["webhooks_ge_500_per_s_p99_le_200_ms"] = all(
            r["goal_met"] for r in webhooks.values())
        goals["webhooks_zero_loss"] = all(r["zero_loss"] for r in webhooks.values())
    print(json.dumps({
        "benchmark": "ingest", "python": platform.python_version(), "cpus": os.cpu_count(),
        "seed": args.seed, "quick": args.quick, "mailbox_import": mailbox,
        "webhooks": webhooks, "goals": goals,
    }, separators=(",", ":")))


if __name__ == "__main__":
    main()

"""The ingest benchmark: a real mailbox imported, and (later) inbound webhooks under load.

    .venv/bin/python -m bench.ingest_load [--backend sqlite|postgresql|both] [--messages N]
        [--seed N]

Run from the repository root with `-m` (it reuses the email tests' dovecot and the chat
benchmark's throwaway PostgreSQL cluster).

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

Part 2, inbound webhooks (>= 500 messages/s, p99 <= 200 ms, zero loss): not measured yet - it
belongs with the messaging channels' webhooks and will be added here as its own `--part`; the
JSON line has `"webhooks": null` until then.

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
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from tests.integration.email.servers import CORPUS, Dovecot

from bench.chat_load import postgres_database
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    results = {backend: mailbox_import(backend, args.messages, args.seed) for backend in backends}
    print(f"{'backend':<11} {'messages':>9} {'import s':>9} {'msgs/s':>8} {'tickets':>8} "
          f"{'re-import msgs/s':>17} {'complete':>9}")
    for backend, figures in results.items():
        print(f"{backend:<11} {figures['messages']:>9,} {figures['import_s']:>9.1f} "
              f"{figures['messages_per_s']:>8.1f} {figures['tickets']:>8,} "
              f"{figures['reimport_messages_per_s']:>17.1f} {figures['complete']!s:>9}")
    print(json.dumps({
        "benchmark": "ingest", "python": platform.python_version(), "seed": args.seed,
        "mailbox_import": results, "webhooks": None,
        "goals": {"mailbox_import_ge_200_per_s": all(r["goal_met"] for r in results.values()),
                  "mailbox_import_complete": all(r["complete"] for r in results.values())},
    }, separators=(",", ":")))


if __name__ == "__main__":
    main()

"""Email through the running server: an admin configures a mailbox (its passwords are never
shown again), an email is routed to the agent's desk, read (sanitised) and answered over REST,
and the answer reaches the customer's mailbox; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from omnicc.channels.email.mime import parse_bytes
from omnicc.store.database import Database
from omnicc.store.repositories import Agents
from tests.integration.api.live import Browser, LiveServer, Seeded, live_server, seed
from tests.integration.email.servers import MailServers, corpus, mail_servers
from tests.integration.email.test_email_flow import MARIA, SUPPORT, WAIT_S

pytestmark = [pytest.mark.anyio,
              pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")]


async def _seed_with_email_capacity(url: str) -> Seeded:
    seeded = await seed(url)
    database = Database(url)
    try:
        async with database.session() as session:
            for agent_id in seeded.agents.values():
                agent = await Agents(session, seeded.tenant_id).get(agent_id)
                agent.capacity = {"chat": 2, "voice": 1, "email": 5}
    finally:
        await database.dispose()
    return seeded


@pytest.fixture
def seeded(migrated_database_url: str) -> Seeded:
    return asyncio.run(_seed_with_email_capacity(migrated_database_url))


@pytest.fixture
def servers() -> Iterator[MailServers]:
    yield from mail_servers([SUPPORT, MARIA])


@pytest.fixture
def server(migrated_database_url: str, seeded: Seeded, tmp_path: Path) -> Iterator[LiveServer]:
    yield from live_server(migrated_database_url, tmp_path / "data")


async def until(probe: Any, what: str) -> Any:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while asyncio.get_running_loop().time() < deadline:
        value = await probe()
        if value:
            return value
        await asyncio.sleep(0.05)
    pytest.fail(f"never happened: {what}")


def mailbox_body(seeded: Seeded, servers: MailServers, **changes: Any) -> dict[str, Any]:
    return {"name": "Support mail", "address": SUPPORT, "queue_id": seeded.queues["support"],
            "imap_host": "127.0.0.1", "imap_port": servers.dovecot.port,
            "imap_security": "plain", "imap_username": SUPPORT,
            "imap_password": servers.dovecot.password, "smtp_host": "127.0.0.1",
            "smtp_port": servers.smtp.port, "smtp_security": "plain",
            "smtp_username": servers.smtp_user, "smtp_password": servers.smtp_password,
            "auto_acknowledge": False, **changes}


async def test_mailbox_admin_desk_reply_and_finish(server: LiveServer, seeded: Seeded,
                                                   servers: MailServers) -> None:
    ada = await Browser(server, "ada").login()
    alice = await Browser(server, "alice").login()
    bob = await Browser(server, "bob").login()
    try:
        assert (await alice.http.get("/api/admin/email/mailboxes")).status_code == 403
        bad = await ada.http.post("/api/admin/email/mailboxes", json=mailbox_body(
            seeded, servers, queue_id="nope"))
        assert bad.status_code == 422
        created = await ada.http.post("/api/admin/email/mailboxes",
                                      json=mailbox_body(seeded, servers))
        assert created.status_code == 201, created.text
        mailbox = created.json()
        assert mailbox["has_imap_password"] and mailbox["has_smtp_password"]
        listed = await ada.http.get("/api/admin/email/mailboxes")
        assert servers.dovecot.password not in listed.text
        assert servers.smtp_password not in listed.text
        # A change without passwords keeps them: the reader still logs in.
        body = mailbox_body(seeded, servers, name="Support")
        del body["imap_password"], body["smtp_password"]
        changed = await ada.http.put(f"/api/admin/email/mailboxes/{mailbox['id']}", json=body)
        assert changed.status_code == 200 and changed.json()["name"] == "Support"

        await alice.http.put("/api/desk/status", json={"status": "available"})
        servers.dovecot.append(SUPPORT, corpus("malicious.eml").replace(
            b"attacker@example.net", MARIA.encode()))

        async def offered() -> dict[str, Any] | None:
            state = (await alice.http.get("/api/desk/state")).json()
            return next((o for o in state["offers"] if o["channel"] == "email"), None)

        offer = await until(offered, "an email offer on the desk")
        assert offer["topic"] == "Your invoice"
        accepted = await alice.http.post(f"/api/desk/offers/{offer['offer_id']}/accept")
        assert accepted.status_code == 200
        conversation_id = offer["conversation_id"]
        desk_view = (await alice.http.get(f"/api/desk/conversations/{conversation_id}")).json()
        assert desk_view["customer"]["identities"] == [{"kind": "email", "value": MARIA}]

        thread = (await alice.http.get(f"/api/emails/conversations/{conversation_id}")).json()
        [received] = thread["emails"]
        assert "<script" not in received["safe_html"] and "onerror" not in received["safe_html"]
        assert received["from_address"] == MARIA
        assert (await bob.http.get(
            f"/api/emails/conversations/{conversation_id}")).status_code == 404
        assert (await bob.http.post(f"/api/emails/conversations/{conversation_id}/replies",
                                    json={"text": "not mine"})).status_code == 403

        reply = await alice.http.post(f"/api/emails/conversations/{conversation_id}/replies",
                                      json={"text": "That link was not from us.", "id": "k1"})
        assert reply.status_code == 201, reply.text
        again = await alice.http.post(f"/api/emails/conversations/{conversation_id}/replies",
                                      json={"text": "That link was not from us.", "id": "k1"})
        assert again.json()["id"] == reply.json()["id"]

        async def delivered() -> list[bytes] | None:
            found = await asyncio.to_thread(servers.dovecot.messages, MARIA)
            return [raw for _, raw in found] or None

        [raw] = await until(delivered, "the reply in the customer's mailbox")
        message = parse_bytes(raw)
        assert message["In-Reply-To"] == "<evil-1@example.net>"
        assert f"[#{thread['ticket']['reference']}]" in str(message["Subject"])

        # Alice hands it to Bob, who finishes it.
        await bob.http.put("/api/desk/status", json={"status": "available"})
        moved = await alice.http.post(f"/api/emails/conversations/{conversation_id}/transfer",
                                      json={"agent_id": seeded.agents["bob"]})
        assert moved.status_code == 200 and moved.json()["tasks"] == []

        async def offered_to_bob() -> dict[str, Any] | None:
            state = (await bob.http.get("/api/desk/state")).json()
            return next((o for o in state["offers"] if o["channel"] == "email"), None)

        bobs = await until(offered_to_bob, "the transferred email offered to Bob")
        assert (await bob.http.post(f"/api/desk/offers/{bobs['offer_id']}/accept")
                ).status_code == 200
        assert (await alice.http.post(f"/api/emails/conversations/{conversation_id}/replies",
                                      json={"text": "still mine?"})).status_code == 403
        thread = (await bob.http.get(f"/api/emails/conversations/{conversation_id}")).json()
        assert thread["ticket"]["task_id"] == bobs["task_id"]
        done = await bob.http.post(f"/api/emails/conversations/{conversation_id}/finish")
        assert done.status_code == 200
        state = (await bob.http.get("/api/desk/state")).json()
        assert [t["phase"] for t in state["tasks"] if t["channel"] == "email"] == ["wrapping"]

        imported = await ada.http.post(f"/api/admin/email/mailboxes/{mailbox['id']}/import")
        assert imported.json() == {"new": 0}
        assert (await ada.http.delete(
            f"/api/admin/email/mailboxes/{mailbox['id']}")).status_code == 204
    finally:
        for browser in (ada, alice, bob):
            await browser.close()

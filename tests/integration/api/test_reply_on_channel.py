"""A chat that went quiet is answered by email from the desk, and the customer's email
reply lands in the same conversation (real dovecot and SMTP; SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest

from omnicc.channels.email.mime import parse_bytes
from tests.integration.api.live import Browser, LiveServer, Seeded, live_server, receive
from tests.integration.api.test_chat_flow import customer_hello
from tests.integration.email.servers import MailServers, mail_servers
from tests.integration.email.test_email_api import (
    _seed_with_email_capacity,
    mailbox_body,
    until,
)
from tests.integration.email.test_email_flow import MARIA, SUPPORT

pytestmark = [pytest.mark.anyio,
              pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")]


@pytest.fixture
def seeded(migrated_database_url: str) -> Seeded:
    return asyncio.run(_seed_with_email_capacity(migrated_database_url))


@pytest.fixture
def servers() -> Iterator[MailServers]:
    yield from mail_servers([SUPPORT, MARIA])


@pytest.fixture
def server(migrated_database_url: str, seeded: Seeded, tmp_path: Path) -> Iterator[LiveServer]:
    yield from live_server(migrated_database_url, tmp_path / "data")


async def test_a_quiet_chat_is_answered_by_email_and_the_reply_comes_back(
        server: LiveServer, seeded: Seeded, servers: MailServers) -> None:
    ada = await Browser(server, "ada").login()
    alice = await Browser(server, "alice").login()
    bob = await Browser(server, "bob").login()
    try:
        assert (await ada.http.post("/api/admin/email/mailboxes",
                                    json=mailbox_body(seeded, servers))).status_code == 201
        await alice.http.put("/api/desk/status", json={"status": "available"})
        async with alice.socket("/api/desk/ws") as desk:
            await receive(desk, "state")
            customer, _ = await customer_hello(server)
            await customer.send(json.dumps({
                "type": "start", "queue_id": seeded.queues["support"], "text": "Refund?",
                "id": "m-1", "name": "Maria", "email": MARIA.upper(), "topic": "refund"}))
            chat = await receive(customer, "chat")
            offer = await receive(desk, "offer.created")
            assert (await alice.http.post(f"/api/desk/offers/{offer['offer_id']}/accept")
                    ).status_code == 200
            await customer.close()  # the visitor closes the tab: the chat goes quiet
        conversation_id = chat["conversation_id"]
        path = f"/api/customers/conversations/{conversation_id}"

        choices = (await alice.http.get(path + "/channels")).json()
        assert choices == [{"channel": "email", "address": MARIA, "preferred": False,
                            "can_send": True}]
        assert (await bob.http.post(path + "/replies", json={
            "channel": "email", "address": MARIA, "text": "not mine"})).status_code == 403
        assert (await alice.http.post(path + "/replies", json={
            "channel": "email", "address": "someone@else.example", "text": "x"})
        ).status_code == 422
        assert (await alice.http.post(path + "/replies", json={
            "channel": "sms", "address": MARIA, "text": "x"})).status_code == 422

        sent = await alice.http.post(path + "/replies", json={
            "channel": "email", "address": MARIA, "text": "Your refund is on its way.",
            "id": "e-1"})
        assert sent.status_code == 201, sent.text

        async def delivered() -> list[bytes] | None:
            found = await asyncio.to_thread(servers.dovecot.messages, MARIA)
            return [raw for _, raw in found] or None

        [raw] = await until(delivered, "the answer in the customer's mailbox")
        answer = parse_bytes(raw)
        assert "Your refund is on its way." in raw.decode(errors="replace")

        back = EmailMessage()
        back["From"] = f"Maria <{MARIA}>"
        back["To"] = SUPPORT
        back["Subject"] = f"Re: {answer['Subject']}"
        back["Message-ID"] = make_msgid(domain="example.fi")
        back["In-Reply-To"] = answer["Message-ID"]
        back.set_content("Great, thanks!")
        servers.dovecot.append(SUPPORT, bytes(back))

        async def answered() -> list[dict[str, Any]] | None:
            view = (await alice.http.get(f"/api/desk/conversations/{conversation_id}")).json()
            return [m for m in view["messages"] if m["text"].startswith("Great, thanks!")]

        [reply] = await until(answered, "the customer's email in the chat's conversation")
        assert reply["author_kind"] == "customer"

        # Opted out of email: the channel is no longer offered.
        customer_id = (await alice.http.get(f"/api/desk/conversations/{conversation_id}")
                       ).json()["customer"]["id"]
        await alice.http.put(f"/api/customers/{customer_id}/consent/email",
                             json={"opted_in": False, "source": "email reply"})
        assert (await alice.http.get(path + "/channels")).json() == []
    finally:
        for browser in (ada, alice, bob):
            await browser.close()

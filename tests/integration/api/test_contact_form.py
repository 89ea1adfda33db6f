"""The website's contact form through the running server: a request is stored and routed as
an email contact with a response-time target, the agent answers by email from the desk, the
answer reaches the visitor with the reference, and the visitor's reply lands in the same
conversation; bad input is refused with reasons, the honeypot and the limit hold; the
customer panel's REST (edit, merge, split) on the same server. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from omnicc.app.chats import VISITOR, visitor_digest
from omnicc.channels.email.mime import parse_bytes
from omnicc.store.database import Database
from omnicc.store.tables import Contact, EmailTicket, Identity, Message, Task
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


def form(seeded: Seeded, **changes: Any) -> dict[str, Any]:
    return {"queue_id": seeded.queues["support"], "email": "Maria.Virtanen@Example.fi",
            "name": "Maria", "phone": "+358 40 123 4567", "subject": "Order 1234",
            "message": "Where is my order?", "page": "https://shop.example/orders", **changes}


async def _count(url: str, table: Any) -> int:
    database = Database(url)
    try:
        async with database.session() as session:
            return int((await session.execute(select(func.count()).select_from(table)))
                       .scalar_one())
    finally:
        await database.dispose()


async def test_a_form_request_is_routed_answered_by_email_and_the_reply_threads(
        server: LiveServer, seeded: Seeded, servers: MailServers,
        migrated_database_url: str) -> None:
    ada = await Browser(server, "ada").login()
    alice = await Browser(server, "alice").login()
    try:
        created = await ada.http.post("/api/admin/email/mailboxes",
                                      json=mailbox_body(seeded, servers))
        assert created.status_code == 201, created.text
        await alice.http.put("/api/desk/status", json={"status": "available"})

        sent = await alice.http.post("/api/forms/contact", params={"tenant": "acme"},
                                     json=form(seeded))
        assert sent.status_code == 202, sent.text
        receipt = sent.json()
        assert len(receipt["reference"]) >= 6 and receipt["respond_by"]

        async def offered() -> dict[str, Any] | None:
            state = (await alice.http.get("/api/desk/state")).json()
            return next((o for o in state["offers"] if o["channel"] == "email"), None)

        offer = await until(offered, "the form's request offered to Alice")
        assert offer["topic"] == "Order 1234"
        assert (await alice.http.post(f"/api/desk/offers/{offer['offer_id']}/accept")
                ).status_code == 200
        conversation_id = offer["conversation_id"]
        view = (await alice.http.get(f"/api/desk/conversations/{conversation_id}")).json()
        assert [m["text"] for m in view["messages"]] == ["Where is my order?"]
        identities = {(i["kind"], i["value"]) for i in view["customer"]["identities"]}
        assert identities == {("email", MARIA), ("phone", "+358401234567")}
        thread = (await alice.http.get(f"/api/emails/conversations/{conversation_id}")).json()
        assert thread["ticket"]["reference"] == receipt["reference"]

        reply = await alice.http.post(f"/api/emails/conversations/{conversation_id}/replies",
                                      json={"text": "It ships today.", "id": "r1"})
        assert reply.status_code == 201, reply.text

        async def delivered() -> list[bytes] | None:
            found = await asyncio.to_thread(servers.dovecot.messages, MARIA)
            return [raw for _, raw in found] or None

        [raw] = await until(delivered, "the answer in the visitor's mailbox")
        answer = parse_bytes(raw)
        assert f"[#{receipt['reference']}]" in str(answer["Subject"])

        # The visitor answers from their mail program: it lands in the same conversation.
        back = EmailMessage()
        back["From"] = f"Maria <{MARIA}>"
        back["To"] = SUPPORT
        back["Subject"] = f"Re: {answer['Subject']}"
        back["Message-ID"] = make_msgid(domain="example.fi")
        back["In-Reply-To"] = answer["Message-ID"]
        back.set_content("Thank you!")
        servers.dovecot.append(SUPPORT, bytes(back))

        async def answered() -> bool:
            view = (await alice.http.get(f"/api/desk/conversations/{conversation_id}")).json()
            return any(m["text"].startswith("Thank you!") for m in view["messages"])

        await until(answered, "the visitor's reply in the form's conversation")
        database = Database(migrated_database_url)
        try:
            async with database.session() as session:
                [contact] = (await session.scalars(select(Contact).where(
                    Contact.conversation_id == conversation_id))).all()
                assert contact.attributes["source"] == "form"
                assert contact.attributes["page"] == "https://shop.example/orders"
        finally:
            await database.dispose()

        # Made a VIP, Maria's next email (a new thread) is a task that says so.
        customer_id = view["customer"]["id"]
        assert (await alice.http.patch(f"/api/customers/{customer_id}", json={
            "vip": True, "account_manager": seeded.agents["bob"]})).status_code == 200
        fresh = EmailMessage()
        fresh["From"] = f"Maria <{MARIA}>"
        fresh["To"] = SUPPORT
        fresh["Subject"] = "Another question"
        fresh["Message-ID"] = make_msgid(domain="example.fi")
        fresh.set_content("Do you ship to Lapland?")
        servers.dovecot.append(SUPPORT, bytes(fresh))

        async def vip_task() -> dict[str, Any] | None:
            database = Database(migrated_database_url)
            try:
                async with database.session() as session:
                    rows = (await session.scalars(select(Task).where(
                        Task.channel == "email"))).all()
            finally:
                await database.dispose()
            return next((dict(r.attributes) for r in rows
                         if r.attributes.get("topic") == "Another question"), None)

        attributes = await until(vip_task, "the VIP's email task")
        assert attributes["vip"] is True
        assert attributes["preferred_agents"] == [seeded.agents["bob"]]
    finally:
        for browser in (ada, alice):
            await browser.close()


async def test_bad_requests_are_refused_with_reasons_and_bots_get_nothing(
        server: LiveServer, seeded: Seeded, migrated_database_url: str) -> None:
    visitor = Browser(server, "nobody")
    try:
        async def post(body: dict[str, Any], tenant: str = "acme") -> Any:
            return await visitor.http.post("/api/forms/contact", params={"tenant": tenant},
                                           json=body)

        bad_email = await post(form(seeded, email="maria at example"))
        assert bad_email.status_code == 422 and bad_email.json()["field"] == "email"
        bad_phone = await post(form(seeded, phone="call me"))
        assert bad_phone.status_code == 422 and bad_phone.json()["field"] == "phone"
        blank = await post(form(seeded, message="   "))
        assert blank.status_code == 422 and blank.json()["field"] == "message"
        assert (await post(form(seeded, queue_id="nope"))).status_code == 404
        assert (await post(form(seeded), tenant="nope")).status_code == 404
        assert (await post({**form(seeded), "admin": True})).status_code == 422
        assert (await post({"email": MARIA})).status_code == 422
        assert await _count(migrated_database_url, Message) == 0

        trapped = await post(form(seeded, website="http://spam.example"))
        assert trapped.status_code == 202 and trapped.json()["reference"]
        assert await _count(migrated_database_url, Message) == 0
        assert await _count(migrated_database_url, EmailTicket) == 0

        # Five per address an hour (the honeypot's counted too): then 429 with Retry-After.
        for _ in range(4):
            assert (await post(form(seeded))).status_code == 202
        limited = await post(form(seeded))
        assert limited.status_code == 429
        assert int(limited.headers["Retry-After"]) > 0
        assert await _count(migrated_database_url, Message) == 4
    finally:
        await visitor.close()


async def test_the_customer_panel_edits_merges_and_splits(
        server: LiveServer, seeded: Seeded) -> None:
    visitor = Browser(server, "nobody")
    alice = await Browser(server, "alice").login()
    try:
        for email in ("maria@example.fi", "mv@work.example"):
            sent = await visitor.http.post("/api/forms/contact", params={"tenant": "acme"},
                                           json=form(seeded, email=email, phone=""))
            assert sent.status_code == 202
        home = (await alice.http.get("/api/customers", params={
            "kind": "email", "value": "MARIA@example.fi"})).json()
        work = (await alice.http.get("/api/customers", params={
            "kind": "email", "value": "mv@work.example"})).json()
        assert home["id"] != work["id"]
        assert (await alice.http.get("/api/customers", params={
            "kind": "email", "value": "nobody@example.fi"})).status_code == 404
        assert (await alice.http.get("/api/customers", params={
            "kind": "chat_visitor", "value": "x"})).status_code == 422
        assert (await visitor.http.get(f"/api/customers/{home['id']}")).status_code == 401

        edited = await alice.http.patch(f"/api/customers/{home['id']}", json={
            "vip": True, "segment": "gold", "account_manager": seeded.agents["bob"],
            "language": "fi", "preferred_channel": "email"})
        assert edited.status_code == 200, edited.text
        assert edited.json()["vip"] is True
        assert (await alice.http.patch(f"/api/customers/{home['id']}", json={
            "preferred_channel": "pigeon"})).status_code == 422
        assert (await alice.http.patch(f"/api/customers/{home['id']}", json={
            "account_manager": "nobody"})).status_code == 422
        consent = await alice.http.put(f"/api/customers/{home['id']}/consent/sms",
                                       json={"opted_in": False, "source": "phone call"})
        assert consent.json()["consent"]["sms"]["state"] == "opt_out"
        taken = await alice.http.post(f"/api/customers/{home['id']}/identities",
                                      json={"kind": "email", "value": "mv@work.example"})
        assert taken.status_code == 409

        merged = await alice.http.post(f"/api/customers/{home['id']}/merge",
                                       json={"other_id": work["id"], "reason": "same person"})
        assert merged.status_code == 200, merged.text
        assert merged.json()["actor"].startswith("user:")
        assert (await alice.http.get(f"/api/customers/{work['id']}")).status_code == 404
        panel = (await alice.http.get(f"/api/customers/{home['id']}")).json()
        assert {i["value"] for i in panel["identities"]} == {"maria@example.fi",
                                                             "mv@work.example"}
        timeline = (await alice.http.get(f"/api/customers/{home['id']}/timeline")).json()
        assert len(timeline) == 2 and {e["channel"] for e in timeline} == {"email"}

        work_identity = next(i["id"] for i in panel["identities"]
                             if i["value"] == "mv@work.example")
        split = await alice.http.post(f"/api/customers/{home['id']}/split",
                                      json={"identity_ids": [work_identity]})
        assert split.status_code == 200 and split.json()["other_id"] == work["id"]
        assert len((await alice.http.get(f"/api/customers/{home['id']}/timeline")).json()) == 1
        assert (await alice.http.post(f"/api/customers/{home['id']}/split",
                                      json={"identity_ids": []})).status_code == 422

        # A CRM's matching rule merges through the API with its token: the trail says so.
        ada = await Browser(server, "ada").login()
        issued = (await ada.http.post("/api/admin/api-tokens",
                                      json={"name": "crm", "role": "supervisor"})).json()
        await ada.close()
        by_token = await visitor.http.post(
            f"/api/customers/{home['id']}/merge", json={"other_id": work["id"]},
            headers={"Authorization": f"Bearer {issued['token']}"})
        assert by_token.status_code == 200, by_token.text
        assert by_token.json()["actor"] == f"token:{issued['id']}"
    finally:
        await visitor.close()
        await alice.close()


async def test_a_merged_customers_widget_shows_only_their_chats(
        server: LiveServer, seeded: Seeded) -> None:
    visitor = Browser(server, "nobody")
    alice = await Browser(server, "alice").login()
    try:
        sent = await visitor.http.post("/api/forms/contact", params={"tenant": "acme"},
                                       json=form(seeded, message="My private order details"))
        assert sent.status_code == 202
        await alice.http.put("/api/desk/status", json={"status": "available"})
        async with alice.socket("/api/desk/ws") as desk:
            await receive(desk, "state")
            customer, welcome = await customer_hello(server)
            token = welcome["visitor"]
            await customer.send(json.dumps({"type": "start", "queue_id": seeded.queues["billing"],
                                            "text": "Hello from chat", "id": "c-1"}))
            chat = await receive(customer, "chat")
            offer = await receive(desk, "offer.created",
                                  where=lambda f: f["conversation_id"] == chat["conversation_id"])
            assert (await alice.http.post(f"/api/desk/offers/{offer['offer_id']}/accept")
                    ).status_code == 200
            await customer.close()
        view = (await alice.http.get(
            f"/api/desk/conversations/{chat['conversation_id']}")).json()
        by_form = (await alice.http.get("/api/customers", params={
            "kind": "email", "value": MARIA})).json()
        merged = await alice.http.post(f"/api/customers/{view['customer']['id']}/merge",
                                       json={"other_id": by_form["id"]})
        assert merged.status_code == 200
        timeline = (await alice.http.get(
            f"/api/customers/{view['customer']['id']}/timeline")).json()
        assert {e["channel"] for e in timeline} == {"chat", "email"}

        again, welcome = await customer_hello(server, token)
        await again.close()
        texts = [m["text"] for m in welcome["history"]]
        assert "Hello from chat" in texts
        assert "My private order details" not in texts
    finally:
        await visitor.close()
        await alice.close()


async def test_a_chat_customer_made_vip_mid_session_starts_a_vip_chat(
        server: LiveServer, seeded: Seeded, migrated_database_url: str) -> None:
    alice = await Browser(server, "alice").login()
    customer, welcome = await customer_hello(server)
    try:
        database = Database(migrated_database_url)
        try:
            async with database.session() as session:
                identity = (await session.scalars(select(Identity).where(
                    Identity.kind == VISITOR,
                    Identity.value == visitor_digest(welcome["visitor"])))).one()
        finally:
            await database.dispose()
        assert (await alice.http.patch(f"/api/customers/{identity.customer_id}", json={
            "vip": True, "account_manager": seeded.agents["bob"]})).status_code == 200
        await customer.send(json.dumps({"type": "start", "queue_id": seeded.queues["support"],
                                        "text": "Hello", "id": "c-1"}))
        chat = await receive(customer, "chat")
        database = Database(migrated_database_url)
        try:
            async with database.session() as session:
                task = (await session.scalars(select(Task).where(
                    Task.conversation_id == chat["conversation_id"]))).one()
        finally:
            await database.dispose()
        assert task.attributes["vip"] is True
        assert task.attributes["preferred_agents"] == [seeded.agents["bob"]]
    finally:
        await customer.close()
        await alice.close()

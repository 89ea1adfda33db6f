"""Messaging through the running server against stand-ins of the providers' APIs
(`providers.py`): a signed webhook is stored before it is answered, routed to the agent's desk,
answered over REST and sent as the provider documents; receipts move the message's state;
bad signatures, malformed bodies, duplicates, retries, failures and WhatsApp's 24-hour window;
on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import func, select

from omnicc.channels.messaging.meta import hub_signature
from omnicc.channels.messaging.service import MessagingTiming
from omnicc.channels.messaging.twilio import twilio_signature
from omnicc.store.database import Database
from omnicc.store.repositories import Agents, Customers, Identities, MessagingThreads
from omnicc.store.tables import (
    Attachment,
    Customer,
    Identity,
    Message,
    MessagingMessage,
    Task,
)
from tests.integration.api.live import (
    Browser,
    LiveServer,
    Seeded,
    live_server,
    seed,
    start_live_server,
)
from tests.integration.messaging.providers import (
    BOT_TOKEN,
    GRAPH_TOKEN,
    TWILIO_SID,
    TWILIO_TOKEN,
    FakeProviders,
    fake_providers,
)

pytestmark = pytest.mark.anyio

WAIT_S = 30.0
APP_SECRET = "meta-app-secret"
TELEGRAM_SECRET = "telegram-secret_token-1"
CUSTOMER = "+358401234567"


async def _seed(url: str) -> Seeded:
    seeded = await seed(url)
    database = Database(url)
    try:
        async with database.session() as session:
            for agent_id in seeded.agents.values():
                agent = await Agents(session, seeded.tenant_id).get(agent_id)
                agent.capacity = {"chat": 2, "voice": 1, "sms": 5, "whatsapp": 5,
                                  "telegram": 5, "messenger": 5}
    finally:
        await database.dispose()
    return seeded


@pytest.fixture
def seeded(migrated_database_url: str) -> Seeded:
    return asyncio.run(_seed(migrated_database_url))


@pytest.fixture
def fake() -> Iterator[FakeProviders]:
    yield from fake_providers()


@pytest.fixture
def server(migrated_database_url: str, seeded: Seeded, tmp_path: Path) -> Iterator[LiveServer]:
    for live in live_server(migrated_database_url, tmp_path / "data"):
        # Retries in a test's time: 0.05 s, 0.1 s, 0.2 s, ...
        app: Any = live.server.config.app
        app.state.messaging.timing = MessagingTiming(
            retry_base_s=0.05, retry_max_s=0.2, request_timeout_s=10)
        yield live


@pytest.fixture
def database(migrated_database_url: str) -> Iterator[Database]:
    database = Database(migrated_database_url)
    yield database
    asyncio.run(database.dispose())


async def until(probe: Any, what: str) -> Any:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while asyncio.get_running_loop().time() < deadline:
        value = await probe()
        if value:
            return value
        await asyncio.sleep(0.05)
    pytest.fail(f"never happened: {what}")


async def add_account(ada: Browser, seeded: Seeded, fake: FakeProviders,
                      **fields: Any) -> dict[str, Any]:
    response = await ada.http.post("/api/admin/messaging/accounts", json={
        "queue_id": seeded.queues["support"], "api_base_url": fake.url, **fields})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def take_offer(agent: Browser, conversation_id: str) -> dict[str, Any]:
    async def offered() -> dict[str, Any] | None:
        state = (await agent.http.get("/api/desk/state")).json()
        return next((o for o in state["offers"] if o["conversation_id"] == conversation_id),
                    None)

    offer = await until(offered, f"an offer of {conversation_id}")
    accepted = await agent.http.post(f"/api/desk/offers/{offer['offer_id']}/accept")
    assert accepted.status_code == 200, accepted.text
    return offer  # type: ignore[no-any-return]


async def status_of(agent: Browser, conversation_id: str, message_id: str) -> str:
    view = (await agent.http.get(f"/api/messaging/conversations/{conversation_id}")).json()
    return str(next(m["status"] for m in view["messages"] if m["message_id"] == message_id))


async def count(database: Database, table: Any) -> int:
    async with database.session() as session:
        return int((await session.execute(select(func.count()).select_from(table)))
                   .scalar_one())


def twilio_post(server: LiveServer, path: str, form: dict[str, str], *,
                token: str = TWILIO_TOKEN) -> httpx.Response:
    signature = twilio_signature(token, server.settings.public_base_url + path, form.items())
    return httpx.post(server.url + path, content=urlencode(form), headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature})


def meta_post(server: LiveServer, path: str, body: dict[str, Any], *,
              secret: str = APP_SECRET) -> httpx.Response:
    raw = json.dumps(body).encode()
    return httpx.post(server.url + path, content=raw, headers={
        "Content-Type": "application/json", "X-Hub-Signature-256": hub_signature(secret, raw)})


async def test_twilio_sms_from_webhook_to_answer_and_receipts(
        server: LiveServer, seeded: Seeded, fake: FakeProviders, database: Database) -> None:
    ada = await Browser(server, "ada").login()
    alice = await Browser(server, "alice").login()
    try:
        account = await add_account(ada, seeded, fake, name="SMS", provider="twilio",
                                    channel="sms", address="+15005550006",
                                    account_sid=TWILIO_SID, auth_token=TWILIO_TOKEN)
        assert "auth_token" not in account and account["has_auth_token"] is True
        hook = account["webhook_path"]
        await alice.http.put("/api/desk/status", json={"status": "available"})
        inbound = {"MessageSid": "SM" + "a" * 32, "AccountSid": TWILIO_SID,
                   "From": CUSTOMER, "To": "+15005550006", "Body": "My order is late",
                   "NumMedia": "1", "SmsStatus": "received",
                   "MediaUrl0": f"{fake.url}/media/ME1.jpg", "MediaContentType0": "image/jpeg"}

        refused = twilio_post(server, hook, inbound, token="not-the-token")
        assert refused.status_code == 403
        assert await count(database, MessagingMessage) == 0  # never processed

        answered = twilio_post(server, hook, inbound)
        assert answered.status_code == 200, answered.text
        assert answered.headers["content-type"].startswith("text/xml")
        # Stored and committed before the answer: visible at once to another connection.
        assert await count(database, MessagingMessage) == 1
        assert twilio_post(server, hook, inbound).status_code == 200  # Twilio's retry
        assert await count(database, MessagingMessage) == 1
        async with database.session() as session:  # (its media's fate is a note of its own)
            assert len((await session.execute(select(Message).where(
                Message.author_kind == "customer"))).all()) == 1

        malformed = twilio_post(server, hook, {"From": CUSTOMER, "Body": "no sid"})
        assert malformed.status_code == 400 and "MessageSid" in malformed.json()["detail"]

        async with database.session() as session:
            thread = await MessagingThreads(session, seeded.tenant_id).of_peer(account["id"],
                                                                               CUSTOMER)
            assert thread is not None
            identity = await Identities(session, seeded.tenant_id).by_value("phone", CUSTOMER)
            assert identity is not None and identity.customer_id == thread.customer_id
        conversation_id = thread.conversation_id
        offer = await take_offer(alice, conversation_id)
        assert offer["channel"] == "sms" and offer["queue_id"] == seeded.queues["support"]

        view = (await alice.http.get(f"/api/messaging/conversations/{conversation_id}")).json()
        assert view["thread"]["peer"] == CUSTOMER and view["thread"]["channel"] == "sms"
        (received,) = view["messages"]
        assert received["media_urls"] == [f"{fake.url}/media/ME1.jpg"]

        reply = await alice.http.post(f"/api/messaging/conversations/{conversation_id}/messages",
                                      json={"text": "Sorry! It ships today.", "id": "r1",
                                            "media_urls": [f"{fake.url}/label.png"]})
        assert reply.status_code == 201, reply.text
        message_id = reply.json()["id"]
        (sent,) = await until(lambda: _async(fake.sent("/2010-04-01")), "Twilio got the SMS")
        assert sent.path == f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
        assert sent.body["To"] == CUSTOMER and sent.body["From"] == "+15005550006"
        assert sent.body["Body"] == "Sorry! It ships today."
        assert sent.body["MediaUrl"] == [f"{fake.url}/label.png"]
        assert sent.body["StatusCallback"] == server.settings.public_base_url + hook
        assert await until(lambda: _is(status_of(alice, conversation_id, message_id), "sent"),
                           "the answer shown as sent")

        async with database.session() as session:
            row = (await session.execute(select(MessagingMessage).where(
                MessagingMessage.message_id == message_id))).scalar_one()
        for status, shown in (("delivered", "delivered"), ("sent", "delivered"),
                              ("read", "read")):
            callback = twilio_post(server, hook, {"MessageSid": row.provider_message_id or "",
                                                  "MessageStatus": status,
                                                  "AccountSid": TWILIO_SID})
            assert callback.status_code == 200
            assert await status_of(alice, conversation_id, message_id) == shown
    finally:
        await ada.close()
        await alice.close()


async def _async(value: Any) -> Any:
    return value


async def _is(status: Any, wanted: str) -> bool:
    return await status == wanted  # type: ignore[no-any-return]


async def test_outbox_retries_then_shows_the_failure(
        server: LiveServer, seeded: Seeded, fake: FakeProviders, database: Database) -> None:
    ada = await Browser(server, "ada").login()
    alice = await Browser(server, "alice").login()
    try:
        account = await add_account(ada, seeded, fake, name="WhatsApp via Twilio",
                                    provider="twilio", channel="whatsapp",
                                    address="+14155238886", account_sid=TWILIO_SID,
                                    auth_token=TWILIO_TOKEN)
        await alice.http.put("/api/desk/status", json={"status": "available"})
        assert twilio_post(server, account["webhook_path"], {
            "MessageSid": "SM" + "b" * 32, "From": f"whatsapp:{CUSTOMER}",
            "To": "whatsapp:+14155238886", "Body": "hi", "ProfileName": "Aino"}
        ).status_code == 200
        async with database.session() as session:
            thread = await MessagingThreads(session, seeded.tenant_id).of_peer(account["id"],
                                                                               CUSTOMER)
        assert thread is not None
        conversation_id = thread.conversation_id
        await take_offer(alice, conversation_id)
        path = f"/api/messaging/conversations/{conversation_id}/messages"

        fake.fail_next(503, 429)
        first = (await alice.http.post(path, json={"text": "one"})).json()["id"]
        assert await until(lambda: _is(status_of(alice, conversation_id, first), "sent"),
                           "sent on the third attempt")
        tries = fake.sent("/2010-04-01")
        assert len(tries) == 3 and tries[-1].body["To"] == f"whatsapp:{CUSTOMER}"
        view = (await alice.http.get(f"/api/messaging/conversations/{conversation_id}")).json()
        assert next(m for m in view["messages"] if m["message_id"] == first)["attempts"] == 3

        fake.fail_next(500, 500, 500, 500, 500)
        second = (await alice.http.post(path, json={"text": "two"})).json()["id"]
        assert await until(lambda: _is(status_of(alice, conversation_id, second), "failed"),
                           "given up after five attempts")
        assert len(fake.sent("/2010-04-01")) == 8
        desk = (await alice.http.get(f"/api/desk/conversations/{conversation_id}")).json()
        notes = [m["text"] for m in desk["messages"] if m["visibility"] == "internal"]
        assert any("could not be delivered" in n and "after 5 attempts" in n for n in notes)
    finally:
        await ada.close()
        await alice.close()


def whatsapp_hook(value: dict[str, Any]) -> dict[str, Any]:
    return {"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [
        {"field": "messages", "value": {"messaging_product": "whatsapp",
                                        "metadata": {"phone_number_id": "106540352242922"},
                                        **value}}]}]}


async def test_whatsapp_cloud_api_window_and_templates(
        server: LiveServer, seeded: Seeded, fake: FakeProviders, database: Database) -> None:
    ada = await Browser(server, "ada").login()
    alice = await Browser(server, "alice").login()
    try:
        account = await add_account(ada, seeded, fake, name="WhatsApp", provider="whatsapp",
                                    channel="whatsapp", address="106540352242922",
                                    auth_token=GRAPH_TOKEN, app_secret=APP_SECRET,
                                    verify_token="hamhock")
        hook = account["webhook_path"]
        ok = httpx.get(server.url + hook, params={"hub.mode": "subscribe",
                                                  "hub.verify_token": "hamhock",
                                                  "hub.challenge": "1158201444"})
        assert (ok.status_code, ok.text) == (200, "1158201444")
        assert httpx.get(server.url + hook, params={
            "hub.mode": "subscribe", "hub.verify_token": "x", "hub.challenge": "1"}
        ).status_code == 403
        await alice.http.put("/api/desk/status", json={"status": "available"})
        message = {"contacts": [{"profile": {"name": "Aino"}, "wa_id": CUSTOMER[1:]}],
                   "messages": [{"from": CUSTOMER[1:], "id": "wamid.IN1", "type": "text",
                                 "timestamp": "1", "text": {"body": "Hei"}}]}
        assert meta_post(server, hook, whatsapp_hook(message), secret="wrong").status_code == 403
        assert meta_post(server, hook, {"object": "page"}).status_code == 400
        assert meta_post(server, hook, whatsapp_hook(message)).status_code == 200
        assert meta_post(server, hook, whatsapp_hook(message)).status_code == 200
        assert await count(database, MessagingMessage) == 1
        async with database.session() as session:
            thread = await MessagingThreads(session, seeded.tenant_id).of_peer(account["id"],
                                                                               CUSTOMER)
        assert thread is not None
        conversation_id = thread.conversation_id
        await take_offer(alice, conversation_id)

        path = f"/api/messaging/conversations/{conversation_id}"
        answer = (await alice.http.post(path + "/messages", json={"text": "Moi!"})).json()
        (sent,) = await until(lambda: _async(fake.sent("/v21.0/106540352242922")),
                              "the Cloud API got it")
        assert sent.headers["authorization"] == f"Bearer {GRAPH_TOKEN}"
        assert sent.body == {"messaging_product": "whatsapp", "recipient_type": "individual",
                             "to": CUSTOMER[1:], "type": "text",
                             "text": {"preview_url": False, "body": "Moi!"}}
        await until(lambda: _is(status_of(alice, conversation_id, answer["id"]), "sent"),
                    "sent")
        async with database.session() as session:
            row = (await session.execute(select(MessagingMessage).where(
                MessagingMessage.message_id == answer["id"]))).scalar_one()
        for status in ("delivered", "read"):
            assert meta_post(server, hook, whatsapp_hook({"statuses": [{
                "id": row.provider_message_id, "status": status, "timestamp": "2",
                "recipient_id": CUSTOMER[1:]}]})).status_code == 200
            assert await status_of(alice, conversation_id, answer["id"]) == status

        async with database.session() as session:  # the customer wrote 25 hours ago
            stored = await MessagingThreads(session, seeded.tenant_id).get(thread.id)
            assert stored.last_inbound_at is not None
            stored.last_inbound_at -= timedelta(hours=25)
        view = (await alice.http.get(path)).json()
        assert view["thread"]["window_open"] is False and view["thread"]["needs_template"]
        late = await alice.http.post(path + "/messages", json={"text": "still there?"})
        assert late.status_code == 409 and "24 hours" in late.json()["detail"]
        template = await alice.http.post(path + "/templates", json={
            "name": "order_update", "language": "en_US", "parameters": ["A-1001"]})
        assert template.status_code == 201, template.text
        (_, sent_template) = await until(
            lambda: _async(fake.sent("/v21.0/106540352242922")[1:] and
                           fake.sent("/v21.0/106540352242922")), "the template went out")
        assert sent_template.body["type"] == "template"
        assert sent_template.body["template"] == {
            "name": "order_update", "language": {"code": "en_US"},
            "components": [{"type": "body", "parameters": [{"type": "text",
                                                             "text": "A-1001"}]}]}
    finally:
        await ada.close()
        await alice.close()


async def test_telegram_bot_text_media_and_refusal(
        server: LiveServer, seeded: Seeded, fake: FakeProviders, database: Database) -> None:
    ada = await Browser(server, "ada").login()
    alice = await Browser(server, "alice").login()
    try:
        account = await add_account(ada, seeded, fake, name="Bot", provider="telegram",
                                    channel="telegram", address="acme_support_bot",
                                    auth_token=BOT_TOKEN, app_secret=TELEGRAM_SECRET)
        hook = server.url + account["webhook_path"]
        await alice.http.put("/api/desk/status", json={"status": "available"})
        update = {"update_id": 7, "message": {
            "message_id": 42, "date": 1, "text": "Hello bot",
            "from": {"id": 987654321, "first_name": "Aino", "is_bot": False},
            "chat": {"id": 987654321, "type": "private"}}}
        assert httpx.post(hook, json=update, headers={
            "X-Telegram-Bot-Api-Secret-Token": "wrong"}).status_code == 403
        headers = {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}
        assert httpx.post(hook, json={"message": {}}, headers=headers).status_code == 400
        assert httpx.post(hook, json=update, headers=headers).status_code == 200
        async with database.session() as session:
            thread = await MessagingThreads(session, seeded.tenant_id).of_peer(account["id"],
                                                                               "987654321")
            assert thread is not None
            assert await Identities(session, seeded.tenant_id).by_value(
                "telegram", "987654321") is not None
        await take_offer(alice, thread.conversation_id)
        path = f"/api/messaging/conversations/{thread.conversation_id}/messages"
        await alice.http.post(path, json={"text": "Hi Aino"})
        await alice.http.post(path, json={"text": "the label",
                                          "media_urls": ["https://files.example/l.png"]})
        text, photo = await until(lambda: _async(len(fake.sent("/bot")) >= 2
                                                 and fake.sent("/bot")), "both sent")
        assert text.path == f"/bot{BOT_TOKEN}/sendMessage"
        assert text.body == {"chat_id": "987654321", "text": "Hi Aino"}
        assert photo.path == f"/bot{BOT_TOKEN}/sendPhoto"
        assert photo.body == {"chat_id": "987654321", "photo": "https://files.example/l.png",
                              "caption": "the label"}

        fake.fail_next(400)  # "chat not found": trying again cannot help
        refused = (await alice.http.post(path, json={"text": "gone?"})).json()["id"]
        assert await until(lambda: _is(status_of(alice, thread.conversation_id, refused),
                                       "failed"), "failed at once")
        view = (await alice.http.get(
            f"/api/messaging/conversations/{thread.conversation_id}")).json()
        failed = next(m for m in view["messages"] if m["message_id"] == refused)
        assert failed["attempts"] == 1 and "chat not found" in failed["last_error"]
    finally:
        await ada.close()
        await alice.close()


async def test_messenger_page_answer_delivery_and_read(
        server: LiveServer, seeded: Seeded, fake: FakeProviders, database: Database) -> None:
    ada = await Browser(server, "ada").login()
    alice = await Browser(server, "alice").login()
    try:
        account = await add_account(ada, seeded, fake, name="Page", provider="messenger",
                                    channel="messenger", address="PAGE1",
                                    auth_token=GRAPH_TOKEN, app_secret=APP_SECRET,
                                    verify_token="v")
        hook = account["webhook_path"]
        await alice.http.put("/api/desk/status", json={"status": "available"})

        def event(body: dict[str, Any]) -> dict[str, Any]:
            return {"object": "page", "entry": [{"id": "PAGE1", "time": 1, "messaging": [
                {"sender": {"id": "PSID-7"}, "recipient": {"id": "PAGE1"}, **body}]}]}

        assert meta_post(server, hook, event({"message": {"mid": "m_in", "text": "Hi"}})
                         ).status_code == 200
        async with database.session() as session:
            thread = await MessagingThreads(session, seeded.tenant_id).of_peer(account["id"],
                                                                               "PSID-7")
        assert thread is not None
        await take_offer(alice, thread.conversation_id)
        answer = (await alice.http.post(
            f"/api/messaging/conversations/{thread.conversation_id}/messages",
            json={"text": "Hello from Acme"})).json()
        (sent,) = await until(lambda: _async(fake.sent("/v21.0/me/messages")), "sent")
        assert sent.query == {"access_token": GRAPH_TOKEN}
        assert sent.body == {"recipient": {"id": "PSID-7"}, "message": {"text": "Hello from Acme"},
                             "messaging_type": "RESPONSE"}
        await until(lambda: _is(status_of(alice, thread.conversation_id, answer["id"]), "sent"),
                    "sent")
        assert meta_post(server, hook, event({"delivery": {"mids": ["m_1"], "watermark": 1}})
                         ).status_code == 200
        assert await status_of(alice, thread.conversation_id, answer["id"]) == "delivered"
        far_future_ms = 4_102_444_800_000  # 2100-01-01
        assert meta_post(server, hook, event({"read": {"watermark": far_future_ms}})
                         ).status_code == 200
        assert await status_of(alice, thread.conversation_id, answer["id"]) == "read"
    finally:
        await ada.close()
        await alice.close()


async def test_a_known_caller_and_simultaneous_retries(
        server: LiveServer, seeded: Seeded, fake: FakeProviders, database: Database) -> None:
    """An SMS from a number the contact center knows (a caller) joins that customer and its
    task carries the customer's routing data (a VIP to their account manager); the same
    webhook delivered five times at once is stored once."""
    async with database.session() as session:
        known = await Customers(session, seeded.tenant_id).add(Customer(
            name="Maria Caller", attributes={"vip": True, "segment": "gold",
                                             "account_manager": seeded.agents["bob"]}))
        await Identities(session, seeded.tenant_id).add(Identity(
            customer_id=known.id, kind="phone", value=CUSTOMER))
    ada = await Browser(server, "ada").login()
    try:
        account = await add_account(ada, seeded, fake, name="SMS", provider="twilio",
                                    channel="sms", address="+15005550006",
                                    account_sid=TWILIO_SID, auth_token=TWILIO_TOKEN)
        form = {"MessageSid": "SM" + "c" * 32, "From": CUSTOMER, "To": "+15005550006",
                "Body": "It's Maria"}
        answers = await asyncio.gather(*(asyncio.to_thread(
            twilio_post, server, account["webhook_path"], form) for _ in range(5)))
        assert [a.status_code for a in answers] == [200] * 5
        assert await count(database, MessagingMessage) == 1
        assert await count(database, Message) == 1
        async with database.session() as session:
            thread = await MessagingThreads(session, seeded.tenant_id).of_peer(account["id"],
                                                                               CUSTOMER)
        assert thread is not None and thread.customer_id == known.id
        async with database.session() as session:
            task = await session.get(Task, thread.task_id)
        assert task is not None
        assert task.attributes["vip"] is True and task.attributes["segment"] == "gold"
        assert task.attributes["preferred_agents"] == [seeded.agents["bob"]]
        assert task.attributes["customer_id"] == known.id
    finally:
        await ada.close()


async def test_messenger_after_a_day_answers_with_the_human_agent_tag(
        server: LiveServer, seeded: Seeded, fake: FakeProviders, database: Database) -> None:
    ada = await Browser(server, "ada").login()
    alice = await Browser(server, "alice").login()
    try:
        account = await add_account(ada, seeded, fake, name="Page", provider="messenger",
                                    channel="messenger", address="PAGE1",
                                    auth_token=GRAPH_TOKEN, app_secret=APP_SECRET)
        await alice.http.put("/api/desk/status", json={"status": "available"})
        assert meta_post(server, account["webhook_path"], {"object": "page", "entry": [
            {"id": "PAGE1", "time": 1, "messaging": [
                {"sender": {"id": "PSID-8"}, "recipient": {"id": "PAGE1"},
                 "message": {"mid": "m_late", "text": "Hello?"}}]}]}).status_code == 200
        async with database.session() as session:
            thread = await MessagingThreads(session, seeded.tenant_id).of_peer(account["id"],
                                                                               "PSID-8")
            assert thread is not None and thread.last_inbound_at is not None
            thread.last_inbound_at -= timedelta(hours=30)
        await take_offer(alice, thread.conversation_id)
        answer = await alice.http.post(
            f"/api/messaging/conversations/{thread.conversation_id}/messages",
            json={"text": "Sorry for the wait"})
        assert answer.status_code == 201  # Messenger has no templates: the tag answers
        (sent,) = await until(lambda: _async(fake.sent("/v21.0/me/messages")), "sent")
        assert (sent.body["messaging_type"], sent.body["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")
        template = await alice.http.post(
            f"/api/messaging/conversations/{thread.conversation_id}/templates",
            json={"name": "x", "language": "en"})
        assert template.status_code == 409
    finally:
        await ada.close()
        await alice.close()


async def test_an_answer_waiting_for_its_retry_survives_a_restart(
        migrated_database_url: str, seeded: Seeded, fake: FakeProviders, database: Database,
        tmp_path: Path) -> None:
    first = start_live_server(migrated_database_url, tmp_path / "data")
    app: Any = first.server.config.app
    app.state.messaging.timing = MessagingTiming(retry_base_s=3600, retry_max_s=3600)
    ada = await Browser(first, "ada").login()
    alice = await Browser(first, "alice").login()
    try:
        account = await add_account(ada, seeded, fake, name="Bot", provider="telegram",
                                    channel="telegram", address="bot", auth_token=BOT_TOKEN,
                                    app_secret=TELEGRAM_SECRET)
        await alice.http.put("/api/desk/status", json={"status": "available"})
        assert httpx.post(first.url + account["webhook_path"], json={"update_id": 1, "message": {
            "message_id": 5, "date": 1, "text": "hi", "chat": {"id": 55, "type": "private"},
            "from": {"id": 55, "first_name": "K"}}},
            headers={"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}).status_code == 200
        async with database.session() as session:
            thread = await MessagingThreads(session, seeded.tenant_id).of_peer(account["id"],
                                                                               "55")
        assert thread is not None
        await take_offer(alice, thread.conversation_id)
        fake.fail_next(502)
        answer = (await alice.http.post(
            f"/api/messaging/conversations/{thread.conversation_id}/messages",
            json={"text": "after the restart"})).json()

        async def waiting() -> MessagingMessage | None:
            async with database.session() as session:
                row = (await session.execute(select(MessagingMessage).where(
                    MessagingMessage.message_id == answer["id"]))).scalar_one()
            return row if row.attempts == 1 else None

        row = await until(waiting, "the first attempt failed")
        assert row.status == "pending" and row.next_attempt_at is not None
    finally:
        await ada.close()
        await alice.close()
        first.stop()
    async with database.session() as session:  # its hour is up
        stored = await session.get(MessagingMessage, row.id)
        assert stored is not None
        stored.next_attempt_at = stored.created_at
    second = start_live_server(migrated_database_url, tmp_path / "data")
    try:
        async def sent() -> bool:
            async with database.session() as session:
                again = await session.get(MessagingMessage, row.id)
                return again is not None and again.status == "sent"

        await until(sent, "sent by the restarted server")
        assert [r.body["text"] for r in fake.sent("/bot")] == ["after the restart"] * 2
    finally:
        second.stop()


async def test_an_agent_transfers_a_conversation_to_a_colleague(
        server: LiveServer, seeded: Seeded, fake: FakeProviders, database: Database) -> None:
    ada = await Browser(server, "ada").login()
    alice = await Browser(server, "alice").login()
    bob = await Browser(server, "bob").login()
    try:
        account = await add_account(ada, seeded, fake, name="SMS", provider="twilio",
                                    channel="sms", address="+15005550006",
                                    account_sid=TWILIO_SID, auth_token=TWILIO_TOKEN)
        await alice.http.put("/api/desk/status", json={"status": "available"})
        assert twilio_post(server, account["webhook_path"], {
            "MessageSid": "SM" + "d" * 32, "From": CUSTOMER, "To": "+15005550006",
            "Body": "billing question"}).status_code == 200
        async with database.session() as session:
            thread = await MessagingThreads(session, seeded.tenant_id).of_peer(account["id"],
                                                                               CUSTOMER)
        assert thread is not None
        await take_offer(alice, thread.conversation_id)
        path = f"/api/messaging/conversations/{thread.conversation_id}"
        assert (await bob.http.post(path + "/transfer", json={
            "agent_id": seeded.agents["alice"]})).status_code == 403  # not bob's
        await bob.http.put("/api/desk/status", json={"status": "available"})
        moved = await alice.http.post(path + "/transfer", json={"agent_id": seeded.agents["bob"]})
        assert moved.status_code == 200, moved.text
        assert moved.json()["tasks"] == []
        await take_offer(bob, thread.conversation_id)
        assert (await bob.http.post(path + "/messages", json={"text": "Bob here"})
                ).status_code == 201
        assert (await alice.http.post(path + "/messages", json={"text": "me?"})
                ).status_code == 403
        desk = (await bob.http.get(f"/api/desk/conversations/{thread.conversation_id}")).json()
        assert any(m["text"] == "The conversation was transferred to Bob."
                   for m in desk["messages"])
    finally:
        for browser in (ada, alice, bob):
            await browser.close()


async def test_the_customer_writes_again_after_the_agent_finished(
        server: LiveServer, seeded: Seeded, fake: FakeProviders, database: Database) -> None:
    ada = await Browser(server, "ada").login()
    alice = await Browser(server, "alice").login()
    try:
        account = await add_account(ada, seeded, fake, name="Bot", provider="telegram",
                                    channel="telegram", address="bot", auth_token=BOT_TOKEN,
                                    app_secret=TELEGRAM_SECRET)
        await alice.http.put("/api/desk/status", json={"status": "available"})

        def write(message_id: int, text: str) -> None:
            assert httpx.post(server.url + account["webhook_path"], json={
                "update_id": message_id, "message": {
                    "message_id": message_id, "date": 1, "text": text,
                    "chat": {"id": 77, "type": "private"}, "from": {"id": 77, "first_name": "L"}}},
                headers={"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}).status_code == 200

        write(1, "first question")
        async with database.session() as session:
            thread = await MessagingThreads(session, seeded.tenant_id).of_peer(account["id"], "77")
        assert thread is not None
        first = await take_offer(alice, thread.conversation_id)
        write(2, "and one more thing")  # joins the open task: no new offer
        path = f"/api/messaging/conversations/{thread.conversation_id}"
        view = (await alice.http.get(path)).json()
        assert [m["text"] for m in view["messages"]] == ["first question", "and one more thing"]
        assert (await alice.http.post(path + "/finish")).status_code == 200
        await alice.http.post(f"/api/desk/tasks/{first['task_id']}/wrap-up",
                              json={"code": "solved"})

        write(3, "it broke again")  # the same conversation, a new task
        second = await take_offer(alice, thread.conversation_id)
        assert second["task_id"] != first["task_id"]
        view = (await alice.http.get(path)).json()
        assert len(view["messages"]) == 3 and view["thread"]["task_id"] == second["task_id"]
    finally:
        await ada.close()
        await alice.close()


PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)
JPEG = b"\xff\xd8\xff\xe0" + bytes(64)
PDF = b"%PDF-1.7\n" + bytes(64)


async def test_customers_media_are_kept_as_attachments(
        server: LiveServer, seeded: Seeded, fake: FakeProviders, database: Database) -> None:
    """A photo by Twilio MMS (basic auth, a redirect to the CDN, a 500 first), a WhatsApp
    image (media id -> URL, both with the token), a Telegram document (getFile) are fetched
    into the attachment store after the webhook's answer; a Messenger "image" that is a web
    page is refused by its bytes and said in a note; the agent gets the files."""
    fake.media.update({"ME1": PNG, "1003383421387256": JPEG, "doc1": PDF,
                       "page.png": b"<html><script>alert(1)</script></html>"})
    ada = await Browser(server, "ada").login()
    alice = await Browser(server, "alice").login()
    try:
        accounts = {provider: await add_account(ada, seeded, fake, name=provider,
                                                provider=provider, **fields)
                    for provider, fields in (
            ("twilio", {"channel": "sms", "address": "+15005550006",
                        "account_sid": TWILIO_SID, "auth_token": TWILIO_TOKEN}),
            ("whatsapp", {"channel": "whatsapp", "address": "106540352242922",
                          "auth_token": GRAPH_TOKEN, "app_secret": APP_SECRET}),
            ("telegram", {"channel": "telegram", "address": "bot", "auth_token": BOT_TOKEN,
                          "app_secret": TELEGRAM_SECRET}),
            ("messenger", {"channel": "messenger", "address": "PAGE", "auth_token": GRAPH_TOKEN,
                           "app_secret": APP_SECRET}))}
        await alice.http.put("/api/desk/status", json={"status": "available"})
        fake.fail_next(500)  # Twilio's media answers 500 once: tried again
        media_url = (f"{fake.url}/2010-04-01/Accounts/{TWILIO_SID}/Messages/MM1/Media/ME1")
        assert twilio_post(server, accounts["twilio"]["webhook_path"], {
            "MessageSid": "MM1", "From": CUSTOMER, "To": "+15005550006", "Body": "my receipt",
            "NumMedia": "1", "MediaUrl0": media_url,
            "MediaContentType0": "image/png"}).status_code == 200
        assert meta_post(server, accounts["whatsapp"]["webhook_path"], whatsapp_hook({
            "contacts": [{"profile": {"name": "Sheena"}, "wa_id": "16505551234"}],
            "messages": [{"from": "16505551234", "id": "wamid.IMG", "timestamp": "1",
                          "type": "image", "image": {"caption": "the box",
                                                     "mime_type": "image/jpeg",
                                                     "id": "1003383421387256"}}]})
                         ).status_code == 200
        assert httpx.post(server.url + accounts["telegram"]["webhook_path"], json={
            "update_id": 1, "message": {
                "message_id": 5, "date": 1, "chat": {"id": 555, "type": "private"},
                "from": {"id": 555, "first_name": "Aino", "is_bot": False},
                "document": {"file_id": "doc1", "file_unique_id": "u1",
                             "file_name": "invoice.pdf", "mime_type": "application/pdf"}}},
            headers={"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}).status_code == 200
        assert meta_post(server, accounts["messenger"]["webhook_path"], {
            "object": "page", "entry": [{"id": "PAGE", "time": 1, "messaging": [{
                "sender": {"id": "PSID9"}, "recipient": {"id": "PAGE"}, "timestamp": 1,
                "message": {"mid": "m_img", "attachments": [{
                    "type": "image", "payload": {"url": f"{fake.url}/cdn/messenger/page.png"}
                }]}}]}]}).status_code == 200

        async def kept() -> list[Attachment] | None:
            async with database.session() as session:
                rows = (await session.execute(select(Attachment))).scalars().all()
                notes = (await session.execute(select(Message).where(
                    Message.author_kind == "system"))).scalars().all()
            return list(rows) if len(rows) == 3 and notes else None

        files = {f.content_type: f for f in await until(kept, "three files and a note")}
        assert set(files) == {"image/png", "image/jpeg", "application/pdf"}
        assert files["application/pdf"].filename == "doc1.pdf"
        twilio = fake.sent("/2010-04-01/Accounts/")
        assert [r.headers.get("authorization", "")[:6] for r in twilio] == ["Basic "] * 2
        assert {r.path for r in fake.sent("/cdn/whatsapp/")} == {
            "/cdn/whatsapp/1003383421387256"}
        assert all(r.headers["authorization"] == f"Bearer {GRAPH_TOKEN}"
                   for r in fake.sent("/v21.0/1003383421387256") + fake.sent("/cdn/whatsapp"))
        assert [r.query for r in fake.sent(f"/bot{BOT_TOKEN}/getFile")] == [{"file_id": "doc1"}]
        async with database.session() as session:
            note = (await session.execute(select(Message).where(
                Message.author_kind == "system"))).scalar_one()
            thread = await MessagingThreads(session, seeded.tenant_id).of_peer(
                accounts["whatsapp"]["id"], "+16505551234")
        assert note.visibility == "internal" and "could not be kept" in note.text
        assert thread is not None and files["image/jpeg"].conversation_id == (
            thread.conversation_id)

        await take_offer(alice, thread.conversation_id)
        view = (await alice.http.get(
            f"/api/messaging/conversations/{thread.conversation_id}")).json()
        (image,) = view["messages"][0]["attachments"]
        assert image["content_type"] == "image/jpeg"
        download = await alice.http.get(image["url"])
        assert download.status_code == 200 and download.content == JPEG
    finally:
        await ada.close()
        await alice.close()

"""A chat that went quiet is answered by SMS from the desk (`/api/customers/.../replies`,
messaging's registered senders), Twilio's stand-in gets it, and the customer's SMS answer
lands in the same conversation and the agent's task; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.api.live import Browser, LiveServer, Seeded, receive
from tests.integration.api.test_chat_flow import customer_hello
from tests.integration.messaging.providers import TWILIO_SID, TWILIO_TOKEN, FakeProviders
from tests.integration.messaging.test_messaging_api import (
    CUSTOMER,
    _async,
    add_account,
    database,
    fake,
    seeded,
    server,
    twilio_post,
    until,
)

pytestmark = pytest.mark.anyio
__all__ = ["database", "fake", "seeded", "server"]  # the fixtures, shared


async def test_a_quiet_chat_is_answered_by_sms_and_the_answer_comes_back(
        server: LiveServer, seeded: Seeded, fake: FakeProviders) -> None:
    ada = await Browser(server, "ada").login()
    alice = await Browser(server, "alice").login()
    try:
        account = await add_account(ada, seeded, fake, name="SMS", provider="twilio",
                                    channel="sms", address="+15005550006",
                                    account_sid=TWILIO_SID, auth_token=TWILIO_TOKEN)
        await alice.http.put("/api/desk/status", json={"status": "available"})
        async with alice.socket("/api/desk/ws") as desk:
            await receive(desk, "state")
            customer, _ = await customer_hello(server)
            await customer.send(json.dumps({
                "type": "start", "queue_id": seeded.queues["support"], "text": "Refund?",
                "id": "m-1", "name": "Maria", "topic": "refund"}))
            chat = await receive(customer, "chat")
            offer = await receive(desk, "offer.created")
            assert (await alice.http.post(f"/api/desk/offers/{offer['offer_id']}/accept")
                    ).status_code == 200
            await customer.close()
        conversation_id = chat["conversation_id"]
        customer_id = (await alice.http.get(f"/api/desk/conversations/{conversation_id}")
                       ).json()["customer"]["id"]
        added = await alice.http.post(f"/api/customers/{customer_id}/identities",
                                      json={"kind": "phone", "value": CUSTOMER})
        assert added.status_code == 201, added.text
        path = f"/api/customers/conversations/{conversation_id}"
        choices = (await alice.http.get(path + "/channels")).json()
        assert {"channel": "sms", "address": CUSTOMER, "can_send": True}.items() <= next(
            c for c in choices if c["channel"] == "sms").items()

        sent = await alice.http.post(path + "/replies", json={
            "channel": "sms", "address": CUSTOMER, "text": "Your refund is on its way."})
        assert sent.status_code == 201, sent.text
        (request,) = await until(lambda: _async(fake.sent("/2010-04-01")), "Twilio got it")
        assert (request.body["To"], request.body["Body"]) == (CUSTOMER,
                                                              "Your refund is on its way.")
        # WhatsApp has no account here: the answer is refused, not lost.
        assert (await alice.http.post(path + "/replies", json={
            "channel": "whatsapp", "address": CUSTOMER, "text": "x"})).status_code == 409

        assert twilio_post(server, account["webhook_path"], {
            "MessageSid": "SM" + "e" * 32, "From": CUSTOMER, "To": "+15005550006",
            "Body": "Great, thanks!"}).status_code == 200

        async def answered() -> list[dict[str, Any]] | None:
            view = (await alice.http.get(f"/api/desk/conversations/{conversation_id}")).json()
            return [m for m in view["messages"] if m["text"] == "Great, thanks!"] or None

        [reply] = await until(answered, "the customer's SMS in the chat's conversation")
        assert reply["author_kind"] == "customer"
        state = (await alice.http.get("/api/desk/state")).json()
        assert state["offers"] == []  # it joined the agent's task: nothing new to offer
    finally:
        await ada.close()
        await alice.close()

"""A real handled chat, over the running server, on SQLite and PostgreSQL: the CRM gets the
finished contact (agent, disposition, the agent's note as summary) signed, and the queue's
client contact gets one email about it (aiosmtpd)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from omnicc.store.database import Database
from omnicc.store.tables import EmailMailbox
from tests.integration.api.live import (
    Browser,
    LiveServer,
    Seeded,
    free_port,
    live_server,
    receive,
    seed,
)
from tests.integration.api.test_chat_flow import customer_hello
from tests.integration.crm.test_client_notifications import Collecting, smtp
from tests.integration.webhook_receiver import Receiver, running_receiver

pytestmark = pytest.mark.anyio
__all__ = ["smtp"]

SECRET = "whsec_chat-flow-secret"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from running_receiver(SECRET)


@pytest.fixture
def seeded(migrated_database_url: str, smtp: tuple[Collecting, int]) -> Seeded:
    async def prepare() -> Seeded:
        acme = await seed(migrated_database_url)
        database = Database(migrated_database_url)
        try:
            async with database.session() as session:
                session.add(EmailMailbox(
                    tenant_id=acme.tenant_id, name="support", address="support@acme.example",
                    queue_id=acme.queues["support"], imap_host="127.0.0.1",
                    imap_port=free_port(), imap_security="plain", imap_username="x",
                    imap_password="x", smtp_host="127.0.0.1", smtp_port=smtp[1],
                    smtp_security="plain"))  # sends; its reader finds no IMAP server
        finally:
            await database.dispose()
        return acme

    return asyncio.run(prepare())


@pytest.fixture
def server(migrated_database_url: str, seeded: Seeded, tmp_path: Path) -> Iterator[LiveServer]:
    yield from live_server(migrated_database_url, tmp_path / "data")


async def test_a_handled_chat_reaches_the_crm_and_the_client(
        server: LiveServer, seeded: Seeded, receiver: Receiver,
        smtp: tuple[Collecting, int]) -> None:
    handler, _ = smtp
    ada = await Browser(server, "ada").login()
    assert (await ada.http.put("/api/admin/crm", json={
        "push_enabled": True, "push_url": receiver.url, "push_secret": SECRET})).is_success
    assert (await ada.http.put(f"/api/admin/client-contacts/{seeded.queues['support']}",
                               json={"email": "paula@client.example"})).is_success
    alice = await Browser(server, "alice").login()
    await alice.http.put("/api/desk/status", json={"status": "available"})
    async with alice.socket("/api/desk/ws") as desk:
        await receive(desk, "state")
        customer, _ = await customer_hello(server)
        await customer.send(json.dumps({
            "type": "start", "queue_id": seeded.queues["support"], "text": "My bill is wrong",
            "id": "m-1", "name": "Carol", "email": "carol@example.com"}))
        chat = await receive(customer, "chat")
        offer = await receive(desk, "offer.created")
        assert (await alice.http.post(f"/api/desk/offers/{offer['offer_id']}/accept")
                ).is_success
        conversation = chat["conversation_id"]
        await alice.http.post(f"/api/desk/conversations/{conversation}/messages",
                              json={"text": "Credit note sent", "internal": True})
        ended = await alice.http.post(f"/api/desk/conversations/{conversation}/end")
        task_id = ended.json()["tasks"][0]["task_id"]
        assert (await alice.http.post(f"/api/desk/tasks/{task_id}/wrap-up",
                                      json={"code": "solved"})).is_success
        await customer.close()
    with anyio.fail_after(20):
        while not receiver.accepted or not handler.received:
            await anyio.sleep(0.05)
    await ada.close()
    await alice.close()

    assert receiver.bad_signatures == 0 and dict(receiver.accepted) == {f"contact.{task_id}": 1}
    (pushed,) = [body for key, body in receiver.requests if key == f"contact.{task_id}"]
    data = pushed["data"]
    assert (data["channel"], data["conversation_id"]) == ("chat", conversation)
    assert data["agent"]["name"] == "Alice" and data["queue"]["name"] == "support"
    assert data["disposition"] == {"code": "solved", "label": "Solved"}
    assert data["summary"] == "Credit note sent"
    assert data["customer"]["name"] == "Carol" and data["wait_s"] is not None
    (email,) = handler.received
    assert email["Subject"] == "Handled chat contact in support - Carol"
    assert "Outcome: solved - Solved" in email.get_content()

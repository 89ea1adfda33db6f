"""Files in chats over real HTTP and WebSockets, on SQLite and PostgreSQL: a customer and an
agent send files, only the conversation's customer and the tenant's staff download them, bad
and oversized files are refused, and the stored bytes outlive a restart."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import select

from omnicc.store.database import Database
from omnicc.store.tables import Attachment, Message
from tests.integration.api.live import (
    Browser,
    LiveServer,
    Seeded,
    receive,
    seed,
    start_live_server,
)

pytestmark = pytest.mark.anyio

MAX_UPLOAD_BYTES = 32_768
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PDF = b"%PDF-1.7\n" + b"1 0 obj << /Type /Catalog >> endobj\n" * 20 + b"%%EOF\n"


@pytest.fixture
def seeded(migrated_database_url: str) -> Seeded:
    acme = asyncio.run(seed(migrated_database_url))
    asyncio.run(seed(migrated_database_url, slug="globex"))
    return acme


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def server(migrated_database_url: str, seeded: Seeded, data_dir: Path) -> Iterator[LiveServer]:
    live = start_live_server(migrated_database_url, data_dir,
                             max_upload_bytes=MAX_UPLOAD_BYTES)
    try:
        yield live
    finally:
        live.stop()


async def customer_hello(server: LiveServer, visitor: str | None = None) -> tuple[Any, dict]:
    ws = await websockets.connect(server.ws_url + "/api/chat/ws?tenant=acme")
    await ws.send(json.dumps({"type": "hello", "visitor": visitor}))
    return ws, await receive(ws, "welcome")


def upload(client: httpx.AsyncClient, url: str, filename: str, content: bytes,
           content_type: str = "application/octet-stream",
           headers: dict[str, str] | None = None) -> Any:
    return client.post(url, files={"file": (filename, content, content_type)},
                       headers=headers or {})


async def test_files_in_a_chat_reach_only_their_viewers(
        server: LiveServer, seeded: Seeded, migrated_database_url: str,
        data_dir: Path) -> None:
    alice = await Browser(server, "alice").login()
    bob = await Browser(server, "bob").login()
    stranger = await Browser(server, "alice").login(tenant="globex")
    anonymous = httpx.AsyncClient(base_url=server.url, timeout=10)
    await alice.http.put("/api/desk/status", json={"status": "available"})

    async with alice.socket("/api/desk/ws") as desk:
        await receive(desk, "state")
        customer, welcome = await customer_hello(server)
        visitor = {"X-Visitor-Token": welcome["visitor"]}
        customer_url = "/api/chat/attachments?tenant=acme"

        # The widget, on another origin, learns the rules and may call with its header.
        rules = (await anonymous.get("/api/chat/attachments/rules")).json()
        assert rules["max_bytes"] == MAX_UPLOAD_BYTES and "image/png" in rules["content_types"]
        assert ".csv" in rules["accept"].split(",")
        preflight = await anonymous.options(customer_url, headers={
            "Origin": "https://shop.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-visitor-token"})
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == "*"
        assert "X-Visitor-Token" in preflight.headers["access-control-allow-headers"]

        # No chat yet: nothing to attach to (and the widget may read why).
        early = await upload(anonymous, customer_url, "a.png", PNG, headers=visitor)
        assert early.status_code == 409, early.text
        assert early.headers["access-control-allow-origin"] == "*"

        await customer.send(json.dumps({"type": "start", "queue_id": seeded.queues["support"],
                                        "text": "see my screenshot", "name": "Carol"}))
        chat = await receive(customer, "chat")
        conversation_id = chat["conversation_id"]
        offer = await receive(desk, "offer.created")
        accepted = await alice.http.post(f"/api/desk/offers/{offer['offer_id']}/accept")
        assert accepted.status_code == 200, accepted.text

        # The customer sends a picture; the uploader's path is not kept, the type is sniffed.
        unknown = await upload(anonymous, customer_url, "a.png", PNG,
                               headers={"X-Visitor-Token": "not-a-visitor"})
        assert unknown.status_code == 401
        sent = await upload(anonymous, customer_url, "../../etc/screen\u202eshot.PNG", PNG,
                            "text/html", visitor)
        assert sent.status_code == 201, sent.text
        message = sent.json()
        assert message["text"] == "📎 screenshot.png"
        [picture] = message["attachments"]
        assert picture["filename"] == "screenshot.png"
        assert picture["content_type"] == "image/png"
        assert picture["size_bytes"] == len(PNG)

        told = await receive(customer, "message", where=lambda f: f["message"]["attachments"])
        assert told["message"]["attachments"] == [picture]
        relayed = await receive(desk, "message.created", where=lambda f: f["attachments"])
        assert relayed["id"] == message["id"] and relayed["author_kind"] == "customer"
        view = (await alice.http.get(f"/api/desk/conversations/{conversation_id}")).json()
        assert [m["attachments"] for m in view["messages"] if m["attachments"]] == [[picture]]

        # Who may download it.
        got = await alice.http.get(picture["url"])
        assert got.status_code == 200 and got.content == PNG
        assert got.headers["content-type"] == "image/png"
        assert got.headers["x-content-type-options"] == "nosniff"
        assert got.headers["content-security-policy"].startswith("sandbox")
        assert got.headers["content-disposition"].startswith("inline")
        own = await anonymous.get(picture["url"], headers=visitor)
        assert own.status_code == 200 and own.content == PNG
        assert own.headers["access-control-allow-origin"] == "*"
        staff_only = await alice.http.options(
            f"/api/desk/conversations/{conversation_id}/attachments")
        assert "access-control-allow-origin" not in staff_only.headers
        assert (await anonymous.get(picture["url"])).status_code == 401
        assert (await stranger.http.get(picture["url"])).status_code == 404
        other_socket, other = await customer_hello(server)
        await other_socket.close()
        other_visitor = {"X-Visitor-Token": other["visitor"]}
        assert (await anonymous.get(picture["url"], headers=other_visitor)).status_code == 404
        assert (await anonymous.get("/api/attachments/nope", headers=visitor)).status_code == 404

        # The agent sends a document; only the assigned agent may.
        agent_url = f"/api/desk/conversations/{conversation_id}/attachments"
        refused = await upload(bob.http, agent_url, "terms.pdf", PDF)
        assert refused.status_code == 403, refused.text
        no_csrf = await alice.http.post(agent_url, files={"file": ("t.pdf", PDF)},
                                        headers={"X-CSRF-Token": ""})
        assert no_csrf.status_code == 403
        reply = await upload(alice.http, agent_url, "terms", PDF, "image/png")
        assert reply.status_code == 201, reply.text
        [document] = reply.json()["attachments"]
        assert (document["filename"], document["content_type"]) == ("terms.pdf",
                                                                    "application/pdf")
        to_customer = await receive(customer, "message",
                                    where=lambda f: f["message"]["author_kind"] == "agent"
                                    and f["message"]["attachments"])
        assert to_customer["message"]["attachments"] == [document]
        pdf = await anonymous.get(document["url"], headers=visitor)
        assert pdf.status_code == 200 and pdf.content == PDF
        assert pdf.headers["content-disposition"].startswith("attachment")
        assert "terms.pdf" in pdf.headers["content-disposition"]

        # Refused: a page or a program dressed as a picture, an empty file, a big one.
        for name, content in (("cat.png", b"<!DOCTYPE html><script>alert(1)</script>"),
                              ("cat.png", b"  <svg onload='alert(1)'></svg>"),
                              ("setup.png", b"MZ\x90\x00\x03" + bytes(300))):
            bad = await upload(anonymous, customer_url, name, content, "image/png", visitor)
            assert bad.status_code == 415, (name, bad.text)
            body = bad.json()
            assert bad.headers["content-type"] == "application/problem+json"
            assert body["type"] == "urn:omnicc:problem:unsupported-file-type"
            assert "cannot be sent" in body["detail"] and "image/png" in body["allowed"]
        empty = await upload(anonymous, customer_url, "e.txt", b"", "text/plain", visitor)
        assert empty.status_code == 422
        big = await upload(anonymous, customer_url, "big.png",
                           PNG + bytes(MAX_UPLOAD_BYTES), "image/png", visitor)
        assert big.status_code == 413
        assert big.headers["content-type"] == "application/problem+json"
        assert str(MAX_UPLOAD_BYTES) in big.json()["detail"]
        notes = await upload(anonymous, customer_url, "notes.csv", b"a,b\n1,2\n", "text/html",
                             visitor)
        assert notes.status_code == 201, notes.text
        assert notes.json()["attachments"][0]["content_type"] == "text/csv"
        await customer.close()

    for client in (alice, bob, stranger):
        await client.close()
    await anonymous.aclose()

    # One row per accepted file, each linked to its message; nothing left in the temp dir.
    database = Database(migrated_database_url)
    try:
        async with database.session() as session:
            rows = list((await session.execute(
                select(Attachment).order_by(Attachment.created_at))).scalars())
            linked = {m.id: m.text for m in (await session.execute(select(Message).where(
                Message.id.in_([r.message_id for r in rows])))).scalars()}
    finally:
        await database.dispose()
    assert [r.filename for r in rows] == ["screenshot.png", "terms.pdf", "notes.csv"]
    assert all(linked[r.message_id or ""] == f"📎 {r.filename}" for r in rows)
    assert list((data_dir / "uploads" / "tmp").iterdir()) == []
    for row in rows:
        assert row.storage_path.startswith(f"attachments/{row.tenant_id}/")
        assert row.id in row.storage_path and row.filename not in row.storage_path
        assert hashlib.sha256((data_dir / row.storage_path).read_bytes()).hexdigest() == \
            row.sha256

    # After a restart the file is still served, byte for byte, and in the customer's history.
    server.stop()
    again = start_live_server(migrated_database_url, data_dir,
                              max_upload_bytes=MAX_UPLOAD_BYTES)
    try:
        alice = await Browser(again, "alice").login()
        got = await alice.http.get(f"/api/attachments/{rows[0].id}")
        assert got.status_code == 200
        assert hashlib.sha256(got.content).hexdigest() == rows[0].sha256
        await alice.close()
        returning, welcome = await customer_hello(again, visitor["X-Visitor-Token"])
        await returning.close()
        files = [a["filename"] for m in welcome["history"] for a in m["attachments"]]
        assert files == ["screenshot.png", "terms.pdf", "notes.csv"]
    finally:
        again.stop()

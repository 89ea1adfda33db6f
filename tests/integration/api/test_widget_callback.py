"""The widget's "Call me back" form against a live server, on SQLite and PostgreSQL: a request
is kept as a `CallbackRequest` of the caller's phone customer (linked to the chat visitor's
customer), impossible numbers and closed times are refused with what to do instead, the button
is rate limited per address and per number, a bot's honeypot request is answered and dropped,
and one tenant's queues are not another's."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from omnicc.app.callback_requests import WidgetCallbacks, possible_number
from omnicc.app.callbacks import CallbackAttempt, CallbackOffer, Callbacks
from omnicc.app.routing import WallClock
from omnicc.app.runtime import ContactCenter
from omnicc.bus import Bus
from omnicc.core.business_hours import WEEKDAYS
from omnicc.core.model import TaskPhase
from omnicc.store.database import Database
from omnicc.store.repositories import (
    BusinessHoursRepository,
    CallbackRequests,
    Customers,
    Queues,
    Tenants,
)
from omnicc.store.tables import BusinessHours, CallbackRequest, Queue
from tests.integration.api.live import LiveServer, Seeded, live_server, receive, seed

pytestmark = pytest.mark.anyio

NUMBER = "+44 20 7946 0958"
E164 = "+442079460958"
ROOT = Path(__file__).parents[3]


async def seed_callbacks(url: str) -> tuple[Seeded, str, str]:
    """acme (support: always open; billing: open only on the day after tomorrow, 09-17 UTC;
    chat-only: no agent takes calls) and a second tenant, zeta, with a queue of its own."""
    seeded = await seed(url)
    database = Database(url)
    try:
        async with database.session() as session:
            day = WEEKDAYS[(datetime.now(UTC).weekday() + 2) % 7]
            hours = await BusinessHoursRepository(session, seeded.tenant_id).add(BusinessHours(
                name="billing days", timezone="UTC", weekly={day: [["09:00", "17:00"]]}))
            queues = Queues(session, seeded.tenant_id)
            billing = await queues.get(seeded.queues["billing"])
            billing.business_hours_id = hours.id
            await queues.save(billing)
            chat_only = await queues.add(Queue(name="chat-only", description="Chat only",
                                               config={"expression": "skills.klingon >= 1"}))
            zeta = await Tenants(session).create("zeta", "Zeta Water")
            zeta_queue = await Queues(session, zeta.id).add(Queue(
                name="support", config={"expression": "true"}))
    finally:
        await database.dispose()
    return seeded, chat_only.id, zeta_queue.id


@pytest.fixture
def seeded(migrated_database_url: str) -> tuple[Seeded, str, str]:
    return asyncio.run(seed_callbacks(migrated_database_url))


@pytest.fixture
def server(migrated_database_url: str, seeded: tuple[Seeded, str, str],
           tmp_path: Path) -> Iterator[LiveServer]:
    yield from live_server(migrated_database_url, tmp_path / "data")


async def stored(url: str, tenant_id: str) -> list[CallbackRequest]:
    database = Database(url)
    try:
        async with database.session() as session:
            return await CallbackRequests(session, tenant_id).list_all()
    finally:
        await database.dispose()


async def ask(client: httpx.AsyncClient, tenant: str = "acme", **body: Any) -> httpx.Response:
    return await client.post("/api/chat/callback", params={"tenant": tenant}, json=body)


def test_only_possible_numbers_are_kept_in_e164() -> None:
    assert possible_number(" +44 (20) 7946-0958 ") == E164
    assert possible_number("020 7946 0958", "GB") == E164
    for impossible in ("12", "+1 2", "call me", "+999 123 456 789 012 345"):
        with pytest.raises(Exception, match="not a phone number"):
            possible_number(impossible)


async def test_a_request_is_kept_for_the_callers_phone_customer(
        server: LiveServer, seeded: tuple[Seeded, str, str],
        migrated_database_url: str) -> None:
    acme = seeded[0]
    async with websockets.connect(server.ws_url + "/api/chat/ws?tenant=acme") as chat:
        await chat.send(json.dumps({"type": "hello", "visitor": None, "name": "Dana"}))
        visitor = (await receive(chat, "welcome"))["visitor"]
    async with httpx.AsyncClient(base_url=server.url) as site:
        config = (await site.get("/api/chat/config", params={"tenant": "acme"})).json()
        offered = {q["name"]: q["takes_callbacks"] for q in config["queues"]}
        assert offered == {"support": True, "billing": True, "chat-only": False}
        before = datetime.now(UTC)
        answer = await ask(site, queue_id=acme.queues["support"], number=NUMBER, name="Dana",
                           visitor=visitor)
        assert answer.status_code == 202, answer.text
        receipt = answer.json()
        again = await ask(site, queue_id=acme.queues["support"], number="+442079460958")
    assert receipt["number"] == E164 and receipt["as_soon_as_possible"] is True
    assert datetime.fromisoformat(receipt["expected_at"]) >= before - timedelta(seconds=1)
    # Asked twice before the call: one request, not two calls.
    assert again.status_code == 202 and again.json()["id"] == receipt["id"]

    [request] = await stored(migrated_database_url, acme.tenant_id)
    assert (request.id, request.number, request.source, request.state) == (
        receipt["id"], E164, "widget", "pending")
    assert request.queue_id == acme.queues["support"] and request.due_at is None
    database = Database(migrated_database_url)
    try:
        async with database.session() as session:
            customer = await Customers(session, acme.tenant_id).get(request.customer_id or "")
    finally:
        await database.dispose()
    assert customer.attributes["phone"] == E164 and customer.name == "Dana"
    # The chat's visitor is another customer for now (merging is for later): linked.
    linked = request.attributes["visitor_customer_id"]
    assert linked and linked != customer.id
    assert request.attributes["name"] == "Dana"


async def test_times_are_booked_within_business_hours(
        server: LiveServer, seeded: tuple[Seeded, str, str],
        migrated_database_url: str) -> None:
    acme = seeded[0]
    billing = acme.queues["billing"]
    opening = (datetime.now(UTC) + timedelta(days=2)).replace(hour=9, minute=0, second=0,
                                                              microsecond=0)
    async with httpx.AsyncClient(base_url=server.url) as site:
        slots = (await site.get("/api/chat/callback/slots",
                                params={"tenant": "acme", "queue_id": billing})).json()
        closed = await ask(site, queue_id=billing, number=NUMBER,
                           when=(opening - timedelta(hours=2)).isoformat())
        booked = await ask(site, queue_id=billing, number="+14155550123",
                           when=(opening + timedelta(hours=1, minutes=30)).isoformat())
        asap = await ask(site, queue_id=billing, number="+358401234567")
        past = await ask(site, queue_id=billing, number="+358401234568",
                         when=(datetime.now(UTC) - timedelta(hours=1)).isoformat())
    assert slots["is_open"] is False and slots["timezone"] == "UTC"
    assert datetime.fromisoformat(slots["next_open"]) == opening
    assert [datetime.fromisoformat(s) for s in slots["slots"]] == [
        opening + timedelta(minutes=30 * n) for n in range(16)]

    assert closed.status_code == 422
    assert closed.headers["content-type"].startswith("application/problem+json")
    problem = closed.json()
    assert problem["type"] == "urn:omnicc:problem:outside-business-hours"
    assert datetime.fromisoformat(problem["next_slot"]) == opening
    assert opening.isoformat(timespec="minutes") in problem["detail"]
    assert past.status_code == 422 and "passed" in past.json()["detail"]

    assert booked.status_code == 202, booked.text
    assert datetime.fromisoformat(booked.json()["expected_at"]) == opening + timedelta(
        hours=1, minutes=30)
    # As soon as possible while closed: the opening.
    assert asap.status_code == 202, asap.text
    assert asap.json()["as_soon_as_possible"] is False
    assert datetime.fromisoformat(asap.json()["expected_at"]) == opening
    kept = {r.number: r for r in await stored(migrated_database_url, acme.tenant_id)}
    assert set(kept) == {"+14155550123", "+358401234567"}
    due = kept["+358401234567"].due_at
    assert due is not None and due.replace(tzinfo=UTC) == opening
    assert kept["+358401234567"].attributes["requested"] == "asap"


async def test_impossible_numbers_and_queues_without_calls_are_refused(
        server: LiveServer, seeded: tuple[Seeded, str, str],
        migrated_database_url: str) -> None:
    acme, chat_only, _ = seeded
    async with httpx.AsyncClient(base_url=server.url) as site:
        letters = await ask(site, queue_id=acme.queues["support"], number="call me maybe")
        short = await ask(site, queue_id=acme.queues["support"], number="+1 2")
        no_calls = await ask(site, queue_id=chat_only, number=NUMBER)
        no_slots = await site.get("/api/chat/callback/slots",
                                  params={"tenant": "acme", "queue_id": chat_only})
        naive = await ask(site, queue_id=acme.queues["support"], number=NUMBER,
                          when="2030-01-01T10:00:00")
    for refused in (letters, short):
        assert refused.status_code == 422
        assert refused.json()["type"] == "urn:omnicc:problem:invalid-phone-number"
        assert refused.json()["field"] == "number"
    assert no_calls.status_code == 409 and no_slots.status_code == 409
    assert naive.status_code == 422 and "offset" in naive.json()["detail"]
    assert await stored(migrated_database_url, acme.tenant_id) == []


async def test_requests_are_limited_per_number_and_per_address(
        server: LiveServer, seeded: tuple[Seeded, str, str],
        migrated_database_url: str) -> None:
    support = seeded[0].queues["support"]
    async with httpx.AsyncClient(base_url=server.url) as site:
        for _ in range(3):
            assert (await ask(site, queue_id=support, number=NUMBER)).status_code == 202
        per_number = await ask(site, queue_id=support, number=NUMBER)
        others = [await ask(site, queue_id=support, number=f"+35840123450{n}")
                  for n in range(6)]
        per_address = await ask(site, queue_id=support, number="+358401234599")
    assert per_number.status_code == 429
    assert int(per_number.headers["retry-after"]) > 0
    assert per_number.json()["retry_after_s"] == int(per_number.headers["retry-after"])
    # 10 per address per hour: the 4 above, then 6 more, then refused.
    assert [r.status_code for r in others] == [202] * 6
    assert per_address.status_code == 429
    numbers = {r.number for r in await stored(migrated_database_url, seeded[0].tenant_id)}
    assert "+358401234599" not in numbers and len(numbers) == 7


async def test_a_bot_filling_the_honeypot_is_answered_and_forgotten(
        server: LiveServer, seeded: tuple[Seeded, str, str],
        migrated_database_url: str) -> None:
    support = seeded[0].queues["support"]
    async with httpx.AsyncClient(base_url=server.url) as bot:
        answer = await ask(bot, queue_id=support, number=NUMBER,
                           website="https://cheap-pills.example")
    assert answer.status_code == 202
    assert set(answer.json()) == {"id", "number", "expected_at", "as_soon_as_possible"}
    assert await stored(migrated_database_url, seeded[0].tenant_id) == []


async def test_a_tenant_cannot_book_another_tenants_queue(
        server: LiveServer, seeded: tuple[Seeded, str, str],
        migrated_database_url: str) -> None:
    acme, _, zeta_queue = seeded
    async with httpx.AsyncClient(base_url=server.url) as site:
        crossed = await ask(site, tenant="acme", queue_id=zeta_queue, number=NUMBER)
        slots = await site.get("/api/chat/callback/slots",
                               params={"tenant": "acme", "queue_id": zeta_queue})
        unknown = await ask(site, tenant="nobody", queue_id=zeta_queue, number=NUMBER)
    assert crossed.status_code == 404 and slots.status_code == 404
    assert unknown.status_code == 404
    assert await stored(migrated_database_url, acme.tenant_id) == []


async def test_any_site_may_send_the_form(server: LiveServer,
                                          seeded: tuple[Seeded, str, str]) -> None:
    origin = {"Origin": "https://www.acme-energy.example"}
    async with httpx.AsyncClient(base_url=server.url) as site:
        preflight = await site.options("/api/chat/callback", headers={
            **origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        refused = await site.post("/api/chat/callback", params={"tenant": "acme"},
                                  headers=origin, json={"queue_id": seeded[0].queues["support"],
                                                        "number": "nope"})
    assert preflight.status_code == 204
    assert "Content-Type" in preflight.headers["access-control-allow-headers"]
    assert refused.status_code == 422
    assert refused.headers["access-control-allow-origin"] == "*"


def test_the_forms_labels_are_documented_and_in_the_script() -> None:
    script = (ROOT / "src" / "omnicc" / "web" / "static" / "widget.js").read_text()
    documented = (ROOT / "docs" / "widget.md").read_text()
    for label in ("Call me back", "What should we call about?", "Phone number",
                  "Who should we ask for? (optional)", "As soon as possible",
                  "At a time I choose", "Day", "Time", "Request a call", "Back to chat"):
        assert f'"{label}"' in script, label
        assert f"`{label}`" in documented, label
    for test_id in ("callback", "callback-form", "callback-confirmation"):
        assert f'"data-testid": "{test_id}"' in script, test_id
        assert f"`{test_id}`" in documented, test_id


async def test_a_booked_request_becomes_a_callback_task_when_due(
        migrated_database_url: str) -> None:
    """The widget's rows are what `omnicc.app.callbacks` puts in line: nothing before the
    chosen time, a voice task in the queue (attributes `callback`) once it is due."""
    seeded = await seed(migrated_database_url)
    database = Database(migrated_database_url)
    center = ContactCenter(database, WallClock(), Bus())
    dialled: list[CallbackOffer] = []

    async def dial(offer: CallbackOffer) -> CallbackAttempt:
        dialled.append(offer)
        return CallbackAttempt("failed")

    try:
        await center.start()
        runtime = await center.by_slug("acme")
        support = seeded.queues["support"]
        at = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
        receipt = await WidgetCallbacks(database, WallClock()).request(
            runtime, queue_id=support, number=NUMBER, when=at, client_ip="203.0.113.5")
        assert receipt.expected_at == at and receipt.as_soon_as_possible is False
        callbacks = Callbacks(database, runtime.voice, dial)
        try:
            assert await callbacks.run_due(at - timedelta(minutes=1)) == []
            assert await callbacks.run_due(at + timedelta(seconds=1)) == [receipt.id]
        finally:
            await callbacks.close()
        async with database.session() as session:
            request = await CallbackRequests(session, seeded.tenant_id).get(receipt.id)
        assert request.state == "dialling" and request.task_id is not None
        task = runtime.routing.engine.task(request.task_id)
        assert (task.queue_id, task.phase, task.channel) == (support, TaskPhase.WAITING, "voice")
        assert task.attributes["callback"] is True
        assert task.attributes["callback_number"] == E164
        assert task.attributes["callback_request_id"] == receipt.id
        assert dialled == []   # nobody is logged in: the task waits its turn
    finally:
        await center.stop()
        await database.dispose()

"""The CRM connector against a local CRM (lookup: mapping, cache, timeout, attributes written
onto the customer) and a local receiver (push of finished contacts: signed, retried, one key,
failures kept for the admin), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import anyio
import httpx
import pytest
from sqlalchemy import select

from omnicc.app.crm import (
    CrmDirectory,
    CrmPusher,
    CrmService,
    prune_outboxes,
    start_reading,
)
from omnicc.app.customers import CustomerBook
from omnicc.app.event_feed import EVENTS_TOPIC
from omnicc.app.routing import WallClock
from omnicc.app.webhooks import DeliveryPolicy, new_client
from omnicc.bus import Bus, Notice
from omnicc.core.clock import ManualClock
from omnicc.store.database import Database
from omnicc.store.tables import ClientNotification, CrmConnector, CrmPush, Customer, Identity
from tests.integration.api.live import Seeded, seed
from tests.integration.crm.contacts import abandon_contact, finish_contact
from tests.integration.crm.crm_server import TOKEN, FakeCrm, running_crm
from tests.integration.webhook_receiver import Receiver, running_receiver

pytestmark = pytest.mark.anyio

START_S = 1_795_000_000.0
SECRET = "whsec_crm-test"
POLICY = DeliveryPolicy(backoff_s=(10, 30), max_attempts=3, jitter=0)
MAPPING = {
    "record": "results[0]",
    "fields": [{"label": "Company", "path": "properties.company"},
               {"label": "Lifecycle stage", "path": "properties.lifecyclestage"},
               {"label": "Not in this CRM", "path": "properties.nothing"}],
    "attributes": {"segment": "properties.tier", "vip": "properties.vip",
                   "account_manager": "properties.owner_email"},
    "link": "properties.url",
}


@pytest.fixture
def crm() -> Iterator[FakeCrm]:
    yield from running_crm()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from running_receiver(SECRET)


@pytest.fixture
async def seeded(migrated_database_url: str) -> tuple[Database, Seeded]:
    return Database(migrated_database_url), await seed(migrated_database_url)


@pytest.fixture
async def database(seeded: tuple[Database, Seeded]) -> AsyncIterator[Database]:
    yield seeded[0]
    await seeded[0].dispose()


async def customer_with_phone(database: Database, tenant_id: str, phone: str,
                              kind: str = "phone") -> str:
    async with database.session() as session:
        customer = Customer(tenant_id=tenant_id, name="Maija", attributes={})
        session.add(customer)
        await session.flush()
        session.add(Identity(tenant_id=tenant_id, customer_id=customer.id, kind=kind,
                             value=phone))
        return customer.id


async def test_lookup_maps_caches_and_reports_a_silent_crm(
        seeded: tuple[Database, Seeded], database: Database, crm: FakeCrm) -> None:
    _, acme = seeded
    crm.contacts.append({"id": "901", "properties": {
        "phone": "+358401234567", "company": "Kone Oy", "lifecyclestage": "customer",
        "tier": "gold", "vip": "true", "owner_email": "ALICE", "url": "https://crm.example/c/901"}})
    async with database.session() as session:
        session.add(CrmConnector(tenant_id=acme.tenant_id, lookup_enabled=True,
                                 lookup_url=crm.url + "/contacts?phone={phone}&email={email}",
                                 auth_value=TOKEN, mapping=MAPPING, timeout_s=0.5,
                                 cache_ttl_s=60))
    customer = await customer_with_phone(database, acme.tenant_id, "+358401234567")
    clock = ManualClock(START_S)
    directory = CrmDirectory(database, clock)
    try:
        first = await directory.lookup(acme.tenant_id, customer)
        assert first["state"] == "found" and not first["cached"] and first["applied"]
        assert first["fields"] == [{"label": "Company", "value": "Kone Oy"},
                                   {"label": "Lifecycle stage", "value": "customer"}]
        assert first["link"] == "https://crm.example/c/901"
        assert crm.questions == [{"phone": "+358401234567"}]  # the empty email is left out
        async with database.session() as session:
            row = await session.get(Customer, customer)
            assert row is not None
            assert (row.attributes["segment"], row.attributes["vip"]) == ("gold", True)
            assert row.attributes["account_manager"] == acme.agents["alice"]

        again = await directory.lookup(acme.tenant_id, customer)
        assert again["cached"] and again["fields"] == first["fields"]
        assert len(crm.questions) == 1
        clock.advance(61)  # past the TTL: asked again
        assert not (await directory.lookup(acme.tenant_id, customer))["cached"]
        assert len(crm.questions) == 2

        # A chat visitor has no phone or email identity: the email they typed is used.
        crm.contacts.append({"id": "902", "properties": {"email": "carol@example.com",
                                                         "company": "Carol Ltd"}})
        async with database.session() as session:
            visitor = Customer(tenant_id=acme.tenant_id, name="Carol",
                               attributes={"email": "Carol@Example.com"})
            session.add(visitor)
        typed = await directory.lookup(acme.tenant_id, visitor.id)
        assert typed["fields"][0]["value"] == "Carol Ltd"
        assert crm.questions[-1] == {"email": "carol@example.com"}

        stranger = await customer_with_phone(database, acme.tenant_id, "+358409999999")
        assert (await directory.lookup(acme.tenant_id, stranger))["state"] == "not_found"

        crm.hang = threading.Event()
        silent = await directory.lookup(acme.tenant_id, stranger, fresh=True)
        assert silent["state"] == "timeout" and "0.5 s" in silent["error"]
        crm.hang.set()
        crm.hang = None
        # A silence is not cached: the earlier not-found answer is what is remembered.
        kept = directory.cache.get(acme.tenant_id, ("+358409999999", ""), 60, clock.now())
        assert kept is not None and kept.state == "not_found"
    finally:
        await directory.close()


async def test_the_crm_record_rule_merges_two_customers_it_names_alike(
        seeded: tuple[Database, Seeded], database: Database, crm: FakeCrm) -> None:
    """A caller and an emailer that OmniCC knew apart are one record in the CRM: the lookup
    that finds the second merges the first into it, audited as the rule's doing, and a split
    can undo it."""
    _, acme = seeded
    crm.contacts.append({"id": "901", "properties": {
        "phone": "+358401234567", "email": "maija@example.com", "company": "Kone Oy"}})
    async with database.session() as session:
        session.add(CrmConnector(tenant_id=acme.tenant_id, lookup_enabled=True,
                                 lookup_url=crm.url + "/contacts?phone={phone}&email={email}",
                                 auth_value=TOKEN, timeout_s=5, cache_ttl_s=60,
                                 mapping={**MAPPING, "record_id": "id"}))
    caller = await customer_with_phone(database, acme.tenant_id, "+358401234567")
    book = CustomerBook(database, acme.tenant_id)
    emailer = await customer_with_phone(database, acme.tenant_id, "maija@example.com", "email")
    directory = CrmDirectory(database, ManualClock(START_S))
    try:
        first = await directory.lookup(acme.tenant_id, caller)
        assert first["merged"] is None  # the record is now the caller's crm identity
        assert (await book.find("crm", "901"))["id"] == caller

        second = await directory.lookup(acme.tenant_id, emailer)
        assert second["merged"] == caller and second["applied"]
        merged = await book.view(emailer)
        assert {(i["kind"], i["value"]) for i in merged["identities"]} == {
            ("email", "maija@example.com"), ("phone", "+358401234567"), ("crm", "901")}
        [change] = merged["changes"]
        assert (change["kind"], change["actor"], change["other_id"]) == (
            "merge", "rule:crm-record", caller)
        assert "record 901" in change["reason"]

        # Asked again, nothing more happens: the record is the survivor's.
        assert (await directory.lookup(acme.tenant_id, emailer, fresh=True))["merged"] is None
        await book.split(emailer, [i["id"] for i in merged["identities"] if i["kind"] == "phone"],
                         actor="user:test")
        assert (await book.view(caller))["id"] == caller  # the split brought it back
    finally:
        await directory.close()


async def test_finished_contacts_are_pushed_signed_retried_and_failures_kept(
        seeded: tuple[Database, Seeded], database: Database, receiver: Receiver) -> None:
    _, acme = seeded
    tenant, support, alice = acme.tenant_id, acme.queues["support"], acme.agents["alice"]
    async with database.session() as session:
        session.add(CrmConnector(tenant_id=tenant, push_enabled=True, push_url=receiver.url,
                                 push_secret=SECRET))
        await start_reading(session, tenant, "crm_push")
    first = await finish_contact(database, tenant, support, alice, note="Refund promised",
                                 recorded=True)
    await abandon_contact(database, tenant)
    receiver.fail_first = 2
    clock = ManualClock(START_S)
    pusher = CrmPusher(database, tenant, "acme", clock, base_url="https://cc.example",
                       policy=POLICY)
    async with new_client(POLICY) as client:
        await pusher.step(client)
        clock.advance(10)
        await pusher.step(client)
        assert await pusher.next_due_s() == 30
        clock.advance(30)
        await pusher.step(client)
        # A restart: a new pusher reads on from the cursor and makes nothing twice.
        await CrmPusher(database, tenant, "acme", clock, policy=POLICY).step(client)

        receiver.status = 500
        second = await finish_contact(database, tenant, support, alice, name="Pekka",
                                      phone="+358407654321", channel="chat")
        for _ in range(POLICY.max_attempts + 1):
            await pusher.step(client)
            clock.advance(3600)
    async with database.session() as session:
        rows = {row.task_id: row for row in (await session.scalars(select(CrmPush))).all()}
    assert set(rows) == {first, second}  # the abandoned task is not a finished contact
    assert (rows[first].state, rows[first].attempts) == ("delivered", 3)
    assert (rows[second].state, rows[second].attempts) == ("failed", 3)
    assert rows[second].last_error == "HTTP 500" and rows[second].last_status_code == 500
    assert receiver.bad_signatures == 0
    assert receiver.accepted == Counter({f"contact.{first}": 1})
    pushed = next(body for key, body in receiver.requests if key == f"contact.{first}")
    assert pushed["type"] == "contact.finished" and pushed["tenant"] == "acme"
    data = pushed["data"]
    assert data["channel"] == "voice" and data["summary"] == "Refund promised"
    assert data["disposition"] == {"code": "solved", "label": "Solved"}
    assert data["agent"] == {"id": alice, "name": "Alice"}
    assert data["customer"]["phone"] == "+358401234567"
    assert data["queue"]["name"] == "support"
    assert data["recording_url"].startswith("https://cc.example/api/recordings/")
    assert (data["wait_s"], data["handle_s"]) == (60.0, 240.0)


async def test_a_push_that_was_never_configured_reads_nothing(
        seeded: tuple[Database, Seeded], database: Database) -> None:
    _, acme = seeded
    await finish_contact(database, acme.tenant_id, acme.queues["support"],
                         acme.agents["alice"])
    pusher = CrmPusher(database, acme.tenant_id, "acme", ManualClock(START_S), policy=POLICY)
    async with httpx.AsyncClient() as client:
        await pusher.step(client)
    async with database.session() as session:
        assert (await session.scalars(select(CrmPush))).all() == []


async def test_the_running_service_pushes_what_finishes(
        seeded: tuple[Database, Seeded], database: Database, receiver: Receiver) -> None:
    """The loop the server starts: woken by the bus when an event is committed."""
    _, acme = seeded
    async with database.session() as session:
        session.add(CrmConnector(tenant_id=acme.tenant_id, push_enabled=True,
                                 push_url=receiver.url, push_secret=SECRET))
        await start_reading(session, acme.tenant_id, "crm_push")
    bus = Bus()
    service = CrmService(database, WallClock(), bus, poll_s=60)
    await service.start()
    try:
        task = await finish_contact(database, acme.tenant_id, acme.queues["support"],
                                    acme.agents["bob"])
        bus.publish(acme.tenant_id, [EVENTS_TOPIC], Notice("task.ended", {}))
        with anyio.fail_after(10):
            while not receiver.accepted:
                await anyio.sleep(0.02)
    finally:
        await service.stop()
    assert receiver.accepted == Counter({f"contact.{task}": 1})


async def test_old_delivered_rows_are_pruned_failed_ones_kept(
        seeded: tuple[Database, Seeded], database: Database) -> None:
    _, acme = seeded
    tenant = acme.tenant_id
    old = datetime(2026, 1, 1, tzinfo=UTC)
    recent = datetime(2026, 11, 1, tzinfo=UTC)
    async with database.session() as session:
        for key, state, at in (("a", "delivered", old), ("b", "failed", old),
                               ("c", "delivered", recent)):
            session.add(CrmPush(tenant_id=tenant, task_id=key, event_seq=1, created_at=at,
                                idempotency_key=f"contact.{key}", state=state))
        for key, state, at in (("d", "sent", old), ("e", "failed", old), ("f", "pending", old)):
            session.add(ClientNotification(tenant_id=tenant, task_id=key, recipient="p@x.example",
                                           idempotency_key=f"notify.{key}", state=state,
                                           created_at=at))
    assert await prune_outboxes(database, tenant, datetime(2026, 6, 1, tzinfo=UTC)) == 2
    async with database.session() as session:
        assert sorted(r.task_id for r in (await session.scalars(select(CrmPush))).all()) == [
            "b", "c"]
        assert sorted(r.task_id for r in (await session.scalars(
            select(ClientNotification))).all()) == ["e", "f"]

"""One customer across channels: identities resolve to one customer, a merge moves every
row and is audited, a split puts back what the merge brought, the timeline shows every
channel, and customer attributes steer routing (a VIP's account manager first)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from omnicc.app.configuration import export_configuration, import_configuration
from omnicc.app.customers import Changes, CustomerBook, normal_identity, routing_attributes
from omnicc.app.routing import RoutingService
from omnicc.app.voice import VoiceDesk
from omnicc.core import events as ev
from omnicc.core.clock import ManualClock
from omnicc.core.errors import Conflict, InvalidConfiguration, NotFound
from omnicc.store.database import Database
from omnicc.store.repositories import Customers, Queues, RoutingPolicies
from omnicc.store.tables import (
    CallRecord,
    Contact,
    Conversation,
    Customer,
    CustomerChange,
    Identity,
    RoutingPolicy,
)
from tests.integration.api.live import Seeded, seed

pytestmark = pytest.mark.anyio


def test_identities_have_one_spelling() -> None:
    assert normal_identity("phone", "040 123 4567", "FI") == "+358401234567"
    assert normal_identity("phone", "+358 40 123 4567") == "+358401234567"
    assert normal_identity("email", " <Maija@Example.FI> ") == "maija@example.fi"
    assert normal_identity("telegram", " 12345 ") == "12345"
    for kind, value in (("email", "not-an-address"), ("fax", "1"), ("phone", "  ")):
        with pytest.raises(InvalidConfiguration):
            normal_identity(kind, value)


def test_customer_attributes_become_task_attributes() -> None:
    vip = Customer(id="c1", attributes={"vip": True, "segment": "gold",
                                         "account_manager": "agent-9", "language": "fi",
                                         "consent": {}})
    assert routing_attributes(vip) == {
        "customer_id": "c1", "vip": True, "segment": "gold", "account_manager": "agent-9",
        "language": "fi", "preferred_agents": ["agent-9"]}
    assert routing_attributes(Customer(id="c2", attributes={})) == {"customer_id": "c2"}
    assert routing_attributes(None) == {}


async def _customer_with(database: Database, tenant_id: str, kind: str, value: str,
                         channel: str) -> tuple[str, str, str]:
    """A customer with one identity and one contact on `channel`: (customer, identity,
    conversation) ids."""
    async with database.session() as session:
        customer = Customer(tenant_id=tenant_id, name=value, attributes={kind: value})
        session.add(customer)
        await session.flush()
        identity = Identity(tenant_id=tenant_id, customer_id=customer.id, kind=kind,
                            value=value)
        conversation = Conversation(tenant_id=tenant_id, customer_id=customer.id,
                                    subject=f"{channel} question")
        session.add_all([identity, conversation])
        await session.flush()
        contact = Contact(tenant_id=tenant_id, conversation_id=conversation.id,
                          customer_id=customer.id, channel=channel)
        session.add(contact)
        await session.flush()
        if channel == "voice":
            session.add(CallRecord(tenant_id=tenant_id, call_id=f"{value}@test",
                                   contact_id=contact.id, conversation_id=conversation.id,
                                   customer_id=customer.id, from_number=value,
                                   outcome="answered", talk_s=42.0,
                                   recording_path="r.wav"))
        return customer.id, identity.id, conversation.id


async def _owner(database: Database, table: type, row_id: str) -> str | None:
    async with database.session() as session:
        owner: str | None = (await session.execute(
            select(table.customer_id).where(table.id == row_id))).scalar_one()
        return owner


async def test_merge_moves_everything_and_split_puts_it_back(
        migrated_database_url: str) -> None:
    seeded = await seed(migrated_database_url)
    database = Database(migrated_database_url)
    try:
        book = CustomerBook(database, seeded.tenant_id)
        caller, phone, call = await _customer_with(database, seeded.tenant_id, "phone",
                                                   "+358401234567", "voice")
        writer, email, mail = await _customer_with(database, seeded.tenant_id, "email",
                                                   "maija@example.fi", "email")
        await book.set_consent(writer, "email", opted_in=False, source="web form")

        merge = await book.merge(caller, writer, actor="user:u1", reason="same person")
        assert merge["moved"]["identities"] == [email]
        assert merge["moved"]["conversations"] == [mail]
        assert len(merge["moved"]["contacts"]) == 1
        assert merge["moved"]["attributes"] == ["consent", "email"]
        assert await _owner(database, Identity, email) == caller
        assert await _owner(database, Conversation, mail) == caller
        with pytest.raises(NotFound):
            await book.view(writer)
        assert (await book.find("email", "MAIJA@example.fi") or {})["id"] == caller

        view = await book.view(caller)
        assert {i["kind"] for i in view["identities"]} == {"phone", "email"}
        assert view["consent"]["email"]["state"] == "opt_out"
        assert {r["channel"] for r in view["reachable"]} == {"sms", "whatsapp", "voice"}
        assert [c["kind"] for c in view["changes"]] == ["merge"]
        assert view["changes"][0]["actor"] == "user:u1"

        timeline = await book.timeline(caller)
        assert {e["channel"] for e in timeline} == {"voice", "email"}
        voice = next(e for e in timeline if e["channel"] == "voice")
        assert voice["call"]["talk_s"] == 42.0
        assert voice["call"]["recording_url"].startswith("/api/recordings/")

        with pytest.raises(InvalidConfiguration):
            await book.split(caller, [phone, email], actor="user:u1")
        split = await book.split(caller, [email], actor="user:u2")
        assert split["other_id"] == writer  # the merge is undone: the same customer is back
        assert split["moved"]["conversations"] == [mail]
        assert await _owner(database, Identity, email) == writer
        assert await _owner(database, Conversation, mail) == writer
        assert await _owner(database, Conversation, call) == caller
        assert (await book.view(writer))["email"] == "maija@example.fi"
        async with database.session() as session:
            trail = (await session.scalars(select(CustomerChange).order_by(
                CustomerChange.created_at))).all()
        assert [(c.kind, c.actor) for c in trail] == [("merge", "user:u1"),
                                                      ("split", "user:u2")]
        assert trail[0].reverted_by == trail[1].id
    finally:
        await database.dispose()


async def test_a_split_without_a_merge_makes_a_new_customer(migrated_database_url: str) -> None:
    seeded = await seed(migrated_database_url)
    database = Database(migrated_database_url)
    try:
        book = CustomerBook(database, seeded.tenant_id)
        customer, _, call = await _customer_with(database, seeded.tenant_id, "phone",
                                                 "+358401234567", "voice")
        extra = await book.add_identity(customer, "email", "Other@Example.com")
        assert extra["value"] == "other@example.com"
        assert (await book.add_identity(customer, "email", "other@example.com"))["id"] == (
            extra["id"])
        other, _, _ = await _customer_with(database, seeded.tenant_id, "phone", "+3581",
                                           "chat")
        with pytest.raises(Conflict):
            await book.add_identity(other, "email", "other@example.com")
        with pytest.raises(InvalidConfiguration):
            await book.merge(customer, customer, actor="user:u1")

        split = await book.split(customer, [extra["id"]], actor="user:u1",
                                 conversation_ids=[call])
        new = await book.view(split["other_id"])
        assert [i["value"] for i in new["identities"]] == ["other@example.com"]
        assert new["email"] == "other@example.com"
        assert await _owner(database, Conversation, call) == new["id"]
        assert await _owner(database, CallRecord, split["moved"]["call_records"][0]) == new["id"]
        assert "email" not in (await book.view(customer))["email"]
    finally:
        await database.dispose()


async def _vip_policy(database: Database, seeded: Seeded) -> None:
    """Support's tasks go to the customer's account manager for a minute, then the team."""
    async with database.session() as session:
        support = seeded.queues["support"]
        policy = await RoutingPolicies(session, seeded.tenant_id).add(RoutingPolicy(
            name="account manager first",
            steps=[{"queue": support, "agents": ["preferred"], "timeout_s": 60.0},
                   {"queue": support}]))
        queue = await Queues(session, seeded.tenant_id).get(support)
        queue.policy_id = policy.id
        await Queues(session, seeded.tenant_id).save(queue)


async def test_a_vip_call_goes_to_the_account_manager_first(migrated_database_url: str) -> None:
    seeded = await seed(migrated_database_url)
    database = Database(migrated_database_url)
    try:
        await _vip_policy(database, seeded)
        clock = ManualClock(1_800_000_000.0)
        routing = RoutingService(database, seeded.tenant_id, clock)
        await routing.start()
        desk = VoiceDesk(database, seeded.tenant_id, routing)
        book = CustomerBook(database, seeded.tenant_id)
        alice, bob = seeded.agents["alice"], seeded.agents["bob"]
        await routing.run(lambda e: e.set_status(alice, "available"))

        # A customer without an account manager skips the step: the team at once.
        ordinary = await desk.identify_caller("+12025550100")
        seen: list[ev.Event] = []
        call = await desk.enqueue(ordinary, queue_id=seeded.queues["support"],
                                  call_id="o@test", watcher=seen.append)
        assert [e.agent_id for e in seen if isinstance(e, ev.OfferCreated)] == [alice]
        await desk.hung_up(call, side="caller")

        vip = await desk.identify_caller("+12025550199")
        with pytest.raises(InvalidConfiguration):
            await book.update(vip.id, Changes(account_manager="no-such-agent"))
        await book.update(vip.id, Changes(vip=True, segment="gold", account_manager=bob,
                                          language="en"))
        async with database.session() as session:
            vip = await Customers(session, seeded.tenant_id).get(vip.id)
        seen.clear()
        await desk.enqueue(vip, queue_id=seeded.queues["support"], call_id="v1@test",
                           watcher=seen.append)
        # Alice is free, but the first minute is Bob's: the call waits for him.
        assert not [e for e in seen if isinstance(e, ev.OfferCreated)]
        task_id = next(e.task_id for e in seen if isinstance(e, ev.TaskCreated))
        task = routing.engine.task(task_id)
        assert task.attributes["vip"] is True and task.attributes["segment"] == "gold"
        assert task.attributes["preferred_agents"] == [bob]
        events = await routing.run(lambda e: e.set_status(bob, "available"))
        offers = [e for e in events if isinstance(e, ev.OfferCreated)]
        assert [(e.agent_id, e.task_id) for e in offers] == [(bob, task_id)]
        assert await desk.accept(offers[0].offer_id)

        # Bob is busy with the first call: the second waits its minute, then the team.
        seen.clear()
        await desk.enqueue(vip, queue_id=seeded.queues["support"], call_id="v2@test",
                           watcher=seen.append)
        assert not [e for e in seen if isinstance(e, ev.OfferCreated)]
        second = next(e.task_id for e in seen if isinstance(e, ev.TaskCreated))
        clock.advance(61.0)
        events = await routing.advance()
        assert [(e.agent_id, e.task_id) for e in events if isinstance(e, ev.OfferCreated)] == [
            (alice, second)]

    finally:
        await database.dispose()


async def test_a_queues_policy_goes_through_the_configuration_file(
        migrated_database_url: str) -> None:
    seeded = await seed(migrated_database_url)
    other = await seed(migrated_database_url, slug="other")
    database = Database(migrated_database_url)
    try:
        await _vip_policy(database, seeded)
        async with database.session() as session:
            document = await export_configuration(session, seeded.tenant_id)
        [support] = [q for q in document["queues"] if q["name"] == "support"]
        assert support["policy"] == "account manager first"
        async with database.session() as session:
            await import_configuration(session, other.tenant_id, document, replace=False)
        async with database.session() as session:
            queue = await Queues(session, other.tenant_id).get(other.queues["support"])
            policy = await RoutingPolicies(session, other.tenant_id).get(queue.policy_id or "")
            assert policy.name == "account manager first"
            assert policy.steps[0]["queue"] == other.queues["support"]
        broken = {**document, "queues": [{**support, "policy": "nope"}]}
        async with database.session() as session:
            with pytest.raises(InvalidConfiguration, match="unknown routing policy"):
                await import_configuration(session, other.tenant_id, broken, replace=False)
    finally:
        await database.dispose()

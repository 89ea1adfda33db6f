"""A call as a contact: the caller is one customer across calls, a queued call is a contact
with a routing task written together, and the call's controller follows its task."""

from __future__ import annotations

import asyncio

import pytest

from omnicc.app.routing import RoutingService, WallClock
from omnicc.app.voice import VoiceDesk, normalize_phone
from omnicc.core import events as ev
from omnicc.core.model import TaskPhase
from omnicc.store.database import Database
from omnicc.store.repositories import Contacts, Conversations
from tests.integration.api.live import seed

pytestmark = pytest.mark.anyio


def test_numbers_normalise_to_e164_or_digits() -> None:
    assert normalize_phone("+358 40 123 4567") == "+358401234567"
    assert normalize_phone("040 123 4567", "FI") == "+358401234567"
    assert normalize_phone("1001") == "1001"
    assert normalize_phone("Anonymous") == "anonymous"


async def test_a_queued_call_is_a_contact_offered_and_answered(migrated_database_url: str) -> None:
    seeded = await seed(migrated_database_url)
    database = Database(migrated_database_url)
    try:
        routing = RoutingService(database, seeded.tenant_id, WallClock())
        await routing.start()
        desk = VoiceDesk(database, seeded.tenant_id, routing, default_region="FI")
        caller = await desk.identify_caller("040 123 4567", "Maija")
        assert (await desk.identify_caller("+358401234567")).id == caller.id

        seen: list[ev.Event] = []
        await routing.run(lambda e: e.set_status(seeded.agents["alice"], "available"))
        contact = await desk.enqueue(caller, queue_id=seeded.queues["support"],
                                     call_id="c1@test", attributes={"ivr_path": "1"},
                                     watcher=seen.append)
        offers = [e for e in seen if isinstance(e, ev.OfferCreated)]
        assert [o.agent_id for o in offers] == [seeded.agents["alice"]]
        assert await desk.accept(offers[0].offer_id)
        assert not await desk.accept(offers[0].offer_id)
        assert desk.phase(contact) is TaskPhase.ASSIGNED

        await desk.hung_up(contact, side="caller")
        assert desk.phase(contact) is TaskPhase.WRAPPING
        async with database.session() as session:
            row = await Contacts(session, seeded.tenant_id).get(contact.contact_id)
            assert row.channel == "voice" and row.ended_at is not None
            assert row.attributes["hangup_side"] == "caller"
            assert row.attributes["call_id"] == "c1@test"
            assert row.agent_id == seeded.agents["alice"]
            conversation = await Conversations(session, seeded.tenant_id).get(
                contact.conversation_id)
            assert conversation.status == "closed"
        assert any(isinstance(e, ev.TaskCompleted) for e in seen)
    finally:
        await database.dispose()


async def test_a_caller_who_hangs_up_in_line_abandons(migrated_database_url: str) -> None:
    seeded = await seed(migrated_database_url)
    database = Database(migrated_database_url)
    try:
        routing = RoutingService(database, seeded.tenant_id, WallClock())
        await routing.start()
        desk = VoiceDesk(database, seeded.tenant_id, routing)
        caller = await desk.identify_caller("+12025550100")
        seen: list[ev.Event] = []
        contact = await desk.enqueue(caller, queue_id=seeded.queues["billing"],
                                     call_id="c2@test", watcher=seen.append)
        assert desk.phase(contact) is TaskPhase.WAITING
        await desk.hung_up(contact, side="caller")
        assert [e.type for e in seen if isinstance(e, ev.TaskAbandoned | ev.TaskEnded)] == [
            "task.abandoned", "task.ended"]
        assert desk.phase(contact) is None
    finally:
        await database.dispose()


async def test_a_caller_who_hangs_up_while_the_answer_commits_completes_the_task(
        migrated_database_url: str) -> None:
    """Found by the voice load benchmark: the phase was read before the routing lock, so the
    hang-up tried to abandon a task the acceptance had just assigned, and the agent stayed
    busy for good."""
    seeded = await seed(migrated_database_url)
    database = Database(migrated_database_url)
    try:
        routing = RoutingService(database, seeded.tenant_id, WallClock())
        await routing.start()
        desk = VoiceDesk(database, seeded.tenant_id, routing)
        caller = await desk.identify_caller("+12025550100")
        seen: list[ev.Event] = []
        await routing.run(lambda e: e.set_status(seeded.agents["alice"], "available"))
        contact = await desk.enqueue(caller, queue_id=seeded.queues["support"],
                                     call_id="c3@test", watcher=seen.append)
        [offer] = [e for e in seen if isinstance(e, ev.OfferCreated)]

        async def slow_write(session: object, events: object) -> None:
            await asyncio.sleep(0.2)

        # Another command holds the routing lock, so the acceptance and the hang-up both
        # wait for it, the acceptance first (as under load).
        _, accepted, _ = await asyncio.gather(
            routing.run(lambda engine: [], alongside=slow_write),
            desk.accept(offer.offer_id), desk.hung_up(contact, side="caller"))
        assert accepted
        assert desk.phase(contact) is TaskPhase.WRAPPING
        assert any(isinstance(e, ev.TaskCompleted) for e in seen)
    finally:
        await database.dispose()


async def test_the_call_record_is_written_in_the_routing_commands_transactions(
        migrated_database_url: str) -> None:
    from omnicc.channels.voice.records import CallRecordWriter
    from omnicc.store.repositories import CallRecords, Tasks
    from omnicc.store.tables import CallRecord

    seeded = await seed(migrated_database_url)
    database = Database(migrated_database_url)
    try:
        routing = RoutingService(database, seeded.tenant_id, WallClock())
        await routing.start()
        desk = VoiceDesk(database, seeded.tenant_id, routing)
        records = CallRecordWriter(database)
        caller = await desk.identify_caller("+12025550100")
        alice = seeded.agents["alice"]
        await routing.run(lambda e: e.set_status(alice, "available"))
        stage = {"outcome": "queued"}

        def new() -> CallRecord:
            return CallRecord(id="r1", call_id="c3@test", direction="inbound",
                              from_number="+12025550100", to_number="1000")

        def fill(row: CallRecord) -> None:
            row.outcome = stage["outcome"]

        async def broken(session: object, contact: object) -> None:
            raise RuntimeError("the record cannot be written")

        with pytest.raises(RuntimeError):  # the record fails: nothing of the call is stored
            await desk.enqueue(caller, queue_id=seeded.queues["support"], call_id="c0@test",
                               record=broken)
        async with database.session() as session:
            assert await Tasks(session, seeded.tenant_id).list_all() == []

        seen: list[ev.Event] = []
        commits = routing.commits
        contact = await desk.enqueue(
            caller, queue_id=seeded.queues["support"], call_id="c3@test", watcher=seen.append,
            record=lambda session, _: records.write(session, seeded.tenant_id, "r1", new, fill))

        async def stored() -> str | None:
            async with database.session() as session:
                return (await CallRecords(session, seeded.tenant_id).get("r1")).outcome

        assert await stored() == "queued"
        (offer,) = [e for e in seen if isinstance(e, ev.OfferCreated)]
        stage["outcome"] = "answered"
        assert await desk.accept(offer.offer_id, record=lambda session: records.write(
            session, seeded.tenant_id, "r1", new, fill))
        assert await stored() == "answered"
        stage["outcome"] = "ended"
        await desk.hung_up(contact, side="caller", record=lambda session: records.write(
            session, seeded.tenant_id, "r1", new, fill))
        assert await stored() == "ended"
        assert routing.commits - commits == 3 and records.commits == 0
    finally:
        await database.dispose()

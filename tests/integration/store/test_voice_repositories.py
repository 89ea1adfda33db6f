"""Voice rows on SQLite and PostgreSQL: numbers and SIP accounts found across tenants by what a
SIP message carries, everything else tenant-scoped; HA1 hashes only; call records and callback
requests as the call controller writes and reads them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError

from omnicc.channels.voice.ivr import OpeningHours, parse_flow
from omnicc.channels.voice.ivr.configuration import flows_using
from omnicc.channels.voice.ivr.inbound import inbound_route
from omnicc.channels.voice.sip.digest import Algorithm, compute_ha1
from omnicc.core.errors import NotFound
from omnicc.store.database import Database
from omnicc.store.repositories import (
    Agents,
    BusinessHoursRepository,
    CallbackRequests,
    CallRecords,
    Customers,
    IvrFlows,
    Queues,
    SipAccounts,
    Tenants,
    VoiceNumbers,
    VoicePrompts,
    find_number,
    find_sip_account,
    sip_ha1,
)
from omnicc.store.tables import (
    Agent,
    BusinessHours,
    CallbackRequest,
    CallRecord,
    Customer,
    IvrFlow,
    Queue,
    VoiceNumber,
    VoicePrompt,
)

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
FLOW = {"entry": "q", "nodes": {"q": {"kind": "queue", "queue_id": "x"}}}


async def _tenants(database: Database) -> tuple[str, str]:
    async with database.session() as session:
        a = await Tenants(session).create("a", "Tenant A")
        b = await Tenants(session).create("b", "Tenant B")
        return a.id, b.id


async def test_flows_and_numbers_are_tenant_scoped_and_numbers_found_by_the_sip_uri(
    database: Database,
) -> None:
    a, b = await _tenants(database)
    async with database.session() as session:
        flow_a = await IvrFlows(session, a).add(IvrFlow(name="main", definition=FLOW))
        flow_b = await IvrFlows(session, b).add(IvrFlow(name="main", definition=FLOW))
        await VoiceNumbers(session, a).add(VoiceNumber(number="+4930100", flow_id=flow_a.id))
        await VoiceNumbers(session, b).add(
            VoiceNumber(number="+4930200", flow_id=flow_b.id, is_enabled=False)
        )
    async with database.session() as session:
        found = await find_number(session, "+4930100")
        assert found is not None
        assert (found.tenant_id, found.flow_id) == (a, flow_a.id)
        assert await find_number(session, "+4930200") is None  # disabled
        assert await find_number(session, "+4930300") is None
        flow = await IvrFlows(session, a).get(found.flow_id or "")
        assert parse_flow(flow.definition).entry == "q"
        assert (await IvrFlows(session, a).by_name("main")).id == flow_a.id
        with pytest.raises(NotFound):
            await IvrFlows(session, a).get(flow_b.id)
        with pytest.raises(NotFound):
            await VoiceNumbers(session, a).by_number("+4930200")
        assert [n.number for n in await VoiceNumbers(session, a).using_flow(flow_a.id)] == [
            "+4930100"
        ]
    async with database.session() as session:
        with pytest.raises(NotFound):  # a number may not run another tenant's flow
            await VoiceNumbers(session, a).add(VoiceNumber(number="+4930400", flow_id=flow_b.id))


async def test_a_number_belongs_to_one_tenant_only(database: Database) -> None:
    a, b = await _tenants(database)
    async with database.session() as session:
        await VoiceNumbers(session, a).add(VoiceNumber(number="+4930100"))
    with pytest.raises(IntegrityError):
        async with database.session() as session:
            await VoiceNumbers(session, b).add(VoiceNumber(number="+4930100"))


async def test_a_flow_in_use_by_a_number_cannot_be_deleted(database: Database) -> None:
    a, _ = await _tenants(database)
    async with database.session() as session:
        flow = await IvrFlows(session, a).add(IvrFlow(name="main", definition=FLOW))
        await VoiceNumbers(session, a).add(VoiceNumber(number="+4930100", flow_id=flow.id))
    with pytest.raises(IntegrityError):
        async with database.session() as session:
            await IvrFlows(session, a).delete(flow.id)


async def test_outbound_caller_id_is_the_queues_number_or_the_default(database: Database) -> None:
    a, _ = await _tenants(database)
    async with database.session() as session:
        sales = await Queues(session, a).add(Queue(name="sales"))
        support = await Queues(session, a).add(Queue(name="support"))
        numbers = VoiceNumbers(session, a)
        assert await numbers.caller_id_for(sales.id) is None
        await numbers.add(VoiceNumber(number="+4930100", is_default_outbound=True))
        await numbers.add(VoiceNumber(number="+4930200", outbound_queue_id=sales.id))
        own = await numbers.caller_id_for(sales.id)
        default = await numbers.caller_id_for(support.id)
        assert own is not None and own.number == "+4930200"
        assert default is not None and default.number == "+4930100"
        none = await numbers.caller_id_for(None)
        assert none is not None and none.number == "+4930100"


async def test_sip_accounts_keep_only_ha1_and_are_found_by_realm_and_user(
    database: Database,
) -> None:
    a, b = await _tenants(database)
    async with database.session() as session:
        alice = await Agents(session, a).add(Agent(name="Alice"))
        bob = await Agents(session, b).add(Agent(name="Bob"))
        account = await SipAccounts(session, a).set_password(alice.id, "alice", "a", "s3cret!")
        await SipAccounts(session, b).set_password(bob.id, "alice", "b", "other")
        columns = {column.key for column in inspect(account).mapper.column_attrs}
        assert not any("password" in c and "changed" not in c for c in columns)
        assert "s3cret!" not in str([getattr(account, c) for c in columns])
    async with database.session() as session:
        found = await find_sip_account(session, "a", "alice")
        assert found is not None and (found.tenant_id, found.agent_id) == (a, alice.id)
        assert sip_ha1(found, Algorithm.MD5) == compute_ha1(Algorithm.MD5, "alice", "a", "s3cret!")
        assert sip_ha1(found, Algorithm.SHA256_SESS) == compute_ha1(
            Algorithm.SHA256, "alice", "a", "s3cret!"
        )
        assert await find_sip_account(session, "c", "alice") is None
        assert (await SipAccounts(session, a).by_username("alice")).id == found.id
        with pytest.raises(NotFound):
            await SipAccounts(session, a).by_username("bob")
        # Rotating the password replaces the hashes of the same account.
        old_md5 = found.ha1_md5
        rotated = await SipAccounts(session, a).set_password(alice.id, "alice", "a", "new")
        assert rotated.id == found.id
        assert rotated.ha1_md5 != old_md5
        found.is_enabled = False
    async with database.session() as session:
        assert await find_sip_account(session, "a", "alice") is None


async def test_a_sip_user_name_is_unique_in_its_realm(database: Database) -> None:
    a, _ = await _tenants(database)
    async with database.session() as session:
        ann = await Agents(session, a).add(Agent(name="Ann"))
        amy = await Agents(session, a).add(Agent(name="Amy"))
        await SipAccounts(session, a).set_password(ann.id, "a100", "a", "x")
    with pytest.raises(IntegrityError):
        async with database.session() as session:
            await SipAccounts(session, a).set_password(amy.id, "a100", "a", "y")


async def test_prompt_audio_is_loaded_only_when_asked_for(database: Database) -> None:
    a, b = await _tenants(database)
    wav = b"RIFF" + bytes(range(256)) * 4
    async with database.session() as session:
        prompt = await VoicePrompts(session, a).add(VoicePrompt(
            name="welcome", sample_rate=8000, duration_ms=500, size_bytes=len(wav),
            sha256="0" * 64, audio=wav,
        ))
    async with database.session() as session:
        (listed,) = await VoicePrompts(session, a).list_all()
        assert "audio" in inspect(listed).unloaded
        row, audio = await VoicePrompts(session, a).audio(prompt.id)
        assert (row.name, audio) == ("welcome", wav)
        with pytest.raises(NotFound):
            await VoicePrompts(session, b).audio(prompt.id)


async def test_call_records_are_written_then_completed_and_listed_per_customer(
    database: Database,
) -> None:
    a, b = await _tenants(database)
    async with database.session() as session:
        customer = await Customers(session, a).add(Customer(name="Carl"))
        records = CallRecords(session, a)
        first = await records.add(CallRecord(
            call_id="c1@host", customer_id=customer.id, from_number="+4915100",
            to_number="+4930100", started_at=T0,
            ivr_path=[{"node": "menu", "kind": "menu", "input": "1"}],
        ))
        await records.add(CallRecord(call_id="c2@host", customer_id=customer.id,
                                     direction="outbound", started_at=T0 + timedelta(hours=1)))
    async with database.session() as session:
        records = CallRecords(session, a)
        record = await records.by_call_id("c1@host")
        assert record is not None and record.id == first.id
        assert record.outcome == "in_progress"
        record.answered_at = T0 + timedelta(seconds=30)
        record.ended_at = T0 + timedelta(minutes=5)
        record.queue_s, record.talk_s, record.transfers = 28.5, 270.0, 1
        record.hangup_side, record.outcome = "caller", "answered"
        record.details["codec"] = "PCMA"
        await records.save(record)
    async with database.session() as session:
        listed = await CallRecords(session, a).for_customer(customer.id)
        assert [r.call_id for r in listed] == ["c2@host", "c1@host"]
        done = listed[1]
        assert (done.talk_s, done.hangup_side, done.details) == (270.0, "caller", {"codec": "PCMA"})
        assert done.ivr_path == [{"node": "menu", "kind": "menu", "input": "1"}]
        assert done.ended_at == T0 + timedelta(minutes=5)
        assert await CallRecords(session, b).for_customer(customer.id) == []
        assert await CallRecords(session, b).by_call_id("c1@host") is None
        window = await CallRecords(session, a).between(T0, T0 + timedelta(minutes=30))
        assert [r.call_id for r in window] == ["c1@host"]
    with pytest.raises(IntegrityError):
        async with database.session() as session:
            await CallRecords(session, a).add(CallRecord(call_id="c3", hangup_side="nobody"))


async def test_callback_requests_fall_due_at_their_time(database: Database) -> None:
    a, _ = await _tenants(database)
    async with database.session() as session:
        queue = await Queues(session, a).add(Queue(name="support"))
        requests = CallbackRequests(session, a)
        asap = await requests.add(CallbackRequest(number="+4915100", queue_id=queue.id,
                                                  created_at=T0))
        later = await requests.add(CallbackRequest(number="+4915200", queue_id=queue.id,
                                                   due_at=T0 + timedelta(hours=2),
                                                   created_at=T0 + timedelta(seconds=1)))
        await requests.add(CallbackRequest(number="+4915300", queue_id=queue.id, state="done",
                                           created_at=T0))
    async with database.session() as session:
        requests = CallbackRequests(session, a)
        assert [r.id for r in await requests.due(T0)] == [asap.id]
        assert [r.id for r in await requests.due(T0 + timedelta(hours=2))] == [asap.id, later.id]


async def test_an_inbound_route_has_the_tenant_flow_and_business_hours(
    database: Database,
) -> None:
    a, _ = await _tenants(database)
    async with database.session() as session:
        queue = await Queues(session, a).add(Queue(name="support"))
        hours = await BusinessHoursRepository(session, a).add(BusinessHours(
            name="office", timezone="Europe/Berlin", weekly={"mon": [["09:00", "17:00"]]},
            holidays=[{"date": "2026-12-24"}]))
        flow = await IvrFlows(session, a).add(IvrFlow(name="main", definition={
            "entry": "h", "nodes": {
                "h": {"kind": "hours", "business_hours_id": hours.id, "open": "q",
                      "closed": "q"},
                "q": {"kind": "queue", "queue_id": queue.id}}}))
        await VoiceNumbers(session, a).add(VoiceNumber(number="+4930100", flow_id=flow.id))
        await VoiceNumbers(session, a).add(VoiceNumber(number="200"))
    async with database.session() as session:
        route = await inbound_route(session, "+4930100")
        assert route is not None
        assert (route.tenant_id, route.tenant_slug, route.flow_id) == (a, "a", flow.id)
        assert route.flow is not None and route.flow.entry == "h"
        assert route.business_hours == {hours.id: OpeningHours(
            "Europe/Berlin", {"mon": [["09:00", "17:00"]]}, ({"date": "2026-12-24"},))}
        bare = await inbound_route(session, "200")
        assert bare is not None and bare.flow is None
        assert await inbound_route(session, "+4930999") is None
        assert await flows_using(session, a, queue_id=queue.id) == ["IVR flow main"]
        assert await flows_using(session, a, business_hours_id=hours.id) == ["IVR flow main"]
        assert await flows_using(session, a, queue_id="other") == []

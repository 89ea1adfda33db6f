"""Outbound calls for real on loopback: alice's baresip phone rings first (agent-first), then
OmniCC dials the customer through the carrier trunk - sipp playing the carrier: it answers with
early media and talks (the G.711 pcap sip-tester ships), challenges the INVITE and says busy,
rings until cancelled, or talks until OmniCC hangs up; and sipp as the carrier's registrar,
challenging OmniCC's REGISTERs with digest."""

from __future__ import annotations

import asyncio

import pytest

from omnicc.channels.voice.devices import agent_topic
from omnicc.channels.voice.outbound import NOTICE, OutboundCall
from omnicc.channels.voice.trunk import Trunk, TrunkState, TrunkStatus
from omnicc.store.repositories import CallRecords, Contacts, Identities
from tests.integration.voice.harness import (
    QUEUE_NUMBER,
    SCENARIOS,
    Carrier,
    Exchange,
    loudness,
    start_phone,
    wait_until,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def exchange(outbound_exchange: Exchange) -> Exchange:
    """The calls in this module go out: the exchange with the outbound caller ID."""
    return outbound_exchange


async def test_the_agent_answers_first_then_talks_with_the_customer(exchange: Exchange) -> None:
    seeded, voice = exchange.seeded, exchange.voice
    alice, support = seeded.agents["alice"], seeded.queues["support"]
    carrier = Carrier(SCENARIOS / "outbound_customer_answers.xml", exchange.workdir / "carrier")
    phone = await start_phone(exchange.workdir, voice, "alice")
    desk = exchange.center.bus.subscribe(seeded.tenant_id, agent_topic(alice))
    try:
        await carrier.start()
        trunk = Trunk(voice.stack, carrier.trunk_config())
        call = OutboundCall(voice, await exchange.runtime(), trunk, agent_id=alice,
                            number="040 123 4567", queue_id=support)
        result = await call.run()
        code, output = await carrier.finish()
        assert code == 0, output
        await phone.wait_for("CALL_CLOSED")
    finally:
        await carrier.stop()
        await phone.stop()

    assert (result.outcome, result.sip_status, result.hangup_side) == ("answered", 200, "caller")
    assert result.agent_answered and result.talk_s > 5
    established = await phone.wait_for("CALL_ESTABLISHED")
    assert "Call to +358401234567" in str(established), established
    states = []
    desk.close()
    while (notice := await desk.get()) is not None:
        if notice.type == NOTICE:
            states.append(notice.data["state"])
    assert states == ["dialling", "early_media", "answered", "ended"]

    async with exchange.database.session() as session:
        record = await CallRecords(session, seeded.tenant_id).get(result.record_id)
        assert record.direction == "outbound" and record.outcome == "answered"
        assert (record.from_number, record.to_number) == (QUEUE_NUMBER, "+358401234567")
        assert record.agent_id == alice and record.queue_id == support
        assert record.answered_at is not None and record.ended_at is not None
        assert record.hangup_side == "caller" and record.talk_s > 5
        contact = await Contacts(session, seeded.tenant_id).get(record.contact_id or "")
        assert (contact.channel, contact.direction) == ("voice", "outbound")
        assert contact.agent_id == alice and contact.ended_at is not None
        identity = await Identities(session, seeded.tenant_id).by_value("phone", "+358401234567")
        assert identity is not None and identity.customer_id == record.customer_id
    # The customer's pcap is speech: the agent heard it (silence would be near 0).
    assert loudness(phone.heard()[-1]) > 300


async def test_a_busy_customer_is_told_to_the_agent_and_kept_in_the_record(
        exchange: Exchange) -> None:
    seeded, voice = exchange.seeded, exchange.voice
    alice = seeded.agents["alice"]
    carrier = Carrier(SCENARIOS / "outbound_customer_busy.xml", exchange.workdir / "carrier")
    phone = await start_phone(exchange.workdir, voice, "alice")
    try:
        await carrier.start()
        trunk = Trunk(voice.stack, carrier.trunk_config())
        result = await OutboundCall(voice, await exchange.runtime(), trunk, agent_id=alice,
                                    number="+358401234567", queue_id=None).run()
        code, output = await carrier.finish()
        assert code == 0, output
        await phone.wait_for("CALL_CLOSED")
    finally:
        await carrier.stop()
        await phone.stop()

    assert (result.outcome, result.sip_status) == ("busy", 486)
    async with exchange.database.session() as session:
        record = await CallRecords(session, seeded.tenant_id).get(result.record_id)
    assert record.outcome == "busy" and record.details["sip_status"] == 486
    assert record.answered_at is None and record.agent_id == alice
    # No queue named: the caller ID is the default outbound number, none here.
    assert record.from_number == ""
    # The agent heard why: "The number is busy." (spoken), then OmniCC hung up.
    assert loudness(phone.heard()[-1], skip_s=0.2) > 300


async def test_the_trunk_registers_with_digest_refreshes_and_recovers(
        exchange: Exchange) -> None:
    carrier = Carrier(SCENARIOS / "outbound_trunk_registrar.xml", exchange.workdir / "carrier")
    seen: list[TrunkStatus] = []
    try:
        await carrier.start()
        trunk = Trunk(exchange.voice.stack, carrier.trunk_config(register=True),
                      on_status=seen.append)
        assert trunk.healthy is False
        trunk.start()
        # granted 1 s, refreshed (503: failing), retried 0.5 s later and granted 60 s
        await wait_until(lambda: trunk.registrations == 2, "the second registration")
        assert trunk.healthy and trunk.status.expires_at is not None
        await trunk.stop()
        code, output = await carrier.finish()
        assert code == 0, output
    finally:
        await carrier.stop()
    states = [(status.state, status.reason) for status in seen]
    assert states == [(TrunkState.REGISTERING, ""), (TrunkState.REGISTERED, ""),
                      (TrunkState.FAILING, "503 Service Unavailable"),
                      (TrunkState.REGISTERING, "503 Service Unavailable"),
                      (TrunkState.REGISTERED, ""), (TrunkState.UNREGISTERED, "")]


async def test_the_agent_hangs_up_at_the_desk_and_both_phones_get_a_bye(exchange: Exchange) -> None:
    seeded, voice = exchange.seeded, exchange.voice
    alice = seeded.agents["alice"]
    carrier = Carrier(SCENARIOS / "outbound_customer_talks_until_bye.xml",
                      exchange.workdir / "carrier")
    phone = await start_phone(exchange.workdir, voice, "alice")
    try:
        await carrier.start()
        trunk = Trunk(voice.stack, carrier.trunk_config())
        call = OutboundCall(voice, await exchange.runtime(), trunk, agent_id=alice,
                            number="+358401234567", queue_id=seeded.queues["support"])
        running = asyncio.create_task(call.run())
        await wait_until(call.connected.is_set, "the customer to answer")
        await phone.wait_for("CALL_RTPESTAB")
        await call.hang_up()   # the desk's hang-up button
        result = await running
        code, output = await carrier.finish()
        assert code == 0, output   # sipp got its BYE
        await phone.wait_for("CALL_CLOSED")   # and so did the agent's phone
    finally:
        await carrier.stop()
        await phone.stop()
    assert (result.outcome, result.hangup_side) == ("answered", "agent")
    async with exchange.database.session() as session:
        record = await CallRecords(session, seeded.tenant_id).get(result.record_id)
    assert (record.outcome, record.hangup_side) == ("answered", "agent")


async def test_a_customer_who_does_not_answer_is_cancelled(exchange: Exchange) -> None:
    seeded, voice = exchange.seeded, exchange.voice
    alice = seeded.agents["alice"]
    carrier = Carrier(SCENARIOS / "outbound_customer_never_answers.xml",
                      exchange.workdir / "carrier")
    phone = await start_phone(exchange.workdir, voice, "alice")
    try:
        await carrier.start()
        trunk = Trunk(voice.stack, carrier.trunk_config(ring_timeout_s=2.0))
        result = await OutboundCall(voice, await exchange.runtime(), trunk, agent_id=alice,
                                    number="+358401234567", queue_id=None).run()
        code, output = await carrier.finish()
        assert code == 0, output
        await phone.wait_for("CALL_CLOSED")
    finally:
        await carrier.stop()
        await phone.stop()
    assert (result.outcome, result.agent_answered) == ("no_answer", True)
    async with exchange.database.session() as session:
        record = await CallRecords(session, seeded.tenant_id).get(result.record_id)
    assert record.outcome == "no_answer" and record.answered_at is None


async def test_the_agent_hangs_up_while_the_customer_rings(exchange: Exchange) -> None:
    seeded, voice = exchange.seeded, exchange.voice
    carrier = Carrier(SCENARIOS / "outbound_customer_never_answers.xml",
                      exchange.workdir / "carrier")
    phone = await start_phone(exchange.workdir, voice, "alice")
    try:
        await carrier.start()
        trunk = Trunk(voice.stack, carrier.trunk_config())
        call = OutboundCall(voice, await exchange.runtime(), trunk,
                            agent_id=seeded.agents["alice"], number="+358401234567",
                            queue_id=None)
        running = asyncio.create_task(call.run())
        await wait_until(lambda: call.customer_invite is not None, "the customer's INVITE")
        await call.hang_up()
        result = await running
        code, output = await carrier.finish()
        assert code == 0, output   # sipp got its CANCEL
        await phone.wait_for("CALL_CLOSED")
    finally:
        await carrier.stop()
        await phone.stop()
    assert (result.outcome, result.hangup_side) == ("cancelled", "agent")

"""A real phone call through OmniCC: sipp calls the number, presses 1 in the IVR (the RFC 2833
pcap sip-tester ships), waits in the support queue, and baresip - alice's SIP phone,
registered with digest credentials - rings, answers and hears the caller talk (the G.711 pcap
sip-tester ships); the caller hangs up. Everything runs for real on loopback: OmniCC's SIP
stack, the routing engine, rtpengine started by OmniCC, espeak-ng prompts."""

from __future__ import annotations

import asyncio
import socket
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from omnicc.channels.voice.calls import InboundCall
from omnicc.channels.voice.media.rtp import PayloadType
from omnicc.channels.voice.media.tones import tone_share
from omnicc.channels.voice.outbound import OutboundCalls
from omnicc.channels.voice.trunk import Trunk, TrunkConfig
from omnicc.core.model import TaskPhase
from omnicc.store.repositories import CallbackRequests, CallRecords, Contacts, Queues
from tests.integration.voice.harness import (
    PHONE_PASSWORD,
    SCENARIOS,
    Caller,
    Carrier,
    Exchange,
    free_port,
    loudness,
    on_both_databases,
    recording,
    registered,
    run_sipp,
    start_phone,
    wait_until,
)
from tests.integration.voice.peers import Baresip

pytestmark = pytest.mark.anyio


async def alice_answers(exchange: Exchange, caller: Caller) -> InboundCall:
    """alice becomes available; the caller dials 1000, presses 1 and talks; alice's phone
    answers. The call, connected."""
    voice, alice = exchange.voice, exchange.seeded.agents["alice"]
    await (await exchange.runtime()).routing.run(
        lambda engine: engine.set_status(alice, "available"))
    await caller.call("1000")
    await caller.press("1")
    caller.talk()
    await wait_until(lambda: any(c.connected.is_set() for c in voice.calls.values()),
                     "alice to answer")
    return next(iter(voice.calls.values()))


@on_both_databases
async def test_a_caller_presses_1_and_talks_to_the_agent_who_answers(exchange: Exchange) -> None:
    seeded, voice = exchange.seeded, exchange.voice
    alice = seeded.agents["alice"]
    phone = await start_phone(exchange.workdir, voice, "alice")
    try:
        runtime = await exchange.center.tenant(seeded.tenant_id)
        await runtime.routing.run(lambda engine: engine.set_status(alice, "available"))

        caller_dir = exchange.workdir / "caller"
        caller_dir.mkdir()
        code, output = await run_sipp(SCENARIOS / "caller_presses_1.xml",
                                      voice.stack.udp.port, caller_dir, service="1000")
        assert code == 0, output
        await phone.wait_for("CALL_CLOSED")
    finally:
        await phone.stop()

    for _ in range(100):
        if not voice.calls:
            break
        await asyncio.sleep(0.1)
    async with exchange.database.session() as session:
        records = await CallRecords(session, seeded.tenant_id).list_all()
        assert len(records) == 1
        record = records[0]
        assert record.outcome == "answered"
        assert record.agent_id == alice
        assert record.hangup_side == "caller"
        assert record.from_number == "+358401234567" and record.to_number == "1000"
        assert (record.ivr_path[0]["node"], record.ivr_path[0]["input"]) == ("menu", "1")
        assert record.queue_id == seeded.queues["support"]
        assert record.answered_at is not None and record.ended_at is not None
        assert record.talk_s > 3
        contact = await Contacts(session, seeded.tenant_id).get(record.contact_id or "")
        assert contact.channel == "voice" and contact.ended_at is not None
    engine = (await exchange.center.tenant(seeded.tenant_id)).routing.engine
    assert engine.agent(alice).tasks and all(
        t.phase is TaskPhase.WRAPPING for t in engine.agent(alice).tasks.values())

    heard = phone.heard()
    assert heard, "baresip kept no recording of the call"
    # The caller's pcap is speech: the agent hears it (silence would be near 0).
    assert loudness(heard[-1]) > 300


async def test_hold_and_transfer_move_the_caller_between_music_and_agents(
        exchange: Exchange) -> None:
    seeded, voice = exchange.seeded, exchange.voice
    alice, bob = seeded.agents["alice"], seeded.agents["bob"]
    phones = [Baresip(exchange.workdir / name, user=name, password=PHONE_PASSWORD,
                      registrar=("127.0.0.1", voice.stack.udp.port), tone_hz=hz)
              for name, hz in (("alice", 440), ("bob", 660))]
    caller = Caller(voice.stack.udp.port)
    try:
        for phone in phones:
            await phone.start()
            await registered(voice, phone.user)
        runtime = await exchange.runtime()
        call = await alice_answers(exchange, caller)
        assert call.agent_id == alice
        assert tone_share(await caller.heard(1.0), 440) > 0.5

        await call.hold()
        on_hold = await caller.heard(1.0)
        assert tone_share(on_hold, 440) < 0.05 and np.abs(on_hold).mean() > 100  # music
        await call.resume()
        assert tone_share(await caller.heard(1.0), 440) > 0.5

        await runtime.routing.run(lambda engine: engine.set_status(bob, "available"))
        await call.transfer(agent_id=bob)
        await wait_until(lambda: call.connected.is_set() and call.agent_id == bob,
                         "bob to answer the transfer")
        assert tone_share(await caller.heard(1.0), 660) > 0.5
        await caller.hang_up()
        await phones[1].wait_for("CALL_CLOSED")
    finally:
        await caller.close()
        for phone in phones:
            await phone.stop()

    await wait_until(lambda: not voice.calls, "the call to end")
    async with exchange.database.session() as session:
        record = (await CallRecords(session, seeded.tenant_id).list_all())[0]
    assert record.agent_id == bob and record.transfers == 1
    assert record.hold_s > 0.5 and record.hangup_side == "caller"
    # The flow asked for recording: one stereo WAV, the caller's tone on the left, the agents'
    # tones on the right (alice's 440 Hz first, bob's 660 Hz after the transfer).
    assert record.recording_path is not None
    with wave.open(str(exchange.workdir / "data" / "recordings" / record.recording_path)) as wav:
        assert wav.getnchannels() == 2
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    caller_side, agent_side = frames[:, 0], frames[:, 1]
    assert tone_share(caller_side[4000:12000], 1000) > 0.5
    assert tone_share(agent_side[4000:12000], 440) > 0.5
    assert tone_share(agent_side[-7000:-1000], 660) > 0.5
    # alice heard the caller's 1 kHz tone in the second before the hold
    alice_heard = recording(phones[0].heard()[-1])
    assert tone_share(alice_heard[2000:8000], 1000) > 0.5


async def test_a_lost_agent_phone_puts_the_caller_back_in_line_for_the_next_agent(
        exchange: Exchange) -> None:
    seeded, voice = exchange.seeded, exchange.voice
    bob = seeded.agents["bob"]
    phones = [Baresip(exchange.workdir / name, user=name, password=PHONE_PASSWORD,
                      registrar=("127.0.0.1", voice.stack.udp.port), tone_hz=hz)
              for name, hz in (("alice", 440), ("bob", 660))]
    caller = Caller(voice.stack.udp.port)
    try:
        for phone in phones:
            await phone.start()
            await registered(voice, phone.user)
        runtime = await exchange.runtime()
        call = await alice_answers(exchange, caller)
        await runtime.routing.run(lambda engine: engine.set_status(bob, "available"))

        await phones[0].crash()
        await wait_until(lambda: call.connected.is_set() and call.agent_id == bob,
                         "bob to get the caller back from the line")
        assert tone_share(await caller.heard(1.0), 660) > 0.5
        await caller.hang_up()
    finally:
        await caller.close()
        for phone in phones:
            await phone.stop()
    await wait_until(lambda: not voice.calls, "the call to end")
    async with exchange.database.session() as session:
        record = (await CallRecords(session, seeded.tenant_id).list_all())[0]
    assert record.agent_id == bob and record.details["lost_agents"] == 1
    assert record.hangup_side == "caller"


async def test_an_unanswered_phone_passes_the_caller_to_the_next_agent(
        exchange: Exchange) -> None:
    seeded, voice = exchange.seeded, exchange.voice
    alice, bob = seeded.agents["alice"], seeded.agents["bob"]
    async with exchange.database.session() as session:
        queue = await Queues(session, seeded.tenant_id).get(seeded.queues["support"])
        queue.config = {**queue.config, "offer_timeout_s": 2.0}
        await Queues(session, seeded.tenant_id).save(queue)
    runtime = await exchange.center.tenant(seeded.tenant_id)
    await runtime.routing.reload()
    spoken: list[str] = []
    speak = voice.tts.speak

    async def listening_speak(text: str, **options: Any) -> Path:
        spoken.append(text)
        return await speak(text, **options)

    voice.tts.speak = listening_speak  # type: ignore[method-assign]
    voice.announce_every_s = 1.0
    phones = [Baresip(exchange.workdir / "alice", user="alice", password=PHONE_PASSWORD,
                      registrar=("127.0.0.1", voice.stack.udp.port), auto_answer=False),
              Baresip(exchange.workdir / "bob", user="bob", password=PHONE_PASSWORD,
                      registrar=("127.0.0.1", voice.stack.udp.port), tone_hz=660)]
    caller = Caller(voice.stack.udp.port)
    try:
        for phone in phones:
            await phone.start()
            await registered(voice, phone.user)
        await caller.call("1000")
        await caller.press("1")
        # Nobody is available: the caller waits and is told their place in line.
        await wait_until(lambda: any(t.startswith("You are number 1 in line") for t in spoken),
                         "a position announcement")
        # alice has waited longest, so she is offered the call first; she does not answer.
        await runtime.routing.run(lambda engine: engine.set_status(alice, "available"))
        await asyncio.sleep(0.05)
        await runtime.routing.run(lambda engine: engine.set_status(bob, "available"))
        await phones[0].wait_for("CALL_INCOMING")
        await wait_until(lambda: any(c.connected.is_set() for c in voice.calls.values()),
                         "bob to answer after alice's offer timed out")
        call = next(iter(voice.calls.values()))
        assert call.agent_id == bob
        await phones[0].wait_for("CALL_CLOSED")  # alice's phone stopped ringing (CANCEL)
        assert tone_share(await caller.heard(1.0), 660) > 0.5
        await caller.hang_up()
    finally:
        await caller.close()
        for phone in phones:
            await phone.stop()
    engine = runtime.routing.engine
    assert engine.agent(alice).missed_offers == 1


async def test_a_voicemail_is_recorded_and_becomes_a_callback_request(
        exchange: Exchange) -> None:
    seeded, voice = exchange.seeded, exchange.voice
    caller = Caller(voice.stack.udp.port)
    try:
        await caller.call("1000")
        await caller.press("2")
        call = next(iter(voice.calls.values()))
        await wait_until(lambda: call.media.recording is not None, "the beep and the recording")
        await caller.rtp.send_tone(1000, 2.0)
        await caller.press("#")
        await wait_until(lambda: not voice.calls, "OmniCC to end the call")
    finally:
        await caller.close()
    async with exchange.database.session() as session:
        record = (await CallRecords(session, seeded.tenant_id).list_all())[0]
        requests = await CallbackRequests(session, seeded.tenant_id).list_all()
    assert record.outcome == "voicemail" and record.hangup_side == "system"
    assert [(r.source, r.number, r.call_record_id, r.queue_id) for r in requests] == [
        ("voicemail", "+358401234567", record.id, seeded.queues["support"])]
    assert record.recording_path is not None
    with wave.open(str(exchange.workdir / "data" / "recordings" / record.recording_path)) as wav:
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    message = frames[:, 0]
    assert len(message) >= 8000 * 1.5 and tone_share(message[2000:10000], 1000) > 0.5


async def test_star_in_line_trades_the_wait_for_a_callback_at_the_same_place(
        exchange: Exchange) -> None:
    seeded, voice = exchange.seeded, exchange.voice
    voice.announce_every_s = 0.5
    caller = Caller(voice.stack.udp.port)
    try:
        await caller.call("1000")
        await caller.press("1")
        await wait_until(lambda: any(c.contact is not None for c in voice.calls.values()),
                         "the caller to be in line")
        call = next(iter(voice.calls.values()))
        assert call.contact is not None
        engine = call.runtime.routing.engine
        arrived = engine.task(call.contact.task_id).enqueued_at
        await caller.press("*")
        await wait_until(lambda: not voice.calls, "OmniCC to end the call")
        assert call.figures.outcome == "callback"
    finally:
        await caller.close()
    async with exchange.database.session() as session:
        requests = await CallbackRequests(session, seeded.tenant_id).list_all()
    assert [(r.source, r.number, r.state) for r in requests] == [
        ("queue", "+358401234567", "pending")]
    assert requests[0].attributes["arrived_at"] == arrived
    assert not list(engine.tasks())  # the call's own task ended: it is not abandoned


async def test_a_call_from_the_carrier_names_the_number_in_to(
        exchange: Exchange, tmp_path: Path) -> None:
    """A carrier OmniCC registers to sends calls to OmniCC's contact (the trunk account's user
    in the Request-URI); the number the customer dialled is in To."""
    voice = exchange.voice
    voice.outbound = OutboundCalls(voice, Trunk(voice.stack, TrunkConfig(
        uri=f"sip:omnicc@127.0.0.1:{free_port(socket.SOCK_DGRAM)}")))
    caller = Caller(voice.stack.udp.port)
    try:
        await caller.call("1000", request_user="omnicc")
        await caller.press("1")
        await wait_until(lambda: any(c.contact is not None for c in voice.calls.values()),
                         "the caller to reach the queue of number 1000's flow")
        assert next(iter(voice.calls.values())).dialled == "1000"
        await caller.hang_up()
    finally:
        voice.outbound = None
        await caller.close()


async def test_a_call_transferred_to_an_external_number_leaves_through_the_trunk(
        exchange: Exchange) -> None:
    seeded, voice = exchange.seeded, exchange.voice
    alice = seeded.agents["alice"]
    carrier = Carrier(SCENARIOS / "outbound_customer_talks_until_bye.xml",
                      exchange.workdir / "carrier")
    voice.outbound = OutboundCalls(voice, Trunk(voice.stack, carrier.trunk_config()))
    phone = await start_phone(exchange.workdir, voice, "alice")
    caller = Caller(voice.stack.udp.port, payload_type=PayloadType.PCMA)  # what the carrier speaks
    try:
        await carrier.start()
        runtime = await exchange.runtime()
        call = await alice_answers(exchange, caller)
        assert tone_share(await caller.heard(1.0), 440) > 0.5  # alice
        await call.transfer_to_number("040 765 4321")
        seen = len(caller.rtp.packets)  # answered: what comes now is the carrier's
        await phone.wait_for("CALL_CLOSED")  # alice is free: her part is done
        assert call.external == "+358407654321"
        # The carrier's party now reaches the caller: the pcap sipp plays. (sipp sends only a
        # short burst of it, ~18 packets on tshark, mostly the pcap's quiet start: so the test
        # counts the carrier's packets instead of measuring loudness.)
        await caller.heard(2.0)
        carrier_packets = [p for p in caller.rtp.packets[seen:] if p.payload_type == 8]
        assert len(carrier_packets) >= 10, len(carrier_packets)
        await caller.hang_up()
        code, output = await carrier.finish()
        assert code == 0, output
    finally:
        voice.outbound = None
        await carrier.stop()
        await caller.close()
        await phone.stop()
    await wait_until(lambda: not voice.calls, "the call to end")
    async with exchange.database.session() as session:
        record = (await CallRecords(session, seeded.tenant_id).list_all())[0]
    assert record.transfers == 1 and record.details["transferred_to"] == "+358407654321"
    assert runtime.routing.engine.agent(alice).tasks  # her wrap-up of the call

"""A caller in line presses star and chooses how to be called back: 1 keeps their place in
line (virtual hold), 2 asks a time of day (the IVR callback node's question, within the
queue's business hours) and books a callback request for it. Real calls on loopback: the
caller's RTP sends RFC 4733 DTMF to OmniCC's SIP stack, rtpengine and espeak-ng prompts."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from omnicc.channels.voice.calls import CALLBACK_CHOICE, InboundCall
from omnicc.store.repositories import BusinessHoursRepository, CallbackRequests, CallRecords, Queues
from omnicc.store.tables import BusinessHours
from tests.integration.voice.harness import Caller, Exchange, wait_until

pytestmark = pytest.mark.anyio

ZONE = ZoneInfo("Europe/Helsinki")
CLOSED_PROMPT = "We are closed at that time"


async def support_hours_closed_at(exchange: Exchange, hour: int) -> None:
    """The support queue opens every day, all day but the hour from `hour`:00 (Helsinki)."""
    ranges = []
    if hour > 0:
        ranges.append(["00:00", f"{hour:02}:00"])
    if hour < 23:
        ranges.append([f"{hour + 1:02}:00", "23:59"])
    seeded = exchange.seeded
    async with exchange.database.session() as session:
        hours = await BusinessHoursRepository(session, seeded.tenant_id).add(BusinessHours(
            name="support hours", timezone=ZONE.key,
            weekly={day: ranges for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}))
        queue = await Queues(session, seeded.tenant_id).get(seeded.queues["support"])
        queue.business_hours_id = hours.id
        await Queues(session, seeded.tenant_id).save(queue)
    await (await exchange.runtime()).routing.reload()


def listen(exchange: Exchange) -> list[str]:
    """The texts OmniCC speaks from now on (each prompt once: they are cached)."""
    spoken: list[str] = []
    speak = exchange.voice.tts.speak

    async def listening_speak(text: str, **options: Any) -> Path:
        spoken.append(text)
        return await speak(text, **options)

    exchange.voice.tts.speak = listening_speak  # type: ignore[method-assign]
    return spoken


async def in_line(exchange: Exchange, caller: Caller) -> InboundCall:
    """The caller dials the support line; the call, once in the queue."""
    voice = exchange.voice
    await caller.call("1000")
    await wait_until(lambda: any(c.contact is not None for c in voice.calls.values()),
                     "the caller to be in line")
    return next(iter(voice.calls.values()))


async def choose_a_time(caller: Caller, spoken: list[str]) -> None:
    """In line: star, then 2 at the choice; returns once the time question is asked."""
    await caller.press("*")
    await wait_until(lambda: CALLBACK_CHOICE in spoken, "the choice of callbacks")
    await caller.press("2")
    await wait_until(lambda: any(t.startswith("Enter the time") for t in spoken),
                     "the time question")


async def type_digits(caller: Caller, digits: str) -> None:
    for digit in digits:
        await caller.press(digit)


async def test_star_then_2_books_a_callback_at_the_time_the_caller_types(
        support_exchange: Exchange) -> None:
    exchange, seeded = support_exchange, support_exchange.seeded
    local_now = datetime.now(UTC).astimezone(ZONE)
    # This hour has begun already: the same hour is next open tomorrow.
    await support_hours_closed_at(exchange, (local_now.hour + 3) % 24)
    tomorrow = datetime.combine(local_now.date() + timedelta(days=1),
                                time(local_now.hour), tzinfo=ZONE)
    spoken = listen(exchange)
    caller = Caller(exchange.voice.stack.udp.port)
    try:
        call = await in_line(exchange, caller)
        assert call.contact is not None
        engine = call.runtime.routing.engine
        await choose_a_time(caller, spoken)
        await type_digits(caller, f"{local_now.hour:02}00")
        await caller.hung_up_on()
    finally:
        await caller.close()
    await wait_until(lambda: not exchange.voice.calls, "OmniCC to end the call")
    assert call.figures.outcome == "callback"
    assert f"Thank you. We will call you back at {local_now.hour:02}:00 tomorrow. Goodbye." \
        in spoken
    assert CLOSED_PROMPT not in " ".join(spoken)
    async with exchange.database.session() as session:
        requests = await CallbackRequests(session, seeded.tenant_id).list_all()
        record = (await CallRecords(session, seeded.tenant_id).list_all())[0]
    assert [(r.source, r.number, r.state, r.queue_id, r.call_record_id) for r in requests] == [
        ("queue", "+358401234567", "pending", seeded.queues["support"], record.id)]
    assert requests[0].due_at == tomorrow
    assert "arrived_at" not in requests[0].attributes  # a new arrival at the booked time
    assert (record.outcome, record.hangup_side) == ("callback", "system")
    assert not list(engine.tasks())  # the call's task left the line: not abandoned


async def test_a_time_when_the_queue_is_closed_is_refused_and_asked_again(
        support_exchange: Exchange) -> None:
    exchange, seeded = support_exchange, support_exchange.seeded
    local_now = datetime.now(UTC).astimezone(ZONE)
    closed = (local_now.hour + 3) % 24
    await support_hours_closed_at(exchange, closed)
    spoken = listen(exchange)
    caller = Caller(exchange.voice.stack.udp.port)
    try:
        await in_line(exchange, caller)
        await choose_a_time(caller, spoken)
        await type_digits(caller, f"{closed:02}30")
        await wait_until(lambda: any(t.startswith(CLOSED_PROMPT) for t in spoken),
                         "the closed time to be refused")
        assert exchange.voice.calls  # asked again, not hung up
        await type_digits(caller, f"{(closed + 2) % 24:02}15")
        await caller.hung_up_on()
    finally:
        await caller.close()
    async with exchange.database.session() as session:
        requests = await CallbackRequests(session, seeded.tenant_id).list_all()
    assert len(requests) == 1 and requests[0].due_at is not None
    local = requests[0].due_at.astimezone(ZONE)
    assert (local.hour, local.minute) == ((closed + 2) % 24, 15)
    assert requests[0].due_at > datetime.now(UTC)


async def test_star_then_1_keeps_the_place_in_line(support_exchange: Exchange) -> None:
    exchange, seeded = support_exchange, support_exchange.seeded
    spoken = listen(exchange)
    caller = Caller(exchange.voice.stack.udp.port)
    try:
        call = await in_line(exchange, caller)
        assert call.contact is not None
        arrived = call.runtime.routing.engine.task(call.contact.task_id).enqueued_at
        await caller.press("*")
        await wait_until(lambda: CALLBACK_CHOICE in spoken, "the choice of callbacks")
        await caller.press("1")
        await caller.hung_up_on()
    finally:
        await caller.close()
    assert not any(t.startswith("Enter the time") for t in spoken)
    async with exchange.database.session() as session:
        requests = await CallbackRequests(session, seeded.tenant_id).list_all()
    assert [(r.source, r.due_at, r.state) for r in requests] == [("queue", None, "pending")]
    assert requests[0].attributes["arrived_at"] == arrived

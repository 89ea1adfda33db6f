"""A call's tear-down cancelled half-way (the voice service stopping cancels every call's task)
still settles what lasts: the routing task ends, rtpengine forgets the call and the call record
is written with its end. The BYE to the caller is made to hang so the cancellation lands in
the middle of the tear-down, deterministically, and a second cancellation in its durable
writes. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from omnicc.channels.voice.calls import InboundCall
from omnicc.channels.voice.media.ng import NgError
from omnicc.core.errors import NotFound
from omnicc.store.repositories import CallRecords
from tests.integration.voice.harness import SUPPORT_LINE, Caller, Exchange, wait_until

pytestmark = pytest.mark.anyio


async def test_a_tear_down_cancelled_half_way_still_ends_task_media_and_record(
        support_exchange: Exchange) -> None:
    exchange = support_exchange
    voice = exchange.voice
    caller = Caller(voice.stack.udp.port)
    try:
        await caller.call(SUPPORT_LINE)  # nobody is available: the caller waits in line
        await wait_until(lambda: any(c.contact is not None for c in voice.calls.values()),
                         "the caller to be in line")
        call: InboundCall = next(iter(voice.calls.values()))
        assert call.contact is not None and call.dialog is not None
        in_tear_down = asyncio.Event()

        async def bye_that_hangs() -> None:
            in_tear_down.set()
            await asyncio.Event().wait()

        call.dialog.bye = bye_that_hangs  # type: ignore[method-assign]
        await call.hangup()
        await asyncio.wait_for(in_tear_down.wait(), 10)
        task = next(t for t in asyncio.all_tasks() if t.get_name() == f"call-{call.call_id}")
        task.cancel()
        await asyncio.sleep(0)  # the task is in its durable writes now: cancel them too
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()

        engine = (await exchange.runtime()).routing.engine
        with pytest.raises(NotFound):
            engine.task(call.contact.task_id)
        with pytest.raises(NgError):
            await call.media.client.query(call.call_id)
        assert call.call_id not in voice.calls
        async with exchange.database.session() as session:
            record = await CallRecords(session, exchange.seeded.tenant_id).get(call.record_id)
        assert record.ended_at is not None
        assert (record.hangup_side, record.outcome) == ("system", "ended")
    finally:
        await caller.close()

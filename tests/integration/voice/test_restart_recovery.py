"""Inbound calls lost in a restart (issue 4): the first process has a caller talking with
alice and a second caller waiting, then "dies" (it is left as it is, never stopped: its state
is only in memory); a second contact center and voice service start on the same database,
as the next process does. The talking call completes as hung up by the system (alice's
wrap-up follows), the waiting one is cancelled - not abandoned - and both call records are
closed; a callback task stays in line. On SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from omnicc.app.routing import WallClock
from omnicc.app.runtime import ContactCenter
from omnicc.bus import Bus
from omnicc.channels.voice.calls import InboundCall
from omnicc.channels.voice.media.daemon import random_port_window
from omnicc.channels.voice.recovery import LOST_OUTCOME
from omnicc.channels.voice.service import VoiceService, VoiceSettings
from omnicc.channels.voice.sip.transaction import Timers
from omnicc.core.model import Outcome, TaskPhase
from omnicc.store.repositories import CallRecords, Contacts
from omnicc.store.tables import Task
from tests.integration.voice.harness import (
    SUPPORT_LINE,
    Caller,
    Exchange,
    on_both_databases,
    start_phone,
    wait_until,
)

pytestmark = [pytest.mark.anyio, on_both_databases]


@pytest.fixture
def exchange(support_exchange: Exchange) -> Exchange:
    return support_exchange


async def test_calls_lost_in_a_restart_end_and_free_the_agent(exchange: Exchange) -> None:
    seeded, voice = exchange.seeded, exchange.voice
    alice, support = seeded.agents["alice"], seeded.queues["support"]
    phone = await start_phone(exchange.workdir, voice, "alice")
    talking, waiting = Caller(voice.stack.udp.port), Caller(voice.stack.udp.port)
    try:
        runtime = await exchange.runtime()
        await runtime.routing.run(lambda engine: engine.set_status(alice, "available"))
        await talking.call(SUPPORT_LINE)
        await wait_until(lambda: any(c.connected.is_set() for c in voice.calls.values()),
                         "alice to answer")
        await waiting.call(SUPPORT_LINE)
        await wait_until(lambda: sum(c.contact is not None for c in voice.calls.values()) == 2,
                         "the second caller to be in line")
        calls: list[InboundCall] = list(voice.calls.values())
        answered = next(c for c in calls if c.connected.is_set())
        queued = next(c for c in calls if not c.connected.is_set())
        assert answered.contact is not None and queued.contact is not None
        callback = await runtime.voice.enqueue(
            await runtime.voice.identify_caller("+358405556667"), queue_id=support,
            call_id="callback-x", attributes={"callback": True}, direction="outbound")
        old_engine = runtime.routing.engine
        assert old_engine.task(answered.contact.task_id).phase is TaskPhase.ASSIGNED
        assert old_engine.task(queued.contact.task_id).phase is TaskPhase.WAITING

        # The next process: its own contact center and voice service on the same database.
        center = ContactCenter(exchange.database, WallClock(), Bus())
        await center.start()
        after = VoiceService(exchange.database, center, exchange.workdir / "data-2",
                             VoiceSettings(sip_port=0, media_ports=random_port_window(),
                                           timers=Timers(t1=0.1), announce_every_s=3600))
        try:
            await after.start()
            engine = (await center.tenant(seeded.tenant_id)).routing.engine
            task = engine.task(answered.contact.task_id)
            assert (task.phase, task.agent_id) == (TaskPhase.WRAPPING, alice)
            assert engine.task(callback.task_id).phase is TaskPhase.WAITING
            figures = engine.queue_figures(support, "voice")
            assert (figures.waiting, figures.abandoned) == (1, 0)  # the callback; no abandon
            async with exchange.database.session() as session:
                row = await session.get(Task, queued.contact.task_id)
                assert row is not None
                assert (row.phase, row.outcome) == ("ended", Outcome.CANCELLED.value)
                records = CallRecords(session, seeded.tenant_id)
                talked = await records.get(answered.record_id)
                lost = await records.get(queued.record_id)
                contacts = Contacts(session, seeded.tenant_id)
                talked_contact = await contacts.get(answered.contact.contact_id)
                lost_contact = await contacts.get(queued.contact.contact_id)
            assert (talked.outcome, talked.hangup_side) == ("answered", "system")
            assert talked.ended_at is not None and talked.answered_at is not None
            assert (lost.outcome, lost.hangup_side) == (LOST_OUTCOME, "system")
            assert lost.ended_at is not None and "lost_in_restart" in lost.details
            for contact in (talked_contact, lost_contact):
                assert contact.ended_at is not None
                assert contact.attributes["hangup_side"] == "system"
            # Nothing left to end: a second start changes nothing.
            await after.stop()
            after = VoiceService(exchange.database, center, exchange.workdir / "data-3",
                                 VoiceSettings(sip_port=0, media_ports=random_port_window(),
                                               timers=Timers(t1=0.1)))
            await after.start()
            assert engine.task(callback.task_id).phase is TaskPhase.WAITING
        finally:
            await after.stop()
            await center.stop()
    finally:
        for caller in (talking, waiting):
            await caller.close()
        await phone.stop()


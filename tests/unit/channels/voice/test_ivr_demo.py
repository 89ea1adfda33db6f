"""The demo's phone line, walked by the interpreter: menu, Luhn-checked customer number, and the
after-hours choice of voicemail or callback."""

from __future__ import annotations

from datetime import datetime

import pytest

from omnicc.channels.voice.ivr import (
    CallbackOutcome,
    CallContext,
    OpeningHours,
    QueueOutcome,
    VoicemailOutcome,
    parse_flow,
    run_flow,
)
from omnicc.channels.voice.ivr.demo import demo_flow
from omnicc.core.clock import ManualClock
from tests.unit.channels.voice.test_ivr_interpreter import Barge, ScriptedCall

pytestmark = pytest.mark.anyio

QUEUES = {"sales": "q-sales", "support": "q-support", "billing": "q-billing"}
WEEKDAYS = OpeningHours("Europe/Helsinki", {"mon": [["08:00", "16:00"]]})


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _context(moment: str) -> CallContext:
    return CallContext(clock=ManualClock(datetime.fromisoformat(moment).timestamp()),
                       caller="+358401234567", dialled="1000",
                       business_hours={"bh": WEEKDAYS}, timezone="Europe/Helsinki")


OPEN = "2026-11-23T10:00:00+02:00"  # a Monday
CLOSED = "2026-11-23T20:00:00+02:00"


async def test_the_demo_flow_is_valid_and_routes_billing_with_a_customer_number() -> None:
    flow = parse_flow(demo_flow(QUEUES, "bh"))
    call = ScriptedCall(["2", "12345670", "12345674"])
    outcome = await run_flow(flow, call, _context(OPEN))
    assert isinstance(outcome, QueueOutcome)
    assert outcome.queue_id == "q-billing"
    assert outcome.attributes == {"customer_number": "12345674"}
    assert "That customer number is not valid." in call.texts


async def test_a_key_during_the_greeting_chooses_support() -> None:
    flow = parse_flow(demo_flow(QUEUES, "bh"))
    outcome = await run_flow(flow, ScriptedCall([Barge("1")]), _context(OPEN))
    assert isinstance(outcome, QueueOutcome) and outcome.queue_id == "q-support"


async def test_after_hours_the_caller_leaves_a_message_or_asks_for_a_callback() -> None:
    flow = parse_flow(demo_flow(QUEUES, "bh"))
    voicemail = await run_flow(flow, ScriptedCall(["1"]), _context(CLOSED))
    assert isinstance(voicemail, VoicemailOutcome) and voicemail.queue_id == "q-support"
    callback = await run_flow(flow, ScriptedCall(["2", "1", ""]), _context(CLOSED))
    assert isinstance(callback, CallbackOutcome)
    assert (callback.number, callback.at, callback.queue_id) == (
        "+358401234567", None, "q-support")

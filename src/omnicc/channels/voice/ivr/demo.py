"""The demo center's phone line: number 1000 runs a flow with a greeting, opening hours, a
support/billing menu, a customer number checked by its Luhn digit, and after hours a choice of
voicemail or a callback. Seeded like the rest of the demo: what exists is left as it is.

The hours are the demo's own (open round the clock, so a call is answered whenever the demo is
tried); shorten them in the admin page to hear the after-hours branch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.channels.voice.ivr.flow import parse_flow
from omnicc.store.repositories import IvrFlows, VoiceNumbers
from omnicc.store.tables import IvrFlow, VoiceNumber

DEMO_NUMBER = "1000"
"""The user part callers dial (`sip:1000@host`; sipp: `-s 1000`)."""
FLOW_NAME = "Demo: main line"


def demo_flow(queues: Mapping[str, str], hours_id: str) -> dict[str, Any]:
    """The flow's definition, given the demo's queue ids by name and the phone hours' id."""
    return parse_flow({
        "entry": "welcome",
        "language": "en",
        "nodes": {
            "welcome": {"kind": "play", "interruptible": True, "next": "hours", "prompt": {
                "text": "Thank you for calling Acme Energy. Calls may be recorded."}},
            "hours": {"kind": "hours", "business_hours_id": hours_id, "open": "menu",
                      "closed": "after_hours", "holiday": "after_hours"},
            "menu": {"kind": "menu", "choices": {"1": "support", "2": "customer_number"},
                     "prompt": {"text": "For support, press 1. For billing, press 2."},
                     "invalid_prompt": {"text": "Sorry, that is not an option."},
                     "timeout_prompt": {"text": "Sorry, I did not hear a choice."},
                     "fallback": "support"},
            "customer_number": {
                "kind": "collect", "attribute": "customer_number", "min_digits": 6,
                "max_digits": 12, "luhn": True, "next": "billing", "fallback": "billing",
                "prompt": {"text": "Please type your customer number, then the hash key."},
                "invalid_prompt": {"text": "That customer number is not valid."}},
            "support": {"kind": "queue", "queue_id": queues["support"],
                        "prompt": {"text": "Connecting you to support."}},
            "billing": {"kind": "queue", "queue_id": queues["billing"],
                        "prompt": {"text": "Connecting you to billing."}},
            "after_hours": {
                "kind": "menu", "choices": {"1": "voicemail", "2": "callback"},
                "fallback": "voicemail",
                "prompt": {"text": "Our phone lines are closed now. To leave a message, "
                                   "press 1. To be called back, press 2."}},
            "voicemail": {"kind": "voicemail", "max_s": 120, "queue_id": queues["support"],
                          "prompt": {"text": "Please leave your message after the tone."}},
            "callback": {"kind": "callback", "queue_id": queues["support"], "ask_time": True,
                         "business_hours_id": hours_id},
        },
    }).as_json()


async def seed_voice_demo(session: AsyncSession, tenant_id: str, queues: Mapping[str, str],
                          hours_id: str) -> None:
    """Add the flow and number 1000 where missing (`queues`: the demo's queue ids by name;
    `hours_id`: the business hours the flow branches on)."""
    flows = IvrFlows(session, tenant_id)
    flow = await flows.first(flows.select().where(IvrFlow.name == FLOW_NAME))
    if flow is None:
        flow = await flows.add(IvrFlow(name=FLOW_NAME, definition=demo_flow(queues, hours_id)))
    taken = select(VoiceNumber.id).where(VoiceNumber.number == DEMO_NUMBER)  # by any tenant
    if (await session.execute(taken)).first() is None:
        await VoiceNumbers(session, tenant_id).add(VoiceNumber(
            number=DEMO_NUMBER, name="Demo hotline", flow_id=flow.id, is_default_outbound=True))

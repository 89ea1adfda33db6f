"""DeskPhone: a desk socket's softphone frames against the real BrowserPhones and bus, without
SIP or media: who is online, what every desk of the agent is told, and what becomes of the
call a desk answered when its phone goes off or its socket closes."""

from __future__ import annotations

from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any, cast

import pytest

from omnicc.api.desk_phone import MAX_SDP_CHARS, DeskPhone
from omnicc.bus import Bus, Notice
from omnicc.channels.voice.devices import BrowserPhones, CallInfo, agent_topic
from omnicc.channels.voice.service import VoiceService

pytestmark = pytest.mark.anyio

TENANT, AGENT = "t1", "a1"
INFO = CallInfo(call_id="c1", caller="+358401234567", caller_name="Maija", task_id="task-1")


class RecordingBus(Bus):
    """The bus, keeping what was published to the agent's desks."""

    def __init__(self) -> None:
        super().__init__()
        self.told: list[dict[str, Any]] = []

    def publish(self, tenant_id: str, topics: Iterable[str], notice: Notice) -> int:
        topics = list(topics)
        if (tenant_id, topics) == (TENANT, [agent_topic(AGENT)]):
            self.told.append(notice.wire())
        return super().publish(tenant_id, topics, notice)

    def take(self) -> list[dict[str, Any]]:
        told, self.told = self.told, []
        return told


def voice(bus: Bus) -> VoiceService:
    return cast(VoiceService, SimpleNamespace(browser_phones=BrowserPhones(bus)))


async def test_a_desk_switches_the_phone_on_and_off_and_closing_takes_it_off() -> None:
    service = voice(Bus())
    phones = service.browser_phones
    first, second = DeskPhone(service, TENANT, AGENT), DeskPhone(service, TENANT, AGENT)
    assert first.frame({"type": "phone.online"}) == {"type": "phone.status", "online": True,
                                                      "detail": ""}
    first.frame({"type": "phone.online"})  # said twice, counted once
    second.frame({"type": "phone.online"})
    first.frame({"type": "phone.offline"})
    assert phones.is_online(TENANT, AGENT)  # the second desk is still on
    second.close()
    assert not phones.is_online(TENANT, AGENT)
    first.close()
    assert not phones.is_online(TENANT, AGENT)


async def test_answering_on_one_desk_tells_the_others_and_closing_it_loses_the_call() -> None:
    bus = RecordingBus()
    service = voice(bus)
    phones = service.browser_phones
    answering, other = DeskPhone(service, TENANT, AGENT), DeskPhone(service, TENANT, AGENT)
    answering.frame({"type": "phone.online"})
    other.frame({"type": "phone.online"})
    phone = phones.phone(TENANT, AGENT)
    assert phone is not None
    ring = phone.ring("v=0 offer", INFO)
    [ringing] = bus.take()
    assert ringing["type"] == "call.ringing" and ringing["caller_name"] == "Maija"
    ring_id = ringing["ring_id"]

    too_big = {"type": "call.answer", "ring_id": ring_id, "sdp": "x" * (MAX_SDP_CHARS + 1)}
    assert answering.frame(too_big) == {"type": "call.cancelled", "ring_id": ring_id}
    assert answering.frame({"type": "call.answer", "ring_id": ring_id, "sdp": "v=0 answer"}) \
        is None
    assert await ring.answered() == "v=0 answer"
    assert bus.take() == [{"type": "call.answered", "ring_id": ring_id}]
    # The other desk is too late.
    assert other.frame({"type": "call.answer", "ring_id": ring_id, "sdp": "v=0"}) == {
        "type": "call.cancelled", "ring_id": ring_id}

    leg = ring.leg
    assert leg is not None and not leg.terminated.is_set() and not leg.lost
    answering.close()  # the other desk stays online, but nobody else has the call's media
    assert leg.terminated.is_set() and leg.lost  # the caller goes back in line
    assert phones.is_online(TENANT, AGENT)


async def test_switching_the_phone_off_hangs_up_the_call_it_answered() -> None:
    bus = RecordingBus()
    service = voice(bus)
    desk = DeskPhone(service, TENANT, AGENT)
    desk.frame({"type": "phone.online"})
    phone = service.browser_phones.phone(TENANT, AGENT)
    assert phone is not None
    ring = phone.ring("v=0 offer", INFO)
    ring_id = bus.take()[0]["ring_id"]
    desk.frame({"type": "call.answer", "ring_id": ring_id, "sdp": "v=0 answer"})
    assert await ring.answered() == "v=0 answer"
    assert ring.leg is not None
    desk.frame({"type": "phone.offline"})
    assert ring.leg.terminated.is_set() and not ring.leg.lost  # the agent hung up


async def test_declining_on_one_desk_stops_the_others_ringing() -> None:
    bus = RecordingBus()
    service = voice(bus)
    desk = DeskPhone(service, TENANT, AGENT)
    desk.frame({"type": "phone.online"})
    phone = service.browser_phones.phone(TENANT, AGENT)
    assert phone is not None
    ring = phone.ring("v=0 offer", INFO)
    ring_id = bus.take()[0]["ring_id"]
    assert desk.frame({"type": "call.decline", "ring_id": ring_id}) is None
    assert await ring.answered() is None
    assert bus.take() == [{"type": "call.cancelled", "ring_id": ring_id}]


async def test_frames_of_a_desk_whose_phone_is_off_or_without_voice_do_nothing() -> None:
    service = voice(Bus())
    desk = DeskPhone(service, TENANT, AGENT)
    assert desk.frame({"type": "call.answer", "ring_id": "r", "sdp": "v=0"}) is None
    assert desk.frame({"type": "call.unknown", "ring_id": "r"}) is None
    off = DeskPhone(None, TENANT, AGENT)
    status = off.frame({"type": "phone.online"})
    assert status is not None and status["online"] is False and status["detail"]
    assert off.frame({"type": "call.hangup", "ring_id": "r"}) is None
    off.close()

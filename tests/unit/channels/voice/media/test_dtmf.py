"""rtpengine's DTMF log datagrams, SIP INFO bodies, and the per-call digit queues."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from omnicc.channels.voice.media.dtmf import (
    DtmfEvent,
    DtmfListener,
    parse_dtmf_info,
    parse_dtmf_log,
)

# A datagram as rtpengine 10.5 sent it in the integration test.
LOGGED = (
    b'{"callid":"c4","source_tag":"ta","tags":["sink","ta"],"type":"DTMF",'
    b'"timestamp":1795387558,"source_ip":"127.0.0.1","event":11,"duration":100,"volume":10}'
)


def test_rtpengines_dtmf_log_becomes_a_digit() -> None:
    assert parse_dtmf_log(LOGGED) == DtmfEvent("c4", "#", "ta", 100)
    for event, digit in [(0, "0"), (9, "9"), (10, "*"), (12, "A"), (15, "D")]:
        data = json.dumps({"callid": "x", "event": event, "type": "DTMF"}).encode()
        parsed = parse_dtmf_log(data)
        assert parsed is not None and parsed.digit == digit


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"callid":"x","event":16}',
        b'{"callid":"x","event":-1}',
        b'{"callid":"x","event":"5"}',
        b'{"event":5}',
        b'{"callid":"x","event":5,"type":"other"}',
    ],
)
def test_other_datagrams_are_ignored(data: bytes) -> None:
    assert parse_dtmf_log(data) is None


@pytest.mark.parametrize(
    ("body", "content_type", "digit"),
    [
        ("Signal=5\r\nDuration=160\r\n", "application/dtmf-relay", "5"),
        ("signal = *\nDuration=100", "Application/DTMF-Relay; charset=utf-8", "*"),
        ("Signal=#\r\n", "application/dtmf-relay", "#"),
        ("Signal=11\r\nDuration=160", "application/dtmf-relay", "#"),
        ("Signal=10\r\n", "application/dtmf-relay", "*"),
        ("Signal=d\r\n", "application/dtmf-relay", "D"),
        (b"7", "application/dtmf", "7"),
        ("Duration=160", "application/dtmf-relay", None),
        ("Signal=X", "application/dtmf-relay", None),
        ("Signal=16", "application/dtmf-relay", None),
        ("Signal=5", "text/plain", None),
        ("", "application/dtmf", None),
    ],
)
def test_sip_info_bodies(body: str | bytes, content_type: str, digit: str | None) -> None:
    assert parse_dtmf_info(body, content_type) == digit


def test_the_listener_queues_digits_per_subscribed_call() -> None:
    async def scenario() -> None:
        async with DtmfListener() as listener:
            mine = listener.subscribe("c4")
            assert listener.subscribe("c4") is mine
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                sender.sendto(LOGGED.replace(b'"c4"', b'"other"'), listener.address)
                sender.sendto(LOGGED, listener.address)
            event = await asyncio.wait_for(mine.get(), 5)
            assert event.digit == "#" and event.via == "rtp"
            listener.feed("c4", "3", source_tag="ta")
            assert mine.get_nowait() == DtmfEvent("c4", "3", "ta", via="info")
            assert mine.empty()  # the other call's digit went nowhere
            listener.unsubscribe("c4")
            listener.feed("c4", "4")
            assert mine.empty()

    asyncio.run(scenario())

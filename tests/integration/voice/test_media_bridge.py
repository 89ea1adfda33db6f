"""The media layer against a real rtpengine (userspace, started per test on a random port window):
audio both ways, prompts, DTMF, moving the caller between sink and parties, hold, ng errors."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from omnicc.channels.voice.media.bridge import MediaCall
from omnicc.channels.voice.media.daemon import RtpengineDaemon
from omnicc.channels.voice.media.ng import NgClient, NgError
from omnicc.channels.voice.media.rtp import RtpEndpoint, media_address
from omnicc.channels.voice.media.tones import tone, tone_share

pytestmark = pytest.mark.anyio

TONE_SHARE_HEARD = 0.5
TONE_SHARE_ABSENT = 0.05


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[RtpengineDaemon]:
    daemon = RtpengineDaemon(recording_dir=tmp_path / "recordings")
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.stop()


@pytest.fixture
async def endpoints() -> AsyncIterator[list[RtpEndpoint]]:
    opened = [await RtpEndpoint().open() for _ in range(3)]
    try:
        yield opened
    finally:
        for endpoint in opened:
            await endpoint.close()


def tone_wav(path: Path, hz: float, seconds: float) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(tone(hz, seconds).tobytes())
    return path


async def exchange(a: RtpEndpoint, b: RtpEndpoint, hz_a: float, hz_b: float) -> tuple[float, float]:
    """A and B send tones at the same time; returns (share of A's tone at B, of B's at A)."""
    seen_a, seen_b = len(a.packets), len(b.packets)
    await asyncio.gather(a.send_tone(hz_a, 0.6), b.send_tone(hz_b, 0.6))
    await asyncio.gather(a.wait_for_packets(seen_a + 25), b.wait_for_packets(seen_b + 25))
    return tone_share(b.audio(since=seen_b), hz_a), tone_share(a.audio(since=seen_a), hz_b)


async def test_offer_answer_carries_audio_both_ways(
    engine: RtpengineDaemon, endpoints: list[RtpEndpoint]
) -> None:
    a, b, _ = endpoints
    ng = engine.client
    sdp_for_b = await ng.offer("call-1", "tag-a", a.sdp())
    sdp_for_a = await ng.answer("call-1", "tag-a", "tag-b", b.sdp())
    assert media_address(sdp_for_a)[1] != a.port  # media really goes through rtpengine
    a.connect(sdp_for_a)
    b.connect(sdp_for_b)

    at_b, at_a = await exchange(a, b, 1000, 440)

    assert at_b > TONE_SHARE_HEARD
    assert at_a > TONE_SHARE_HEARD
    assert tone_share(b.audio(), 440) < TONE_SHARE_ABSENT
    assert "call-1" in await ng.list_calls()
    await ng.delete("call-1")
    assert "call-1" not in await ng.list_calls()


async def test_ng_errors_surface_as_exceptions(engine: RtpengineDaemon) -> None:
    with pytest.raises(NgError) as caught:
        await engine.client.answer("no-such-call", "x", "y", "v=0\r\n")
    assert caught.value.reason == "Unknown call-id"
    with pytest.raises(NgError):
        await engine.client.request("no such command")


async def test_a_dead_address_times_out() -> None:
    async with NgClient(("127.0.0.1", 9), timeout=0.2, retries=1) as ng:
        with pytest.raises(TimeoutError):
            await ng.ping()


async def test_caller_in_the_sink_hears_a_played_wav(
    engine: RtpengineDaemon, endpoints: list[RtpEndpoint], tmp_path: Path
) -> None:
    caller, _, _ = endpoints
    call = MediaCall(engine.client, "call-2")
    await call.caller_offer(caller.sdp(), "caller")
    caller.connect(await call.answer_caller_with_sink())
    assert call.sink is not None

    await caller.send_tone(1000, 0.4)
    await call.sink.wait_for_packets(15)
    assert tone_share(call.sink.audio(), 1000) > TONE_SHARE_HEARD

    seen = len(caller.packets)
    duration = await call.play(tone_wav(tmp_path / "beep.wav", 800, 1.0))
    assert duration == 1000
    await caller.wait_for_packets(seen + 45)
    assert tone_share(caller.audio(since=seen), 800) > TONE_SHARE_HEARD
    await call.delete()


async def test_agent_then_transfer_keep_the_callers_port(
    engine: RtpengineDaemon, endpoints: list[RtpEndpoint]
) -> None:
    caller, agent, third = endpoints
    call = MediaCall(engine.client, "call-3")
    await call.caller_offer(caller.sdp(), "caller")
    caller_sdp = await call.answer_caller_with_sink()
    caller.connect(caller_sdp)
    port = media_address(caller_sdp)

    agent.connect(await call.offer_to("agent-1"))
    await call.answered_by("agent-1", agent.sdp())
    assert call.caller_port == port
    at_agent, at_caller = await exchange(caller, agent, 1000, 440)
    assert at_agent > TONE_SHARE_HEARD
    assert at_caller > TONE_SHARE_HEARD

    third.connect(await call.offer_to("third-1"))
    await call.answered_by("third-1", third.sdp())
    assert call.caller_port == port
    seen_by_agent = len(agent.packets)
    at_third, at_caller = await exchange(caller, third, 1000, 600)
    assert at_third > TONE_SHARE_HEARD
    assert at_caller > TONE_SHARE_HEARD
    assert tone_share(agent.audio(since=seen_by_agent), 1000) < TONE_SHARE_ABSENT

    await call.back_to_sink()
    assert call.caller_port == port
    assert call.sink is not None
    at_sink, _ = await exchange(caller, call.sink, 1000, 300)
    assert at_sink > TONE_SHARE_HEARD
    await call.delete()

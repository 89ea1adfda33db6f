"""The media layer against a real rtpengine (userspace, started per test on a random port window):
audio both ways, prompts, DTMF, moving the caller between sink and parties, hold, ng errors."""

from __future__ import annotations

import asyncio
import re
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from omnicc.channels.voice.media.bridge import WEBRTC_OFFER, MediaCall, MediaError
from omnicc.channels.voice.media.daemon import RtpengineDaemon
from omnicc.channels.voice.media.dtmf import DtmfListener
from omnicc.channels.voice.media.ng import NgClient, NgError
from omnicc.channels.voice.media.recordings import find_recording, recording_to_wav
from omnicc.channels.voice.media.rtp import RtpEndpoint, media_address
from omnicc.channels.voice.media.tones import tone, tone_share

pytestmark = pytest.mark.anyio

TONE_SHARE_HEARD = 0.5
TONE_SHARE_ABSENT = 0.05


@pytest.fixture
async def dtmf() -> AsyncIterator[DtmfListener]:
    async with DtmfListener() as listener:
        yield listener


@pytest.fixture
async def engine(tmp_path: Path, dtmf: DtmfListener) -> AsyncIterator[RtpengineDaemon]:
    daemon = RtpengineDaemon(recording_dir=tmp_path / "recordings", dtmf_log_dest=dtmf.address)
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

    third.connect(await call.offer_to("third-1"))  # the transfer target rings
    await call.answered_by("third-1", third.sdp())
    assert call.caller_port == port
    assert call.party_tag == "third-1"
    seen_by_agent, seen_by_caller = len(agent.packets), len(caller.packets)
    at_third, at_caller = await exchange(caller, third, 1000, 600)
    assert at_third > TONE_SHARE_HEARD
    assert at_caller > TONE_SHARE_HEARD
    # The detached agent neither hears the caller nor is heard, even if its phone keeps sending.
    await agent.send_tone(440, 0.4)
    assert tone_share(agent.audio(since=seen_by_agent), 1000) < TONE_SHARE_ABSENT
    assert tone_share(caller.audio(since=seen_by_caller), 440) < TONE_SHARE_ABSENT

    # The target hangs up: back to the agent, on the agent's same port (no re-INVITE needed).
    agent_port = agent.remote
    await call.return_to("agent-1")
    assert call.caller_port == port
    assert media_address(await call.offer_to("agent-1")) == agent_port
    await call.answered_by("agent-1", agent.sdp())
    at_agent, at_caller = await exchange(caller, agent, 1000, 440)
    assert at_agent > TONE_SHARE_HEARD
    assert at_caller > TONE_SHARE_HEARD

    await call.back_to_sink()
    assert call.caller_port == port
    assert call.sink is not None
    at_sink, _ = await exchange(caller, call.sink, 1000, 300)
    assert at_sink > TONE_SHARE_HEARD
    await call.delete()


async def connected_call(
    engine: RtpengineDaemon, call_id: str, caller: RtpEndpoint, agent: RtpEndpoint
) -> MediaCall:
    call = MediaCall(engine.client, call_id)
    await call.caller_offer(caller.sdp(), "caller")
    caller.connect(await call.answer_caller_with_sink())
    agent.connect(await call.offer_to("agent"))
    await call.answered_by("agent", agent.sdp())
    return call


async def test_hold_plays_music_and_parts_the_sides_until_resume(
    engine: RtpengineDaemon, endpoints: list[RtpEndpoint], tmp_path: Path
) -> None:
    caller, agent, _ = endpoints
    call = await connected_call(engine, "call-4", caller, agent)
    music = tone_wav(tmp_path / "music.wav", 800, 1.0)

    await call.hold(music)
    assert call.on_hold
    seen_caller, seen_agent = len(caller.packets), len(agent.packets)
    await asyncio.gather(caller.send_tone(1000, 0.8), agent.send_tone(440, 0.8))
    await caller.wait_for_packets(seen_caller + 35)
    held = caller.audio(since=seen_caller)
    assert tone_share(held, 800) > TONE_SHARE_HEARD
    assert tone_share(held, 440) < TONE_SHARE_ABSENT
    assert tone_share(agent.audio(since=seen_agent), 1000) < TONE_SHARE_ABSENT

    await call.resume()
    await asyncio.sleep(0.1)  # let the last music packets drain before measuring
    at_agent, at_caller = await exchange(caller, agent, 1000, 440)
    assert at_agent > TONE_SHARE_HEARD
    assert at_caller > TONE_SHARE_HEARD
    await call.delete()


async def test_rfc4733_digits_from_the_caller_are_reported(
    engine: RtpengineDaemon, endpoints: list[RtpEndpoint], dtmf: DtmfListener
) -> None:
    caller, _, _ = endpoints
    call = MediaCall(engine.client, "call-5")
    digits = dtmf.subscribe("call-5")
    await call.caller_offer(caller.sdp(), "caller")
    caller.connect(await call.answer_caller_with_sink())

    for digit in "19#*":
        await caller.send_dtmf(digit)
    received = [await asyncio.wait_for(digits.get(), 5) for _ in range(4)]

    assert [event.digit for event in received] == list("19#*")
    assert {event.source_tag for event in received} == {"caller"}
    assert {event.via for event in received} == {"rtp"}
    await call.delete()


async def test_a_spoken_prompt_reaches_the_caller(
    engine: RtpengineDaemon, endpoints: list[RtpEndpoint], tmp_path: Path
) -> None:
    from omnicc.channels.voice.media.prompts import TextToSpeech

    caller, _, _ = endpoints
    prompt = await TextToSpeech(tmp_path / "tts").speak("Welcome to Acme. Press one for sales.")
    call = MediaCall(engine.client, "call-6")
    await call.caller_offer(caller.sdp(), "caller")
    caller.connect(await call.answer_caller_with_sink())
    seen = len(caller.packets)

    duration = await call.play(prompt)

    assert duration is not None and duration > 1000
    await caller.wait_for_packets(seen + duration // 20 - 5, timeout=duration / 1000 + 10)
    heard = caller.audio(since=seen).astype(np.float64)
    assert np.sqrt(np.mean(heard**2)) > 300  # speech, not silence
    await call.delete()


async def test_a_webrtc_offer_has_ice_dtls_and_rtcp_mux(
    engine: RtpengineDaemon, endpoints: list[RtpEndpoint]
) -> None:
    caller, _, _ = endpoints
    call = MediaCall(engine.client, "call-7")
    await call.caller_offer(caller.sdp(), "caller")
    caller.connect(await call.answer_caller_with_sink())

    offer = await call.offer_to("browser", webrtc=True)

    assert "m=audio " in offer and " UDP/TLS/RTP/SAVPF " in offer
    assert re.search(r"^a=fingerprint:sha-256 ([0-9A-F]{2}:){31}[0-9A-F]{2}\r?$", offer, re.M)
    assert re.search(r"^a=candidate:\S+ 1 UDP \d+ 127\.0\.0\.1 \d+ typ host", offer, re.M)
    assert re.search(r"^a=ice-ufrag:\S+", offer, re.M)
    assert re.search(r"^a=ice-pwd:\S+", offer, re.M)
    assert "a=rtcp-mux" in offer
    assert "a=setup:actpass" in offer
    assert "a=crypto:" not in offer
    assert WEBRTC_OFFER["ICE"] == "force"
    await call.delete()


async def test_a_recording_becomes_a_stereo_wav_with_each_side(
    engine: RtpengineDaemon, endpoints: list[RtpEndpoint], tmp_path: Path
) -> None:
    caller, agent, _ = endpoints
    call = await connected_call(engine, "call-8", caller, agent)
    handle = await call.start_recording()
    await exchange(caller, agent, 1000, 440)
    await call.stop_recording()
    await call.delete()
    assert engine.recording_dir is not None

    pcaps = find_recording(engine.recording_dir, "call-8")
    duration = recording_to_wav(pcaps, handle.caller_port, tmp_path / "call-8.wav")

    assert duration > 0.4
    with wave.open(str(tmp_path / "call-8.wav"), "rb") as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (2, 8000, 2)
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    caller_side, agent_side = frames[:, 0], frames[:, 1]
    assert tone_share(caller_side, 1000) > TONE_SHARE_HEARD
    assert tone_share(caller_side, 440) < TONE_SHARE_ABSENT
    assert tone_share(agent_side, 440) > TONE_SHARE_HEARD
    assert tone_share(agent_side, 1000) < TONE_SHARE_ABSENT


async def test_a_webrtc_leg_negotiates_dtls_srtp_and_carries_audio(
    engine: RtpengineDaemon, endpoints: list[RtpEndpoint]
) -> None:
    """A second rtpengine call plays the browser: it answers the WebRTC offer (ICE, DTLS
    active) and turns it back into plain RTP for a test endpoint."""
    caller, browser_audio, _ = endpoints
    ng = engine.client
    call = MediaCall(ng, "call-10")
    await call.caller_offer(caller.sdp(), "caller")
    caller.connect(await call.answer_caller_with_sink())
    offer = await call.offer_to("browser", webrtc=True)

    plain = {"ICE": "remove", "transport-protocol": "RTP/AVP", "rtcp-mux": ["demux"]}
    browser_audio.connect(await ng.offer("browser-side", "webrtc", offer, plain))
    webrtc_answer = await ng.answer(
        "browser-side",
        "webrtc",
        "audio",
        browser_audio.sdp(),
        {
            "ICE": "force",
            "DTLS": "active",
            "transport-protocol": "UDP/TLS/RTP/SAVPF",
            "rtcp-mux": ["require"],
        },
    )
    await call.answered_by("browser", webrtc_answer)

    at_browser, at_caller = await exchange(caller, browser_audio, 1000, 440)
    assert at_browser > TONE_SHARE_HEARD
    assert at_caller > TONE_SHARE_HEARD
    leg = (await ng.query("call-10"))["tags"]["browser"]["medias"][0]
    assert "DTLS-SRTP" in leg["flags"]
    assert "DTLS fingerprint verified" in leg["streams"][0]["flags"]
    assert leg["streams"][0]["crypto suite"]
    await call.delete()
    await ng.delete("browser-side")


async def test_an_agent_who_does_not_answer_leaves_the_caller_in_the_sink(
    engine: RtpengineDaemon, endpoints: list[RtpEndpoint], tmp_path: Path
) -> None:
    caller, agent, _ = endpoints
    call = MediaCall(engine.client, "call-11")
    await call.caller_offer(caller.sdp(), "caller")
    caller.connect(await call.answer_caller_with_sink())
    port = call.caller_port
    await call.play(tone_wav(tmp_path / "music.wav", 800, 1.0), loop=True)

    agent.connect(await call.offer_to("agent-7"))  # rings, then times out / rejects
    await call.back_to_sink()

    assert call.caller_port == port
    assert call.party_tag is not None and call.party_tag != "agent-7"
    assert call.sink is not None
    seen = len(caller.packets)
    at_sink, _ = await exchange(caller, call.sink, 1000, 300)
    assert at_sink > TONE_SHARE_HEARD
    assert tone_share(caller.audio(since=seen), 800) > 0.2  # the music went on throughout
    with pytest.raises(MediaError):
        await call.answered_by("agent-7", agent.sdp())  # too late: no longer offered

    agent.connect(await call.offer_to("agent-7"))  # the same agent rings again and answers
    await call.stop_play()
    await call.answered_by("agent-7", agent.sdp())
    at_agent, at_caller = await exchange(caller, agent, 1000, 440)
    assert at_agent > TONE_SHARE_HEARD
    assert at_caller > TONE_SHARE_HEARD
    await call.delete()


async def test_a_supervisor_listens_to_the_caller_without_being_heard(
    engine: RtpengineDaemon, endpoints: list[RtpEndpoint]
) -> None:
    caller, agent, supervisor = endpoints
    call = await connected_call(engine, "call-12", caller, agent)

    subscription, offer = await call.monitor_offer()
    assert "a=sendonly" in offer
    supervisor.connect(offer)
    await call.monitor_answer(subscription, supervisor.sdp())
    seen_caller, seen_agent = len(caller.packets), len(agent.packets)
    await asyncio.gather(
        caller.send_tone(1000, 0.6), agent.send_tone(440, 0.6), supervisor.send_tone(600, 0.6)
    )
    await supervisor.wait_for_packets(25)
    assert tone_share(supervisor.audio(), 1000) > TONE_SHARE_HEARD
    await agent.wait_for_packets(seen_agent + 25)
    assert tone_share(agent.audio(since=seen_agent), 600) < TONE_SHARE_ABSENT
    assert tone_share(caller.audio(since=seen_caller), 600) < TONE_SHARE_ABSENT

    await call.stop_monitor(subscription)
    await asyncio.sleep(0.1)
    heard = len(supervisor.packets)
    await caller.send_tone(1000, 0.4)
    await asyncio.sleep(0.2)
    assert len(supervisor.packets) == heard
    await call.delete()

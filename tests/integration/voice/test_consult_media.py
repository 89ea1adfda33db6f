"""A consult transfer's media against a real rtpengine, with RTP endpoints as the three phones:
the consulted party's leg is a second pair of tags in the caller's rtpengine call, talking
with a mixer port; the agent's keys (RFC 4733) reach it through the mixer (the target's
endpoint decodes them, rtpengine's DTMF log reports them on the mixer's side); completion
connects caller and target directly with neither port moving."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from omnicc.channels.voice.media.bridge import MediaCall, MediaError, g711_codecs
from omnicc.channels.voice.media.daemon import RtpengineDaemon, random_port_window
from omnicc.channels.voice.media.dtmf import DtmfListener
from omnicc.channels.voice.media.mixer import AGENT, CALLER, CONFERENCE, CONSULT, TARGET, Mixer
from omnicc.channels.voice.media.rtp import RtpEndpoint, media_address
from omnicc.channels.voice.media.tones import Samples, tone_share

pytestmark = pytest.mark.anyio

HEARD, HEARD_IN_A_MIX, NOT_HEARD = 0.5, 0.3, 0.05
TONES = {CALLER: 1000.0, AGENT: 440.0, TARGET: 660.0}


@pytest.fixture
async def dtmf() -> AsyncIterator[DtmfListener]:
    async with DtmfListener() as listener:
        yield listener


@pytest.fixture
async def engine(tmp_path: Path, dtmf: DtmfListener) -> AsyncIterator[RtpengineDaemon]:
    daemon = RtpengineDaemon(recording_dir=tmp_path / "recordings",
                             port_range=random_port_window(), dtmf_log_dest=dtmf.address)
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.stop()


@pytest.fixture
async def phones() -> AsyncIterator[dict[str, RtpEndpoint]]:
    opened = {name: await RtpEndpoint().open() for name in TONES}
    try:
        yield opened
    finally:
        for phone in opened.values():
            await phone.close()


def voiced(samples: Samples) -> Samples:
    whole = len(samples) - len(samples) % 160
    frames = samples[:whole].reshape(-1, 160)
    return frames[np.abs(frames.astype(np.int32)).max(axis=1) > 200].reshape(-1)


async def talk(phones: dict[str, RtpEndpoint], *speakers: str) -> dict[str, Samples]:
    marks = {name: len(phone.packets) for name, phone in phones.items()}
    await asyncio.gather(*(phones[name].send_tone(TONES[name], 0.6) for name in speakers))
    await asyncio.sleep(0.15)
    return {name: voiced(phone.audio(since=marks[name])) for name, phone in phones.items()}


async def test_consult_keys_conference_and_completion(
        engine: RtpengineDaemon, phones: dict[str, RtpEndpoint], dtmf: DtmfListener) -> None:
    caller, agent, target = phones[CALLER], phones[AGENT], phones[TARGET]
    call = MediaCall(engine.client, "consult-1")
    digits = dtmf.subscribe("consult-1")
    await call.caller_offer(caller.sdp(), "caller-tag")
    caller.connect(await call.answer_caller_with_sink())
    agent.connect(await call.offer_to("agent-1"))
    await call.answered_by("agent-1", agent.sdp())
    caller_port = call.caller_port
    with pytest.raises(MediaError):
        await call.connect_side_party("consult-x")  # never answered

    async with Mixer() as mixer:
        # The target rings with an offer from the mixer's port, in the caller's call.
        port = await mixer.add(TARGET)
        offer = await call.side_offer("mix-target", "consult-x", port.sdp())
        target_port = media_address(offer)
        target.connect(offer)
        port.connect(await call.side_answer("mix-target", "consult-x", target.sdp()))
        to_caller, to_agent = await call.divert_offer("mix-caller", "mix-agent")
        for name, sdp in ((CALLER, to_caller), (AGENT, to_agent)):
            payload_type, event_type = g711_codecs(sdp)
            assert event_type is not None  # rtpengine offers the mixer telephone-event
            (await mixer.add(name, payload_type=payload_type,
                             event_payload_type=event_type)).connect(sdp)
        mixer.set_hears(CONSULT)
        mixer.start()
        await call.divert_answer(mixer.ports[CALLER].sdp(), mixer.ports[AGENT].sdp())

        heard = await talk(phones, AGENT, TARGET, CALLER)
        assert tone_share(heard[AGENT], TONES[TARGET]) > HEARD
        assert tone_share(heard[TARGET], TONES[AGENT]) > HEARD
        assert tone_share(heard[TARGET], TONES[CALLER]) < NOT_HEARD
        assert len(heard[CALLER]) == 0

        # The agent works the target's IVR: keys through rtpengine, the mixer, rtpengine.
        for digit in "4#":
            await agent.send_dtmf(digit)
        await asyncio.sleep(0.3)
        assert target.dtmf_digits == ["4", "#"]
        assert caller.dtmf_digits == []
        reported = [await asyncio.wait_for(digits.get(), 5) for _ in range(4)]
        by_side = {(event.source_tag, event.digit) for event in reported}
        assert by_side == {("agent-1", "4"), ("agent-1", "#"),
                           ("mix-target", "4"), ("mix-target", "#")}

        mixer.set_hears(CONFERENCE)
        heard = await talk(phones, AGENT, TARGET, CALLER)
        assert tone_share(heard[CALLER], TONES[AGENT]) > HEARD_IN_A_MIX
        assert tone_share(heard[CALLER], TONES[TARGET]) > HEARD_IN_A_MIX

        # Complete: caller and target directly; no port moved, the mixer is out.
        await call.connect_side_party("consult-x")
    assert call.caller_port == caller_port and call.diversion is None
    assert call.party_tag == "consult-x" and target.remote == target_port
    heard = await talk(phones, CALLER, TARGET, AGENT)
    assert tone_share(heard[TARGET], TONES[CALLER]) > HEARD
    assert tone_share(heard[CALLER], TONES[TARGET]) > HEARD
    assert tone_share(heard[CALLER], TONES[AGENT]) < NOT_HEARD
    assert len(heard[AGENT]) == 0
    await call.delete()


async def test_a_browser_target_is_consulted_and_takes_the_call_on_its_dtls_session(
        engine: RtpengineDaemon, phones: dict[str, RtpEndpoint]) -> None:
    """The consulted agent answers in the browser (a second rtpengine call plays it: ICE,
    DTLS active): completing re-offers the caller to its tag, and the browser keeps its ICE
    and DTLS-SRTP session - it needs nothing."""
    caller, agent, target = phones[CALLER], phones[AGENT], phones[TARGET]
    ng = engine.client
    call = MediaCall(ng, "consult-2")
    await call.caller_offer(caller.sdp(), "caller-tag")
    caller.connect(await call.answer_caller_with_sink())
    agent.connect(await call.offer_to("agent-1"))
    await call.answered_by("agent-1", agent.sdp())
    async with Mixer() as mixer:
        port = await mixer.add(TARGET)
        offer = await call.side_offer("mix-target", "browser", port.sdp(), webrtc=True)
        assert "a=fingerprint" in offer and "a=ice-ufrag" in offer
        plain = {"ICE": "remove", "transport-protocol": "RTP/AVP", "rtcp-mux": ["demux"]}
        target.connect(await ng.offer("browser-side", "webrtc", offer, plain))
        webrtc_answer = await ng.answer(
            "browser-side", "webrtc", "audio", target.sdp(),
            {"ICE": "force", "DTLS": "active", "transport-protocol": "UDP/TLS/RTP/SAVPF",
             "rtcp-mux": ["require"]})
        port.connect(await call.side_answer("mix-target", "browser", webrtc_answer,
                                            webrtc=True))
        to_caller, to_agent = await call.divert_offer("mix-caller", "mix-agent")
        for name, sdp in ((CALLER, to_caller), (AGENT, to_agent)):
            (await mixer.add(name)).connect(sdp)
        mixer.set_hears(CONSULT)
        mixer.start()
        await call.divert_answer(mixer.ports[CALLER].sdp(), mixer.ports[AGENT].sdp())
        heard = await talk(phones, AGENT, TARGET)
        assert tone_share(heard[TARGET], TONES[AGENT]) > HEARD
        assert tone_share(heard[AGENT], TONES[TARGET]) > HEARD
        await call.connect_side_party("browser")
    heard = await talk(phones, CALLER, TARGET)
    assert tone_share(heard[TARGET], TONES[CALLER]) > HEARD
    assert tone_share(heard[CALLER], TONES[TARGET]) > HEARD
    assert len(heard[AGENT]) == 0
    leg = (await ng.query("consult-2"))["tags"]["browser"]["medias"][0]
    assert "DTLS fingerprint verified" in leg["streams"][0]["flags"]
    await call.delete()
    await ng.delete("browser-side")

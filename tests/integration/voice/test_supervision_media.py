"""Supervision's media against a real rtpengine, with RTP endpoints as the three phones: the
call moves into OmniCC's mixer and back without the caller's or the agent's port changing,
hold works while mixed, and a `Supervision` rings a device (real RTP through its own
rtpengine call), switches modes and hands the call back when the supervisor leaves."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from omnicc.channels.voice.devices import AgentLeg, CallInfo, Ring
from omnicc.channels.voice.media.bridge import MediaCall, MediaError
from omnicc.channels.voice.media.daemon import RtpengineDaemon
from omnicc.channels.voice.media.mixer import AGENT, CALLER, SUPERVISOR, Mixer, Mode
from omnicc.channels.voice.media.recordings import find_recording, recording_to_wav
from omnicc.channels.voice.media.rtp import RtpEndpoint, media_address
from omnicc.channels.voice.media.tones import Samples, tone, tone_share
from omnicc.channels.voice.supervision import Supervision, SupervisionState

pytestmark = pytest.mark.anyio

HEARD, HEARD_IN_A_MIX, NOT_HEARD = 0.5, 0.3, 0.05
TONES = {CALLER: 1000.0, AGENT: 440.0, SUPERVISOR: 660.0}


@pytest.fixture
async def phones() -> AsyncIterator[dict[str, RtpEndpoint]]:
    opened = {name: await RtpEndpoint().open() for name in TONES}
    try:
        yield opened
    finally:
        for phone in opened.values():
            await phone.close()


async def connected(engine: RtpengineDaemon, caller: RtpEndpoint, agent: RtpEndpoint,
                    call_id: str) -> MediaCall:
    call = MediaCall(engine.client, call_id)
    await call.caller_offer(caller.sdp(), "caller-tag")
    caller.connect(await call.answer_caller_with_sink())
    agent.connect(await call.offer_to("agent-1"))
    await call.answered_by("agent-1", agent.sdp())
    return call


def voiced(samples: Samples) -> Samples:
    whole = len(samples) - len(samples) % 160
    frames = samples[:whole].reshape(-1, 160)
    return frames[np.abs(frames.astype(np.int32)).max(axis=1) > 200].reshape(-1)


async def talk(phones: dict[str, RtpEndpoint], *speakers: str,
               seconds: float = 0.6) -> dict[str, Samples]:
    """The speakers send their tones at once; what each phone heard meanwhile (voiced)."""
    marks = {name: len(phone.packets) for name, phone in phones.items()}
    await asyncio.gather(*(phones[name].send_tone(TONES[name], seconds) for name in speakers))
    await asyncio.sleep(0.15)  # the last frames through rtpengine and the mixer's buffer
    return {name: voiced(phone.audio(since=marks[name])) for name, phone in phones.items()}


async def test_a_call_moves_into_the_mixer_and_back_without_any_port_changing(
        engine: RtpengineDaemon, phones: dict[str, RtpEndpoint]) -> None:
    caller, agent, supervisor = phones[CALLER], phones[AGENT], phones[SUPERVISOR]
    call = await connected(engine, caller, agent, "mix-1")
    caller_port, agent_port = call.caller_port, agent.remote
    async with Mixer() as mixer:
        for round_ in (1, 2):  # in, out, and in again (fresh tags and ports each time)
            to_caller, to_agent = await call.divert_offer(f"mc-{round_}", f"ma-{round_}")
            assert media_address(to_agent) != agent_port  # a new rtpengine port, for the mixer
            mixed_caller = await mixer.add(CALLER)
            mixed_agent = await mixer.add(AGENT)
            mixed_supervisor = await mixer.add(SUPERVISOR)
            mixed_caller.connect(to_caller)
            mixed_agent.connect(to_agent)
            mixed_supervisor.connect(supervisor.sdp())
            supervisor.connect(mixed_supervisor.sdp())
            mixer.set_mode(Mode.BARGE)
            mixer.start()
            await call.divert_answer(mixed_caller.sdp(), mixed_agent.sdp())
            assert call.caller_port == caller_port
            assert call.diversion is not None and call.party_tag == "agent-1"

            heard = await talk(phones, CALLER)
            assert tone_share(heard[AGENT], TONES[CALLER]) > HEARD
            assert tone_share(heard[SUPERVISOR], TONES[CALLER]) > HEARD
            heard = await talk(phones, SUPERVISOR)
            assert tone_share(heard[AGENT], TONES[SUPERVISOR]) > HEARD
            assert tone_share(heard[CALLER], TONES[SUPERVISOR]) > HEARD
            heard = await talk(phones, AGENT)
            assert tone_share(heard[CALLER], TONES[AGENT]) > HEARD
            # Everything went through the mixer: its ports received the two sides.
            assert mixed_caller.frames_received > 0 and mixed_agent.frames_received > 0

            await call.undivert()
            await mixer.close()
            assert call.caller_port == caller_port and call.diversion is None
            # The agent's phone still talks with its same rtpengine port, directly.
            assert media_address(await call.offer_to("agent-1")) == agent_port
            await call.answered_by("agent-1", agent.sdp())
            heard = await talk(phones, CALLER, AGENT)
            assert tone_share(heard[AGENT], TONES[CALLER]) > HEARD
            assert tone_share(heard[CALLER], TONES[AGENT]) > HEARD
            assert len(heard[SUPERVISOR]) == 0
    with pytest.raises(MediaError):
        await call.undivert()
    await call.delete()


async def test_hold_while_mixed_gives_the_caller_music_and_keeps_agent_and_supervisor(
        engine: RtpengineDaemon, phones: dict[str, RtpEndpoint], tmp_path: Path) -> None:
    music = tmp_path / "music.wav"
    with wave.open(str(music), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(tone(300, 5.0).tobytes())
    caller, agent = phones[CALLER], phones[AGENT]
    call = await connected(engine, caller, agent, "mix-2")
    async with Mixer() as mixer:
        to_caller, to_agent = await call.divert_offer("mc", "ma")
        for name, sdp in ((CALLER, to_caller), (AGENT, to_agent)):
            (await mixer.add(name)).connect(sdp)
        supervisor_port = await mixer.add(SUPERVISOR)
        supervisor_port.connect(phones[SUPERVISOR].sdp())
        phones[SUPERVISOR].connect(supervisor_port.sdp())
        mixer.set_mode(Mode.BARGE)
        mixer.start()
        await call.divert_answer(mixer.ports[CALLER].sdp(), mixer.ports[AGENT].sdp())

        await call.hold(music)
        heard = await talk(phones, AGENT, SUPERVISOR, seconds=1.0)
        assert tone_share(heard[CALLER], 300) > HEARD
        assert tone_share(heard[CALLER], TONES[AGENT]) < NOT_HEARD
        assert tone_share(heard[CALLER], TONES[SUPERVISOR]) < NOT_HEARD
        assert tone_share(heard[AGENT], TONES[SUPERVISOR]) > HEARD  # they can consult
        await call.resume()
        heard = await talk(phones, AGENT, seconds=1.0)
        assert tone_share(heard[CALLER], TONES[AGENT]) > HEARD
    await call.delete()


# --- a Supervision with a device carrying real RTP through rtpengine ------------------------


@dataclass
class EndpointLeg:
    terminated: asyncio.Event = field(default_factory=asyncio.Event)
    lost: bool = False

    async def hang_up(self) -> None:
        self.terminated.set()

    async def check(self) -> None:
        """Nothing to probe: the test's phone is in-process."""


@dataclass
class EndpointRing:
    phone: RtpEndpoint
    offer: str
    leg: AgentLeg | None = None

    async def answered(self) -> str | None:
        self.phone.connect(self.offer)
        self.leg = EndpointLeg()
        return self.phone.sdp()

    async def cancel(self) -> None:
        if self.leg is not None:
            await self.leg.hang_up()


@dataclass
class EndpointDevice:
    """A supervisor's phone: an RTP endpoint answering at once."""

    phone: RtpEndpoint
    rings: list[EndpointRing] = field(default_factory=list)
    webrtc: bool = False

    def ring(self, offer_sdp: str, info: CallInfo) -> Ring:
        ring = EndpointRing(self.phone, offer_sdp)
        self.rings.append(ring)
        return ring


@dataclass
class LiveCall:
    agent_first: ClassVar[bool] = False  # the caller's leg is the media's first one
    call_id: str
    media: MediaCall
    agent_leg: AgentLeg | None
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    contact: None = None


async def test_a_supervision_switches_modes_and_hands_the_call_back(
        engine: RtpengineDaemon, phones: dict[str, RtpEndpoint]) -> None:
    caller, agent, supervisor = phones[CALLER], phones[AGENT], phones[SUPERVISOR]
    media = await connected(engine, caller, agent, "mix-3")
    call = LiveCall("mix-3", media, EndpointLeg())
    call.connected.set()
    device = EndpointDevice(supervisor)
    supervision = Supervision(call, device, engine.client, supervisor_id="sam",
                              mode=Mode.LISTEN)
    supervision.start()
    for _ in range(200):
        if supervision.state is not SupervisionState.RINGING:
            break
        await asyncio.sleep(0.02)
    assert supervision.state is SupervisionState.ACTIVE
    # The supervisor's phone talks with rtpengine (its own call), not with the mixer.
    assert supervisor.remote is not None and "mix-3~supervisor-" in " ".join(
        await engine.client.list_calls())

    expectations = {
        Mode.LISTEN: {SUPERVISOR: (False, False)},
        Mode.WHISPER: {SUPERVISOR: (True, False)},
        Mode.BARGE: {SUPERVISOR: (True, True)},
    }
    for mode, expected in expectations.items():
        supervision.switch(mode)
        agent_hears, caller_hears = expected[SUPERVISOR]
        heard = await talk(phones, SUPERVISOR)
        assert (tone_share(heard[AGENT], TONES[SUPERVISOR]) > HEARD) is agent_hears, mode
        assert (tone_share(heard[CALLER], TONES[SUPERVISOR]) > HEARD) is caller_hears, mode
        if not caller_hears:
            assert tone_share(heard[CALLER], TONES[SUPERVISOR]) < NOT_HEARD
        heard = await talk(phones, CALLER, AGENT)
        assert tone_share(heard[SUPERVISOR], TONES[CALLER]) > HEARD_IN_A_MIX, mode
        assert tone_share(heard[SUPERVISOR], TONES[AGENT]) > HEARD_IN_A_MIX, mode
        assert tone_share(heard[AGENT], TONES[CALLER]) > HEARD, mode
        assert tone_share(heard[CALLER], TONES[AGENT]) > HEARD, mode

    await supervision.stop()
    assert supervision.state is SupervisionState.ENDED and supervision.end_reason == "left"
    ring = device.rings[0]
    assert ring.leg is not None and ring.leg.terminated.is_set()
    assert media.diversion is None and media.party_tag == "agent-1"
    assert not any("~supervisor-" in c for c in await engine.client.list_calls())
    heard = await talk(phones, CALLER, AGENT, SUPERVISOR)
    assert tone_share(heard[AGENT], TONES[CALLER]) > HEARD
    assert tone_share(heard[CALLER], TONES[AGENT]) > HEARD
    assert len(heard[SUPERVISOR]) == 0
    await media.delete()


async def test_a_supervision_ends_with_the_agents_leg_and_leaves_the_media_alone(
        engine: RtpengineDaemon, phones: dict[str, RtpEndpoint]) -> None:
    media = await connected(engine, phones[CALLER], phones[AGENT], "mix-4")
    leg = EndpointLeg()
    call = LiveCall("mix-4", media, leg)
    call.connected.set()
    supervision = Supervision(call, EndpointDevice(phones[SUPERVISOR]), engine.client,
                              supervisor_id="sam", mode=Mode.BARGE)
    supervision.start()
    for _ in range(200):
        if supervision.state is SupervisionState.ACTIVE:
            break
        await asyncio.sleep(0.02)
    assert media.diversion is not None
    leg.terminated.set()  # the agent hung up: the call controller takes over the media
    await asyncio.wait_for(supervision.done.wait(), 10)
    assert supervision.end_reason == "agent left"
    assert media.diversion is not None  # untouched: not supervision's to undo
    await media.back_to_sink()
    assert media.diversion is None
    await media.delete()


async def test_a_browser_agent_moves_into_the_mixer_and_back_on_its_dtls_session(
        engine: RtpengineDaemon, phones: dict[str, RtpEndpoint]) -> None:
    """The agent is a WebRTC leg (a second rtpengine call plays the browser: ICE, DTLS
    active): re-offering its side keeps its ICE and DTLS-SRTP, so the browser needs nothing."""
    caller, agent, supervisor = phones[CALLER], phones[AGENT], phones[SUPERVISOR]
    ng = engine.client
    call = MediaCall(ng, "mix-5")
    await call.caller_offer(caller.sdp(), "caller-tag")
    caller.connect(await call.answer_caller_with_sink())
    offer = await call.offer_to("browser", webrtc=True)
    plain = {"ICE": "remove", "transport-protocol": "RTP/AVP", "rtcp-mux": ["demux"]}
    agent.connect(await ng.offer("browser-side", "webrtc", offer, plain))
    webrtc_answer = await ng.answer(
        "browser-side", "webrtc", "audio", agent.sdp(),
        {"ICE": "force", "DTLS": "active", "transport-protocol": "UDP/TLS/RTP/SAVPF",
         "rtcp-mux": ["require"]})
    await call.answered_by("browser", webrtc_answer)
    heard = await talk(phones, CALLER, AGENT)
    assert tone_share(heard[AGENT], TONES[CALLER]) > HEARD

    async with Mixer() as mixer:
        to_caller, to_agent = await call.divert_offer("mc", "ma")
        assert "RTP/AVP" in to_agent and "a=fingerprint" not in to_agent
        for name, sdp in ((CALLER, to_caller), (AGENT, to_agent)):
            (await mixer.add(name)).connect(sdp)
        supervisor_port = await mixer.add(SUPERVISOR)
        supervisor_port.connect(supervisor.sdp())
        supervisor.connect(supervisor_port.sdp())
        mixer.set_mode(Mode.WHISPER)
        mixer.start()
        await call.divert_answer(mixer.ports[CALLER].sdp(), mixer.ports[AGENT].sdp())
        heard = await talk(phones, SUPERVISOR)
        assert tone_share(heard[AGENT], TONES[SUPERVISOR]) > HEARD
        assert tone_share(heard[CALLER], TONES[SUPERVISOR]) < NOT_HEARD
        heard = await talk(phones, AGENT)
        assert tone_share(heard[SUPERVISOR], TONES[AGENT]) > HEARD
        assert tone_share(heard[CALLER], TONES[AGENT]) > HEARD
        await call.undivert()
    heard = await talk(phones, CALLER, AGENT)
    assert tone_share(heard[AGENT], TONES[CALLER]) > HEARD
    assert tone_share(heard[CALLER], TONES[AGENT]) > HEARD
    leg = (await ng.query("mix-5"))["tags"]["browser"]["medias"][0]
    assert "DTLS fingerprint verified" in leg["streams"][0]["flags"]
    await call.delete()
    await ng.delete("browser-side")


@dataclass
class BrowserRing:
    """A browser answering a WebRTC offer, played by a second rtpengine call."""

    engine: RtpengineDaemon
    phone: RtpEndpoint
    offer: str
    leg: AgentLeg | None = None

    async def answered(self) -> str | None:
        ng = self.engine.client
        self.phone.connect(await ng.offer("supervisor-browser", "webrtc", self.offer, {
            "ICE": "remove", "transport-protocol": "RTP/AVP", "rtcp-mux": ["demux"]}))
        answer = await ng.answer(
            "supervisor-browser", "webrtc", "audio", self.phone.sdp(),
            {"ICE": "force", "DTLS": "active", "transport-protocol": "UDP/TLS/RTP/SAVPF",
             "rtcp-mux": ["require"]})
        self.leg = EndpointLeg()
        return answer

    async def cancel(self) -> None:
        if self.leg is not None:
            await self.leg.hang_up()


@dataclass
class BrowserDevice:
    engine: RtpengineDaemon
    phone: RtpEndpoint
    offers: list[str] = field(default_factory=list)
    webrtc: bool = True

    def ring(self, offer_sdp: str, info: CallInfo) -> Ring:
        self.offers.append(offer_sdp)
        return BrowserRing(self.engine, self.phone, offer_sdp)


async def test_a_supervisor_on_a_browser_softphone_gets_a_webrtc_offer_and_hears_the_call(
        engine: RtpengineDaemon, phones: dict[str, RtpEndpoint]) -> None:
    media = await connected(engine, phones[CALLER], phones[AGENT], "mix-6")
    call = LiveCall("mix-6", media, EndpointLeg())
    call.connected.set()
    device = BrowserDevice(engine, phones[SUPERVISOR])
    supervision = Supervision(call, device, engine.client, supervisor_id="sam",
                              mode=Mode.BARGE)
    supervision.start()
    for _ in range(200):
        if supervision.state is not SupervisionState.RINGING:
            break
        await asyncio.sleep(0.02)
    assert supervision.state is SupervisionState.ACTIVE
    assert "UDP/TLS/RTP/SAVPF" in device.offers[0] and "a=fingerprint" in device.offers[0]
    heard = await talk(phones, CALLER)
    assert tone_share(heard[SUPERVISOR], TONES[CALLER]) > HEARD
    heard = await talk(phones, SUPERVISOR)
    assert tone_share(heard[CALLER], TONES[SUPERVISOR]) > HEARD
    assert tone_share(heard[AGENT], TONES[SUPERVISOR]) > HEARD
    await supervision.stop()
    await media.delete()
    await engine.client.delete("supervisor-browser")


async def test_a_recording_keeps_caller_and_agent_apart_while_the_call_is_mixed(
        engine: RtpengineDaemon, phones: dict[str, RtpEndpoint], tmp_path: Path) -> None:
    caller, agent, supervisor = phones[CALLER], phones[AGENT], phones[SUPERVISOR]
    call = await connected(engine, caller, agent, "mix-7")
    handle = await call.start_recording()
    await talk(phones, CALLER, AGENT)
    async with Mixer() as mixer:
        to_caller, to_agent = await call.divert_offer("mc", "ma")
        for name, sdp in ((CALLER, to_caller), (AGENT, to_agent)):
            (await mixer.add(name)).connect(sdp)
        supervisor_port = await mixer.add(SUPERVISOR)
        supervisor_port.connect(supervisor.sdp())
        supervisor.connect(supervisor_port.sdp())
        mixer.set_mode(Mode.BARGE)
        mixer.start()
        await call.divert_answer(mixer.ports[CALLER].sdp(), mixer.ports[AGENT].sdp())
        heard = await talk(phones, CALLER, AGENT, SUPERVISOR, seconds=1.0)
        assert tone_share(heard[CALLER], TONES[SUPERVISOR]) > HEARD_IN_A_MIX
        await call.undivert()
    await talk(phones, CALLER, AGENT)
    await call.delete()
    assert handle.mixer_ports and handle.mixer_ports == call.mixer_ports
    assert engine.recording_dir is not None
    pcaps = find_recording(engine.recording_dir, "mix-7")

    def channels(ignore_ports: set[int]) -> tuple[Samples, Samples]:
        target = tmp_path / f"mix-7-{len(ignore_ports)}.wav"
        recording_to_wav(pcaps, handle.caller_port, target, ignore_ports=ignore_ports)
        with wave.open(str(target)) as wav:
            frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        stereo = frames.reshape(-1, 2)
        return stereo[:, 0], stereo[:, 1]

    left, right = channels(handle.mixer_ports)
    assert tone_share(voiced(left), TONES[CALLER]) > HEARD
    assert tone_share(voiced(right), TONES[AGENT]) > HEARD
    assert tone_share(voiced(right), TONES[CALLER]) < NOT_HEARD
    assert tone_share(voiced(right), TONES[SUPERVISOR]) < NOT_HEARD
    # Without leaving the mixer's ports out, the mix would come back on the agent's side: in
    # the barged second (judged on its loudest half second - under load the mixer's second
    # is a smaller share of the whole recording).
    _, unfiltered = channels(set())
    assert loudest_share(voiced(unfiltered), TONES[SUPERVISOR]) > HEARD_IN_A_MIX / 2
    assert loudest_share(voiced(right), TONES[SUPERVISOR]) < NOT_HEARD * 2


def loudest_share(samples: Samples, hz: float, window: int = 4000) -> float:
    """The largest share of `hz` in any half second of `samples`."""
    starts = range(0, max(1, len(samples) - window + 1), window // 5)
    return max(tone_share(samples[start:start + window], hz) for start in starts)


@dataclass
class DecliningRing:
    leg: AgentLeg | None = None
    cancelled: bool = False

    async def answered(self) -> str | None:
        return None

    async def cancel(self) -> None:
        self.cancelled = True


@dataclass
class DecliningDevice:
    webrtc: bool = False

    def ring(self, offer_sdp: str, info: CallInfo) -> Ring:
        return DecliningRing()


async def test_a_declined_ring_leaves_the_call_direct_and_a_hang_up_brings_it_back(
        engine: RtpengineDaemon, phones: dict[str, RtpEndpoint]) -> None:
    media = await connected(engine, phones[CALLER], phones[AGENT], "mix-8")
    call = LiveCall("mix-8", media, EndpointLeg())
    call.connected.set()
    declined = Supervision(call, DecliningDevice(), engine.client, supervisor_id="sam",
                           mode=Mode.LISTEN)
    declined.start()
    await asyncio.wait_for(declined.done.wait(), 10)
    assert declined.end_reason == "supervisor did not answer"
    assert media.diversion is None and not media.mixer_ports
    assert not any("~supervisor-" in c for c in await engine.client.list_calls())

    device = EndpointDevice(phones[SUPERVISOR])
    supervision = Supervision(call, device, engine.client, supervisor_id="sam",
                              mode=Mode.BARGE)
    supervision.start()
    for _ in range(200):
        if supervision.state is SupervisionState.ACTIVE:
            break
        await asyncio.sleep(0.02)
    assert media.diversion is not None
    leg = device.rings[0].leg
    assert leg is not None
    leg.terminated.set()  # the supervisor hangs up their phone
    await asyncio.wait_for(supervision.done.wait(), 10)
    assert supervision.end_reason == "supervisor hung up"
    assert media.diversion is None
    heard = await talk(phones, CALLER, AGENT, SUPERVISOR)
    assert tone_share(heard[AGENT], TONES[CALLER]) > HEARD
    assert tone_share(heard[CALLER], TONES[AGENT]) > HEARD
    assert tone_share(heard[CALLER], TONES[SUPERVISOR]) < NOT_HEARD
    await media.delete()

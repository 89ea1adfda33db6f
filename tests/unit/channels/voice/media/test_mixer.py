"""The supervision mixer over loopback RTP: in each mode, who hears whom (one speaker at a
time, then all at once), G.711 laws mixed, the playout buffer's jitter handling."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np
import pytest

from omnicc.channels.voice.media.mixer import (
    AGENT,
    CALLER,
    HEARS,
    MAX_BUFFERED_FRAMES,
    PREFILL_FRAMES,
    SUPERVISOR,
    Mixer,
    MixerPort,
    Mode,
)
from omnicc.channels.voice.media.rtp import SAMPLES_PER_PACKET, PayloadType, RtpEndpoint, RtpPacket
from omnicc.channels.voice.media.tones import Samples, tone, tone_share, ulaw_encode

HEARD, NOT_HEARD = 0.5, 0.05
TONES = {CALLER: 1000.0, AGENT: 440.0, SUPERVISOR: 660.0}
TALK_S = 0.4
# The mixer sends a frame to everyone every 20 ms: this many frames cover a talk, the playout
# buffer's prefill and some scheduling slack.
FRAMES_AFTER_TALK = int(TALK_S / 0.02) + PREFILL_FRAMES + 8

Phones = dict[str, RtpEndpoint]


def voiced(samples: Samples) -> Samples:
    """The 20 ms frames with sound in them (the mix is digital silence between talks)."""
    whole = len(samples) - len(samples) % SAMPLES_PER_PACKET
    frames = samples[:whole].reshape(-1, SAMPLES_PER_PACKET)
    loud = frames[np.abs(frames.astype(np.int32)).max(axis=1) > 200]
    return loud.reshape(-1)


def on_mixer(laws: dict[str, int] | None = None) -> Callable[
        [Callable[[Mixer, Phones], Awaitable[None]]], None]:
    """Run a scenario with the three parties' phones connected to a running mixer."""
    def run(scenario: Callable[[Mixer, Phones], Awaitable[None]]) -> None:
        async def main() -> None:
            phones: Phones = {}
            async with Mixer() as mixer:
                try:
                    for name in TONES:
                        law = (laws or {}).get(name, PayloadType.PCMU)
                        phone = await RtpEndpoint(payload_type=law).open()
                        port = await mixer.add(name, payload_type=law)
                        phone.connect(port.sdp())
                        port.connect(phone.sdp())
                        phones[name] = phone
                    mixer.start()
                    await scenario(mixer, phones)
                finally:
                    for phone in phones.values():
                        await phone.close()

        asyncio.run(main())
    return run


async def who_hears(phones: Phones, speaker: str) -> dict[str, float]:
    """The speaker talks alone; the share of its tone in what each party received."""
    marks = {name: len(phone.packets) for name, phone in phones.items()}
    await phones[speaker].send_tone(TONES[speaker], TALK_S)
    for name, phone in phones.items():
        await phone.wait_for_packets(marks[name] + FRAMES_AFTER_TALK)
    return {name: tone_share(voiced(phone.audio(since=marks[name])), TONES[speaker])
            for name, phone in phones.items()}


@pytest.mark.parametrize("mode", list(Mode))
def test_each_mode_routes_each_voice_to_the_parties_that_hear_it(mode: Mode) -> None:
    async def scenario(mixer: Mixer, phones: Phones) -> None:
        mixer.set_mode(mode)
        for speaker in TONES:
            shares = await who_hears(phones, speaker)
            for listener, share in shares.items():
                if speaker in HEARS[mode][listener] and listener != speaker:
                    assert share > HEARD, (mode, speaker, listener, share)
                else:
                    assert share < NOT_HEARD, (mode, speaker, listener, share)

    on_mixer()(scenario)


def test_the_matrices_say_what_supervision_means() -> None:
    assert SUPERVISOR not in HEARS[Mode.LISTEN][CALLER] | HEARS[Mode.LISTEN][AGENT]
    assert SUPERVISOR in HEARS[Mode.WHISPER][AGENT]
    assert SUPERVISOR not in HEARS[Mode.WHISPER][CALLER]
    assert all(HEARS[Mode.BARGE][name] == set(TONES) - {name} for name in TONES)
    assert all(HEARS[mode][SUPERVISOR] == {CALLER, AGENT} for mode in Mode)


def test_in_a_barge_everyone_hears_both_others_at_once_and_not_themselves() -> None:
    async def scenario(mixer: Mixer, phones: Phones) -> None:
        mixer.set_mode(Mode.BARGE)
        marks = {name: len(phone.packets) for name, phone in phones.items()}
        await asyncio.gather(*(phone.send_tone(TONES[name], TALK_S)
                               for name, phone in phones.items()))
        for name, phone in phones.items():
            await phone.wait_for_packets(marks[name] + FRAMES_AFTER_TALK)
        for name, phone in phones.items():
            heard = voiced(phone.audio(since=marks[name]))
            others = [TONES[other] for other in TONES if other != name]
            # Two tones of equal strength: about half of the energy each.
            assert all(tone_share(heard, hz) > 0.35 for hz in others), name
            assert tone_share(heard, TONES[name]) < NOT_HEARD, name

    on_mixer()(scenario)


def test_a_law_and_mu_law_parties_hear_each_other() -> None:
    async def scenario(mixer: Mixer, phones: Phones) -> None:
        mixer.set_mode(Mode.WHISPER)
        assert (await who_hears(phones, SUPERVISOR))[AGENT] > HEARD
        assert (await who_hears(phones, CALLER))[AGENT] > HEARD
        assert {p.payload_type for p in phones[CALLER].packets} == {PayloadType.PCMA}

    on_mixer({CALLER: PayloadType.PCMA, SUPERVISOR: PayloadType.PCMA})(scenario)


def test_switching_mode_takes_effect_on_the_running_mix() -> None:
    async def scenario(mixer: Mixer, phones: Phones) -> None:
        mixer.set_mode(Mode.LISTEN)
        assert (await who_hears(phones, SUPERVISOR))[AGENT] < NOT_HEARD
        mixer.set_mode(Mode.WHISPER)
        shares = await who_hears(phones, SUPERVISOR)
        assert shares[AGENT] > HEARD
        assert shares[CALLER] < NOT_HEARD
        mixer.set_mode(Mode.BARGE)
        assert (await who_hears(phones, SUPERVISOR))[CALLER] > HEARD
        await mixer.remove(SUPERVISOR)
        assert set(mixer.ports) == {CALLER, AGENT}
        assert (await who_hears({k: v for k, v in phones.items() if k != SUPERVISOR},
                                CALLER))[AGENT] > HEARD

    on_mixer()(scenario)


def test_silence_keeps_flowing_when_nobody_talks() -> None:
    async def scenario(mixer: Mixer, phones: Phones) -> None:
        mixer.set_mode(Mode.BARGE)
        await phones[AGENT].wait_for_packets(20)
        assert len(voiced(phones[AGENT].audio())) == 0
        assert mixer.ticks >= 20

    on_mixer()(scenario)


def packet(samples: Samples, sequence: int) -> RtpPacket:
    return RtpPacket(PayloadType.PCMU, False, sequence, sequence * 160, 1, ulaw_encode(samples))


def test_the_playout_buffer_prefills_plays_silence_when_dry_and_drops_a_backlog() -> None:
    port = MixerPort(CALLER)
    speech = tone(1000, 1.0)
    frames = [speech[i : i + 160] for i in range(0, len(speech), 160)]
    port._received(packet(frames[0], 0), ("127.0.0.1", 1))
    assert port.take() is None  # still prefilling
    for sequence in range(1, PREFILL_FRAMES):
        port._received(packet(frames[sequence], sequence), ("127.0.0.1", 1))
    assert port.take() is not None
    for _ in range(PREFILL_FRAMES - 1):
        assert port.take() is not None
    assert port.take() is None  # a missing frame is silence
    assert port.underruns == 1
    for sequence in range(3 * MAX_BUFFERED_FRAMES):  # a burst: only the newest audio is kept
        port._received(packet(frames[sequence], sequence), ("127.0.0.1", 1))
    played = [port.take() for _ in range(MAX_BUFFERED_FRAMES + 1)]
    assert all(frame is not None for frame in played[:-1])
    assert played[-1] is None
    # 40 ms packets are cut into two 20 ms frames; a telephone-event is not audio.
    port._received(packet(speech[:320], 99), ("127.0.0.1", 1))
    port._received(RtpPacket(101, False, 100, 0, 1, b"\x01\x80\x00\xa0"), ("127.0.0.1", 1))
    assert port.take() is not None
    assert port.take() is not None
    assert port.take() is None

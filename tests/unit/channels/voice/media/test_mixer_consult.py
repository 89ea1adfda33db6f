"""The mixer in a consult transfer over loopback RTP: the consult and conference matrices, and
RFC 4733 keys forwarded to whoever hears the one pressing them (re-stamped into each
listener's stream, with that listener's telephone-event payload type)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from omnicc.channels.voice.media.mixer import (
    AGENT,
    CALLER,
    CONFERENCE,
    CONSULT,
    TARGET,
    Mixer,
)
from omnicc.channels.voice.media.rtp import SAMPLES_PER_PACKET, RtpEndpoint
from omnicc.channels.voice.media.tones import Samples, tone_share

pytestmark = pytest.mark.anyio

HEARD, HEARD_IN_A_MIX, NOT_HEARD = 0.5, 0.3, 0.05
TONES = {CALLER: 1000.0, AGENT: 440.0, TARGET: 660.0}
EVENT_TYPES = {CALLER: 101, AGENT: 101, TARGET: 96}  # the target's side negotiated 96

Phones = dict[str, RtpEndpoint]


@pytest.fixture
async def mixed() -> AsyncIterator[tuple[Mixer, Phones]]:
    phones: Phones = {}
    async with Mixer() as mixer:
        try:
            for name in TONES:
                phone = await RtpEndpoint(event_payload_type=EVENT_TYPES[name]).open()
                port = await mixer.add(name, event_payload_type=EVENT_TYPES[name])
                phone.connect(port.sdp())
                port.connect(phone.sdp())
                phones[name] = phone
            mixer.start()
            yield mixer, phones
        finally:
            for phone in phones.values():
                await phone.close()


def voiced(samples: Samples) -> Samples:
    whole = len(samples) - len(samples) % SAMPLES_PER_PACKET
    frames = samples[:whole].reshape(-1, SAMPLES_PER_PACKET)
    return frames[np.abs(frames.astype(np.int32)).max(axis=1) > 200].reshape(-1)


async def talk(phones: Phones, *speakers: str) -> dict[str, Samples]:
    marks = {name: len(phone.packets) for name, phone in phones.items()}
    await asyncio.gather(*(phones[name].send_tone(TONES[name], 0.4) for name in speakers))
    await asyncio.sleep(0.2)
    return {name: voiced(phone.audio(since=marks[name])) for name, phone in phones.items()}


async def test_a_consult_is_private_and_a_conference_is_three_way(
        mixed: tuple[Mixer, Phones]) -> None:
    mixer, phones = mixed
    mixer.set_hears(CONSULT)
    heard = await talk(phones, AGENT, TARGET, CALLER)
    assert tone_share(heard[AGENT], TONES[TARGET]) > HEARD
    assert tone_share(heard[AGENT], TONES[CALLER]) < NOT_HEARD
    assert tone_share(heard[TARGET], TONES[AGENT]) > HEARD
    assert tone_share(heard[TARGET], TONES[CALLER]) < NOT_HEARD
    assert len(heard[CALLER]) == 0  # on hold: rtpengine plays the music, the mixer nothing

    mixer.set_hears(CONFERENCE)
    heard = await talk(phones, AGENT, TARGET, CALLER)
    for listener, others in ((CALLER, (AGENT, TARGET)), (AGENT, (CALLER, TARGET)),
                             (TARGET, (CALLER, AGENT))):
        for other in others:
            assert tone_share(heard[listener], TONES[other]) > HEARD_IN_A_MIX, (listener, other)


async def test_keys_reach_whoever_hears_the_one_pressing_them(
        mixed: tuple[Mixer, Phones]) -> None:
    mixer, phones = mixed
    mixer.set_hears(CONSULT)
    marks = {name: len(phone.packets) for name, phone in phones.items()}
    await phones[AGENT].send_tone(TONES[AGENT], 0.3)
    for digit in "1#":
        await phones[AGENT].send_dtmf(digit, duration_ms=100)
    await phones[AGENT].send_tone(TONES[AGENT], 0.3)
    await asyncio.sleep(0.2)
    assert phones[TARGET].dtmf_digits == ["1", "#"]
    assert phones[CALLER].dtmf_digits == [] and phones[AGENT].dtmf_digits == []
    assert mixer.ports[AGENT].events_received > 0

    # In the target's stream: its own payload type, one timestamp per key, its own SSRC and
    # sequence numbers running on through the audio.
    received = phones[TARGET].packets[marks[TARGET]:]
    events = [p for p in received if p.payload_type == EVENT_TYPES[TARGET]]
    assert len({p.timestamp for p in events}) == 2
    assert sum(p.marker for p in events) == 2
    assert {p.ssrc for p in received} == {events[0].ssrc}
    sequence = [p.sequence for p in received]
    assert sequence == sorted(sequence) and len(set(sequence)) == len(sequence)
    # The target heard alice's tone around the keys.
    assert tone_share(voiced(phones[TARGET].audio(since=marks[TARGET])), TONES[AGENT]) > HEARD

    # In a conference the caller gets the keys too; a key of the target's reaches both.
    mixer.set_hears(CONFERENCE)
    await phones[AGENT].send_dtmf("5")
    await phones[TARGET].send_dtmf("9")
    await asyncio.sleep(0.2)
    assert phones[CALLER].dtmf_digits == ["5", "9"]
    assert phones[TARGET].dtmf_digits == ["1", "#", "5"]
    assert phones[AGENT].dtmf_digits == ["9"]

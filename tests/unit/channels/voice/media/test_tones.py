"""G.711 tables against the reference algorithm's known points, and Goertzel detection."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from omnicc.channels.voice.media.tones import (
    Samples,
    alaw_decode,
    alaw_encode,
    goertzel_power,
    silence,
    tone,
    tone_share,
    ulaw_decode,
    ulaw_encode,
)

Encoder = Callable[[Samples], bytes]
Decoder = Callable[[bytes], Samples]


def test_known_g711_code_points() -> None:
    # Reference values (ITU-T G.711 / Sun g711.c): silence, extremes, a mid value.
    assert ulaw_encode(np.array([0], dtype=np.int16)) == b"\xff"
    assert alaw_encode(np.array([0], dtype=np.int16)) == b"\xd5"
    assert ulaw_decode(b"\x00\x80\xff\x7f").tolist() == [-32124, 32124, 0, 0]
    assert alaw_decode(b"\xd5\x55\x2a\xaa").tolist() == [8, -8, -32256, 32256]
    assert ulaw_encode(np.array([32767, -32768], dtype=np.int16)) == b"\x80\x00"
    assert alaw_encode(np.array([32767, -32768], dtype=np.int16)) == b"\xaa\x2a"


@pytest.mark.parametrize(
    ("encode", "decode"), [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)]
)
def test_every_code_survives_decode_then_encode(encode: Encoder, decode: Decoder) -> None:
    codes = bytes(range(256))
    again = encode(decode(codes))
    differing = [code for code in range(256) if again[code] != code]
    # µ-law has two zeros (0x7F is "-0" and encodes back as 0xFF); A-law has none.
    assert differing == ([0x7F] if encode is ulaw_encode else [])


@pytest.mark.parametrize(
    ("encode", "decode"), [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)]
)
def test_quantisation_error_stays_within_the_segment_step(encode: Encoder, decode: Decoder) -> None:
    samples = np.arange(-32768, 32768, 7, dtype=np.int32).astype(np.int16)
    error = np.abs(decode(encode(samples)).astype(np.int32) - samples)
    # The error is at most half a step; steps grow with the magnitude (logarithmic law).
    assert np.all(error <= np.maximum(np.abs(samples.astype(np.int32)) // 16, 16) + 1)


def test_goertzel_finds_the_tone_and_only_the_tone() -> None:
    signal = tone(1000, 0.2)
    assert tone_share(signal, 1000) > 0.99
    assert tone_share(signal, 440) < 0.001
    assert tone_share(silence(0.2), 1000) == 0.0
    mixed = (
        tone(1000, 0.2, amplitude=0.3).astype(np.int32) + tone(440, 0.2, amplitude=0.3)
    ).astype(np.int16)
    assert 0.4 < tone_share(mixed, 1000) < 0.6
    assert 0.4 < tone_share(mixed, 440) < 0.6
    assert tone_share(ulaw_decode(ulaw_encode(signal)), 1000) > 0.99


def test_goertzel_matches_the_dft_bin() -> None:
    signal = tone(500, 0.1, amplitude=0.25)  # 800 samples, 500 Hz is bin 50
    dft = np.fft.rfft(signal.astype(np.float64))
    assert goertzel_power(signal, 500) == pytest.approx(abs(dft[50]) ** 2, rel=1e-6)


def test_tone_keeps_its_phase_across_chunks() -> None:
    whole = tone(440, 0.04)
    pieces = np.concatenate([tone(440, 0.02), tone(440, 0.02, start_sample=160)])
    assert np.array_equal(whole, pieces)

"""G.711 codecs, tone synthesis and Goertzel tone detection.

G.711 is done with lookup tables built once from the reference algorithm
(ITU-T G.711 as in the classic Sun ``g711.c``) instead of ``audioop``, which
is deprecated and gone in Python 3.13.  Samples are numpy ``int16`` arrays.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = [
    "SAMPLE_RATE",
    "Samples",
    "alaw_decode",
    "alaw_encode",
    "goertzel_power",
    "silence",
    "tone",
    "tone_share",
    "ulaw_decode",
    "ulaw_encode",
]

SAMPLE_RATE = 8000

Samples = npt.NDArray[np.int16]

_ULAW_SEG_END = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ALAW_SEG_END = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _segment(value: int, ends: tuple[int, ...]) -> int:
    for index, end in enumerate(ends):
        if value <= end:
            return index
    return len(ends)


def _linear_to_ulaw(pcm: int) -> int:
    pcm >>= 2
    mask = 0xFF
    if pcm < 0:
        pcm, mask = -pcm, 0x7F
    pcm = min(pcm, 8159) + 33
    seg = _segment(pcm, _ULAW_SEG_END)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm >> (seg + 1)) & 0x0F)) ^ mask


def _ulaw_to_linear(code: int) -> int:
    code = ~code & 0xFF
    value = (((code & 0x0F) << 3) + 0x84) << ((code & 0x70) >> 4)
    return 0x84 - value if code & 0x80 else value - 0x84


def _linear_to_alaw(pcm: int) -> int:
    pcm >>= 3
    mask = 0xD5
    if pcm < 0:
        pcm, mask = -pcm - 1, 0x55
    seg = _segment(pcm, _ALAW_SEG_END)
    if seg >= 8:
        return 0x7F ^ mask
    shift = 1 if seg < 2 else seg
    return ((seg << 4) | ((pcm >> shift) & 0x0F)) ^ mask


def _alaw_to_linear(code: int) -> int:
    code ^= 0x55
    value = (code & 0x0F) << 4
    seg = (code & 0x70) >> 4
    if seg == 0:
        value += 8
    else:
        value = (value + 0x108) << (seg - 1)
    return value if code & 0x80 else -value


# Encoding tables are indexed by the sample with its insignificant low bits
# dropped (14 bits for µ-law, 13 for A-law), offset to be non-negative.
_ULAW_DECODE = np.array([_ulaw_to_linear(c) for c in range(256)], dtype=np.int16)
_ALAW_DECODE = np.array([_alaw_to_linear(c) for c in range(256)], dtype=np.int16)
_ULAW_ENCODE = np.array([_linear_to_ulaw(i << 2) for i in range(-8192, 8192)], dtype=np.uint8)
_ALAW_ENCODE = np.array([_linear_to_alaw(i << 3) for i in range(-4096, 4096)], dtype=np.uint8)


def ulaw_decode(payload: bytes) -> Samples:
    return _ULAW_DECODE[np.frombuffer(payload, dtype=np.uint8)]


def alaw_decode(payload: bytes) -> Samples:
    return _ALAW_DECODE[np.frombuffer(payload, dtype=np.uint8)]


def ulaw_encode(samples: Samples) -> bytes:
    index = (np.asarray(samples, dtype=np.int32) >> 2) + 8192
    return bytes(_ULAW_ENCODE[index].tobytes())


def alaw_encode(samples: Samples) -> bytes:
    index = (np.asarray(samples, dtype=np.int32) >> 3) + 4096
    return bytes(_ALAW_ENCODE[index].tobytes())


def tone(
    frequency: float,
    duration_s: float,
    *,
    amplitude: float = 0.5,
    rate: int = SAMPLE_RATE,
    start_sample: int = 0,
) -> Samples:
    """A sine tone; ``start_sample`` continues the phase of an earlier chunk."""
    n = round(duration_s * rate)
    t = (np.arange(n) + start_sample) / rate
    wave = amplitude * 32767 * np.sin(2 * math.pi * frequency * t)
    return np.round(wave).astype(np.int16)


def silence(duration_s: float, *, rate: int = SAMPLE_RATE) -> Samples:
    return np.zeros(round(duration_s * rate), dtype=np.int16)


def goertzel_power(samples: Samples, frequency: float, *, rate: int = SAMPLE_RATE) -> float:
    """Squared magnitude of the DFT of ``samples`` at ``frequency`` (Goertzel recurrence)."""
    x = np.asarray(samples, dtype=np.float64)
    coeff = 2 * math.cos(2 * math.pi * frequency / rate)
    s1 = s2 = 0.0
    for value in x.tolist():
        s1, s2 = value + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def tone_share(samples: Samples, frequency: float, *, rate: int = SAMPLE_RATE) -> float:
    """Fraction of the signal's energy at ``frequency`` (about 1 for a pure tone, 0 for silence)."""
    x = np.asarray(samples, dtype=np.float64)
    energy = float(np.dot(x, x))
    if energy == 0.0 or len(x) == 0:
        return 0.0
    return goertzel_power(samples, frequency, rate=rate) / (len(x) / 2 * energy)

"""Music on hold and the voicemail beep that ship with OmniCC: made, not downloaded (no
network at run time, no licence question). 8 kHz mono 16-bit PCM - the prompt format rtpengine
plays - written once into the prompt cache. The music is a slow arpeggio of soft sine chords."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

RATE = 8000
NOTE_S = 0.5
# C major, A minor, F major, G major: four bars that loop without a seam.
CHORDS = ((261.63, 329.63, 392.00), (220.00, 261.63, 329.63),
          (174.61, 220.00, 261.63), (196.00, 246.94, 293.66))


def beep(directory: Path) -> Path:
    """The voicemail tone: 0.3 s of 1 kHz."""
    target = directory / "omnicc-beep-v1.wav"
    if not target.exists():
        t = np.arange(int(RATE * 0.3)) / RATE
        _write(target, 0.4 * np.sin(2 * np.pi * 1000 * t))
    return target


def _write(target: Path, signal: np.ndarray) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    samples = np.clip(signal * 32767, -32768, 32767).astype("<i2")
    partial = target.with_suffix(".partial")
    with wave.open(str(partial), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(samples.tobytes())
    partial.replace(target)


def music_on_hold(directory: Path) -> Path:
    """The music file in `directory` (made on first use)."""
    target = directory / "omnicc-music-on-hold-v1.wav"
    if target.exists():
        return target
    t = np.arange(int(RATE * NOTE_S)) / RATE
    envelope = np.minimum(1.0, np.minimum(t / 0.03, (NOTE_S - t) / 0.15))
    notes = []
    for chord in CHORDS:
        for repeat in range(2):
            for frequency in chord:
                phase = 2 * np.pi * frequency * t
                base = np.sin(phase) + 0.3 * np.sin(2 * phase)
                notes.append(base * envelope * (0.22 if repeat else 0.25))
    _write(target, np.concatenate(notes))
    return target

"""Uploaded WAV prompts are checked with the `wave` module before rtpengine plays them."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from omnicc.channels.voice.media.prompts import PromptError, validate_wav
from omnicc.channels.voice.media.tones import tone


def write_wav(path: Path, seconds: float, *, rate: int = 8000, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        samples = tone(440, seconds, rate=rate)
        out.writeframes(samples.repeat(channels).tobytes())
    return path


def test_a_good_prompt(tmp_path: Path) -> None:
    info = validate_wav(write_wav(tmp_path / "ok.wav", 1.5))
    assert info.duration_s == pytest.approx(1.5)
    assert info.is_prompt_format
    other = validate_wav(write_wav(tmp_path / "hi.wav", 0.5, rate=44100, channels=2))
    assert not other.is_prompt_format  # acceptable, converted before use


def test_too_long_empty_truncated_or_not_a_wav(tmp_path: Path) -> None:
    with pytest.raises(PromptError, match="limit"):
        validate_wav(write_wav(tmp_path / "long.wav", 3.0), max_seconds=2.0)
    with pytest.raises(PromptError, match="no audio"):
        validate_wav(write_wav(tmp_path / "empty.wav", 0.0))
    data = write_wav(tmp_path / "cut.wav", 1.0).read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    with pytest.raises(PromptError):
        validate_wav(tmp_path / "cut.wav")
    (tmp_path / "mp3.wav").write_bytes(b"ID3\x03\x00" + b"\x00" * 100)
    with pytest.raises(PromptError, match="readable"):
        validate_wav(tmp_path / "mp3.wav")

"""espeak-ng prompts: synthesised once into 8 kHz mono 16-bit WAV, cached by text, voice,
rate and engine version; uploaded audio converted with sox. Needs espeak-ng and sox."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from omnicc.channels.voice.media.prompts import (
    PromptError,
    TextToSpeech,
    convert_to_prompt,
    validate_wav,
)
from omnicc.channels.voice.media.tones import tone, tone_share

pytestmark = pytest.mark.anyio


async def test_speech_is_cached_per_text_voice_and_rate(tmp_path: Path) -> None:
    tts = TextToSpeech(tmp_path / "cache")
    first = await tts.speak("-Thank you for calling.")  # a leading dash is text, not an option
    info = validate_wav(first)
    assert info.is_prompt_format
    assert info.duration_s > 0.5
    stamp = first.stat().st_mtime_ns

    assert await tts.speak("-Thank you for calling.") == first
    assert first.stat().st_mtime_ns == stamp  # not synthesised again
    slower = await tts.speak("-Thank you for calling.", rate=100)
    french = await tts.speak("-Thank you for calling.", voice="fr")
    assert len({first, slower, french}) == 3
    assert validate_wav(slower).duration_s > info.duration_s
    assert "espeak-ng" in (await tts.engine_version()).lower()
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        p.name for p in (first, slower, french)
    )  # no temporary files left behind


async def test_bad_requests_are_refused(tmp_path: Path) -> None:
    tts = TextToSpeech(tmp_path)
    with pytest.raises(PromptError, match="voice"):
        await tts.speak("hello", voice="qqq")
    with pytest.raises(PromptError, match="voice name"):
        await tts.speak("hello", voice="--path=/etc")
    with pytest.raises(PromptError):
        await tts.speak("   ")
    with pytest.raises(PromptError):
        await tts.speak("hello", rate=5)


async def test_an_upload_is_converted_to_the_prompt_format(tmp_path: Path) -> None:
    source = tmp_path / "upload.wav"
    with wave.open(str(source), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(44100)
        out.writeframes(tone(600, 1.0, rate=44100).repeat(2).tobytes())

    info = await convert_to_prompt(source, tmp_path / "prompts" / "hello.wav")

    assert info.is_prompt_format
    assert info.duration_s == pytest.approx(1.0, abs=0.01)
    with wave.open(str(tmp_path / "prompts" / "hello.wav"), "rb") as wav:
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    assert tone_share(samples, 600) > 0.9

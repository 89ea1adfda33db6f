"""Prompts rtpengine can play: text-to-speech with espeak-ng, and uploaded WAV files.

rtpengine's ``play media`` decodes files with ffmpeg, but the one format every
build and every codec path handles without surprises is WAV, PCM 16-bit, mono,
8 kHz - so every prompt is stored in that format (:data:`PROMPT_FORMAT`).
espeak-ng writes 22.05 kHz WAV; sox resamples it.

Synthesised prompts are cached on disk under a hash of (text, voice, rate,
espeak-ng version, format): the same prompt is synthesised once, and an
espeak-ng upgrade re-synthesises instead of mixing voices.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import wave
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MAX_PROMPT_SECONDS",
    "PROMPT_FORMAT",
    "PromptError",
    "TextToSpeech",
    "WavInfo",
    "convert_to_prompt",
    "validate_wav",
]

PROMPT_FORMAT = {"rate": 8000, "channels": 1, "sample_width": 2}
MAX_PROMPT_SECONDS = 600.0
TOOL_TIMEOUT_S = 60.0
_VOICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+-]{0,39}")  # e.g. en, en-us, fr+f3; never an option


class PromptError(ValueError):
    """A prompt cannot be made or is not acceptable (unreadable, empty, too long)."""


@dataclass(frozen=True, slots=True)
class WavInfo:
    rate: int
    channels: int
    sample_width: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.rate if self.rate else 0.0

    @property
    def is_prompt_format(self) -> bool:
        return (self.rate, self.channels, self.sample_width) == (
            PROMPT_FORMAT["rate"],
            PROMPT_FORMAT["channels"],
            PROMPT_FORMAT["sample_width"],
        )


def validate_wav(path: Path, *, max_seconds: float = MAX_PROMPT_SECONDS) -> WavInfo:
    """Check an uploaded WAV: PCM, readable, not empty, at most ``max_seconds`` long."""
    try:
        with wave.open(str(path), "rb") as wav:
            info = WavInfo(
                wav.getframerate(), wav.getnchannels(), wav.getsampwidth(), wav.getnframes()
            )
            # Reading the last frames catches a header that promises more than the file holds.
            if info.frames:
                wav.setpos(max(0, info.frames - 1))
                if not wav.readframes(1):
                    raise PromptError(f"{path.name}: truncated WAV data")
    except (wave.Error, EOFError, OSError) as exc:
        raise PromptError(f"{path.name}: not a readable PCM WAV file ({exc})") from exc
    if info.frames == 0:
        raise PromptError(f"{path.name}: the WAV file has no audio")
    if info.duration_s > max_seconds:
        raise PromptError(
            f"{path.name}: {info.duration_s:.0f} s is longer than the {max_seconds:.0f} s limit"
        )
    return info


async def _run(*args: str, stdin: bytes | None = None) -> bytes:
    process = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(TOOL_TIMEOUT_S):
            out, err = await process.communicate(stdin)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise PromptError(f"{args[0]} did not finish in {TOOL_TIMEOUT_S:.0f} s") from None
    if process.returncode != 0:
        raise PromptError(f"{args[0]} failed ({process.returncode}): {err.decode().strip()}")
    return out


def _require(program: str) -> str:
    found = shutil.which(program)
    if found is None:
        raise PromptError(f"`{program}` is not installed (apt-get install {program})")
    return found


async def convert_to_prompt(source: Path, target: Path) -> WavInfo:
    """Resample any audio sox reads into the prompt format; written atomically."""
    sox = _require("sox")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial.wav")
    try:
        await _run(
            sox,
            str(source),
            "-r",
            str(PROMPT_FORMAT["rate"]),
            "-c",
            str(PROMPT_FORMAT["channels"]),
            "-b",
            str(8 * PROMPT_FORMAT["sample_width"]),
            "-e",
            "signed-integer",
            str(partial),
        )
        info = validate_wav(partial)
        partial.replace(target)
        return info
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


class TextToSpeech:
    """espeak-ng prompts cached in ``cache_dir``."""

    def __init__(self, cache_dir: Path, *, executable: str = "espeak-ng") -> None:
        self.cache_dir = cache_dir
        self.executable = executable
        self._version: str | None = None

    async def engine_version(self) -> str:
        if self._version is None:
            out = await _run(_require(self.executable), "--version")
            self._version = out.decode().strip()
        return self._version

    async def cache_key(self, text: str, voice: str, rate: int) -> str:
        material = [text, voice, rate, await self.engine_version(), PROMPT_FORMAT]
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()

    async def speak(self, text: str, *, voice: str = "en", rate: int = 160) -> Path:
        """The WAV for ``text`` in ``voice`` (an espeak-ng voice, e.g. ``en``, ``fr``,
        ``de+f3``) at ``rate`` words per minute; synthesised on the first request."""
        if not text.strip():
            raise PromptError("nothing to say")
        if not _VOICE.fullmatch(voice):
            raise PromptError(f"not an espeak-ng voice name: {voice!r}")
        if not 80 <= rate <= 450:
            raise PromptError("rate must be between 80 and 450 words per minute")
        target = self.cache_dir / f"{await self.cache_key(text, voice, rate)}.wav"
        if target.exists():
            return target
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        raw = target.with_name(f".{target.stem}.{os.getpid()}.espeak.wav")
        try:
            # The text goes in on stdin so a prompt starting with "-" is not an option.
            await _run(
                _require(self.executable),
                "-v",
                voice,
                "-s",
                str(rate),
                "-w",
                str(raw),
                "--stdin",
                stdin=text.encode(),
            )
            await convert_to_prompt(raw, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                raw.unlink()
        return target

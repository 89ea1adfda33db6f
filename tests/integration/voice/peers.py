"""Real SIP peers for the voice tests: baresip as an agent's phone.

baresip runs as its own process with a throwaway configuration: it registers to OmniCC with
digest credentials, answers calls by itself, sends a sine tone from a WAV file (sox makes it)
and keeps what it hears in a WAV file (its `sndfile` module: `*-dec.wav` is the decoded
incoming audio). The test drives it and reads its events over `ctrl_tcp` (netstring JSON).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

EVENT_TIMEOUT_S = 20.0


def free_port(*kinds: int) -> int:
    """A loopback port free right now for every socket kind in `kinds` (TCP when none is
    named: SOCK_DGRAM, SOCK_STREAM for a port both transports can take)."""
    first, *others = kinds or (socket.SOCK_STREAM,)
    while True:
        with socket.socket(socket.AF_INET, first) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
            try:
                for kind in others:
                    with socket.socket(socket.AF_INET, kind) as other:
                        other.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def tone_wav(path: Path, hz: float, seconds: float = 60.0) -> Path:
    """An 8 kHz mono 16-bit sine tone, the format baresip's aufile source wants."""
    subprocess.run(
        [
            "sox",
            "-n",
            "-r",
            "8000",
            "-c",
            "1",
            "-b",
            "16",
            str(path),
            "synth",
            str(seconds),
            "sine",
            str(hz),
            "vol",
            "0.5",
        ],
        check=True,
    )
    return path


class Baresip:
    """One baresip phone with one account (auto-answer unless told otherwise)."""

    def __init__(
        self,
        workdir: Path,
        *,
        user: str,
        password: str,
        registrar: tuple[str, int],
        tone_hz: float = 440.0,
        auto_answer: bool = True,
        transport: str = "udp",
        register_s: int = 600,
    ) -> None:
        self.dir = workdir
        self.user = user
        self.password = password
        self.registrar = registrar
        self.tone_hz = tone_hz
        self.auto_answer = auto_answer
        self.transport = transport
        self.register_s = register_s
        self.ctrl_port = free_port()
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pump: asyncio.Task[None] | None = None
        self._responses: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._token = 0

    @property
    def snd_dir(self) -> Path:
        return self.dir / "snd"

    def _write_config(self) -> None:
        if shutil.which("baresip") is None:
            raise RuntimeError("baresip is missing: run scripts/test_packages.sh")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.snd_dir.mkdir(exist_ok=True)
        tone = tone_wav(self.dir / "tone.wav", self.tone_hz)
        (self.dir / "config").write_text(
            "\n".join(
                [
                    "poll_method epoll",
                    "sip_listen 127.0.0.1:0",
                    "net_interface 127.0.0.1",
                    "audio_player aufile,/dev/null",
                    f"audio_source aufile,{tone}",
                    "audio_alert aufile,/dev/null",
                    "audio_srate 8000",
                    "audio_channels 1",
                    "module_path /usr/lib/baresip/modules",
                    "module g711.so",
                    "module aufile.so",
                    "module sndfile.so",
                    "module_app account.so",
                    "module_app ctrl_tcp.so",
                    f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}",
                    f"snd_path {self.snd_dir}",
                    "",
                ]
            )
        )
        host, port = self.registrar
        answer = ";answermode=auto" if self.auto_answer else ""
        regint = f";regint={self.register_s}" if self.register_s else ";regint=0"
        (self.dir / "accounts").write_text(
            f"<sip:{self.user}@{host}:{port};transport={self.transport}>"
            f";auth_pass={self.password}{answer}{regint}\n"
        )

    async def start(self) -> None:
        self._write_config()
        with open(self.dir / "baresip.log", "wb") as log:
            self._process = await asyncio.create_subprocess_exec(
                "baresip", "-f", str(self.dir), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT)
        for _ in range(100):
            try:
                self._reader, self._writer = await asyncio.open_connection(
                    "127.0.0.1", self.ctrl_port
                )
                break
            except OSError:
                if self._process.returncode is not None:
                    raise RuntimeError(f"baresip exited: {self.log()[-2000:]}") from None
                await asyncio.sleep(0.1)
        else:
            raise RuntimeError("baresip's control port never opened")
        self._pump = asyncio.create_task(self._read_events())

    def log(self) -> str:
        path = self.dir / "baresip.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def _read_events(self) -> None:
        assert self._reader is not None
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                length = int((await self._reader.readuntil(b":"))[:-1])
                frame = json.loads((await self._reader.readexactly(length + 1))[:-1])
                if frame.get("response"):
                    future = self._responses.pop(str(frame.get("token")), None)
                    if future is not None and not future.done():
                        future.set_result(frame)
                    continue
                async with self._changed:
                    self.events.append(frame)
                    self._changed.notify_all()

    async def command(self, command: str, params: str = "") -> dict[str, Any]:
        assert self._writer is not None
        self._token += 1
        token = str(self._token)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._responses[token] = future
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        self._writer.write(str(len(body)).encode() + b":" + body + b",")
        await self._writer.drain()
        return await asyncio.wait_for(future, EVENT_TIMEOUT_S)

    async def wait_for(
        self,
        event_type: str,
        *,
        count: int = 1,
        where: Callable[[dict[str, Any]], bool] = lambda e: True,
        timeout_s: float = EVENT_TIMEOUT_S,
    ) -> dict[str, Any]:
        """The `count`-th event of this type (from the phone's start)."""

        def found() -> list[dict[str, Any]]:
            return [e for e in self.events if e.get("type") == event_type and where(e)]

        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: len(found()) >= count), timeout_s
                )
            except TimeoutError:
                seen = [e.get("type") for e in self.events]
                raise AssertionError(
                    f"{self.user}: no {event_type} (saw {seen})\n{self.log()[-3000:]}"
                ) from None
            return found()[count - 1]

    def heard(self) -> list[Path]:
        """The WAV files of what this phone received, one per call, oldest first."""
        return sorted(self.snd_dir.glob("*-dec.wav"))

    async def crash(self) -> None:
        """kill -9: the phone vanishes without a word (no BYE, no unREGISTER)."""
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()

    async def stop(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
        if self._writer is not None:
            self._writer.close()
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), 5)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()

"""Run and watch rtpengine.

:class:`RtpengineDaemon` starts an ``rtpengine`` process for the embedded
default deployment: userspace forwarding (``--table=-1``), loopback or a given
interface, a free ng port, a media port window, no config file, pcap
recordings and DTMF events sent as JSON datagrams to OmniCC.  It waits until
``ping`` answers, and reports when the process exits unexpectedly.

:class:`RtpengineMonitor` watches *any* rtpengine by its ng address (the
embedded one or an external one): it reports ``lost`` when ``statistics``
stops answering and ``restarted`` when it answers again or its uptime went
backwards, because every call it carried is gone then.  Several engines are
placed and watched by :class:`omnicc.channels.voice.media.pool.EnginePool`.

Stopping deletes every call rtpengine still holds before SIGTERM: rtpengine
10.5.3 frees its recording directory's name before it ends the calls left at
shutdown, so a call still recording makes it crash in the pcap recorder's
finish (SIGSEGV, a core dump in its working directory).  The process runs in
``work_dir``, so a core dump from any other crash lands there, not wherever
OmniCC was started.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import socket
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from omnicc.channels.voice.media.ng import NgClient, NgError

__all__ = [
    "EngineEvent",
    "EngineEventKind",
    "RtpengineDaemon",
    "RtpengineError",
    "RtpengineMonitor",
    "random_port_window",
]

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
LOG_LINES_KEPT = 200
CALLS_PER_LIST = 500  # one ng reply (a UDP datagram) names this many call-ids at most


class RtpengineError(RuntimeError):
    """rtpengine is not installed, did not start, or is not answering."""


class EngineEventKind(StrEnum):
    LOST = "lost"
    RESTARTED = "restarted"


@dataclass(frozen=True, slots=True)
class EngineEvent:
    kind: EngineEventKind
    detail: str


EngineCallback = Callable[[EngineEvent], None]


def random_port_window(size: int = 200, low: int = 30000, high: int = 60000) -> tuple[int, int]:
    """A random even-aligned media port window, so concurrent daemons rarely collide."""
    start = random.randrange(low, high - size) & ~1
    return start, start + size - 1


def _free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class RtpengineMonitor:
    """Health checks over ng: ``statistics`` every ``interval`` seconds."""

    def __init__(
        self, client: NgClient, on_event: EngineCallback, *, interval: float = 1.0
    ) -> None:
        self.client = client
        self.on_event = on_event
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._uptime: int | None = None
        self._lost = False
        self._stopped = False
        self.sessions = 0
        """Calls the engine held at the last check that it answered."""
        self.checks = 0
        """Checks it answered so far (a new count means ``sessions`` is fresh)."""

    def start(self) -> None:
        self._stopped = False
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="rtpengine-monitor")

    async def stop(self) -> None:
        self._stopped = True  # ends the loop even if a cancellation gets lost
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def mark_lost(self, detail: str) -> None:
        """Report a loss found by other means (the embedded process exited)."""
        if not self._lost:
            self._lost = True
            self.on_event(EngineEvent(EngineEventKind.LOST, detail))

    async def _run(self) -> None:
        while not self._stopped:
            await self.check()
            await asyncio.sleep(self.interval)

    async def check(self) -> None:
        """One health check (also callable directly)."""
        try:
            reply = await self.client.request("statistics")
        except NgError as exc:
            self.mark_lost(f"rtpengine at {self.client.address} is not answering: {exc.reason}")
            return
        statistics = reply.get("statistics", {})
        uptime = int(statistics.get("totalstatistics", {}).get("uptime", 0))
        self.sessions = int(statistics.get("currentstatistics", {}).get("sessionstotal", 0))
        self.checks += 1
        if self._lost:
            self._lost = False
            self.on_event(EngineEvent(EngineEventKind.RESTARTED, "rtpengine answers again"))
        elif self._uptime is not None and uptime < self._uptime:
            self.on_event(EngineEvent(EngineEventKind.RESTARTED, "rtpengine uptime went back"))
        self._uptime = uptime


class RtpengineDaemon:
    """An ``rtpengine`` child process plus its monitor.

    ``on_event`` gets :class:`EngineEvent` s: ``lost`` when the process exits
    without :meth:`stop` or stops answering, ``restarted`` after :meth:`restart`
    or recovery.  All calls are lost in both cases; the call controller ends
    them.
    """

    def __init__(
        self,
        *,
        interface: str = "127.0.0.1",
        port_range: tuple[int, int] | None = None,
        recording_dir: Path | None = None,
        dtmf_log_dest: tuple[str, int] | None = None,
        on_event: EngineCallback | None = None,
        health_interval: float = 1.0,
        executable: str = "rtpengine",
        log_level: int = 5,
        extra_args: tuple[str, ...] = (),
        work_dir: Path | None = None,
    ) -> None:
        self.interface = interface
        self.port_range = port_range or random_port_window()
        self.recording_dir = recording_dir
        self.dtmf_log_dest = dtmf_log_dest
        self.on_event = on_event or (lambda event: None)
        self.health_interval = health_interval
        self.executable = executable
        self.log_level = log_level
        self.extra_args = extra_args
        self.work_dir = work_dir
        """rtpengine's working directory (where a core dump lands); None: the temp directory."""
        self.ng_address: tuple[str, int] = (interface, 0)
        self.client = NgClient(self.ng_address, timeout=0.5, retries=2)
        self._process: asyncio.subprocess.Process | None = None
        self._monitor: RtpengineMonitor | None = None
        self._watch: asyncio.Task[None] | None = None
        self._log_reader: asyncio.Task[None] | None = None
        self._log: deque[str] = deque(maxlen=LOG_LINES_KEPT)
        self._stopping = False

    @property
    def monitor(self) -> RtpengineMonitor | None:
        """The health check of the running process (a new one after each start)."""
        return self._monitor

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def exit_code(self) -> int | None:
        """How the last process ended (negative: the signal that killed it); None while running."""
        return self._process.returncode if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(list(self._log)[-lines:])

    def command(self) -> list[str]:
        host, port = self.ng_address
        # setpriv (util-linux) makes the kernel stop rtpengine when OmniCC dies, even by
        # SIGKILL, so no orphan keeps the ports; it execs, so the pid is rtpengine's.
        setpriv = shutil.which("setpriv")
        prefix = [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []
        args = [
            *prefix,
            self.executable,
            "--config-file=none",
            "--table=-1",
            "--foreground",
            "--log-stderr",
            "--no-log-timestamps",
            f"--log-level={self.log_level}",
            f"--interface={self.interface}",
            f"--listen-ng={host}:{port}",
            f"--port-min={self.port_range[0]}",
            f"--port-max={self.port_range[1]}",
            "--delete-delay=0",
            "--num-threads=2",
            "--media-num-threads=1",
        ]
        if self.recording_dir is not None:
            args += [f"--recording-dir={self.recording_dir}", "--recording-method=pcap"]
        if self.dtmf_log_dest is not None:
            args.append(f"--dtmf-log-dest={self.dtmf_log_dest[0]}:{self.dtmf_log_dest[1]}")
        return args + list(self.extra_args)

    async def start(self) -> None:
        """Start rtpengine and wait until ``ping`` answers; retry once on a taken ng port."""
        if shutil.which(self.executable) is None:
            raise RtpengineError(
                f"`{self.executable}` is not installed (apt-get install rtpengine)"
            )
        if self.recording_dir is not None:
            self.recording_dir.mkdir(parents=True, exist_ok=True)
        if self.work_dir is not None:
            self.work_dir.mkdir(parents=True, exist_ok=True)
        self._stopping = False
        for attempt in range(3):
            # A restart keeps the ng port when it is still free, so external holders of
            # the address keep working; the client object itself is kept either way.
            port = self.ng_address[1] if attempt == 0 and self.ng_address[1] else 0
            self.ng_address = (self.interface, port or _free_udp_port(self.interface))
            await self.client.close()
            self.client.address = self.ng_address
            try:
                await self._spawn()
                break
            except RtpengineError:
                if attempt == 2:
                    raise
        self._monitor = RtpengineMonitor(self.client, self._report, interval=self.health_interval)
        self._monitor.start()

    async def _spawn(self) -> None:
        self._log.clear()
        self._process = await asyncio.create_subprocess_exec(
            *self.command(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            cwd=self.work_dir or tempfile.gettempdir(),
        )
        self._log_reader = asyncio.create_task(self._read_log(self._process))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        while True:
            if self._process.returncode is not None:
                await self._log_reader
                raise RtpengineError(
                    f"rtpengine exited with {self._process.returncode}:\n{self.log_tail()}"
                )
            try:
                await self.client.ping()
                break
            except NgError:
                if loop.time() > deadline:
                    await self._kill()
                    raise RtpengineError(
                        f"rtpengine did not answer ping:\n{self.log_tail()}"
                    ) from None
        self._watch = asyncio.create_task(self._wait_exit(self._process))

    async def _read_log(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        async for line in process.stderr:
            self._log.append(line.decode(errors="replace").rstrip())

    async def _wait_exit(self, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        if not self._stopping and self._monitor is not None:
            self._monitor.mark_lost(f"rtpengine (pid {process.pid}) exited with {code}")

    def _report(self, event: EngineEvent) -> None:
        if not self._stopping:
            self.on_event(event)

    async def _kill(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()

    async def end_calls(self) -> int:
        """Delete every call rtpengine holds (their recordings are finished); returns how many.

        rtpengine 10.5.3 crashes at shutdown when a call is still recording (it frees the
        recording directory's name, then finishes the call's pcap with it), so :meth:`stop`
        calls this first.  Best effort: an engine that does not answer is stopped anyway."""
        ended = 0
        with contextlib.suppress(NgError):
            while calls := await self.client.list_calls(limit=CALLS_PER_LIST):
                before = ended
                for call_id in calls:
                    with contextlib.suppress(NgError):
                        await self.client.delete(call_id)
                        ended += 1
                if ended == before:
                    break  # nothing would go: do not ask forever
        return ended

    async def stop(self) -> None:
        """Stop the monitor and the process (its calls deleted, SIGTERM, then SIGKILL after a
        grace period)."""
        self._stopping = True
        if self._monitor is not None:
            await self._monitor.stop()
            self._monitor = None
        if self.running:
            await self.end_calls()
        await self._kill()
        for task in (self._watch, self._log_reader):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._watch = self._log_reader = None
        await self.client.close()

    async def restart(self) -> None:
        """Stop and start again (same ng port and client if possible); reported ``restarted``."""
        await self.stop()
        await self.start()
        self.on_event(EngineEvent(EngineEventKind.RESTARTED, "rtpengine restarted"))

    async def __aenter__(self) -> RtpengineDaemon:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

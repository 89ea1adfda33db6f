"""The rtpengine supervisor: start until ping answers, loss (kill -9) reported, restart, stop."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from omnicc.channels.voice.media.daemon import (
    EngineEvent,
    EngineEventKind,
    RtpengineDaemon,
    RtpengineError,
    RtpengineMonitor,
)
from omnicc.channels.voice.media.ng import NgClient
from omnicc.channels.voice.media.recordings import find_recording
from omnicc.channels.voice.media.rtp import RtpEndpoint

pytestmark = pytest.mark.anyio

EVENT_TIMEOUT_S = 10.0


async def next_event(events: asyncio.Queue[EngineEvent]) -> EngineEvent:
    return await asyncio.wait_for(events.get(), EVENT_TIMEOUT_S)


async def test_a_killed_rtpengine_is_reported_lost_and_restart_brings_it_back() -> None:
    events: asyncio.Queue[EngineEvent] = asyncio.Queue()
    daemon = RtpengineDaemon(on_event=events.put_nowait, health_interval=0.2)
    await daemon.start()
    try:
        await daemon.client.ping()
        assert daemon.pid is not None and daemon.running
        address = daemon.ng_address

        os.kill(daemon.pid, signal.SIGKILL)
        lost = await next_event(events)
        assert lost.kind is EngineEventKind.LOST
        assert "exited" in lost.detail or "not answering" in lost.detail
        assert not daemon.running

        await daemon.restart()
        assert (await next_event(events)).kind is EngineEventKind.RESTARTED
        await daemon.client.ping()
        assert daemon.ng_address == address  # the same ng port when it is still free
    finally:
        await daemon.stop()
    assert not daemon.running
    assert events.empty()  # a requested stop is not a loss


async def test_the_monitor_reports_an_external_engine_lost_and_back() -> None:
    daemon = RtpengineDaemon()
    await daemon.start()
    events: list[EngineEvent] = []
    async with NgClient(daemon.ng_address, timeout=0.2, retries=1) as client:
        monitor = RtpengineMonitor(client, events.append)
        await monitor.check()
        assert events == []
        await daemon.stop()
        await monitor.check()
        assert [event.kind for event in events] == [EngineEventKind.LOST]
        await monitor.check()
        assert len(events) == 1  # reported once
        await daemon.start()
        try:
            await monitor.check()
        finally:
            await daemon.stop()
    assert [event.kind for event in events] == [EngineEventKind.LOST, EngineEventKind.RESTARTED]


async def test_a_missing_program_is_a_clear_error() -> None:
    with pytest.raises(RtpengineError, match="not installed"):
        await RtpengineDaemon(executable="rtpengine-does-not-exist").start()


async def test_a_bad_option_fails_with_rtpengines_own_words() -> None:
    with pytest.raises(RtpengineError, match="exited"):
        await RtpengineDaemon(extra_args=("--no-such-option",)).start()


async def test_rtpengine_does_not_outlive_a_killed_omnicc(tmp_path: Path) -> None:
    script = tmp_path / "service.py"
    script.write_text(
        "import asyncio\n"
        "from omnicc.channels.voice.media.daemon import RtpengineDaemon\n"
        "async def main():\n"
        "    daemon = RtpengineDaemon()\n"
        "    await daemon.start()\n"
        "    print(daemon.pid, flush=True)\n"
        "    await asyncio.sleep(3600)\n"
        "asyncio.run(main())\n"
    )
    omnicc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), stdout=asyncio.subprocess.PIPE
    )
    assert omnicc.stdout is not None
    line = await asyncio.wait_for(omnicc.stdout.readline(), EVENT_TIMEOUT_S)
    engine_pid = int(line)
    os.kill(engine_pid, 0)  # running

    omnicc.kill()
    await omnicc.wait()

    async with asyncio.timeout(EVENT_TIMEOUT_S):
        while Path(f"/proc/{engine_pid}").exists() and "Z" not in _state(engine_pid):
            await asyncio.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except (FileNotFoundError, IndexError):
        return "Z"


async def test_stopping_with_a_call_still_recording_does_not_crash_rtpengine(
    tmp_path: Path,
) -> None:
    """rtpengine 10.5.3 frees its recording directory's name before it ends the calls left at
    shutdown, and a call still recording then crashes it (SIGSEGV in the pcap recorder, a core
    dump); stop() deletes the calls first, which also completes their recordings."""
    daemon = RtpengineDaemon(recording_dir=tmp_path / "recordings", work_dir=tmp_path / "work")
    await daemon.start()
    caller, agent = await RtpEndpoint().open(), await RtpEndpoint().open()
    try:
        assert daemon.pid is not None
        assert Path(f"/proc/{daemon.pid}/cwd").resolve() == (tmp_path / "work").resolve()
        await daemon.client.offer("recorded-call", "caller", caller.sdp())
        await daemon.client.answer("recorded-call", "caller", "agent", agent.sdp())
        await daemon.client.call_command("start recording", "recorded-call")
    finally:
        await daemon.stop()
        await caller.close()
        await agent.close()
    assert daemon.exit_code == 0, daemon.log_tail()
    assert find_recording(tmp_path / "recordings", "recorded-call")
    assert not list((tmp_path / "work").iterdir())  # no core dump

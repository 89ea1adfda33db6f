"""The supervision mixer's cost: CPU per supervised call, and how steady its 20 ms clock is.

    .venv/bin/python bench/voice_mixer.py [--calls 20] [--seconds 10]

Runs N mixers (one per supervised call) in one event loop, each with three loopback RTP
phones talking all the time (caller 1 kHz, agent 440 Hz, supervisor 660 Hz, in barge mode:
every port mixes two voices). The mixer's own work - receiving and decoding into the playout
buffers, mixing, encoding and sending - is timed with the thread's CPU clock; the phones' work
is not the mixer's and is reported apart (the whole process's CPU). Result: ms of CPU per
second of audio per supervised call, and whether each mixer kept its 50 ticks a second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from omnicc.channels.voice.media.mixer import AGENT, CALLER, SUPERVISOR, Mixer, MixerPort, Mode
from omnicc.channels.voice.media.rtp import RtpEndpoint, RtpPacket

TONES = {CALLER: 1000.0, AGENT: 440.0, SUPERVISOR: 660.0}


class Meter:
    """Thread CPU spent inside the mixer's code paths."""

    def __init__(self) -> None:
        self.ns = 0


def instrument(meter: Meter) -> None:
    tick, received = Mixer.tick, MixerPort._received

    def timed_tick(self: Mixer) -> None:
        start = time.thread_time_ns()
        tick(self)
        meter.ns += time.thread_time_ns() - start

    def timed_received(self: MixerPort, packet: RtpPacket, addr: tuple[str, int]) -> None:
        start = time.thread_time_ns()
        received(self, packet, addr)
        meter.ns += time.thread_time_ns() - start

    Mixer.tick = timed_tick  # type: ignore[method-assign]
    MixerPort._received = timed_received  # type: ignore[method-assign]


async def run(calls: int, seconds: float) -> dict[str, Any]:
    meter = Meter()
    instrument(meter)
    mixers: list[Mixer] = []
    phones: list[RtpEndpoint] = []
    for _ in range(calls):
        mixer = Mixer()
        for name in TONES:
            port = await mixer.add(name)
            phone = await RtpEndpoint().open()
            phone.connect(port.sdp())
            port.connect(phone.sdp())
            phones.append(phone)
        mixer.set_mode(Mode.BARGE)
        mixers.append(mixer)
    talkers = [asyncio.create_task(phone.send_tone(hz, seconds + 1.0))
               for phone, hz in zip(phones, list(TONES.values()) * calls, strict=True)]
    loop = asyncio.get_running_loop()
    for mixer in mixers:
        mixer.start()
    await asyncio.sleep(0.5)  # past the start-up
    meter.ns = 0
    ticks_before = sum(m.ticks for m in mixers)
    process_before, wall_before = time.process_time(), loop.time()
    await asyncio.sleep(seconds)
    process_s = time.process_time() - process_before
    wall_s = loop.time() - wall_before
    mixer_ms = meter.ns / 1e6
    ticks = sum(m.ticks for m in mixers) - ticks_before
    for task in talkers:
        task.cancel()
    await asyncio.gather(*talkers, return_exceptions=True)
    received = sum(len(p.packets) for p in phones)
    underruns = [port.underruns for mixer in mixers for port in mixer.ports.values()]
    for mixer in mixers:
        await mixer.close()
    for phone in phones:
        await phone.close()
    audio_s = wall_s * calls
    return {
        "calls": calls,
        "seconds": round(wall_s, 2),
        "mixer_cpu_ms_per_audio_s_per_call": round(mixer_ms / audio_s, 3),
        "mixer_cpu_share_of_one_core": round(mixer_ms / 1000 / wall_s, 4),
        "process_cpu_ms_per_audio_s_per_call_incl_test_phones": round(
            process_s * 1000 / audio_s, 3),
        "ticks_per_mixer_per_s": round(ticks / calls / wall_s, 2),
        "frames_received_by_phones": received,
        "playout_underruns_per_port_median": statistics.median(underruns),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.calls, args.seconds))))


if __name__ == "__main__":
    main()

"""A small audio conference mixer for supervised and consulted calls (rtpengine 10.5
cannot mix).

Each participant has its own UDP port (a :class:`MixerPort`); rtpengine sends it that
party's audio and receives what the party should hear.  Every 20 ms (paced by the event
loop's clock) the mixer takes one frame from each participant's playout buffer - silence
when a frame is missing, late or lost - and sends each participant the sum of the frames
of the parties it *hears*.  Who hears whom is a matrix, so the supervision modes are just
three matrices (:data:`HEARS`):

* ``listen``: the supervisor hears caller and agent; caller and agent hear each other only;
* ``whisper``: the agent hears caller and supervisor; the caller hears the agent only;
  the supervisor hears both;
* ``barge``: everyone hears the other two.

A consult transfer uses the same mixer with a ``target`` (the consulted party) instead of a
supervisor: :data:`CONSULT` (agent and target talk privately, the caller hears nobody - music
on hold comes from rtpengine) and :data:`CONFERENCE` (all hear all).

Audio is G.711 (PCMU or PCMA, per port, as negotiated with rtpengine) decoded with the
lookup tables of :mod:`omnicc.channels.voice.media.tones`; mixing is one integer matrix
product per tick.  Comfort noise is dropped.  RFC 4733 telephone-events are not mixed
but *forwarded*: a key one participant presses reaches every participant who hears them,
re-stamped into that participant's stream (its payload type, sequence numbers, SSRC and a
timestamp of its own for the event), so an agent can work a third party's IVR while the call
is in the mixer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from omnicc.channels.voice.media.rtp import (
    PTIME_S,
    SAMPLES_PER_PACKET,
    PayloadType,
    RtpEndpoint,
    RtpPacket,
)
from omnicc.channels.voice.media.tones import Samples, alaw_decode, ulaw_decode

__all__ = [
    "AGENT",
    "CALLER",
    "CONFERENCE",
    "CONSULT",
    "HEARS",
    "SUPERVISOR",
    "TARGET",
    "Mixer",
    "MixerPort",
    "Mode",
]

CALLER, AGENT, SUPERVISOR, TARGET = "caller", "agent", "supervisor", "target"

PREFILL_FRAMES = 2
"""Frames buffered before a port's audio is played out (40 ms of jitter absorbed)."""
MAX_BUFFERED_FRAMES = 10
"""Beyond this (200 ms) the oldest audio is dropped, so a burst cannot add lasting delay."""
MAX_LATE_S = 0.2
"""A tick this late (the loop stalled) restarts the clock instead of bursting to catch up."""


class Mode(StrEnum):
    LISTEN = "listen"
    WHISPER = "whisper"
    BARGE = "barge"


HEARS: dict[Mode, dict[str, frozenset[str]]] = {
    Mode.LISTEN: {CALLER: frozenset({AGENT}), AGENT: frozenset({CALLER}),
                  SUPERVISOR: frozenset({CALLER, AGENT})},
    Mode.WHISPER: {CALLER: frozenset({AGENT}), AGENT: frozenset({CALLER, SUPERVISOR}),
                   SUPERVISOR: frozenset({CALLER, AGENT})},
    Mode.BARGE: {CALLER: frozenset({AGENT, SUPERVISOR}), AGENT: frozenset({CALLER, SUPERVISOR}),
                 SUPERVISOR: frozenset({CALLER, AGENT})},
}

CONSULT: dict[str, frozenset[str]] = {
    CALLER: frozenset(), AGENT: frozenset({TARGET}), TARGET: frozenset({AGENT})}
"""A consult: agent and consulted party talk privately; the caller (on hold) hears nobody."""
CONFERENCE: dict[str, frozenset[str]] = {
    CALLER: frozenset({AGENT, TARGET}), AGENT: frozenset({CALLER, TARGET}),
    TARGET: frozenset({CALLER, AGENT})}
"""Three-way: everyone hears the other two."""

MAX_EVENT_STAMPS = 32
"""Telephone-events remembered per listener to keep one timestamp per event (a few keys)."""


class MixerPort(RtpEndpoint):
    """One participant's RTP port: a playout buffer of received audio, and the sender of
    the mix this participant hears (its own sequence numbers, timestamps and SSRC)."""

    def __init__(self, name: str, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.name = name
        self.frames_received = 0
        self.events_received = 0
        self.underruns = 0
        self.on_event: Callable[[MixerPort, RtpPacket], None] | None = None
        self._event_stamps: dict[tuple[str, int, int], int] = {}
        self._buffer: deque[Samples] = deque()
        self._carry: Samples = np.zeros(0, dtype=np.int16)
        self._playing = False

    def _received(self, packet: RtpPacket, addr: tuple[str, int]) -> None:
        if packet.payload_type == PayloadType.PCMU:
            samples = ulaw_decode(packet.payload)
        elif packet.payload_type == PayloadType.PCMA:
            samples = alaw_decode(packet.payload)
        else:
            if (packet.payload_type == self.event_payload_type and len(packet.payload) >= 4
                    and self.on_event is not None):
                self.events_received += 1
                self.on_event(self, packet)
            return
        self.frames_received += 1
        # Packets of any ptime are cut into 20 ms frames.
        if len(self._carry):
            samples = np.concatenate((self._carry, samples))
        whole = len(samples) - len(samples) % SAMPLES_PER_PACKET
        for offset in range(0, whole, SAMPLES_PER_PACKET):
            self._buffer.append(samples[offset : offset + SAMPLES_PER_PACKET])
        self._carry = samples[whole:]
        while len(self._buffer) > MAX_BUFFERED_FRAMES:
            self._buffer.popleft()

    def take(self) -> Samples | None:
        """The next 20 ms frame to play out, or None (silence): nothing arrived in time, or
        the buffer is refilling after running dry."""
        if not self._playing:
            if len(self._buffer) < PREFILL_FRAMES:
                return None
            self._playing = True
        if not self._buffer:
            self._playing = False
            self.underruns += 1
            return None
        return self._buffer.popleft()

    def send_frame(self, frame: Samples) -> None:
        self._send(self.payload_type, self._encode(frame))
        self._timestamp = (self._timestamp + len(frame)) & 0xFFFFFFFF

    def send_event(self, speaker: str, packet: RtpPacket) -> None:
        """Forward a telephone-event packet of ``speaker`` in this port's own stream: every
        packet of one event (same source SSRC and timestamp) gets the same timestamp here,
        the one this stream had when the event began (RFC 4733 §2.5.1)."""
        if self.remote is None or self.event_payload_type is None:
            return
        key = (speaker, packet.ssrc, packet.timestamp)
        stamp = self._event_stamps.get(key)
        if stamp is None:
            if len(self._event_stamps) >= MAX_EVENT_STAMPS:
                self._event_stamps.clear()
            stamp = self._event_stamps[key] = self._timestamp
        audio_timestamp, self._timestamp = self._timestamp, stamp
        try:
            self._send(self.event_payload_type, packet.payload, marker=packet.marker)
        finally:
            self._timestamp = audio_timestamp


class Mixer:
    """Mixes its ports' audio every 20 ms according to who hears whom."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.ports: dict[str, MixerPort] = {}
        self.ticks = 0
        self._hears: dict[str, frozenset[str]] = {}
        self._matrix: npt.NDArray[np.int32] = np.zeros((0, 0), dtype=np.int32)
        self._order: list[MixerPort] = []
        self._task: asyncio.Task[None] | None = None

    async def add(self, name: str, *, payload_type: int = PayloadType.PCMU,
                  event_payload_type: int | None = PayloadType.TELEPHONE_EVENT) -> MixerPort:
        """Open a port for a participant (it hears nobody until :meth:`set_hears`);
        ``event_payload_type`` is the telephone-event type rtpengine offered it (None: the
        participant gets no forwarded keys)."""
        if name in self.ports:
            raise ValueError(f"{name!r} is already in the mix")
        port = MixerPort(name, self.host)
        port.payload_type = payload_type
        port.event_payload_type = event_payload_type
        port.on_event = self._forward_event
        await port.open()
        self.ports[name] = port
        self._rebuild()
        return port

    async def remove(self, name: str) -> None:
        port = self.ports.pop(name, None)
        if port is not None:
            self._rebuild()
            await port.close()

    def set_hears(self, hears: Mapping[str, Iterable[str]]) -> None:
        """Who hears whom: ``{listener: speakers}``; nobody hears themselves."""
        self._hears = {name: frozenset(speakers) - {name} for name, speakers in hears.items()}
        self._rebuild()

    def set_mode(self, mode: Mode) -> None:
        self.set_hears(HEARS[mode])

    def hears(self, listener: str) -> frozenset[str]:
        return self._hears.get(listener, frozenset())

    def _forward_event(self, speaker: MixerPort, packet: RtpPacket) -> None:
        """A key pressed by ``speaker`` goes to everyone who hears them."""
        for port in self._order:
            if speaker.name in self._hears.get(port.name, ()):
                port.send_event(speaker.name, packet)

    def _rebuild(self) -> None:
        self._order = list(self.ports.values())
        index = {port.name: i for i, port in enumerate(self._order)}
        matrix = np.zeros((len(index), len(index)), dtype=np.int32)
        for listener, speakers in self._hears.items():
            if listener in index:
                for speaker in speakers:
                    if speaker in index:
                        matrix[index[listener], index[speaker]] = 1
        self._matrix = matrix

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="voice-mixer")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for name in list(self.ports):
            await self.remove(name)

    async def __aenter__(self) -> Mixer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            self.tick()
            due += PTIME_S
            delay = due - loop.time()
            if delay < -MAX_LATE_S:
                due, delay = loop.time(), 0.0
            await asyncio.sleep(max(0.0, delay))

    def tick(self) -> None:
        """Mix and send one 20 ms frame to every connected port."""
        self.ticks += 1
        ports = self._order
        if not ports:
            return
        frames = np.zeros((len(ports), SAMPLES_PER_PACKET), dtype=np.int32)
        for row, port in enumerate(ports):
            frame = port.take()
            if frame is not None:
                frames[row, : len(frame)] = frame
        mixed = np.clip(self._matrix @ frames, -32768, 32767).astype(np.int16)
        for row, port in enumerate(ports):
            if port.remote is not None:
                port.send_frame(mixed[row])

"""A small asyncio RTP endpoint: sends G.711 audio paced at 20 ms and RFC 4733
DTMF events, and keeps what it receives.

Used by the tests as the caller, the agent and third parties, and by OmniCC as
the *sink*: while a caller is in the IVR or the queue, rtpengine's "other side"
of the call is one of these endpoints, so the caller's media has somewhere to
go (and could be analysed) without a real party.
"""

from __future__ import annotations

import asyncio
import os
import re
import struct
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from omnicc.channels.voice.media.tones import (
    SAMPLE_RATE,
    Samples,
    alaw_decode,
    alaw_encode,
    tone,
    ulaw_decode,
    ulaw_encode,
)

__all__ = [
    "DTMF_EVENTS",
    "PayloadType",
    "RtpEndpoint",
    "RtpPacket",
    "media_address",
    "parse_rtp",
]

PTIME_S = 0.020
SAMPLES_PER_PACKET = int(SAMPLE_RATE * PTIME_S)
DTMF_EVENTS = "0123456789*#ABCD"


class PayloadType(IntEnum):
    """The static G.711 payload types and the dynamic one used for telephone-event."""

    PCMU = 0
    PCMA = 8
    TELEPHONE_EVENT = 101


@dataclass(frozen=True, slots=True)
class RtpPacket:
    payload_type: int
    marker: bool
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes


def parse_rtp(data: bytes) -> RtpPacket | None:
    """Parse an RTP packet (RFC 3550 §5.1); ``None`` for anything else (RTCP, junk)."""
    if len(data) < 12 or data[0] >> 6 != 2:
        return None
    first, second, sequence, timestamp, ssrc = struct.unpack_from("!BBHII", data)
    payload_type = second & 0x7F
    if 72 <= payload_type <= 76:  # RTCP sent to the RTP port (rtcp-mux)
        return None
    offset = 12 + 4 * (first & 0x0F)
    if first & 0x10:  # header extension
        if len(data) < offset + 4:
            return None
        (length,) = struct.unpack_from("!H", data, offset + 2)
        offset += 4 + 4 * length
    end = len(data)
    if first & 0x20 and end > offset:  # padding
        end -= data[-1]
    if end < offset:
        return None
    return RtpPacket(payload_type, bool(second & 0x80), sequence, timestamp, ssrc, data[offset:end])


_CONNECTION = re.compile(r"^c=IN IP[46] (\S+)", re.MULTILINE)
_AUDIO = re.compile(r"^m=audio (\d+) ", re.MULTILINE)


def media_address(sdp: str) -> tuple[str, int]:
    """The (address, port) of the first audio stream in ``sdp``."""
    audio = _AUDIO.search(sdp)
    if audio is None:
        raise ValueError("SDP has no audio stream")
    connections = list(_CONNECTION.finditer(sdp))
    # A media-level c= line (after m=) wins over the session-level one.
    media_level = [c for c in connections if c.start() > audio.start()]
    chosen = media_level or connections
    if not chosen:
        raise ValueError("SDP has no connection address")
    return chosen[0].group(1), int(audio.group(1))


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, endpoint: RtpEndpoint) -> None:
        self._endpoint = endpoint

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        packet = parse_rtp(data)
        if packet is not None:
            self._endpoint._received(packet, addr)

    def error_received(self, exc: Exception) -> None:
        """The peer's port is not open yet (ICMP unreachable): RTP is best effort."""


class RtpEndpoint:
    """One RTP stream on a loopback (or given) UDP port.

    ``remote`` is where audio is sent (set from the peer's SDP with
    :meth:`connect`).  Received packets are kept in :attr:`packets`, in arrival
    order, and every telephone-event end is appended to :attr:`dtmf_digits`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        payload_type: int = PayloadType.PCMU,
        event_payload_type: int | None = PayloadType.TELEPHONE_EVENT,
    ) -> None:
        self.host = host
        self.payload_type = payload_type
        self.event_payload_type = event_payload_type
        self.remote: tuple[str, int] | None = None
        self.packets: list[RtpPacket] = []
        self.dtmf_digits: list[str] = []
        self._transport: asyncio.DatagramTransport | None = None
        self._ssrc = struct.unpack("!I", os.urandom(4))[0]
        self._sequence = struct.unpack("!H", os.urandom(2))[0]
        self._timestamp = struct.unpack("!I", os.urandom(4))[0]
        self._tone_phase = 0
        self._events_seen: set[tuple[int, int]] = set()
        self._arrived = asyncio.Event()

    async def open(self) -> RtpEndpoint:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self.host, 0)
        )
        return self

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def __aenter__(self) -> RtpEndpoint:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def port(self) -> int:
        assert self._transport is not None, "endpoint is not open"
        return int(self._transport.get_extra_info("sockname")[1])

    def sdp(self, *, session: str = "omnicc") -> str:
        """An SDP offer/answer for this endpoint: one audio stream, its codec (+ DTMF)."""
        codec = "PCMU" if self.payload_type == PayloadType.PCMU else "PCMA"
        formats = [str(int(self.payload_type))]
        attributes = [f"a=rtpmap:{int(self.payload_type)} {codec}/8000"]
        if self.event_payload_type is not None:
            event = self.event_payload_type
            formats.append(str(event))
            attributes += [f"a=rtpmap:{event} telephone-event/8000", f"a=fmtp:{event} 0-15"]
        session_id = self._ssrc & 0x7FFFFFFF
        lines = [
            "v=0",
            f"o=- {session_id} 1 IN IP4 {self.host}",
            f"s={session}",
            f"c=IN IP4 {self.host}",
            "t=0 0",
            f"m=audio {self.port} RTP/AVP {' '.join(formats)}",
            *attributes,
            "a=ptime:20",
            "a=sendrecv",
        ]
        return "\r\n".join(lines) + "\r\n"

    def connect(self, sdp: str) -> None:
        """Send to the audio address of the peer's ``sdp``."""
        self.remote = media_address(sdp)

    # -- receiving -------------------------------------------------------------

    def _received(self, packet: RtpPacket, addr: tuple[str, int]) -> None:
        self.packets.append(packet)
        if packet.payload_type == self.event_payload_type and len(packet.payload) >= 4:
            event, flags = packet.payload[0], packet.payload[1]
            key = (packet.timestamp, event)
            if flags & 0x80 and key not in self._events_seen and event < len(DTMF_EVENTS):
                self._events_seen.add(key)
                self.dtmf_digits.append(DTMF_EVENTS[event])
        self._arrived.set()

    def audio(self, *, since: int = 0) -> Samples:
        """Decoded G.711 audio of the packets from index ``since`` on, in arrival order."""
        chunks = [
            ulaw_decode(p.payload) if p.payload_type == PayloadType.PCMU else alaw_decode(p.payload)
            for p in self.packets[since:]
            if p.payload_type in (PayloadType.PCMU, PayloadType.PCMA)
        ]
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)

    async def wait_for_packets(self, count: int, *, timeout: float = 10.0) -> None:
        """Wait until at least ``count`` packets have arrived in total."""
        async with asyncio.timeout(timeout):
            while len(self.packets) < count:
                self._arrived.clear()
                await self._arrived.wait()

    # -- sending ---------------------------------------------------------------

    def _send(self, payload_type: int, payload: bytes, *, marker: bool = False) -> None:
        assert self._transport is not None and self.remote is not None, "not connected"
        header = struct.pack(
            "!BBHII",
            0x80,
            (0x80 if marker else 0) | payload_type,
            self._sequence,
            self._timestamp,
            self._ssrc,
        )
        self._sequence = (self._sequence + 1) & 0xFFFF
        self._transport.sendto(header + payload, self.remote)

    def _encode(self, samples: Samples) -> bytes:
        if self.payload_type == PayloadType.PCMA:
            return alaw_encode(samples)
        return ulaw_encode(samples)

    async def send_audio(self, samples: Samples) -> None:
        """Send ``samples`` as 20 ms packets, paced by the loop clock (no drift)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for index, offset in enumerate(range(0, len(samples), SAMPLES_PER_PACKET)):
            chunk = samples[offset : offset + SAMPLES_PER_PACKET]
            self._send(self.payload_type, self._encode(chunk))
            self._timestamp = (self._timestamp + len(chunk)) & 0xFFFFFFFF
            delay = start + (index + 1) * PTIME_S - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)

    async def send_tone(
        self, frequency: float, duration_s: float, *, amplitude: float = 0.5
    ) -> None:
        """A continuous sine tone (phase kept across calls)."""
        samples = tone(frequency, duration_s, amplitude=amplitude, start_sample=self._tone_phase)
        self._tone_phase += len(samples)
        await self.send_audio(samples)

    async def send_dtmf(self, digit: str, *, duration_ms: int = 100, volume: int = 10) -> None:
        """One RFC 4733 telephone-event: updates every 20 ms, then the end packet three times."""
        assert self.event_payload_type is not None, "no telephone-event payload type"
        event_pt = self.event_payload_type
        event = DTMF_EVENTS.index(digit.upper())
        loop = asyncio.get_running_loop()
        start = loop.time()
        steps = max(1, duration_ms // 20)
        for step in range(1, steps + 1):
            duration = step * SAMPLES_PER_PACKET
            end = step == steps
            payload = struct.pack("!BBH", event, (0x80 if end else 0) | volume, duration)
            for _ in range(3 if end else 1):
                self._send(event_pt, payload, marker=step == 1)
            delay = start + step * PTIME_S - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        self._timestamp = (self._timestamp + steps * SAMPLES_PER_PACKET) & 0xFFFFFFFF

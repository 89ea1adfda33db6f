"""rtpengine's pcap recordings to one WAV per call, and their retention.

With ``--recording-method=pcap`` rtpengine writes, per recorded call,
``metadata/rtpengine-meta-<call-id>-<random>.txt`` (first line: the pcap path,
then the SDPs) and ``pcaps/<call-id>-<random>.pcap`` with link type RAW (101,
bare IP packets; ``--recording-format=eth`` gives Ethernet frames, also read
here).  Each packet is one RTP packet rtpengine *received*, addressed to its own
local port: the caller's audio arrives on the caller-facing port, every other
party's (agent, transfer target) on the other ports.  Audio that rtpengine
generates itself (prompts, music on hold) is not in the pcap.

The result is a **stereo** WAV, 8 kHz 16-bit: left = the caller, right = the
other side (every party in turn), so a reviewer can listen to either side and
speech analytics can tell them apart; a player mixes both.  Each RTP stream is
placed on the timeline by its first packet's capture time plus its RTP
timestamps, so silence (hold, DTX) stays silence and jitter does not shift audio;
when a sender's RTP clock jumps (over a second off the capture clock) the stream
follows the capture clock again.
G.711 is decoded with :mod:`omnicc.channels.voice.media.tones` tables; other
payload types (telephone-event, comfort noise) are skipped.

The pcap reader is ours: the classic pcap format is a 24-byte header and
16-byte record headers, which does not justify ``dpkt`` or ``scapy``.
"""

from __future__ import annotations

import ipaddress
import struct
import time
import wave
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import numpy as np

from omnicc.channels.voice.media.rtp import PayloadType, parse_rtp
from omnicc.channels.voice.media.tones import SAMPLE_RATE, Samples, alaw_decode, ulaw_decode

__all__ = [
    "PcapError",
    "PcapPacket",
    "UdpDatagram",
    "delete_older_than",
    "find_recording",
    "read_pcap",
    "recording_to_wav",
    "remove_recording",
    "udp_datagrams",
]

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
RESYNC_S = 1.0


class PcapError(ValueError):
    """Not a pcap file, or one cut short."""


@dataclass(frozen=True, slots=True)
class PcapPacket:
    time: float
    linktype: int
    data: bytes


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    time: float
    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes


_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}


def read_pcap(path: Path) -> Iterator[PcapPacket]:
    """Packets of a classic pcap file (either byte order, µs or ns timestamps).

    A truncated last record (the file is still being written) ends the iteration.
    """
    with path.open("rb") as stream:
        header = stream.read(24)
        if len(header) < 24 or header[:4] not in _MAGIC:
            raise PcapError(f"{path.name}: not a pcap file")
        order, unit = _MAGIC[header[:4]]
        (linktype,) = struct.unpack(order + "I", header[20:24])
        record = struct.Struct(order + "IIII")
        while True:
            head = stream.read(record.size)
            if len(head) < record.size:
                return
            seconds, fraction, captured, _original = record.unpack(head)
            data = stream.read(captured)
            if len(data) < captured:
                return
            yield PcapPacket(seconds + fraction * unit, linktype & 0x0FFFFFFF, data)


def _ip_payload(packet: PcapPacket) -> bytes | None:
    data = packet.data
    if packet.linktype == LINKTYPE_ETHERNET:
        if len(data) < 14:
            return None
        ethertype, offset = struct.unpack_from("!H", data, 12)[0], 14
        while ethertype == 0x8100 and len(data) >= offset + 4:  # VLAN tags
            ethertype = struct.unpack_from("!H", data, offset + 2)[0]
            offset += 4
        return data[offset:] if ethertype in (0x0800, 0x86DD) else None
    if packet.linktype == LINKTYPE_LINUX_SLL:
        return data[16:]
    if packet.linktype == LINKTYPE_RAW:
        return data
    return None


def udp_datagrams(packets: Iterable[PcapPacket]) -> Iterator[UdpDatagram]:
    """The UDP datagrams (IPv4 or IPv6, unfragmented) among ``packets``."""
    for packet in packets:
        ip = _ip_payload(packet)
        if not ip:
            continue
        version = ip[0] >> 4
        if version == 4 and len(ip) >= 20 and ip[9] == 17:
            header = (ip[0] & 0x0F) * 4
            src_ip, dst_ip = ip[12:16], ip[16:20]
            total = struct.unpack_from("!H", ip, 2)[0] or len(ip)
            ip = ip[:total]
            src = ".".join(map(str, src_ip))
            dst = ".".join(map(str, dst_ip))
        elif version == 6 and len(ip) >= 40 and ip[6] == 17:
            header = 40
            src = _ipv6(ip[8:24])
            dst = _ipv6(ip[24:40])
        else:
            continue
        if len(ip) < header + 8:
            continue
        sport, dport, length = struct.unpack_from("!HHH", ip, header)
        payload = ip[header + 8 : header + max(8, length)]
        yield UdpDatagram(packet.time, (src, sport), (dst, dport), payload)


def _ipv6(raw: bytes) -> str:
    return str(ipaddress.IPv6Address(raw))


def _recording_metadata(recording_dir: Path, call_id: str) -> list[Path]:
    """rtpengine names metadata ``rtpengine-meta-<call-id>-<16 hex>.txt`` with the call-id
    percent-encoded (``a/b@c`` -> ``a%2Fb%40c``), so names are decoded and compared."""
    found = []
    for meta in (recording_dir / "metadata").glob("rtpengine-meta-*.txt"):
        encoded = meta.name.removeprefix("rtpengine-meta-").removesuffix(".txt")
        if unquote(encoded.rpartition("-")[0]) == call_id:
            found.append(meta)
    return sorted(found, key=lambda path: path.stat().st_mtime)


def find_recording(recording_dir: Path, call_id: str) -> list[Path]:
    """The pcap files rtpengine wrote for ``call_id`` (one per start of recording), oldest first."""
    pcaps: list[Path] = []
    for meta in _recording_metadata(recording_dir, call_id):
        first = meta.read_text(errors="replace").splitlines()[:1]
        if first and Path(first[0]).is_file():
            pcaps.append(Path(first[0]))
    return pcaps


def remove_recording(recording_dir: Path, call_id: str) -> list[Path]:
    """Delete rtpengine's files of a call (pcaps and metadata) once its WAV is kept."""
    removed = []
    for meta in _recording_metadata(recording_dir, call_id):
        first = meta.read_text(errors="replace").splitlines()[:1]
        for path in ([Path(first[0])] if first else []) + [meta]:
            if path.is_file():
                path.unlink()
                removed.append(path)
    return removed


@dataclass
class _Stream:
    anchor: float  # capture time of the packet whose RTP timestamp is ``first_timestamp``
    first_timestamp: int


def recording_to_wav(pcaps: Iterable[Path], caller_port: int, target: Path,
                     *, ignore_ports: Collection[int] = ()) -> float:
    """Convert a call's pcaps to a stereo WAV (left caller, right the other side).

    ``caller_port`` is rtpengine's caller-facing port (``RecordingHandle.caller_port``).
    ``ignore_ports`` are rtpengine ports whose packets are left out: those facing OmniCC's
    mixer while the call was supervised (``RecordingHandle.mixer_ports``), whose audio is
    the two sides again, mixed.
    Returns the duration in seconds; a recording without audio gives an empty WAV.
    """
    streams: dict[tuple[int, int, int], _Stream] = {}
    chunks: list[tuple[int, float, Samples]] = []  # (side, start time, samples)
    for path in pcaps:
        for datagram in udp_datagrams(read_pcap(path)):
            packet = parse_rtp(datagram.payload)
            if packet is None or packet.payload_type not in (PayloadType.PCMU, PayloadType.PCMA):
                continue
            if datagram.dst[1] in ignore_ports:
                continue
            side = 0 if datagram.dst[1] == caller_port else 1
            key = (side, datagram.dst[1], packet.ssrc)
            stream = streams.get(key)
            if stream is None:
                stream = streams[key] = _Stream(datagram.time, packet.timestamp)
            offset = (packet.timestamp - stream.first_timestamp + 2**31) % 2**32 - 2**31
            when = stream.anchor + offset / SAMPLE_RATE
            if abs(when - datagram.time) > RESYNC_S:
                # The sender jumped its RTP clock (new talk spurt after hold, a restart):
                # follow the capture clock again from here.
                stream.anchor, stream.first_timestamp = datagram.time, packet.timestamp
                when = datagram.time
            decode = ulaw_decode if packet.payload_type == PayloadType.PCMU else alaw_decode
            chunks.append((side, when, decode(packet.payload)))
    start = min((when for _, when, _ in chunks), default=0.0)
    placed = [
        (side, round((when - start) * SAMPLE_RATE), samples) for side, when, samples in chunks
    ]
    length = max((position + len(samples) for _, position, samples in placed), default=0)
    mix = np.zeros((length, 2), dtype=np.int32)
    for side, position, samples in placed:
        mix[position : position + len(samples), side] += samples
    audio = np.clip(mix, -32768, 32767).astype("<i2")
    target.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(target), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(audio.tobytes())
    return length / SAMPLE_RATE


def delete_older_than(
    directory: Path,
    days: float,
    *,
    now: float | None = None,
    suffixes: Iterable[str] = (
        ".wav",
        ".pcap",
        ".txt",
    ),
) -> list[Path]:
    """Retention: delete recording files (WAV, pcap, metadata) last modified over ``days`` ago."""
    cutoff = (time.time() if now is None else now) - days * 86400
    wanted = set(suffixes)
    removed: list[Path] = []
    for path in directory.rglob("*"):
        if path.is_file() and path.suffix in wanted and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed

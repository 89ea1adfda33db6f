"""pcap reading (both byte orders, RAW and Ethernet link types, truncation), the stereo
WAV assembly from RTP streams, locating rtpengine's files and retention."""

from __future__ import annotations

import os
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from omnicc.channels.voice.media.recordings import (
    LINKTYPE_ETHERNET,
    LINKTYPE_RAW,
    PcapError,
    delete_older_than,
    find_recording,
    read_pcap,
    recording_to_wav,
    remove_recording,
    udp_datagrams,
)
from omnicc.channels.voice.media.tones import alaw_encode, tone, tone_share, ulaw_encode

CALLER_PORT = 40000
AGENT_PORT = 40010


def ipv4_udp(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    addresses = bytes(map(int, src[0].split("."))) + bytes(map(int, dst[0].split(".")))
    return struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0) + addresses + udp


def rtp(pt: int, seq: int, timestamp: int, ssrc: int, payload: bytes) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, timestamp, ssrc) + payload


def write_pcap(
    path: Path,
    records: list[tuple[float, bytes]],
    *,
    linktype: int = LINKTYPE_RAW,
    order: str = "<",
) -> Path:
    with path.open("wb") as out:
        out.write(struct.pack(order + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))
        for when, data in records:
            seconds = int(when)
            micros = round((when - seconds) * 1e6)
            out.write(struct.pack(order + "IIII", seconds, micros, len(data), len(data)) + data)
    return path


def call_records(start: float = 1000.0) -> list[tuple[float, bytes]]:
    """One second: the caller sends 1 kHz (PCMU), the agent 440 Hz (PCMA), 20 ms packets."""
    caller, agent = tone(1000, 1.0), tone(440, 1.0)
    records = []
    for i in range(50):
        chunk = slice(i * 160, (i + 1) * 160)
        when = start + i * 0.02
        records.append(
            (
                when,
                ipv4_udp(
                    ("127.0.0.1", 5000),
                    ("127.0.0.1", CALLER_PORT),
                    rtp(0, i, 8000 + i * 160, 1, ulaw_encode(caller[chunk])),
                ),
            )
        )
        records.append(
            (
                when + 0.005,
                ipv4_udp(
                    ("127.0.0.1", 6000),
                    ("127.0.0.1", AGENT_PORT),
                    rtp(8, i, 99 + i * 160, 2, alaw_encode(agent[chunk])),
                ),
            )
        )
    # A DTMF event and a non-RTP datagram are skipped.
    dtmf = rtp(101, 60, 1, 1, b"\x05\x8a\x00\xa0")
    records.append((start + 0.5, ipv4_udp(("127.0.0.1", 5000), ("127.0.0.1", CALLER_PORT), dtmf)))
    records.append((start + 0.6, ipv4_udp(("127.0.0.1", 1), ("127.0.0.1", 2), b"junk")))
    return records


def read_stereo(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (2, 8000, 2)
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)


@pytest.mark.parametrize("order", ["<", ">"])
def test_read_pcap_in_either_byte_order(tmp_path: Path, order: str) -> None:
    records = call_records()
    packets = list(read_pcap(write_pcap(tmp_path / "c.pcap", records, order=order)))
    assert [p.data for p in packets] == [data for _, data in records]
    assert packets[1].time == pytest.approx(1000.005)
    datagrams = list(udp_datagrams(packets))
    assert datagrams[0].dst == ("127.0.0.1", CALLER_PORT)
    assert datagrams[1].src == ("127.0.0.1", 6000)


def test_ethernet_frames_and_a_truncated_tail(tmp_path: Path) -> None:
    frame = b"\x00" * 12 + b"\x08\x00" + ipv4_udp(("10.0.0.1", 1), ("10.0.0.2", 2), b"x")
    path = write_pcap(tmp_path / "e.pcap", [(1.0, frame)], linktype=LINKTYPE_ETHERNET)
    with path.open("ab") as out:
        out.write(struct.pack("<IIII", 2, 0, 100, 100) + b"partial")  # still being written
    (datagram,) = udp_datagrams(read_pcap(path))
    assert (datagram.src, datagram.dst, datagram.payload) == (
        ("10.0.0.1", 1),
        ("10.0.0.2", 2),
        b"x",
    )


def test_not_a_pcap(tmp_path: Path) -> None:
    (tmp_path / "x.pcap").write_bytes(b"GIF89a" + b"\x00" * 30)
    with pytest.raises(PcapError):
        list(read_pcap(tmp_path / "x.pcap"))


def test_the_wav_has_the_caller_left_and_the_agent_right(tmp_path: Path) -> None:
    pcap = write_pcap(tmp_path / "c.pcap", call_records())
    duration = recording_to_wav([pcap], CALLER_PORT, tmp_path / "c.wav")
    assert duration == pytest.approx(1.005, abs=0.01)
    frames = read_stereo(tmp_path / "c.wav")
    assert tone_share(frames[:, 0], 1000) > 0.99
    assert tone_share(frames[:, 0], 440) < 0.001
    assert tone_share(frames[:, 1], 440) > 0.99
    # The agent's first packet was captured 5 ms after the caller's: 40 samples later.
    assert not frames[:40, 1].any() and frames[40:45, 1].any()


def test_a_gap_in_the_stream_stays_silent(tmp_path: Path) -> None:
    records = [r for r in call_records() if not 1000.2 <= r[0] < 1000.4]
    recording_to_wav([write_pcap(tmp_path / "g.pcap", records)], CALLER_PORT, tmp_path / "g.wav")
    caller = read_stereo(tmp_path / "g.wav")[:, 0]
    assert not caller[1600:3200].any()
    assert caller[3200:3360].any()


def test_find_and_remove_follow_the_metadata(tmp_path: Path) -> None:
    (tmp_path / "metadata").mkdir()
    (tmp_path / "pcaps").mkdir()
    call_id = "a/b@host.example:5060*?[1]"
    encoded = "a%2Fb%40host.example%3A5060%2A%3F%5B1%5D"  # as rtpengine 10.5 names it
    pcap = write_pcap(tmp_path / "pcaps" / f"{encoded}-1de21ab8c0b184b7.pcap", [])
    meta = tmp_path / "metadata" / f"rtpengine-meta-{encoded}-1de21ab8c0b184b7.txt"
    meta.write_text(f"{pcap}\n\nSDP...\n")
    other = tmp_path / "metadata" / "rtpengine-meta-a%2Fb-0123456789abcdef.txt"
    other.write_text("/elsewhere.pcap\n")

    assert find_recording(tmp_path, call_id) == [pcap]
    assert find_recording(tmp_path, "a/b") == []  # its pcap is gone
    assert find_recording(tmp_path, "zzz") == []
    assert sorted(remove_recording(tmp_path, call_id)) == sorted([pcap, meta])
    assert not pcap.exists() and not meta.exists() and other.exists()


def test_retention_deletes_only_old_recording_files(tmp_path: Path) -> None:
    now = 1_800_000_000.0
    old, fresh, other = tmp_path / "a" / "old.wav", tmp_path / "fresh.pcap", tmp_path / "keep.db"
    old.parent.mkdir()
    for path in (old, fresh, other):
        path.write_bytes(b"x")
    os.utime(old, (now - 31 * 86400, now - 31 * 86400))
    os.utime(other, (now - 31 * 86400, now - 31 * 86400))
    os.utime(fresh, (now - 29 * 86400, now - 29 * 86400))
    assert delete_older_than(tmp_path, 30, now=now) == [old]
    assert not old.exists() and fresh.exists() and other.exists()


def test_a_jump_of_the_rtp_clock_follows_the_capture_time(tmp_path: Path) -> None:
    records = call_records()
    jumped = []
    for when, data in records:
        if when >= 1000.5 and data[22:24] == struct.pack("!H", CALLER_PORT):
            header = bytearray(data)
            (stamp,) = struct.unpack_from("!I", header, 32)
            struct.pack_into("!I", header, 32, (stamp + 3_000_000_000) % 2**32)
            data = bytes(header)
        jumped.append((when, data))
    recording_to_wav([write_pcap(tmp_path / "j.pcap", jumped)], CALLER_PORT, tmp_path / "j.wav")
    frames = read_stereo(tmp_path / "j.wav")
    assert len(frames) == pytest.approx(8040, abs=10)  # still one second, not hours
    assert tone_share(frames[:, 0], 1000) > 0.99
    assert frames[4000:4100, 0].any()

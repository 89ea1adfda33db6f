"""RTP parsing, SDP media addresses, and two endpoints talking over loopback."""

from __future__ import annotations

import asyncio
import struct

import pytest

from omnicc.channels.voice.media.rtp import PayloadType, RtpEndpoint, media_address, parse_rtp
from omnicc.channels.voice.media.tones import tone_share


def test_parse_rtp_reads_the_header_and_skips_csrc_extension_and_padding() -> None:
    header = struct.pack("!BBHII", 0xB1, 0x80 | 8, 7, 1000, 0xABCD)  # padding, ext, 1 CSRC
    csrc = b"\x00\x00\x00\x01"
    extension = struct.pack("!HH", 0xBEDE, 1) + b"\x00" * 4
    packet = parse_rtp(header + csrc + extension + b"audio" + b"\x00\x00\x03")
    assert packet is not None
    assert (packet.payload_type, packet.marker, packet.sequence, packet.timestamp) == (
        8,
        True,
        7,
        1000,
    )
    assert packet.ssrc == 0xABCD
    assert packet.payload == b"audio"


@pytest.mark.parametrize(
    "data",
    [b"", b"\x80" * 11, b"\x40" + b"\x00" * 11, struct.pack("!BBHII", 0x80, 200, 1, 1, 1)],
)
def test_parse_rtp_rejects_non_rtp(data: bytes) -> None:
    assert parse_rtp(data) is None


def test_media_address_prefers_the_media_level_connection() -> None:
    sdp = "v=0\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 10.0.0.2\r\n"
    assert media_address(sdp) == ("10.0.0.2", 4000)
    assert media_address("c=IN IP6 ::1\nm=audio 5 RTP/AVP 8\n") == ("::1", 5)
    with pytest.raises(ValueError):
        media_address("v=0\r\nc=IN IP4 1.2.3.4\r\n")


def test_two_endpoints_exchange_audio_and_dtmf() -> None:
    async def scenario() -> None:
        async with RtpEndpoint() as a, RtpEndpoint(payload_type=PayloadType.PCMA) as b:
            assert f"m=audio {a.port} RTP/AVP 0 101" in a.sdp()
            assert "a=rtpmap:8 PCMA/8000" in b.sdp()
            a.connect(b.sdp())
            b.connect(a.sdp())
            await asyncio.gather(a.send_tone(1000, 0.2), b.send_tone(440, 0.2))
            await a.wait_for_packets(10)
            await b.wait_for_packets(10)
            assert tone_share(b.audio(), 1000) > 0.9
            assert tone_share(a.audio(), 440) > 0.9
            assert {p.payload_type for p in b.packets} == {PayloadType.PCMU}
            sequences = [p.sequence for p in b.packets]
            assert sequences == sorted(sequences) or max(sequences) - min(sequences) > 60000
            await a.send_dtmf("7")
            await a.send_dtmf("#")
            async with asyncio.timeout(5):
                while b.dtmf_digits != ["7", "#"]:
                    await asyncio.sleep(0.01)

    asyncio.run(scenario())

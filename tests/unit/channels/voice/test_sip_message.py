"""SIP message parsing and serialization (RFC 3261 §7, §20, §25).

The tortuous cases are written in the style of RFC 4475 §3.1.1.1 ("wsinv": folding, odd
whitespace, mixed-case and compact header names, escaped quotes) but are not verbatim copies of
the RFC's messages; the others are shaped like what sipp's uac scenario and baresip send.
"""

from __future__ import annotations

import pytest

from omnicc.channels.voice.sip.message import (
    CSeq,
    Headers,
    NameAddr,
    SipParseError,
    SipRequest,
    SipResponse,
    Via,
    parse_cseq,
    parse_datagram,
    parse_name_addr,
    parse_stream,
    parse_via,
    parse_via_list,
    split_list,
)

SDP = (
    b"v=0\r\n"
    b"o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n"
    b"s=-\r\n"
    b"c=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\n"
    b"m=audio 6000 RTP/AVP 0\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
)


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


SIPP_INVITE = (
    crlf(
        "INVITE sip:service@127.0.0.1:5060 SIP/2.0\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4711-1-0\n"
        "From: sipp <sip:sipp@127.0.0.1:5061>;tag=4711SIPpTag001\n"
        "To: service <sip:service@127.0.0.1:5060>\n"
        "Call-ID: 1-4711@127.0.0.1\n"
        "CSeq: 1 INVITE\n"
        "Contact: sip:sipp@127.0.0.1:5061\n"
        "Max-Forwards: 70\n"
        "Subject: Performance Test\n"
        "Content-Type: application/sdp\n"
        f"Content-Length: {len(SDP)}\n"
        "\n"
    )
    + SDP
)

BARESIP_200 = crlf(
    "SIP/2.0 200 OK\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKb2b;received=127.0.0.1;rport=5060\n"
    'From: "OmniCC" <sip:omnicc@127.0.0.1>;tag=abc123\n'
    "To: <sip:agent1@127.0.0.1>;tag=f00dcafe\n"
    "Call-ID: 7c3a1e9b@127.0.0.1\n"
    "CSeq: 2 INVITE\n"
    "Contact: <sip:agent1-0x55d@127.0.0.1:5062;transport=udp>\n"
    "User-Agent: baresip v3.10.1 (x86_64/Linux)\n"
    "Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY,SUBSCRIBE,INFO,MESSAGE,UPDATE,REFER\n"
    "Supported: replaces,norefersub,100rel\n"
    "Content-Length: 0\n"
    "\n"
)

REGISTER = crlf(
    "REGISTER sip:127.0.0.1 SIP/2.0\n"
    "Via: SIP/2.0/TCP 127.0.0.1:40563;branch=z9hG4bKreg1;rport\n"
    "Max-Forwards: 70\n"
    "To: <sip:agent1@127.0.0.1>\n"
    "From: <sip:agent1@127.0.0.1>;tag=reg-tag\n"
    "Call-ID: reg-call-1\n"
    "CSeq: 3 REGISTER\n"
    "Contact: <sip:agent1@127.0.0.1:40563;transport=tcp>"
    ';expires=3600;+sip.instance="<urn:uuid:1>"\n'
    "Expires: 3600\n"
    "Content-Length: 0\n"
    "\n"
)

TORTUOUS = crlf(
    "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\n"
    "TO :\n"
    " sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\n"
    'from   : "J Rosenberg \\\\\\"" <sip:jdrosen@example.com>\n'
    "  ;\n"
    "  tag = 98asjd8\n"
    "MaX-fOrWaRdS: 0068\n"
    "Call-ID: wsinv.ndaksdj@192.0.2.1\n"
    "Content-Length   : 0\n"
    "cseq: 0009\n"
    "  INVITE\n"
    "Via  : SIP  /   2.0\n"
    " /UDP\n"
    "    192.0.2.2;rport;branch=390skdjuw\n"
    "s :\n"
    "NewFangledHeader:   newfangled value\n"
    " continued newfangled value\n"
    "UnknownHeaderWithUnusualValue: ;;,,;;,;\n"
    "v:  SIP/2.0/TCP     spindle.example.com   ;\n"
    "  branch  =   z9hG4bK9ikj8  ,\n"
    " SIP  /    2.0   / UDP  192.168.255.111   ; branch=\n"
    " z9hG4bK30239\n"
    'm:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =\n'
    "      newvalue ;\n"
    "  secondparam ; q = 0.33\n"
    "\n"
)


def test_sipp_invite_parses_into_typed_values() -> None:
    msg = parse_datagram(SIPP_INVITE)
    assert isinstance(msg, SipRequest)
    assert (msg.method, msg.uri, msg.version) == ("INVITE", "sip:service@127.0.0.1:5060", "SIP/2.0")
    assert msg.body == SDP
    assert msg.call_id == "1-4711@127.0.0.1"
    assert msg.cseq == CSeq(1, "INVITE")
    assert msg.from_ == NameAddr("sip:sipp@127.0.0.1:5061", "sipp", {"tag": "4711SIPpTag001"})
    assert msg.to.tag is None
    assert msg.to.display_name == "service"
    (via,) = msg.vias
    assert (via.transport, via.host, via.port, via.branch) == (
        "UDP",
        "127.0.0.1",
        5061,
        "z9hG4bK-4711-1-0",
    )
    assert msg.contacts == [NameAddr("sip:sipp@127.0.0.1:5061")]
    assert msg.content_type == "application/sdp"


def test_baresip_200_ok() -> None:
    msg = parse_datagram(BARESIP_200)
    assert isinstance(msg, SipResponse)
    assert (msg.status, msg.reason) == (200, "OK")
    via = msg.vias[0]
    assert via.received == "127.0.0.1"
    assert via.rport == 5060 and via.rport_requested
    assert msg.from_.display_name == "OmniCC"
    assert msg.to.tag == "f00dcafe"
    assert msg.contacts[0].uri == "sip:agent1-0x55d@127.0.0.1:5062;transport=udp"
    assert msg.contacts[0].params == {}
    assert "UPDATE" in msg.headers.values("Allow")
    assert msg.headers.values("Supported") == ["replaces", "norefersub", "100rel"]
    assert msg.body == b""


def test_register_contact_params_and_empty_rport() -> None:
    msg = parse_datagram(REGISTER)
    via = msg.vias[0]
    assert via.transport == "TCP"
    assert via.rport_requested and via.rport is None
    contact = msg.contacts[0]
    assert contact.params == {"expires": "3600", "+sip.instance": "<urn:uuid:1>"}


def test_tortuous_invite() -> None:
    msg = parse_datagram(TORTUOUS)
    assert isinstance(msg, SipRequest)
    assert msg.uri == "sip:vivekg@chair-dnrc.example.com;unknownparam"
    assert msg.to == NameAddr("sip:vivekg@chair-dnrc.example.com", None, {"tag": "1918181833n"})
    assert msg.from_.display_name == 'J Rosenberg \\"'
    assert msg.from_.tag == "98asjd8"
    assert msg.headers.get("max-forwards") == "0068"
    assert msg.cseq == CSeq(9, "INVITE")
    assert msg.headers.get("Subject") == ""
    assert msg.headers.get("newfangledheader") == "newfangled value continued newfangled value"
    vias = msg.vias
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert vias[0].rport_requested
    (contact,) = msg.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    # Round trip: what we write parses back to the same message.
    assert parse_datagram(msg.to_bytes()) == msg


@pytest.mark.parametrize("raw", [SIPP_INVITE, BARESIP_200, REGISTER, TORTUOUS])
def test_serialization_round_trips(raw: bytes) -> None:
    msg = parse_datagram(raw)
    again = parse_datagram(msg.to_bytes())
    assert again == msg
    assert again.to_bytes() == msg.to_bytes()


def test_build_and_serialize_ack_and_bye() -> None:
    headers = Headers(
        [
            ("v", str(Via("UDP", "10.0.0.1", 5060, {"branch": "z9hG4bKack1"}))),
            ("f", str(NameAddr("sip:a@x", "Alice Smith", {"tag": "t1"}))),
            ("t", str(NameAddr("sip:b@y", None, {"tag": "t2"}))),
            ("i", "call-1"),
            ("CSeq", str(CSeq(1, "ACK"))),
        ]
    )
    ack = SipRequest("ACK", "sip:b@10.0.0.2", headers)
    raw = ack.to_bytes()
    assert raw.startswith(b"ACK sip:b@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;")
    assert b'From: "Alice Smith" <sip:a@x>;tag=t1\r\n' in raw
    assert raw.endswith(b"Content-Length: 0\r\n\r\n")
    assert parse_datagram(raw) == SipRequest(
        "ACK", "sip:b@10.0.0.2", Headers([*headers, ("Content-Length", "0")])
    )
    bye = SipRequest("BYE", "sip:b@10.0.0.2", headers.copy(), body=b"x")
    bye.headers.set("CSeq", "2 BYE")
    parsed = parse_datagram(bye.to_bytes())
    assert parsed.cseq == CSeq(2, "BYE")
    assert parsed.headers.get("content-length") == "1"


def test_compact_forms_expand_and_lookup_is_case_insensitive() -> None:
    raw = crlf(
        "OPTIONS sip:x@y SIP/2.0\n"
        "v: SIP/2.0/UDP h;branch=z9hG4bK1\n"
        "f: <sip:a@b>;tag=1\n"
        "t: <sip:x@y>\n"
        "i: cid\n"
        "CSEQ: 5 OPTIONS\n"
        "k: timer\n"
        "e: gzip\n"
        "c: text/plain\n"
        "l: 2\n"
        "\n"
        "hi"
    )
    msg = parse_datagram(raw)
    names = [name for name, _ in msg.headers]
    assert names == [
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Supported",
        "Content-Encoding",
        "Content-Type",
        "Content-Length",
    ]
    assert msg.headers.get("CALL-id") == msg.headers.get("i") == "cid"
    assert msg.body == b"hi"
    assert msg.vias[0].port is None


def test_repeated_and_comma_separated_values_are_equivalent() -> None:
    repeated = crlf(
        "SIP/2.0 180 Ringing\n"
        "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\n"
        "Via: SIP/2.0/UDP b.example.com:5070;branch=z9hG4bK2\n"
        "Record-Route: <sip:p1;lr>\n"
        "Record-Route: <sip:p2;lr>\n"
        "Content-Length: 0\n\n"
    )
    joined = crlf(
        "SIP/2.0 180 Ringing\n"
        "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/UDP b.example.com:5070"
        ";branch=z9hG4bK2\n"
        "Record-Route: <sip:p1;lr>, <sip:p2;lr>\n"
        "Content-Length: 0\n\n"
    )
    a, b = parse_datagram(repeated), parse_datagram(joined)
    assert a.vias == b.vias
    assert a.headers.values("Record-Route") == b.headers.values("Record-Route")
    assert a.headers.values("record-route") == ["<sip:p1;lr>", "<sip:p2;lr>"]


def test_via_parser() -> None:
    via = parse_via("SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKx;received=192.0.2.1;rport=1")
    assert (via.host, via.port, via.received, via.rport) == ("[2001:db8::1]", 5060, "192.0.2.1", 1)
    assert str(via) == "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKx;received=192.0.2.1;rport=1"
    assert len(parse_via_list("SIP/2.0/TCP h1, SIP/2.0/TLS h2:5061")) == 2
    for bad in ("UDP 1.2.3.4", "SIP/2.0/UDP", "SIP/2.0/UDP h:99999", "SIP/2.0/UDP h;rport=x"):
        with pytest.raises(SipParseError, match="Via"):
            parse_via(bad)


def test_name_addr_forms() -> None:
    assert parse_name_addr("<sip:a@b>") == NameAddr("sip:a@b")
    assert parse_name_addr("Bob  Smith <sip:bob@b>;tag=9") == NameAddr(
        "sip:bob@b", "Bob Smith", {"tag": "9"}
    )
    # addr-spec without brackets: parameters belong to the header, not the URI (§20.10)
    assert parse_name_addr("sip:a@b;tag=1") == NameAddr("sip:a@b", None, {"tag": "1"})
    # with brackets, URI parameters stay in the URI
    assert parse_name_addr("<sip:a@b;transport=tcp>;tag=1").uri == "sip:a@b;transport=tcp"
    assert parse_name_addr('"" <sip:a@b>').display_name == ""
    assert str(NameAddr("sip:a@b", 'He said "hi"')) == '"He said \\"hi\\"" <sip:a@b>'
    for bad in ('"unterminated <sip:a@b>', "<sip:a@b", "no-scheme", "Bad,Name <sip:a@b>"):
        with pytest.raises(SipParseError, match=r"name-addr|quoted"):
            parse_name_addr(bad)


def test_cseq() -> None:
    assert parse_cseq("  42  REGISTER ") == CSeq(42, "REGISTER")
    for bad in ("INVITE", "1", "-1 INVITE", "4294967296 INVITE"):
        with pytest.raises(SipParseError, match="CSeq"):
            parse_cseq(bad)


def test_split_list_respects_quotes_and_brackets() -> None:
    assert split_list('"a, b" <sip:x>, <sip:y?h=1,2>') == ['"a, b" <sip:x>', "<sip:y?h=1,2>"]


# ----------------------------------------------------------------------------- invalid messages


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"INVITE sip:a@b SIP/2.0\r\nCall-ID: x\r\n", "empty line"),
        (b"INVITE sip:a@b SIP/2.0\nCall-ID: x\n\n", r"empty line|CRLF"),
        (b"INVITE sip:a@b SIP/2.0\r\nCall-ID: x\nCSeq: 1 INVITE\r\n\r\n", "CRLF"),
        (b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\nshort", "shorter"),
        (b"INVITE sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
        (b"INVITE sip:a@b SIP/2.0\r\nContent-Length: abc\r\n\r\n", "Content-Length"),
        (b"INVITE sip:a@b SIP/2.0\r\nl: 1\r\nl: 2\r\n\r\nxy", "conflicting"),
        (b"SIP/2.0 99 Too Low\r\n\r\n", "status code"),
        (b"SIP/2.0 700 Too High\r\n\r\n", "status code"),
        (b"SIP/2.0 2000 OK\r\n\r\n", "status code"),
        (b"SIP/2.0 OK\r\n\r\n", "status line"),
        (b"INVITE sip:a@b\r\n\r\n", "request line"),
        (b"INVITE  sip:a@b SIP/2.0\r\n\r\n", "request line"),
        (b"INVITE nourischeme SIP/2.0\r\n\r\n", "Request-URI"),
        (b"INVITE sip:a@b SIP/2.0\r\n folded-first\r\n\r\n", "continuation"),
        (b"INVITE sip:a@b SIP/2.0\r\nNo colon here\r\n\r\n", "header line"),
        (b"INVITE sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n", "header line"),
    ],
)
def test_invalid_datagrams(raw: bytes, match: str) -> None:
    with pytest.raises(SipParseError, match=match):
        parse_datagram(raw)


def test_udp_body_longer_than_content_length_is_truncated() -> None:
    msg = parse_datagram(b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 3\r\n\r\nabcdef")
    assert msg.body == b"abc"


def test_udp_without_content_length_takes_the_rest() -> None:
    msg = parse_datagram(b"MESSAGE sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\nabc")
    assert msg.body == b"abc"


def test_missing_required_header_is_named() -> None:
    msg = parse_datagram(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n")
    with pytest.raises(SipParseError, match="CSeq"):
        _ = msg.cseq


# ----------------------------------------------------------------------------- stream framing


def test_stream_framing_yields_messages_one_by_one() -> None:
    first = parse_datagram(SIPP_INVITE).to_bytes()
    second = parse_datagram(BARESIP_200).to_bytes()
    buffer = b"\r\n\r\n" + first + b"\r\n" + second + b"INVITE sip:partial"
    msg, rest = parse_stream(buffer)
    assert isinstance(msg, SipRequest) and msg.body == SDP
    msg, rest = parse_stream(rest)
    assert isinstance(msg, SipResponse) and msg.status == 200
    msg, rest = parse_stream(rest)
    assert msg is None and rest == b"INVITE sip:partial"


def test_stream_waits_for_whole_body_byte_by_byte() -> None:
    data = parse_datagram(SIPP_INVITE).to_bytes()
    buffer = b""
    for i, byte in enumerate(data):
        buffer += bytes([byte])
        msg, buffer = parse_stream(buffer)
        if i < len(data) - 1:
            assert msg is None
        else:
            assert msg is not None and msg.body == SDP and buffer == b""


def test_stream_requires_content_length_and_bounds_headers() -> None:
    with pytest.raises(SipParseError, match="mandatory"):
        parse_stream(b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n")
    with pytest.raises(SipParseError, match="exceed"):
        parse_stream(b"OPTIONS sip:a@b SIP/2.0\r\nX: " + b"a" * 100, max_header_bytes=50)
    with pytest.raises(SipParseError, match="exceeds"):
        parse_stream(b"MESSAGE sip:a@b SIP/2.0\r\nl: 11\r\n\r\n", max_body_bytes=10)
    assert parse_stream(b"\r\n\r\n") == (None, b"")

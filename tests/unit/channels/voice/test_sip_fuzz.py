"""Fuzzing the stack's receive path (transport, transactions, dialogs, handler), not the parser.

Arbitrary bytes and mutated valid messages are sent over real loopback sockets to a running
SipStack whose handler answers INVITEs (so dialogs exist to be hit by fuzzed in-dialog
requests).  Nothing may be logged at ERROR, no task may die with an exception, and afterwards
the listener still answers a valid OPTIONS with 200.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnicc.channels.voice.sip.message import SipResponse, parse_datagram, parse_stream
from omnicc.channels.voice.sip.stack import IncomingRequest, SipStack

from .sip_fakes import FAST

SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"


def _seed(start: str, headers: list[str], body: bytes = b"") -> bytes:
    lines = [start, *headers, f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


COMMON = [
    "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-fz1;rport",
    "Max-Forwards: 70",
    "From: <sip:fuzz@127.0.0.1>;tag=fz",
    "Call-ID: fuzz-call",
]
SEEDS = [
    _seed(
        "INVITE sip:svc@127.0.0.1 SIP/2.0",
        [
            *COMMON,
            "To: <sip:svc@127.0.0.1>",
            "CSeq: 1 INVITE",
            "Contact: <sip:fuzz@127.0.0.1>",
            "Content-Type: application/sdp",
        ],
        SDP,
    ),
    _seed(
        "OPTIONS sip:svc@127.0.0.1 SIP/2.0", [*COMMON, "To: <sip:svc@127.0.0.1>", "CSeq: 2 OPTIONS"]
    ),
    _seed(
        "REGISTER sip:127.0.0.1 SIP/2.0",
        [
            *COMMON,
            "To: <sip:fuzz@127.0.0.1>",
            "CSeq: 3 REGISTER",
            "Contact: *",
            "Expires: 0",
            'Authorization: Digest username="a", realm="r", nonce="n", uri="sip:x", response="00"',
        ],
    ),
    _seed(
        "BYE sip:svc@127.0.0.1 SIP/2.0", [*COMMON, "To: <sip:svc@127.0.0.1>;tag=x", "CSeq: 4 BYE"]
    ),
    _seed(
        "ACK sip:svc@127.0.0.1 SIP/2.0", [*COMMON, "To: <sip:svc@127.0.0.1>;tag=x", "CSeq: 1 ACK"]
    ),
    _seed(
        "CANCEL sip:svc@127.0.0.1 SIP/2.0", [*COMMON, "To: <sip:svc@127.0.0.1>", "CSeq: 1 CANCEL"]
    ),
    _seed(
        "MESSAGE sip:svc@127.0.0.1 SIP/2.0",
        [*COMMON, "To: <sip:svc@127.0.0.1>", "CSeq: 5 MESSAGE", "Content-Type: text/plain"],
        b"hello",
    ),
    _seed("SIP/2.0 200 OK", [*COMMON, "To: <sip:svc@127.0.0.1>;tag=y", "CSeq: 1 INVITE"], SDP),
    _seed("SIP/2.0 180 Ringing", [*COMMON, "To: <sip:svc@127.0.0.1>;tag=y", "CSeq: 1 INVITE"]),
    b"INVITE sip:svc@127.0.0.1 SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-c\r\n"
    b"f: <sip:a@b>;tag=1\r\nt: sip:svc@127.0.0.1\r\ni: compact\r\nCSeq: 9 INVITE\r\nl: 0\r\n\r\n",
]

Mutation = tuple[str, int, bytes]

mutations = st.lists(
    st.tuples(
        st.sampled_from(["flip", "truncate", "insert", "drop_line", "dup_line", "value"]),
        st.integers(min_value=0, max_value=2000),
        st.binary(max_size=40)
        | st.sampled_from(
            [b"\r\n", b":", b";", b",", b"<", b">", b'"', b" ", b"\x00", b"999999999"]
        ),
    ),
    max_size=6,
)


def mutate(seed: bytes, steps: list[Mutation]) -> bytes:
    data = seed
    for kind, position, payload in steps:
        if not data:
            data = payload
            continue
        index = position % (len(data) + 1)
        lines = data.split(b"\r\n")
        line = position % len(lines)
        if kind == "flip" and index < len(data):
            data = (
                data[:index] + bytes([(data[index] + 1 + len(payload)) % 256]) + data[index + 1 :]
            )
        elif kind == "truncate":
            data = data[:index]
        elif kind == "insert":
            data = data[:index] + payload + data[index:]
        elif kind == "drop_line":
            data = b"\r\n".join(lines[:line] + lines[line + 1 :])
        elif kind == "dup_line":
            data = b"\r\n".join(lines[: line + 1] + lines[line:])
        elif kind == "value":
            name = lines[line].split(b":", 1)[0]
            lines[line] = name + b": " + payload
            data = b"\r\n".join(lines)
    return data


datagrams = st.one_of(
    st.binary(max_size=1500),
    st.builds(mutate, st.sampled_from(SEEDS), mutations),
)


class ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Harness:
    """A started SipStack on its own event loop, fed from blocking sockets."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop_errors: list[dict[str, object]] = []
        self.loop.set_exception_handler(lambda _loop, context: self.loop_errors.append(context))
        self.stack = SipStack(timers=FAST)
        self.stack.set_handler(self._handler)
        self.loop.run_until_complete(self.stack.start())

    async def _handler(self, incoming: IncomingRequest) -> None:
        if incoming.method == "INVITE":
            await incoming.respond(180)
            await incoming.respond(200, body=SDP, content_type="application/sdp")

    def pump(self) -> None:
        self.loop.run_until_complete(asyncio.sleep(0.002))

    def close(self) -> None:
        self.loop.run_until_complete(self.stack.stop())
        self.loop.close()


@pytest.fixture
def harness() -> Iterator[tuple[Harness, ErrorLog]]:
    errors = ErrorLog()
    logger = logging.getLogger("omnicc.channels.voice.sip")
    logger.addHandler(errors)
    sip = Harness()
    try:
        yield sip, errors
    finally:
        sip.close()
        logger.removeHandler(errors)


def options(port: int, transport: str, call_id: str) -> bytes:
    return _seed(
        "OPTIONS sip:svc@127.0.0.1 SIP/2.0",
        [
            f"Via: SIP/2.0/{transport} 127.0.0.1:{port};branch=z9hG4bK-{call_id};rport",
            "Max-Forwards: 70",
            "From: <sip:probe@127.0.0.1>;tag=p",
            "To: <sip:svc@127.0.0.1>",
            f"Call-ID: {call_id}",
            "CSeq: 1 OPTIONS",
        ],
    )


def answered_200_udp(sip: Harness) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        probe.setblocking(False)
        port = probe.getsockname()[1]
        probe.sendto(options(port, "UDP", "after-udp-fuzz"), ("127.0.0.1", sip.stack.udp.port))
        for _ in range(2000):
            sip.pump()
            try:
                data = probe.recv(65535)
            except BlockingIOError:
                continue
            reply = parse_datagram(data)
            if isinstance(reply, SipResponse) and reply.call_id == "after-udp-fuzz":
                return reply.status == 200
    return False


def answered_200_tcp(sip: Harness) -> bool:
    with socket.create_connection(("127.0.0.1", sip.stack.tcp.port)) as probe:
        probe.setblocking(False)
        port = probe.getsockname()[1]
        probe.sendall(options(port, "TCP", "after-tcp-fuzz"))
        buffer = b""
        for _ in range(2000):
            sip.pump()
            try:
                buffer += probe.recv(65535)
            except BlockingIOError:
                continue
            reply, buffer = parse_stream(buffer)
            if isinstance(reply, SipResponse):
                return reply.status == 200
    return False


def test_fuzzed_datagrams_never_break_the_udp_listener(harness: tuple[Harness, ErrorLog]) -> None:
    sip, errors = harness
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as fuzzer:
        fuzzer.bind(("127.0.0.1", 0))
        fuzzer.setblocking(False)

        @settings(
            max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        @given(data=datagrams)
        def feed(data: bytes) -> None:
            if data:
                fuzzer.sendto(data, ("127.0.0.1", sip.stack.udp.port))
            sip.pump()
            while True:  # drain the answers so the socket buffer never fills
                try:
                    fuzzer.recv(65535)
                except BlockingIOError:
                    break

        feed()
    assert answered_200_udp(sip)
    assert not errors.records, [r.getMessage() for r in errors.records]
    assert not sip.loop_errors


def test_fuzzed_streams_never_break_the_tcp_listener(harness: tuple[Harness, ErrorLog]) -> None:
    sip, errors = harness

    @settings(
        max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    @given(chunks=st.lists(datagrams, min_size=1, max_size=3))
    def feed(chunks: list[bytes]) -> None:
        with socket.create_connection(("127.0.0.1", sip.stack.tcp.port)) as conn:
            conn.setblocking(False)
            for chunk in chunks:
                try:
                    conn.sendall(chunk)
                except (BlockingIOError, ConnectionError):
                    break
                sip.pump()
        sip.pump()

    feed()
    assert answered_200_tcp(sip)
    assert not errors.records, [r.getMessage() for r in errors.records]
    assert not sip.loop_errors

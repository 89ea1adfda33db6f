"""A hand-driven SIP endpoint for stack tests: raw bytes out, parsed messages in."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from omnicc.channels.voice.sip.message import SipRequest, SipResponse, parse_datagram
from omnicc.channels.voice.sip.transaction import Timers
from omnicc.channels.voice.sip.transport import Peer

FAST = Timers(t1=0.05, t2=0.2, t4=0.25, d=0.5)
WAIT = 10.0

SipMessage = SipRequest | SipResponse


class RawPeer(asyncio.DatagramProtocol):
    """A UDP socket on loopback that records every SIP message it receives."""

    def __init__(self) -> None:
        self.received: list[SipMessage] = []
        self.garbage: list[bytes] = []
        self._arrived = asyncio.Event()
        self._transport: asyncio.DatagramTransport | None = None
        self.port = 0

    @classmethod
    async def open(cls) -> RawPeer:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(cls, local_addr=("127.0.0.1", 0))
        protocol._transport = transport
        protocol.port = int(transport.get_extra_info("sockname")[1])
        return protocol

    @property
    def peer(self) -> Peer:
        return Peer("UDP", "127.0.0.1", self.port)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            self.received.append(parse_datagram(data))
        except ValueError:
            self.garbage.append(data)
        self._arrived.set()

    def send(self, data: bytes | SipMessage, to: Peer) -> None:
        assert self._transport is not None
        raw = data if isinstance(data, bytes) else data.to_bytes()
        self._transport.sendto(raw, (to.host, to.port))

    async def wait_for(
        self, predicate: Callable[[SipMessage], bool], count: int = 1, timeout: float = WAIT
    ) -> list[SipMessage]:
        """Wait until ``count`` received messages satisfy ``predicate``; return them."""

        async def until() -> list[SipMessage]:
            while True:
                found = [m for m in self.received if predicate(m)]
                if len(found) >= count:
                    return found
                self._arrived.clear()
                await self._arrived.wait()

        return await asyncio.wait_for(until(), timeout)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def status(code: int, method: str | None = None) -> Callable[[SipMessage], bool]:
    def match(message: SipMessage) -> bool:
        return (
            isinstance(message, SipResponse)
            and message.status == code
            and (method is None or message.cseq.method == method)
        )

    return match


def request(method: str) -> Callable[[SipMessage], bool]:
    def match(message: SipMessage) -> bool:
        return isinstance(message, SipRequest) and message.method == method

    return match


def raw_request(
    method: str,
    to: Peer,
    from_port: int,
    *,
    branch: str = "z9hG4bK-raw-1",
    call_id: str = "raw-call-1",
    cseq: int = 1,
    from_tag: str = "rawtag",
    to_tag: str | None = None,
    extra: str = "",
    body: bytes = b"",
    via_port: int | None = None,
    rport: bool = False,
) -> bytes:
    """A request as a phone would send it, from 127.0.0.1:``from_port``."""
    to_param = f";tag={to_tag}" if to_tag else ""
    rport_param = ";rport" if rport else ""
    head = (
        f"{method} sip:omnicc@{to.host}:{to.port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{via_port or from_port};branch={branch}{rport_param}\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:phone@127.0.0.1>;tag={from_tag}\r\n"
        f"To: <sip:omnicc@127.0.0.1>{to_param}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"Contact: <sip:phone@127.0.0.1:{from_port}>\r\n"
        f"{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def ack_for(response: SipResponse, to: Peer, from_port: int, *, branch: str) -> bytes:
    """The ACK a phone sends for ``response`` (same Call-ID and tags, CSeq number)."""
    return (
        f"ACK sip:omnicc@{to.host}:{to.port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{from_port};branch={branch}\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: {response.headers.get('From')}\r\n"
        f"To: {response.headers.get('To')}\r\n"
        f"Call-ID: {response.call_id}\r\n"
        f"CSeq: {response.cseq.number} ACK\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


def response_to(req: SipRequest, code: int, reason: str, *, to_tag: str | None = "ph1") -> bytes:
    """A phone's response to a request it received."""
    lines = [f"SIP/2.0 {code} {reason}"]
    lines += [f"Via: {via}" for via in req.headers.get_all("Via")]
    to = req.headers.get("To") or ""
    if to_tag and ";tag=" not in to:
        to += f";tag={to_tag}"
    lines += [
        f"From: {req.headers.get('From')}",
        f"To: {to}",
        f"Call-ID: {req.call_id}",
        f"CSeq: {req.headers.get('CSeq')}",
        "Contact: <sip:phone@127.0.0.1>",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()

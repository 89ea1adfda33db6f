"""SIP transports (RFC 3261 §18, RFC 3581): UDP and TCP listeners on one host.

The transport layer frames and parses messages, checks that a request carries what is needed
to answer it, and hands every well-formed message to one callback with its source ``Peer``.
Nothing received can crash a listener: unparsable input is dropped (logged at debug), a request
whose head can still be read is answered ``400`` with the reason, and a TCP stream that cannot
be resynchronised is closed.

Outbound TCP connections are opened on demand and reused, and a connection accepted from a
peer is used to reach that peer again (responses go back on the connection the request came
in on, §18.2.2).  Messages are limited to ``max_message_bytes`` (64 KiB by default); the number
of TCP connections is limited to ``max_connections``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass

from .message import (
    COMPACT_FORMS,
    SipParseError,
    SipRequest,
    SipResponse,
    Via,
    parse_datagram,
    parse_stream,
)

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "Peer",
    "SipTransport",
    "check_request",
    "check_response",
    "response_peer",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024
DEFAULT_MAX_CONNECTIONS = 512
DEFAULT_SIP_PORT = 5060
DEFAULT_IDLE_TIMEOUT_S = 300.0
_READ_CHUNK = 16 * 1024
_CONNECT_TIMEOUT_S = 10.0

MessageCallback = Callable[[SipRequest | SipResponse, "Peer"], None]


@dataclass(frozen=True, slots=True)
class Peer:
    """A transport address: ``("UDP" | "TCP", host, port)``."""

    transport: str
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        return self.transport != "UDP"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport.lower()}:{host}:{self.port}"


def check_request(request: SipRequest) -> str | None:
    """Why ``request`` cannot be processed (a 400 reason phrase), or None when it can (§8.2)."""
    try:
        vias = request.vias
        if not vias:
            return "Missing Via"
        cseq = request.cseq
        request.from_  # noqa: B018 - parse check
        request.to  # noqa: B018
        request.call_id  # noqa: B018
    except SipParseError as exc:
        return _reason_from(exc)
    if not request.call_id:
        return "Empty Call-ID"
    if cseq.method.upper() != request.method.upper():
        return "CSeq method does not match the request method"
    if vias[0].transport not in ("UDP", "TCP", "TLS", "SCTP", "WS", "WSS"):
        return "Unsupported transport in Via"
    return None


def check_response(response: SipResponse) -> bool:
    """True when a response carries a usable Via, CSeq, Call-ID, From and To."""
    try:
        response.cseq  # noqa: B018
        response.from_  # noqa: B018
        response.to  # noqa: B018
        return bool(response.vias) and bool(response.call_id)
    except SipParseError:
        return False


def _reason_from(exc: SipParseError) -> str:
    text = str(exc).splitlines()[0] if str(exc) else "Bad Request"
    cleaned = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)
    return ("Bad Request: " + cleaned)[:200]


def response_peer(via: Via, source: Peer) -> Peer:
    """Where the response to a request with top ``via`` received from ``source`` goes (§18.2.2).

    Reliable transports answer on the connection the request came from; UDP answers to
    ``received`` (the source address) and to ``rport`` when the client asked for it (RFC 3581),
    else to the sent-by port.
    """
    if source.reliable:
        return source
    host = via.received or via.host
    port = via.rport if via.rport is not None else (via.port or DEFAULT_SIP_PORT)
    return Peer(source.transport, host, port)


_HEAD_LINE_RE = re.compile(r"([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*:[ \t]*(.*)")
_ECHOED = ("Via", "From", "To", "Call-ID", "CSeq")


def _bad_request(data: bytes, reason: str) -> bytes | None:
    """A 400 for an unparsable request whose echoed headers can still be read, else None."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    lines = head.split("\r\n")
    if not lines or lines[0].upper().startswith("SIP/") or lines[0].startswith("ACK "):
        return None
    found: dict[str, list[str]] = {}
    for line in lines[1:]:
        match = _HEAD_LINE_RE.fullmatch(line.strip())
        if match is None:
            continue
        name = COMPACT_FORMS.get(match.group(1).lower(), match.group(1))
        for wanted in _ECHOED:
            if name.lower() == wanted.lower():
                found.setdefault(wanted, []).append(match.group(2))
    if any(name not in found for name in _ECHOED):
        return None
    out = [f"SIP/2.0 400 {reason}"]
    out += [f"{name}: {value}" for name in _ECHOED for value in found[name]]
    out.append("Content-Length: 0")
    text = "\r\n".join(out) + "\r\n\r\n"
    if any(ch in text[:-4].replace("\r\n", "") for ch in "\r\n\x00"):
        return None
    return text.encode("utf-8", "replace")


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            self.owner._datagram(data, Peer("UDP", str(addr[0]), int(addr[1])))
        except Exception:  # a listener must never die from one datagram
            log.exception("SIP: unexpected error handling a datagram from %s", addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("SIP UDP error: %s", exc)


class _Connection:
    """One TCP connection and its reader task."""

    def __init__(
        self,
        owner: SipTransport,
        peer: Peer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        outbound: bool,
    ) -> None:
        self.owner = owner
        self.peer = peer
        self.reader = reader
        self.writer = writer
        self.outbound = outbound
        self.task: asyncio.Task[None] | None = None
        self.last_activity = asyncio.get_running_loop().time()

    async def read_loop(self) -> None:
        buffer = b""
        limit = self.owner.max_message_bytes
        try:
            while True:
                chunk = await self.reader.read(_READ_CHUNK)
                if not chunk:
                    return
                buffer += chunk
                self.last_activity = asyncio.get_running_loop().time()
                while True:
                    message, buffer = parse_stream(
                        buffer, max_header_bytes=limit, max_body_bytes=limit
                    )
                    if message is None:
                        break
                    self.owner._deliver(message, self.peer, None)
        except SipParseError as exc:
            log.debug("SIP TCP %s: closing a malformed stream: %s", self.peer, exc)
        except (ConnectionError, OSError) as exc:
            log.debug("SIP TCP %s: %s", self.peer, exc)
        except Exception:
            log.exception("SIP TCP %s: unexpected error", self.peer)
        finally:
            self.owner._forget(self)
            self.writer.close()

    def send(self, data: bytes) -> None:
        if self.writer.is_closing():
            raise ConnectionResetError(f"connection to {self.peer} is closed")
        self.last_activity = asyncio.get_running_loop().time()
        self.writer.write(data)


class SipTransport:
    """UDP and TCP listeners on ``host``; ``send`` reaches any ``Peer``."""

    def __init__(
        self,
        host: str,
        on_message: MessageCallback,
        *,
        udp_port: int | None = 0,
        tcp_port: int | None = 0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        advertised_host: str | None = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S,
    ) -> None:
        self.host = host
        self.advertised_host = advertised_host or host
        self.idle_timeout = idle_timeout
        self.on_message = on_message
        self.max_message_bytes = max_message_bytes
        self.max_connections = max_connections
        self._udp_port = udp_port
        self._tcp_port = tcp_port
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._connections: dict[tuple[str, int], _Connection] = {}
        self._connecting: dict[tuple[str, int], asyncio.Future[_Connection]] = {}
        self.udp: Peer | None = None
        self.tcp: Peer | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        if self._udp_port is not None:
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(self.host, self._udp_port), family=family
            )
            self._udp = udp
            port = udp.get_extra_info("sockname")[1]
            self.udp = Peer("UDP", self.host, int(port))
        if self._tcp_port is not None:
            self._server = await asyncio.start_server(
                self._accepted, self.host, self._tcp_port, family=family
            )
            port = self._server.sockets[0].getsockname()[1]
            self.tcp = Peer("TCP", self.host, int(port))
        self._schedule_sweep()

    def _schedule_sweep(self) -> None:
        loop = asyncio.get_running_loop()
        self._sweeper = loop.call_later(max(1.0, self.idle_timeout / 4), self._sweep)

    def _sweep(self) -> None:
        """Close connections we opened that carried nothing for ``idle_timeout``.

        Connections a peer opened stay: a phone registered over TCP is reached through its
        own connection (its Contact is usually not reachable), and it closes it itself.
        """
        now = asyncio.get_running_loop().time()
        for connection in list(self._connections.values()):
            if connection.outbound and now - connection.last_activity > self.idle_timeout:
                log.debug("SIP TCP %s: closing an idle connection", connection.peer)
                connection.writer.close()
                self._forget(connection)
        self._schedule_sweep()

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections.values()):
            connection.writer.close()
            if connection.task is not None:
                connection.task.cancel()
        tasks = [c.task for c in self._connections.values() if c.task is not None]
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._connections.clear()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def local(self, transport: str) -> Peer:
        """Our listening address for ``transport`` (used in Via and Contact)."""
        peer = self.tcp if transport.upper() != "UDP" else self.udp
        if peer is None:
            raise ValueError(f"no {transport} listener")
        return Peer(peer.transport, self.advertised_host, peer.port)

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    # ------------------------------------------------------------------ receiving

    def _datagram(self, data: bytes, source: Peer) -> None:
        if len(data) > self.max_message_bytes:
            log.debug("SIP UDP %s: dropping a %d-byte datagram", source, len(data))
            return
        if not data.strip(b"\r\n"):  # keep-alive
            return
        try:
            message = parse_datagram(data)
        except SipParseError as exc:
            log.debug("SIP UDP %s: unparsable datagram: %s", source, exc)
            answer = _bad_request(data, _reason_from(exc))
            if answer is not None and self._udp is not None:
                self._udp.sendto(answer, (source.host, source.port))
            return
        self._deliver(message, source, data)

    def _deliver(self, message: SipRequest | SipResponse, source: Peer, raw: bytes | None) -> None:
        if isinstance(message, SipRequest):
            reason = check_request(message)
            if reason is not None:
                log.debug("SIP %s: bad request: %s", source, reason)
                if message.method != "ACK":
                    answer = _bad_request(raw if raw is not None else message.to_bytes(), reason)
                    if answer is not None:
                        self._send_now(answer, source)
                return
        elif not check_response(message):
            log.debug("SIP %s: dropping a malformed response", source)
            return
        if log.isEnabledFor(logging.DEBUG):
            log.debug("SIP recv %s from %s", _first_line(message), source)
        try:
            self.on_message(message, source)
        except Exception:
            log.exception("SIP %s: error processing %s", source, _first_line(message))

    def _send_now(self, data: bytes, peer: Peer) -> None:
        """Answer on the way the message came, without connecting (for 400s)."""
        try:
            if peer.reliable:
                connection = self._connections.get((peer.host, peer.port))
                if connection is not None:
                    connection.send(data)
            elif self._udp is not None:
                self._udp.sendto(data, (peer.host, peer.port))
        except OSError as exc:
            log.debug("SIP %s: cannot answer: %s", peer, exc)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = writer.get_extra_info("peername")
        if len(self._connections) >= self.max_connections:
            log.warning("SIP TCP: connection limit %d reached, refusing", self.max_connections)
            writer.close()
            return
        peer = Peer("TCP", str(address[0]), int(address[1]))
        connection = _Connection(self, peer, reader, writer, outbound=False)
        self._adopt(connection)
        if connection.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await connection.task

    def _adopt(self, connection: _Connection) -> None:
        key = (connection.peer.host, connection.peer.port)
        self._connections[key] = connection
        connection.task = asyncio.get_running_loop().create_task(connection.read_loop())

    def _forget(self, connection: _Connection) -> None:
        key = (connection.peer.host, connection.peer.port)
        if self._connections.get(key) is connection:
            del self._connections[key]

    # ------------------------------------------------------------------ sending

    async def send(self, data: bytes, peer: Peer) -> None:
        """Send serialized ``data`` to ``peer``; raises ``OSError`` when it cannot."""
        if len(data) > self.max_message_bytes:
            raise OSError(f"SIP message of {len(data)} bytes exceeds the limit")
        if log.isEnabledFor(logging.DEBUG):
            log.debug("SIP send %s to %s", data.split(b"\r\n", 1)[0].decode(errors="replace"), peer)
        if not peer.reliable:
            if self._udp is None:
                raise OSError("no UDP listener")
            host = peer.host if _is_ip(peer.host) else await self._resolve(peer)
            self._udp.sendto(data, (host, peer.port))
            return
        connection = await self._connection_to(peer)
        connection.send(data)

    async def _resolve(self, peer: Peer) -> str:
        """A host name's address, resolved without blocking the loop (no SRV/NAPTR)."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        infos = await loop.getaddrinfo(peer.host, peer.port, family=family, type=socket.SOCK_DGRAM)
        if not infos:
            raise OSError(f"cannot resolve {peer.host}")
        return str(infos[0][4][0])

    async def _connection_to(self, peer: Peer) -> _Connection:
        key = (peer.host, peer.port)
        existing = self._connections.get(key)
        if existing is not None and not existing.writer.is_closing():
            return existing
        if existing is not None:
            self._forget(existing)
        pending = self._connecting.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        if len(self._connections) >= self.max_connections:
            raise OSError("SIP TCP connection limit reached")
        future: asyncio.Future[_Connection] = asyncio.get_running_loop().create_future()
        self._connecting[key] = future
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT_S):
                reader, writer = await asyncio.open_connection(peer.host, peer.port)
            connection = _Connection(self, peer, reader, writer, outbound=True)
            self._adopt(connection)
            future.set_result(connection)
            return connection
        except (OSError, TimeoutError) as exc:
            error = OSError(f"cannot connect to {peer}: {exc}")
            future.set_exception(error)
            future.exception()  # retrieved: waiters get it through shield
            raise error from exc
        finally:
            del self._connecting[key]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _first_line(message: SipRequest | SipResponse) -> str:
    if isinstance(message, SipRequest):
        return f"{message.method} {message.uri}"
    return f"{message.status} {message.reason}"

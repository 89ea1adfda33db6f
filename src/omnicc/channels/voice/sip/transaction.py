"""SIP transactions (RFC 3261 §17, with the RFC 6026 "Accepted" states).

A client transaction retransmits its request over UDP (timers A and E), gives up after 64*T1
(timers B and F), absorbs retransmitted final responses (timers D and K) and sends the ACK for a
non-2xx final response to INVITE itself.  A server transaction absorbs retransmitted requests by
re-sending its last response (so the application sees a request once), retransmits a non-2xx
final response to INVITE until the ACK arrives (timers G and H, then I) and lingers after a
final response to non-INVITE (timer J).  A 2xx to INVITE ends both INVITE transactions in the
RFC 6026 Accepted state (timers L and M): retransmissions of the 2xx and of the INVITE are the
cores' business (§13.3.1.4), and a retransmitted INVITE is still absorbed.

Timers run on the event loop (``loop.call_later``); ``Timers`` holds T1, T2, T4 and D.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

from .message import Headers, SipRequest, SipResponse
from .transport import Peer, SipTransport

__all__ = [
    "MAGIC_COOKIE",
    "ClientTransaction",
    "ServerTransaction",
    "State",
    "Timers",
    "TransactionError",
    "TransactionLayer",
    "TransactionTimeout",
    "TransportFailure",
    "server_key",
]

log = logging.getLogger(__name__)

MAGIC_COOKIE = "z9hG4bK"


@dataclass(frozen=True, slots=True)
class Timers:
    """RFC 3261 timer values in seconds (§17.1.1.1, table 4)."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    d: float = 32.0

    @property
    def timeout(self) -> float:
        """64*T1: timers B, F, H, J, L and M."""
        return 64 * self.t1


class TransactionError(Exception):
    """A request got no final response."""


class TransactionTimeout(TransactionError):
    """No final response arrived before timer B or F fired (§8.1.3.1: treat as 408)."""


class TransportFailure(TransactionError):
    """The request could not be sent (§8.1.3.1: treat as 503)."""


class State(enum.Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


ServerKey = tuple[str, ...]


def server_key(request: SipRequest) -> ServerKey:
    """The server transaction a request belongs to (§17.2.3); ACK maps to its INVITE."""
    via = request.vias[0]
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch or ""
    if branch.startswith(MAGIC_COOKIE):
        return (branch, via.host.lower(), str(via.port or ""), method)
    # RFC 2543 peers: Request-URI, tags, Call-ID, CSeq number and top Via (§17.2.3).
    to_tag = "" if request.method == "ACK" else (request.to.tag or "")
    return (
        request.uri,
        request.from_.tag or "",
        to_tag,
        request.call_id,
        str(request.cseq.number),
        str(via),
        method,
    )


class TransactionLayer:
    """Owns every transaction and the timers; matches messages to transactions."""

    def __init__(self, transport: SipTransport, timers: Timers) -> None:
        self.transport = transport
        self.timers = timers
        self.clients: dict[tuple[str, str], ClientTransaction] = {}
        self.servers: dict[ServerKey, ServerTransaction] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def emit(self, data: bytes, peer: Peer, on_error: Callable[[OSError], None] | None) -> None:
        """Send in the background; ``on_error`` learns of a transport failure."""
        task = asyncio.get_running_loop().create_task(self._send(data, peer, on_error))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(
        self, data: bytes, peer: Peer, on_error: Callable[[OSError], None] | None
    ) -> None:
        try:
            await self.transport.send(data, peer)
        except OSError as exc:
            log.debug("SIP send to %s failed: %s", peer, exc)
            if on_error is not None:
                on_error(exc)

    def match_response(self, response: SipResponse) -> ClientTransaction | None:
        branch = response.vias[0].branch or ""
        return self.clients.get((branch, response.cseq.method))

    def match_request(self, request: SipRequest) -> ServerTransaction | None:
        return self.servers.get(server_key(request))

    def invite_for_cancel(self, cancel: SipRequest) -> ServerTransaction | None:
        key = server_key(cancel)
        return self.servers.get((*key[:-1], "INVITE"))

    async def close(self) -> None:
        """Terminate every transaction and wait for sends in flight to end."""
        for txn in list(self.clients.values()):
            txn.terminate()
        for server in list(self.servers.values()):
            server.terminate()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _Transaction:
    def __init__(self, layer: TransactionLayer, peer: Peer) -> None:
        self.layer = layer
        self.peer = peer
        self.state = State.TRYING
        self._timers: dict[str, asyncio.TimerHandle] = {}

    @property
    def timers(self) -> Timers:
        return self.layer.timers

    def _start(self, name: str, delay: float, callback: Callable[[], None]) -> None:
        self._cancel(name)
        self._timers[name] = asyncio.get_running_loop().call_later(delay, callback)

    def _cancel(self, *names: str) -> None:
        for name in names:
            handle = self._timers.pop(name, None)
            if handle is not None:
                handle.cancel()

    def _linger(self, delay: float) -> None:
        """Terminate after ``delay`` (0 on reliable transports)."""
        if delay <= 0:
            self.terminate()
        else:
            self._start("end", delay, self.terminate)

    def terminate(self) -> None:
        self.state = State.TERMINATED
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self._forget()

    def _forget(self) -> None:
        raise NotImplementedError


class ClientTransaction(_Transaction):
    """INVITE or non-INVITE client transaction (§17.1).

    ``on_response`` receives every response the TU must see (provisionals, the final, and in
    the Accepted state retransmitted 2xx); ``on_timeout`` fires on timer B/F; ``on_error`` on a
    transport failure.
    """

    def __init__(
        self,
        layer: TransactionLayer,
        request: SipRequest,
        peer: Peer,
        *,
        on_response: Callable[[SipResponse], None],
        on_timeout: Callable[[], None],
        on_error: Callable[[OSError], None],
    ) -> None:
        super().__init__(layer, peer)
        self.request = request
        self.is_invite = request.method == "INVITE"
        self.branch = request.vias[0].branch or ""
        self.key = (self.branch, request.method)
        self.on_response = on_response
        self.on_timeout = on_timeout
        self.on_error = on_error
        self.last_response: SipResponse | None = None
        self._data = request.to_bytes()
        self._ack: bytes | None = None
        self._interval = self.timers.t1

    def start(self) -> None:
        self.layer.clients[self.key] = self
        self.state = State.CALLING if self.is_invite else State.TRYING
        self._transmit()
        if not self.peer.reliable:
            self._start("retransmit", self._interval, self._retransmit)
        self._start("timeout", self.timers.timeout, self._timed_out)

    def _transmit(self) -> None:
        self.layer.emit(self._data, self.peer, self._transport_error)

    def _retransmit(self) -> None:
        if self.state in (State.CALLING, State.TRYING):
            self._interval = (
                self._interval * 2 if self.is_invite else min(self._interval * 2, self.timers.t2)
            )
        elif self.state is State.PROCEEDING and not self.is_invite:
            self._interval = self.timers.t2
        else:
            return
        self._transmit()
        self._start("retransmit", self._interval, self._retransmit)

    def _timed_out(self) -> None:
        if self.state in (State.CALLING, State.TRYING, State.PROCEEDING):
            if self.is_invite and self.state is State.PROCEEDING:
                return  # timer B only runs in Calling (§17.1.1.2)
            self.terminate()
            self.on_timeout()

    def _transport_error(self, exc: OSError) -> None:
        if self.state is not State.TERMINATED:
            self.terminate()
            self.on_error(exc)

    def receive(self, response: SipResponse) -> None:
        status = response.status
        if self.state in (State.CALLING, State.TRYING, State.PROCEEDING):
            if status < 200:
                self.state = State.PROCEEDING
                if self.is_invite:
                    self._cancel("retransmit", "timeout")
                self.last_response = response
                self.on_response(response)
                return
            self.last_response = response
            self._cancel("retransmit", "timeout")
            if self.is_invite and status < 300:
                self.state = State.ACCEPTED
                self._start("end", self.timers.timeout, self.terminate)
            elif self.is_invite:
                self.state = State.COMPLETED
                self._send_ack(response)
                self._linger(0 if self.peer.reliable else self.timers.d)
            else:
                self.state = State.COMPLETED
                self._linger(0 if self.peer.reliable else self.timers.t4)
            self.on_response(response)
        elif self.state is State.ACCEPTED and 200 <= status < 300:
            self.on_response(response)  # a retransmitted or forked 2xx: the TU ACKs it
        elif self.state is State.COMPLETED and self.is_invite and status >= 300:
            self._send_ack(response)

    def _send_ack(self, response: SipResponse) -> None:
        if self._ack is None:
            self._ack = non_2xx_ack(self.request, response).to_bytes()
        self.layer.emit(self._ack, self.peer, None)

    def _forget(self) -> None:
        if self.layer.clients.get(self.key) is self:
            del self.layer.clients[self.key]


def non_2xx_ack(request: SipRequest, response: SipResponse) -> SipRequest:
    """The ACK for a 300-699 response to ``request`` (§17.1.1.3)."""
    headers = Headers()
    headers.add("Via", request.headers.values("Via")[0])
    for route in request.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    headers.add("From", request.headers.get("From") or "")
    headers.add("To", response.headers.get("To") or "")
    headers.add("Call-ID", request.call_id)
    headers.add("CSeq", f"{request.cseq.number} ACK")
    return SipRequest("ACK", request.uri, headers)


class ServerTransaction(_Transaction):
    """INVITE or non-INVITE server transaction (§17.2).

    Responses go to ``peer``; over TCP, ``fallback`` is where to connect when the request's
    connection has closed (§18.2.2).
    """

    def __init__(
        self,
        layer: TransactionLayer,
        request: SipRequest,
        source: Peer,
        peer: Peer,
        fallback: Peer | None = None,
    ) -> None:
        super().__init__(layer, peer)
        self.request = request
        self.source = source
        self.fallback = fallback
        self.is_invite = request.method == "INVITE"
        self.key = server_key(request)
        self.state = State.PROCEEDING if self.is_invite else State.TRYING
        self.last_response: SipResponse | None = None
        self._last_data: bytes | None = None
        self._interval = self.timers.t1

    def start(self) -> None:
        self.layer.servers[self.key] = self

    @property
    def final(self) -> bool:
        return self.last_response is not None and self.last_response.status >= 200

    def receive(self, request: SipRequest) -> bool:
        """A request matching this transaction: True when absorbed, False to pass it to the TU."""
        if request.method == "ACK":
            if self.state is State.COMPLETED:
                self.state = State.CONFIRMED
                self._cancel("retransmit", "timeout")
                self._linger(0 if self.peer.reliable else self.timers.t4)
                return True
            return self.state is not State.ACCEPTED
        if self.state in (State.PROCEEDING, State.COMPLETED) and self._last_data is not None:
            self._emit()
        return True

    def respond(self, response: SipResponse) -> None:
        if self.state not in (State.TRYING, State.PROCEEDING):
            raise RuntimeError(f"the transaction already sent a final response ({self.state})")
        self.last_response = response
        self._last_data = response.to_bytes()
        self._emit()
        status = response.status
        if status < 200:
            self.state = State.PROCEEDING
        elif not self.is_invite:
            self.state = State.COMPLETED
            self._linger(0 if self.peer.reliable else self.timers.timeout)
        elif status < 300:
            self.state = State.ACCEPTED
            self._start("end", self.timers.timeout, self.terminate)
        else:
            self.state = State.COMPLETED
            if not self.peer.reliable:
                self._start("retransmit", self._interval, self._retransmit)
            self._start("timeout", self.timers.timeout, self._ack_timeout)

    def _emit(self) -> None:
        if self._last_data is not None:
            self.layer.emit(self._last_data, self.peer, self._transport_error)

    def _retransmit(self) -> None:
        if self.state is not State.COMPLETED:
            return
        self._interval = min(self._interval * 2, self.timers.t2)
        self._emit()
        self._start("retransmit", self._interval, self._retransmit)

    def _ack_timeout(self) -> None:
        log.debug("SIP: no ACK for %s %s", self.request.method, self.request.call_id)
        self.terminate()

    def _transport_error(self, exc: OSError) -> None:
        log.debug("SIP: cannot send a response to %s: %s", self.peer, exc)
        if self.fallback is not None and self.fallback != self.peer:
            # The connection the request came on is gone: connect to its sent-by (§18.2.2).
            self.peer, self.fallback = self.fallback, None
            self._emit()

    def _forget(self) -> None:
        if self.layer.servers.get(self.key) is self:
            del self.layer.servers[self.key]

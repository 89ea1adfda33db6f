"""SIP dialogs (RFC 3261 §12, §13.3.1.4, §14).

A ``Dialog`` holds the state both ends share after an INVITE (Call-ID, tags, URIs, route set,
remote target, CSeq counters), builds in-dialog requests, sends them through the stack, and
receives in-dialog requests the stack matched to it.  UAS dialogs retransmit their 2xx until the
ACK arrives and send BYE when it never does; UAC dialogs answer retransmitted 2xx with the same
ACK.  ``terminated`` is set on BYE (either way), on 481/408 to an in-dialog request, and on stop.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from .digest import DigestClient
from .message import (
    Headers,
    NameAddr,
    SipParseError,
    SipRequest,
    SipResponse,
    parse_name_addr,
)
from .transaction import TransactionError
from .transport import DEFAULT_SIP_PORT, Peer

if TYPE_CHECKING:
    from .stack import IncomingRequest, SipStack

__all__ = [
    "Dialog",
    "DialogState",
    "RequestHandler",
    "contact_target",
    "dialog_problem",
    "record_routes",
    "uri_peer",
]

log = logging.getLogger(__name__)

RequestHandler = Callable[["IncomingRequest"], Awaitable[None]]

_URI_RE = re.compile(
    r"(?P<scheme>sips?):(?:[^@;?>]*@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^:;?>]+)(?::(?P<port>\d+))?"
    r"(?P<params>[^?>]*)",
    re.IGNORECASE,
)


def uri_peer(uri: str, default_transport: str = "UDP") -> Peer:
    """The transport address a SIP URI designates, without DNS (§19.1, RFC 3263 simplified)."""
    match = _URI_RE.match(uri.strip().strip("<>"))
    if match is None:
        raise ValueError(f"not a SIP URI: {uri!r}")
    host = match.group("host").strip("[]")
    port = int(match.group("port") or DEFAULT_SIP_PORT)
    transport = default_transport
    for param in match.group("params").split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "transport" and value:
            transport = value.strip().upper()
    return Peer(transport, host, port)


def contact_target(message: SipRequest | SipResponse, default: str) -> str:
    """The remote target a message's Contact gives (§12.1), or ``default`` if it has none."""
    try:
        contacts = message.contacts
    except SipParseError:
        return default
    return contacts[0].uri if contacts else default


def record_routes(message: SipRequest | SipResponse) -> list[str]:
    """The Record-Route entries that parse, in order (a bad one is skipped, not fatal)."""
    try:
        values = message.headers.values("Record-Route")
    except SipParseError:
        return []
    routes = []
    for value in values:
        try:
            parse_name_addr(value)
        except SipParseError:
            continue
        routes.append(value)
    return routes


def dialog_problem(request: SipRequest) -> str | None:
    """Why a dialog-creating request cannot create a dialog (a 400 reason), or None."""
    try:
        request.contacts  # noqa: B018 - parse check
        for value in request.headers.values("Record-Route"):
            parse_name_addr(value)
    except SipParseError:
        return "Bad Contact or Record-Route"
    if request.is_wildcard_contact:
        return "Bad Contact"
    return None


class DialogState(enum.Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class Dialog:
    """One SIP dialog; create through ``SipStack`` (answering or placing an INVITE)."""

    def __init__(
        self,
        stack: SipStack,
        *,
        call_id: str,
        local: NameAddr,
        remote: NameAddr,
        remote_target: str,
        route_set: list[str],
        local_cseq: int,
        remote_cseq: int | None,
        flow: Peer,
        is_uas: bool,
        state: DialogState = DialogState.CONFIRMED,
        credentials: DigestClient | None = None,
    ) -> None:
        self.stack = stack
        self.call_id = call_id
        self.local = local
        self.remote = remote
        self.remote_target = remote_target
        self.route_set = route_set
        self.local_cseq = local_cseq
        self.remote_cseq = remote_cseq
        self.flow = flow
        self.is_uas = is_uas
        self.state = state
        self.credentials = credentials
        self.on_request: RequestHandler | None = None
        self.terminated = asyncio.Event()
        self.termination_reason: str | None = None
        self.ack_received = asyncio.Event()
        self.last_ack: SipRequest | None = None
        self.peer = self._resolve_peer()
        self._acks: dict[int, bytes] = {}
        self._awaiting_ack: dict[int, asyncio.Task[None]] = {}
        self._outgoing_invite = False
        self._incoming_invite = False

    # ------------------------------------------------------------------ identity

    @property
    def local_tag(self) -> str:
        return self.local.tag or ""

    @property
    def remote_tag(self) -> str:
        return self.remote.tag or ""

    @property
    def local_uri(self) -> str:
        return self.local.uri

    @property
    def remote_uri(self) -> str:
        return self.remote.uri

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag)

    def __repr__(self) -> str:
        return f"Dialog({self.call_id!r}, {self.state.value}, peer={self.peer})"

    def _resolve_peer(self) -> Peer:
        if self.route_set:
            return uri_peer(_route_uri(self.route_set[0]), self.flow.transport)
        if self.stack.symmetric:
            return self.flow
        return uri_peer(self.remote_target, self.flow.transport)

    # ------------------------------------------------------------------ building requests

    def build_request(
        self,
        method: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Headers | dict[str, str] | None = None,
        cseq: int | None = None,
    ) -> SipRequest:
        """An in-dialog request (§12.2.1.1); ``cseq`` None takes the next local number."""
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        uri = self.remote_target
        routes = list(self.route_set)
        if routes and ";lr" not in _route_uri(routes[0]).lower():
            uri = _route_uri(routes[0])  # strict routing (§12.2.1.1)
            routes = [*routes[1:], f"<{self.remote_target}>"]
        out = Headers()
        out.add("Via", self.stack.new_via(self.peer.transport))
        for route in routes:
            out.add("Route", route)
        out.add("Max-Forwards", "70")
        out.add("From", str(self.local))
        out.add("To", str(self.remote))
        out.add("Call-ID", self.call_id)
        out.add("CSeq", f"{cseq} {method}")
        if method not in ("ACK", "BYE", "CANCEL"):
            out.add("Contact", self.stack.contact(self.peer.transport, self.local.uri))
        out.add("User-Agent", self.stack.user_agent)
        if content_type is not None:
            out.add("Content-Type", content_type)
        for name, value in _header_items(headers):
            out.add(name, value)
        return SipRequest(method, uri, out, body)

    # ------------------------------------------------------------------ sending

    async def request(
        self,
        method: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Headers | dict[str, str] | None = None,
    ) -> SipResponse:
        """Send an in-dialog request and return its final response.

        A re-INVITE is ACKed here (2xx) or by its transaction; BYE terminates the dialog
        whatever the answer; 481 and 408 (or no answer) terminate it too (§12.2.1.2).
        """
        method = method.upper()
        if self.state is DialogState.TERMINATED and method != "BYE":
            raise RuntimeError(f"{self!r} is terminated")
        request = self.build_request(method, body=body, content_type=content_type, headers=headers)
        try:
            if method == "INVITE":
                self._outgoing_invite = True
                try:
                    invite = self.stack.invite(
                        request, self.peer, credentials=self.credentials, dialog=self
                    )
                    response = await invite.final()
                finally:
                    self._outgoing_invite = False
            else:
                response = await self.stack.send(request, self.peer, credentials=self.credentials)
        except TransactionError:
            self.terminate(f"no answer to {method}")
            raise
        if method == "BYE":
            self.terminate("bye sent")
        elif response.status in (408, 481):
            self.terminate(f"{response.status} to {method}")
        return response

    async def bye(self) -> SipResponse | None:
        """Hang up: send BYE unless already terminated; None when nothing was sent."""
        if self.state is DialogState.TERMINATED:
            return None
        try:
            return await self.request("BYE")
        except TransactionError:
            return None

    def send_ack(self, cseq: int, *, body: bytes = b"", content_type: str | None = None) -> None:
        """Send (and remember) the ACK for the 2xx to our INVITE with ``cseq`` (§13.2.2.4)."""
        ack = self.build_request("ACK", body=body, content_type=content_type, cseq=cseq)
        data = ack.to_bytes()
        self._acks[cseq] = data
        self.stack.layer.emit(data, self.peer, None)

    def resend_ack(self, cseq: int) -> bool:
        """A retransmitted 2xx arrived: repeat its ACK; False when it was never sent."""
        data = self._acks.get(cseq)
        if data is None:
            return False
        self.stack.layer.emit(data, self.peer, None)
        return True

    # ------------------------------------------------------------------ UAS side

    def retransmit_2xx(self, response: SipResponse, peer: Peer) -> None:
        """Repeat our 2xx to INVITE until its ACK arrives; BYE after 64*T1 (§13.3.1.4)."""
        cseq = response.cseq.number
        task = asyncio.get_running_loop().create_task(self._repeat_2xx(response, peer, cseq))
        self._awaiting_ack[cseq] = task

    async def _repeat_2xx(self, response: SipResponse, peer: Peer, cseq: int) -> None:
        """Cancelled by ``receive_ack``; running to the end means the ACK never came."""
        timers = self.stack.timers
        data = response.to_bytes()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timers.timeout
        interval = timers.t1
        while (remaining := deadline - loop.time()) > 0:
            await asyncio.sleep(min(interval, remaining))
            if not peer.reliable and loop.time() < deadline:
                self.stack.layer.emit(data, peer, None)
            interval = min(interval * 2, timers.t2)
        self._awaiting_ack.pop(cseq, None)
        log.info("SIP %s: no ACK for the 2xx to INVITE; hanging up", self.call_id)
        self.termination_reason = "no ACK"
        await self.bye()
        self.terminate("no ACK")

    def receive_ack(self, ack: SipRequest) -> None:
        task = self._awaiting_ack.pop(ack.cseq.number, None)
        if task is not None:
            task.cancel()
        self.last_ack = ack
        self.ack_received.set()

    async def receive(self, incoming: IncomingRequest) -> None:
        """An in-dialog request matched to this dialog (§12.2.2)."""
        request = incoming.message
        cseq = request.cseq.number
        if self.remote_cseq is not None and cseq <= self.remote_cseq:
            await incoming.respond(500, "Out of Order CSeq")
            return
        self.remote_cseq = cseq
        if request.method == "INVITE":
            if self._outgoing_invite:
                await incoming.respond(491, "Request Pending")
                return
            if self._incoming_invite:
                retry = {"Retry-After": str(random.randint(0, 10))}
                await incoming.respond(500, "Previous INVITE Pending", headers=retry)
                return
            self.remote_target = contact_target(request, self.remote_target)
            self._incoming_invite = True
        try:
            if self.on_request is not None:
                await self.on_request(incoming)
        finally:
            self._incoming_invite = False
            if not incoming.answered:
                await _default_answer(incoming)
            if request.method == "BYE":
                self.terminate("bye received")

    # ------------------------------------------------------------------ ending

    def terminate(self, reason: str) -> None:
        if self.state is DialogState.TERMINATED:
            return
        self.state = DialogState.TERMINATED
        if self.termination_reason is None:
            self.termination_reason = reason
        for task in self._awaiting_ack.values():
            task.cancel()
        self._awaiting_ack.clear()
        self.stack.forget_dialog(self)
        self.terminated.set()


async def _default_answer(incoming: IncomingRequest) -> None:
    method = incoming.message.method
    if method in ("BYE", "OPTIONS", "NOTIFY"):
        await incoming.respond(200)
    elif method == "INVITE":
        await incoming.respond(488, "Not Acceptable Here")
    else:
        await incoming.stack.answer_unhandled(incoming)


def _route_uri(route: str) -> str:
    return parse_name_addr(route).uri


def _header_items(headers: Headers | dict[str, str] | None) -> list[tuple[str, str]]:
    if headers is None:
        return []
    if isinstance(headers, Headers):
        return list(headers)
    return list(headers.items())

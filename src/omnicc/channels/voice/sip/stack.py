"""``SipStack``: the one object the application uses to speak SIP (RFC 3261 UA core, §8, §13).

UAS::

    stack = SipStack("127.0.0.1", udp_port=0, tcp_port=0)
    stack.set_handler(handler)          # async fn(IncomingRequest) for out-of-dialog requests
    await stack.start()                 # stack.udp / stack.tcp are the bound Peers

    async def handler(incoming):
        if incoming.method == "INVITE":
            await incoming.respond(180)
            await incoming.respond(200, body=sdp, content_type="application/sdp")
            dialog = incoming.dialog    # dialog.on_request; await dialog.terminated.wait()

UAC::

    request = stack.request("INVITE", "sip:bob@host", to=peer, from_uri=..., to_uri=...)
    call = stack.invite(request, peer, credentials=DigestClient(user, password))
    async for response in call.responses(): ...   # provisionals, then the final
    dialog = call.dialog                           # on 2xx, ACK already sent
    await dialog.request("BYE")

    response = await stack.send(stack.request("OPTIONS", ...), peer)   # non-INVITE

Defaults when the handler does not answer (or no handler is set): OPTIONS 200 with Allow and
Accept, other known methods 405, unknown methods 501, an exception in the handler 500.  An INVITE
handler may return without answering and answer later (the application keeps the
``IncomingRequest``).  CANCEL is answered by the stack: 200, then 487 to the INVITE and
``incoming.cancelled`` set.  A Require header naming an extension is refused with 420.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType

from .dialog import Dialog, DialogState, contact_target, dialog_problem, record_routes
from .digest import DigestClient, DigestParseError, parse_challenge
from .message import (
    Headers,
    NameAddr,
    SipRequest,
    SipResponse,
    canonical_name,
    parse_name_addr,
    uri_user,
)
from .transaction import (
    MAGIC_COOKIE,
    ClientTransaction,
    ServerTransaction,
    Timers,
    TransactionError,
    TransactionLayer,
    TransactionTimeout,
    TransportFailure,
)
from .transport import Peer, SipTransport, response_peer

__all__ = [
    "ALLOWED_METHODS",
    "IncomingRequest",
    "OutgoingInvite",
    "SipStack",
    "new_tag",
]

log = logging.getLogger(__name__)

ALLOWED_METHODS = (
    "INVITE",
    "ACK",
    "CANCEL",
    "BYE",
    "OPTIONS",
    "INFO",
    "REFER",
    "NOTIFY",
    "MESSAGE",
    "REGISTER",
    "SUBSCRIBE",
    "UPDATE",
)
KNOWN_METHODS = (*ALLOWED_METHODS, "PRACK", "PUBLISH")
_ACCEPT = "application/sdp"

REASONS = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    415: "Unsupported Media Type",
    420: "Bad Extension",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Server Time-out",
    600: "Busy Everywhere",
    603: "Decline",
}


def new_tag() -> str:
    return os.urandom(6).hex()


def _branch() -> str:
    return MAGIC_COOKIE + os.urandom(8).hex()


Handler = Callable[["IncomingRequest"], Awaitable[None]]


class IncomingRequest:
    """A request received by the stack, to be answered with ``respond``."""

    def __init__(
        self,
        stack: SipStack,
        message: SipRequest,
        source: Peer,
        transaction: ServerTransaction,
        dialog: Dialog | None = None,
    ) -> None:
        self.stack = stack
        self.message = message
        self.source = source
        self.transaction = transaction
        self.dialog = dialog
        self.cancelled = asyncio.Event()
        self.response: SipResponse | None = None
        self.local_tag = message.to.tag or new_tag()

    @property
    def method(self) -> str:
        return self.message.method

    @property
    def answered(self) -> bool:
        """True once a final response was sent."""
        return self.response is not None and self.response.status >= 200

    def __repr__(self) -> str:
        return f"IncomingRequest({self.method} {self.message.uri} from {self.source})"

    async def respond(
        self,
        status: int,
        reason: str | None = None,
        *,
        headers: Headers | dict[str, str] | None = None,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> SipResponse:
        """Answer (§8.2.6); a To tag is added, a 1xx/2xx to INVITE creates the dialog."""
        if self.answered:
            raise RuntimeError(f"{self!r} was already answered")
        response = self.stack.build_response(
            self.message,
            status,
            reason,
            headers=headers,
            body=body,
            content_type=content_type,
            to_tag=self.local_tag if status > 100 else None,
            source=self.source,
        )
        self.transaction.respond(response)
        if status >= 200:
            self.response = response
            if self.method == "INVITE":
                self.stack.invite_answered(self)
        elif self.response is None or self.response.status < status:
            self.response = response
        if self.method == "INVITE" and self.dialog is None and 100 < status < 300:
            self.dialog = self.stack.uas_dialog(self, response)
        elif self.method == "INVITE" and self.dialog is not None and status >= 200:
            if status < 300:
                self.dialog.state = DialogState.CONFIRMED
            elif self.dialog.state is DialogState.EARLY:
                self.dialog.terminate(f"{status} to INVITE")
        if self.method == "INVITE" and 200 <= status < 300 and self.dialog is not None:
            self.dialog.retransmit_2xx(response, self.transaction.peer)
        return response


class OutgoingInvite:
    """An INVITE we sent: its responses, its dialog (on 2xx, ACKed), and CANCEL."""

    def __init__(
        self,
        stack: SipStack,
        request: SipRequest,
        peer: Peer,
        *,
        credentials: DigestClient | None,
        auto_ack: bool,
        dialog: Dialog | None,
    ) -> None:
        self.stack = stack
        self.request = request
        self.peer = peer
        self.credentials = credentials
        self.auto_ack = auto_ack
        self.dialog = dialog
        self._reinvite = dialog is not None
        self._responses: list[SipResponse] = []
        self._changed = asyncio.Event()
        self._final: asyncio.Future[SipResponse] = asyncio.get_running_loop().create_future()
        self._auth_attempts = 0
        self._cancel_wanted = False
        self._cancel_sent = False
        self._early: dict[str, Dialog] = {}
        self._txn: ClientTransaction | None = None

    def start(self) -> None:
        self._txn = self.stack.client_transaction(
            self.request,
            self.peer,
            on_response=self._on_response,
            on_timeout=lambda: self._fail(TransactionTimeout(self._what())),
            on_error=lambda exc: self._fail(TransportFailure(f"{self._what()}: {exc}")),
        )

    def _what(self) -> str:
        return f"INVITE {self.request.uri} to {self.peer}"

    def _fail(self, error: TransactionError) -> None:
        if not self._final.done():
            self._final.set_exception(error)
            self._final.exception()  # retrieved here: a caller may only iterate responses()
            self._changed.set()
            for early in self._early.values():
                early.terminate("INVITE failed")

    @property
    def done(self) -> bool:
        return self._final.done()

    async def responses(self) -> AsyncIterator[SipResponse]:
        """Every response as it arrives: provisionals, then the final (raises on timeout)."""
        index = 0
        while True:
            while index < len(self._responses):
                response = self._responses[index]
                index += 1
                yield response
                if response.status >= 200:
                    return
            error = self._final.exception() if self._final.done() else None
            if error is not None:
                raise error
            self._changed.clear()
            await self._changed.wait()

    async def final(self) -> SipResponse:
        """The final response; raises ``TransactionTimeout`` or ``TransportFailure``."""
        return await asyncio.shield(self._final)

    async def cancel(self) -> SipResponse | None:
        """Cancel (§9.1): sent once a provisional arrived; returns the INVITE's final response.

        Returns None when the INVITE failed (timeout); if a 2xx wins the race, the call is
        ACKed and hung up with BYE.
        """
        if not self._final.done():
            self._cancel_wanted = True
            if any(r.status < 200 for r in self._responses):
                self._send_cancel()
        try:
            return await self.final()
        except TransactionError:
            return None

    def _send_cancel(self) -> None:
        if self._cancel_sent or self._final.done():
            return
        self._cancel_sent = True
        cancel = cancel_for(self.request)
        task = asyncio.get_running_loop().create_task(self._cancel_flow(cancel))
        self.stack.track(task)

    async def _cancel_flow(self, cancel: SipRequest) -> None:
        with contextlib.suppress(TransactionError):
            await self.stack.send(cancel, self.peer)
        # §9.1: without a final response 64*T1 after CANCEL, give up on the INVITE.
        with contextlib.suppress(asyncio.TimeoutError, TransactionError):
            async with asyncio.timeout(self.stack.timers.timeout):
                await self.final()
        if not self._final.done():
            if self._txn is not None:
                self._txn.terminate()
            self._fail(TransactionTimeout(f"{self._what()}: no final response after CANCEL"))

    def _on_response(self, response: SipResponse) -> None:
        status = response.status
        if self._final.done():
            if 200 <= status < 300:
                self._stray_2xx(response)
            return
        if status >= 200 and status in (401, 407) and self._retry_with_auth(response):
            return
        tag = response.to.tag
        if status < 200:
            if status > 100 and tag and not self._reinvite and tag not in self._early:
                early = self.stack.uac_dialog(
                    self.request, response, self.peer, DialogState.EARLY, self.credentials
                )
                self._early[tag] = early
                self.dialog = self.dialog or early
            self._responses.append(response)
            self._changed.set()
            if self._cancel_wanted:
                self._send_cancel()
            return
        if status < 300:
            self._accept(response)
        else:
            for early in self._early.values():
                early.terminate(f"{status} to INVITE")
            if not self._reinvite:
                self.dialog = None
        self._responses.append(response)
        self._final.set_result(response)
        self._changed.set()

    def _accept(self, response: SipResponse) -> None:
        tag = response.to.tag or ""
        if self._reinvite and self.dialog is not None:
            self.dialog.remote_target = contact_target(response, self.dialog.remote_target)
            dialog = self.dialog
        else:
            dialog = (
                self._early.pop(tag)
                if tag in self._early
                else self.stack.uac_dialog(
                    self.request, response, self.peer, DialogState.CONFIRMED, self.credentials
                )
            )
            dialog.state = DialogState.CONFIRMED
            dialog.remote_target = contact_target(response, dialog.remote_target)
            self.stack.remember_dialog(dialog)
            for other in self._early.values():
                other.terminate("another branch answered")
            self._early.clear()
            self.dialog = dialog
        if self.auto_ack or self._reinvite:
            dialog.send_ack(response.cseq.number)
        if self._cancel_wanted and not self._reinvite:
            self.stack.track(asyncio.get_running_loop().create_task(dialog.bye()))

    def _stray_2xx(self, response: SipResponse) -> None:
        """A retransmitted 2xx (repeat the ACK) or one from another fork (ACK it, then BYE)."""
        dialog = self.dialog
        if dialog is not None and response.to.tag == dialog.remote_tag:
            dialog.resend_ack(response.cseq.number)
            return
        if self._reinvite:
            return
        other = self.stack.uac_dialog(
            self.request, response, self.peer, DialogState.CONFIRMED, self.credentials
        )
        self.stack.remember_dialog(other)
        other.send_ack(response.cseq.number)
        self.stack.track(asyncio.get_running_loop().create_task(other.bye()))

    def _retry_with_auth(self, response: SipResponse) -> bool:
        if self.credentials is None or not auth_retry_allowed(response, self._auth_attempts):
            return False
        retry = authorized_retry(self.stack, self.request, response, self.credentials)
        if retry is None:
            return False
        self._auth_attempts += 1
        self.request = retry
        if self._reinvite and self.dialog is not None:
            self.dialog.local_cseq = retry.cseq.number
        self.start()
        return True


def cancel_for(invite: SipRequest) -> SipRequest:
    """The CANCEL for ``invite`` (§9.1): its branch, Request-URI, Call-ID, From, To, CSeq number."""
    headers = Headers()
    headers.add("Via", invite.headers.values("Via")[0])
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    headers.add("From", invite.headers.get("From") or "")
    headers.add("To", invite.headers.get("To") or "")
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq.number} CANCEL")
    return SipRequest("CANCEL", invite.uri, headers)


def auth_retry_allowed(response: SipResponse, attempts: int) -> bool:
    """The first challenge is answered; a second one only when it says our nonce went stale."""
    if attempts == 0:
        return True
    if attempts > 1:
        return False
    name = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
    for value in response.headers.get_all(name):
        try:
            if parse_challenge(value).stale:
                return True
        except DigestParseError:
            continue
    return False


def authorized_retry(
    stack: SipStack, request: SipRequest, response: SipResponse, credentials: DigestClient
) -> SipRequest | None:
    """``request`` again with credentials answering the 401/407 challenge (§22.2), or None."""
    if response.status == 401:
        challenge_header, answer_header = "WWW-Authenticate", "Authorization"
    else:
        challenge_header, answer_header = "Proxy-Authenticate", "Proxy-Authorization"
    for challenge in response.headers.get_all(challenge_header):
        try:
            value = credentials.authorize(challenge, request.method, request.uri)
        except (DigestParseError, ValueError):
            continue
        headers = request.headers.copy()
        vias = headers.values("Via")
        headers.remove("Via")
        retry_headers = Headers()
        retry_headers.add("Via", stack.new_via(_via_transport(vias[0])))
        for name, field_value in headers:
            if name == "CSeq":
                field_value = f"{request.cseq.number + 1} {request.method}"
            retry_headers.add(name, field_value)
        retry_headers.set(answer_header, value)
        return SipRequest(request.method, request.uri, retry_headers, request.body)
    return None


def _via_transport(via: str) -> str:
    return via.split()[0].rsplit("/", 1)[-1]


class SipStack:
    """UDP/TCP listeners, transactions, dialogs and the UA core for a B2BUA."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        udp_port: int | None = 0,
        tcp_port: int | None = 0,
        *,
        timers: Timers | None = None,
        user_agent: str = "OmniCC",
        symmetric: bool = True,
        max_message_bytes: int = 64 * 1024,
        max_connections: int = 512,
        advertised_host: str | None = None,
    ) -> None:
        self.timers = timers or Timers()
        self.user_agent = user_agent
        self.symmetric = symmetric
        self.transport = SipTransport(
            host,
            self._on_message,
            udp_port=udp_port,
            tcp_port=tcp_port,
            max_message_bytes=max_message_bytes,
            max_connections=max_connections,
            advertised_host=advertised_host,
        )
        self.layer = TransactionLayer(self.transport, self.timers)
        self.dialogs: dict[tuple[str, str, str], Dialog] = {}
        self._handler: Handler | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self._invites: dict[tuple[str, ...], IncomingRequest] = {}
        self._started = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.transport.start()
        self._started = True

    async def stop(self) -> None:
        """Stop listening; dialogs are terminated without BYE (send BYEs before if wanted)."""
        self._started = False
        for dialog in list(self.dialogs.values()):
            dialog.terminate("stack stopped")
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.layer.close()
        await self.transport.stop()

    async def __aenter__(self) -> SipStack:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def udp(self) -> Peer:
        return self.transport.local("UDP")

    @property
    def tcp(self) -> Peer:
        return self.transport.local("TCP")

    @property
    def host(self) -> str:
        """The host we put in Via, Contact and Call-ID (``advertised_host`` or the bound one)."""
        return self.transport.advertised_host

    def set_handler(self, handler: Handler | None) -> None:
        """The async callable receiving out-of-dialog requests (INVITE, REGISTER, OPTIONS ...)."""
        self._handler = handler

    def track(self, task: asyncio.Task[object] | asyncio.Task[None]) -> None:
        """Keep a background task alive until done; cancelled by ``stop``."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ building

    def new_via(self, transport: str) -> str:
        local = self.transport.local(transport)
        return f"SIP/2.0/{local.transport} {_hostport(local)};branch={_branch()};rport"

    def contact(self, transport: str, user_uri: str | None = None) -> str:
        """Our Contact for ``transport``, with the user part of ``user_uri`` when it has one."""
        local = self.transport.local(transport)
        user = _user_of(user_uri) if user_uri else None
        params = "" if local.transport == "UDP" else f";transport={local.transport.lower()}"
        at = f"{user}@" if user else ""
        return f"<sip:{at}{_hostport(local)}{params}>"

    def request(
        self,
        method: str,
        uri: str,
        *,
        to: Peer,
        from_uri: str,
        to_uri: str,
        headers: Headers | dict[str, str] | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        call_id: str | None = None,
        from_tag: str | None = None,
        from_display: str | None = None,
        to_display: str | None = None,
        cseq: int = 1,
    ) -> SipRequest:
        """An out-of-dialog request to send to ``to`` (§8.1.1)."""
        method = method.upper()
        out = Headers()
        out.add("Via", self.new_via(to.transport))
        out.add("Max-Forwards", "70")
        out.add("From", str(NameAddr(from_uri, from_display, {"tag": from_tag or new_tag()})))
        out.add("To", str(NameAddr(to_uri, to_display)))
        out.add("Call-ID", call_id or f"{os.urandom(10).hex()}@{self.host}")
        out.add("CSeq", f"{cseq} {method}")
        if method in ("INVITE", "REGISTER", "SUBSCRIBE", "REFER", "OPTIONS"):
            out.add("Contact", self.contact(to.transport, from_uri))
        out.add("User-Agent", self.user_agent)
        if method == "INVITE":
            out.add("Allow", ", ".join(ALLOWED_METHODS))
        if content_type is not None:
            out.add("Content-Type", content_type)
        _merge(out, headers, replacing=("Contact", "Max-Forwards"))
        return SipRequest(method, uri, out, body)

    def build_response(
        self,
        request: SipRequest,
        status: int,
        reason: str | None = None,
        *,
        headers: Headers | dict[str, str] | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        to_tag: str | None = None,
        source: Peer | None = None,
    ) -> SipResponse:
        """A response to ``request`` (§8.2.6.2), copying Via, From, To, Call-ID and CSeq."""
        out = Headers()
        for via in request.headers.get_all("Via"):
            out.add("Via", via)
        if request.method == "INVITE" and 100 < status < 300:
            for record_route in request.headers.get_all("Record-Route"):
                out.add("Record-Route", record_route)
        out.add("From", request.headers.get("From") or "")
        to = request.to
        if to.tag is None and to_tag is not None:
            to = to.with_params(tag=to_tag)
        out.add("To", str(to))
        out.add("Call-ID", request.call_id)
        out.add("CSeq", request.headers.get("CSeq") or "")
        if request.method == "INVITE" and 100 < status < 300:
            transport = source.transport if source is not None else "UDP"
            out.add("Contact", self.contact(transport, request.uri))
        if (request.method in ("INVITE", "OPTIONS") and 200 <= status < 300) or status == 405:
            out.add("Allow", ", ".join(ALLOWED_METHODS))
        out.add("Server", self.user_agent)
        if content_type is not None:
            out.add("Content-Type", content_type)
        _merge(out, headers, replacing=("Contact",))
        return SipResponse(status, reason or REASONS.get(status, "Unknown"), out, body)

    # ------------------------------------------------------------------ sending

    def client_transaction(
        self,
        request: SipRequest,
        peer: Peer,
        *,
        on_response: Callable[[SipResponse], None],
        on_timeout: Callable[[], None],
        on_error: Callable[[OSError], None],
    ) -> ClientTransaction:
        if not self._started:
            raise RuntimeError("the SIP stack is not started")
        txn = ClientTransaction(
            self.layer,
            request,
            peer,
            on_response=on_response,
            on_timeout=on_timeout,
            on_error=on_error,
        )
        txn.start()
        return txn

    async def send(
        self,
        request: SipRequest,
        to: Peer,
        *,
        credentials: DigestClient | None = None,
    ) -> SipResponse:
        """Send a non-INVITE request; the final response (a 401/407 is answered with
        ``credentials``, see ``auth_retry_allowed``).  Raises ``TransactionTimeout`` or
        ``TransportFailure``."""
        if request.method in ("INVITE", "ACK"):
            raise ValueError(f"{request.method} is not sent with send(): use invite()")
        attempts = 0
        while True:
            response = await self._send_once(request, to)
            if (
                response.status in (401, 407)
                and credentials is not None
                and request.method != "CANCEL"
                and auth_retry_allowed(response, attempts)
            ):
                retry = authorized_retry(self, request, response, credentials)
                if retry is not None:
                    attempts += 1
                    request = retry
                    continue
            return response

    async def _send_once(self, request: SipRequest, to: Peer) -> SipResponse:
        loop = asyncio.get_running_loop()
        final: asyncio.Future[SipResponse] = loop.create_future()

        def on_response(response: SipResponse) -> None:
            if response.status >= 200 and not final.done():
                final.set_result(response)

        def on_timeout() -> None:
            if not final.done():
                final.set_exception(TransactionTimeout(f"{request.method} {request.uri} to {to}"))

        def on_error(exc: OSError) -> None:
            if not final.done():
                final.set_exception(TransportFailure(f"{request.method} to {to}: {exc}"))

        txn = self.client_transaction(
            request, to, on_response=on_response, on_timeout=on_timeout, on_error=on_error
        )
        try:
            return await final
        finally:
            if not final.done():
                txn.terminate()

    def invite(
        self,
        request: SipRequest,
        to: Peer,
        *,
        credentials: DigestClient | None = None,
        auto_ack: bool = True,
        dialog: Dialog | None = None,
    ) -> OutgoingInvite:
        """Send an INVITE; see ``OutgoingInvite``.  ``auto_ack=False`` leaves the ACK of the
        2xx to the caller (``call.dialog.send_ack(cseq, body=answer)``, for late offers)."""
        call = OutgoingInvite(
            self, request, to, credentials=credentials, auto_ack=auto_ack, dialog=dialog
        )
        call.start()
        return call

    # ------------------------------------------------------------------ dialogs

    def uac_dialog(
        self,
        request: SipRequest,
        response: SipResponse,
        peer: Peer,
        state: DialogState,
        credentials: DigestClient | None,
    ) -> Dialog:
        """The dialog a 1xx/2xx to our INVITE creates (§12.1.2)."""
        dialog = Dialog(
            self,
            call_id=request.call_id,
            local=request.from_,
            remote=response.to,
            remote_target=contact_target(response, request.uri),
            route_set=list(reversed(record_routes(response))),
            local_cseq=request.cseq.number,
            remote_cseq=None,
            flow=peer,
            is_uas=False,
            state=state,
            credentials=credentials,
        )
        self.remember_dialog(dialog)
        return dialog

    def uas_dialog(self, incoming: IncomingRequest, response: SipResponse) -> Dialog:
        """The dialog our 1xx/2xx to an INVITE creates (§12.1.1)."""
        request = incoming.message
        dialog = Dialog(
            self,
            call_id=request.call_id,
            local=response.to,
            remote=request.from_,
            remote_target=contact_target(request, request.from_.uri),
            route_set=record_routes(request),
            local_cseq=0,
            remote_cseq=request.cseq.number,
            flow=incoming.source,
            is_uas=True,
            state=DialogState.CONFIRMED if response.status >= 200 else DialogState.EARLY,
        )
        self.remember_dialog(dialog)
        return dialog

    def remember_dialog(self, dialog: Dialog) -> None:
        self.dialogs[dialog.key] = dialog

    def forget_dialog(self, dialog: Dialog) -> None:
        if self.dialogs.get(dialog.key) is dialog:
            del self.dialogs[dialog.key]

    # ------------------------------------------------------------------ receiving

    def _on_message(self, message: SipRequest | SipResponse, source: Peer) -> None:
        if isinstance(message, SipResponse):
            self._on_response(message)
        else:
            self._on_request(message, source)

    def _on_response(self, response: SipResponse) -> None:
        txn = self.layer.match_response(response)
        if txn is not None:
            txn.receive(response)
            return
        if response.cseq.method == "INVITE" and 200 <= response.status < 300:
            # A 2xx retransmitted after the transaction ended: repeat the ACK (§13.2.2.4).
            key = (response.call_id, response.from_.tag or "", response.to.tag or "")
            dialog = self.dialogs.get(key)
            if dialog is not None:
                dialog.resend_ack(response.cseq.number)
                return
        log.debug("SIP: stray response %d %s", response.status, response.call_id)

    def _on_request(self, request: SipRequest, source: Peer) -> None:
        _mark_received(request, source)
        txn = self.layer.match_request(request)
        if txn is not None and txn.receive(request):
            return
        if request.method == "ACK":
            key = (request.call_id, request.to.tag or "", request.from_.tag or "")
            dialog = self.dialogs.get(key)
            if dialog is not None:
                dialog.receive_ack(request)
            return
        top = request.vias[0]
        peer = response_peer(top, source)
        fallback = None
        if source.reliable:
            fallback = Peer(source.transport, top.received or top.host, top.port or 5060)
        txn = ServerTransaction(self.layer, request, source, peer, fallback)
        txn.start()
        if request.method == "INVITE":
            txn.respond(self.build_response(request, 100))
        if request.method == "CANCEL":
            self._on_cancel(request, source, txn)
            return
        if request.to.tag is not None:
            key = (request.call_id, request.to.tag, request.from_.tag or "")
            dialog = self.dialogs.get(key)
            if dialog is None:
                txn.respond(self.build_response(request, 481))
                return
            incoming = IncomingRequest(self, request, source, txn, dialog)
            if request.method == "INVITE":
                self._invites[txn.key] = incoming
            self._spawn(dialog.receive(incoming), incoming)
            return
        incoming = IncomingRequest(self, request, source, txn)
        problem = dialog_problem(request) if request.method == "INVITE" else None
        if problem is not None:
            txn.respond(self.build_response(request, 400, problem))
            return
        required = [r for r in _safe_values(request, "Require") if r]
        if required:
            unsupported = {"Unsupported": ", ".join(required)}
            txn.respond(self.build_response(request, 420, headers=unsupported))
            return
        if request.method == "INVITE":
            self._invites[txn.key] = incoming
        self._spawn(self._handle(incoming), incoming)

    def invite_answered(self, incoming: IncomingRequest) -> None:
        """A final response went out: a later CANCEL no longer applies to it."""
        self._invites.pop(incoming.transaction.key, None)

    def _on_cancel(self, cancel: SipRequest, source: Peer, txn: ServerTransaction) -> None:
        invite_txn = self.layer.invite_for_cancel(cancel)
        if invite_txn is None:
            txn.respond(self.build_response(cancel, 481))
            return
        incoming = self._invites.get(invite_txn.key)
        tag = incoming.local_tag if incoming is not None else None
        txn.respond(self.build_response(cancel, 200, to_tag=tag))
        if incoming is not None and not incoming.answered:
            self._spawn(incoming.respond(487), incoming)
            incoming.cancelled.set()

    def _spawn(self, coro: Awaitable[object], incoming: IncomingRequest) -> None:
        task = asyncio.get_running_loop().create_task(self._guard(coro, incoming))
        self.track(task)

    async def _guard(self, coro: Awaitable[object], incoming: IncomingRequest) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("SIP: handler failed on %r", incoming)
            if not incoming.answered:
                with contextlib.suppress(Exception):
                    await incoming.respond(500)

    async def _handle(self, incoming: IncomingRequest) -> None:
        if self._handler is not None:
            await self._handler(incoming)
        if not incoming.answered and incoming.method != "INVITE":
            await self.answer_unhandled(incoming)
        elif not incoming.answered and self._handler is None:
            await incoming.respond(480, "No Handler")

    async def answer_unhandled(self, incoming: IncomingRequest) -> None:
        """The default answer to a request nobody answered."""
        method = incoming.method
        if method == "OPTIONS":
            await incoming.respond(200, headers={"Accept": _ACCEPT})
        elif method in KNOWN_METHODS:
            await incoming.respond(405)
        else:
            await incoming.respond(501)


def _mark_received(request: SipRequest, source: Peer) -> None:
    """Add ``received`` and ``rport`` to the top Via (§18.2.1, RFC 3581 §4)."""
    vias = request.vias
    top = vias[0]
    params = dict(top.params)
    changed = False
    if top.host != source.host:
        params["received"] = source.host
        changed = True
    if top.rport_requested:
        params["rport"] = str(source.port)
        if "received" not in params:
            params["received"] = source.host
        changed = True
    if not changed:
        return
    new_top = type(top)(top.transport, top.host, top.port, params, top.protocol)
    fields = list(request.headers)
    rebuilt = Headers()
    placed = False
    for name, value in fields:
        if name == "Via":
            if not placed:
                rebuilt.add("Via", str(new_top))
                for via in vias[1:]:
                    rebuilt.add("Via", str(via))
                placed = True
            continue
        rebuilt.add(name, value)
    request.headers = rebuilt


def _safe_values(request: SipRequest, name: str) -> list[str]:
    try:
        return request.headers.values(name)
    except ValueError:
        return ["(unparsable)"]


def _hostport(peer: Peer) -> str:
    host = f"[{peer.host}]" if ":" in peer.host else peer.host
    return f"{host}:{peer.port}"


def _user_of(uri: str) -> str | None:
    try:
        plain = parse_name_addr(uri).uri
    except ValueError:
        plain = uri
    return uri_user(plain)


def _merge(
    out: Headers, extra: Headers | dict[str, str] | None, replacing: tuple[str, ...]
) -> None:
    """Add the caller's headers; those named in ``replacing`` replace the stack's defaults."""
    if extra is None:
        return
    items = list(extra) if isinstance(extra, Headers) else list(extra.items())
    replaced: set[str] = set()
    for name, value in items:
        key = canonical_name(name)
        if key in replacing and key not in replaced:
            out.set(key, value)
            replaced.add(key)
        else:
            out.add(key, value)

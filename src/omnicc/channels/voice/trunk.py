"""The carrier trunk: where calls to outside numbers go, and how OmniCC signs in to it.

A trunk is one SIP URI from the settings (`sip:user@host:port;transport=udp`): INVITEs for
external numbers go to its host and port with the number, in E.164, as the Request-URI's user
part; 401/407 challenges are answered with the trunk's user and password (the stack retries the
request). Carriers that need it get a REGISTER, refreshed before the registration expires and
retried after a failure, with the last outcome kept for health checks (`status`).

The caller ID is the tenant's number for the queue the call is made for: it is the From user
and the P-Asserted-Identity (RFC 3325), which carriers use when they trust the trunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from omnicc.app.voice import normalize_phone
from omnicc.channels.voice.sip.dialog import uri_peer
from omnicc.channels.voice.sip.digest import DigestClient
from omnicc.channels.voice.sip.message import SipResponse
from omnicc.channels.voice.sip.stack import OutgoingInvite, SipStack
from omnicc.channels.voice.sip.transaction import TransactionError
from omnicc.channels.voice.sip.transport import Peer
from omnicc.config import Settings

log = logging.getLogger("omnicc.voice.trunk")

SDP = "application/sdp"
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_EXPIRES_PARAM = re.compile(r";\s*expires\s*=\s*(\d+)", re.IGNORECASE)


class InvalidNumber(ValueError):
    """A number that cannot be dialled through the trunk (not readable as E.164)."""


@dataclass(frozen=True, slots=True)
class TrunkConfig:
    """A trunk's address and credentials, and how it is registered."""

    uri: str
    password: str = ""
    register: bool = False
    register_expires_s: int = 600
    retry_s: float = 30.0
    """First wait after a failed registration; doubled after each failure up to `retry_max_s`."""
    retry_max_s: float = 300.0
    default_region: str | None = None
    ring_timeout_s: float = 60.0
    """How long a called number may ring before the INVITE is cancelled (no answer)."""
    codecs: tuple[str, ...] = ("PCMA", "PCMU")
    """Codecs the carrier is offered, best first; a call offers it the first the agent has."""

    def __post_init__(self) -> None:
        uri_peer(self.uri)  # a bad URI fails when the server starts, not on the first call

    @property
    def username(self) -> str:
        rest = self.uri.split(":", 1)[1] if ":" in self.uri else self.uri
        return rest.split("@", 1)[0] if "@" in rest else ""

    @property
    def peer(self) -> Peer:
        return uri_peer(self.uri)

    @property
    def domain(self) -> str:
        """host[:port] of the trunk, for Request-URIs, From and To."""
        peer = self.peer
        host = f"[{peer.host}]" if ":" in peer.host else peer.host
        return f"{host}:{peer.port}"


def trunk_config(settings: Settings) -> TrunkConfig | None:
    """The trunk of the server's settings; None when outbound calls are off."""
    if not settings.sip_trunk:
        return None
    return TrunkConfig(uri=settings.sip_trunk,
                       password=settings.sip_trunk_password.get_secret_value(),
                       register=settings.sip_trunk_register,
                       default_region=settings.phone_region or None)


class TrunkState(enum.StrEnum):
    UNREGISTERED = "unregistered"
    """Registration is off (the carrier knows us by address), or not started yet."""
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILING = "failing"


@dataclass(frozen=True, slots=True)
class TrunkStatus:
    """The trunk's registration as health checks read it."""

    state: TrunkState
    reason: str = ""
    since: datetime = field(default_factory=lambda: datetime.now(UTC))
    expires_at: datetime | None = None

    def as_json(self) -> dict[str, object]:
        return {"state": self.state.value, "reason": self.reason,
                "since": self.since.isoformat(),
                "expires_at": self.expires_at.isoformat() if self.expires_at else None}


class Trunk:
    """Outbound INVITEs to the carrier, and the carrier registration when configured."""

    def __init__(self, stack: SipStack, config: TrunkConfig, *,
                 on_status: Callable[[TrunkStatus], None] | None = None) -> None:
        self.stack = stack
        self.config = config
        self.on_status = on_status
        """Told every change of `status` (logs, health)."""
        self.peer = config.peer
        self.credentials = DigestClient(config.username, config.password)
        self.status = TrunkStatus(TrunkState.UNREGISTERED)
        self.registrations = 0
        """Successful REGISTERs so far (refreshes included)."""
        self._register_call_id = f"{os.urandom(10).hex()}@{stack.host}"
        self._cseq = 1
        self._registering: asyncio.Task[None] | None = None

    @property
    def healthy(self) -> bool:
        """Calls can go out: registered, or registration is not needed."""
        if not self.config.register:
            return True
        return self.status.state is TrunkState.REGISTERED

    # --- numbers and calls ----------------------------------------------------------------------

    def dialable(self, number: str) -> str:
        """`number` in E.164, as the carrier gets it; InvalidNumber when it is not a number."""
        value = normalize_phone(number, self.config.default_region)
        if not E164.match(value):
            raise InvalidNumber(f"{number!r} is not a phone number that can be dialled")
        return value

    def invite(self, number: str, *, caller_id: str, sdp: str, caller_name: str = "",
               call_id: str | None = None) -> OutgoingInvite:
        """INVITE `number` (E.164, see `dialable`) with `caller_id` in From and
        P-Asserted-Identity; digest challenges are answered with the trunk's credentials."""
        domain = self.config.domain
        caller_uri = f"sip:{caller_id or self.config.username or 'anonymous'}@{domain}"
        identity = f'"{_quoted(caller_name)}" <{caller_uri}>' if caller_name else f"<{caller_uri}>"
        request = self.stack.request(
            "INVITE", f"sip:{number}@{domain}", to=self.peer, from_uri=caller_uri,
            from_display=caller_name or None, to_uri=f"sip:{number}@{domain}",
            body=sdp.encode(), content_type=SDP, call_id=call_id,
            headers={"P-Asserted-Identity": identity})
        return self.stack.invite(request, self.peer, credentials=self.credentials)

    # --- registration ---------------------------------------------------------------------------

    def start(self) -> None:
        """Begin registering (when configured); the task keeps the registration alive."""
        if self.config.register and self._registering is None:
            self._registering = asyncio.create_task(self._keep_registered(),
                                                    name="trunk-registration")

    async def stop(self) -> None:
        """Stop refreshing and remove the registration (best effort)."""
        task, self._registering = self._registering, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if self.status.state is TrunkState.REGISTERED:
            with contextlib.suppress(TransactionError, OSError, TimeoutError):
                async with asyncio.timeout(self.stack.timers.timeout):
                    await self._register(0)
        self._set(TrunkState.UNREGISTERED, "")

    async def _keep_registered(self) -> None:
        wait_after_failure = self.config.retry_s
        while True:
            if self.status.state is not TrunkState.REGISTERED:
                self._set(TrunkState.REGISTERING, self.status.reason)
            response: SipResponse | None = None
            try:
                response = await self._register(self.config.register_expires_s)
            except (TransactionError, OSError) as error:
                reason = str(error) or type(error).__name__
            else:
                reason = f"{response.status} {response.reason}"
            if response is not None and 200 <= response.status < 300:
                granted = _granted_expiry(response, self.config.register_expires_s)
                self.registrations += 1
                self._set(TrunkState.REGISTERED, "",
                          expires_at=datetime.now(UTC) + timedelta(seconds=granted))
                wait_after_failure = self.config.retry_s
                await asyncio.sleep(_refresh_after(granted))
                continue
            log.warning("voice: registration to the trunk %s failed: %s", self.config.uri,
                        reason)
            self._set(TrunkState.FAILING, reason)
            await asyncio.sleep(wait_after_failure)
            wait_after_failure = min(wait_after_failure * 2, self.config.retry_max_s)

    async def _register(self, expires_s: int) -> SipResponse:
        aor = f"sip:{self.config.username}@{self.config.domain}"
        request = self.stack.request(
            "REGISTER", f"sip:{self.config.domain}", to=self.peer, from_uri=aor, to_uri=aor,
            call_id=self._register_call_id, cseq=self._cseq,
            headers={"Expires": str(expires_s)})
        try:
            response = await self.stack.send(request, self.peer, credentials=self.credentials)
        except BaseException:
            self._cseq += 3  # past any authorized retry of the lost request
            raise
        self._cseq = response.cseq.number + 1
        return response

    def _set(self, state: TrunkState, reason: str, *,
             expires_at: datetime | None = None) -> None:
        if state is self.status.state and reason == self.status.reason:
            if expires_at is not None:
                self.status = TrunkStatus(state, reason, self.status.since, expires_at)
            return
        self.status = TrunkStatus(state, reason, expires_at=expires_at)
        if self.on_status is not None:
            self.on_status(self.status)


def _granted_expiry(response: SipResponse, asked_s: int) -> int:
    """The registration's lifetime the registrar granted (Contact expires, else Expires)."""
    for contact in response.headers.get_all("Contact"):
        found = _EXPIRES_PARAM.search(contact)
        if found:
            return int(found.group(1))
    expires = response.headers.get("Expires")
    if expires is not None and expires.strip().isdigit():
        return int(expires.strip())
    return asked_s


def _refresh_after(granted_s: int) -> float:
    """Refresh well before expiry: at 80% of short lifetimes, 30 s before longer ones."""
    if granted_s <= 0:
        return 1.0
    return granted_s * 0.8 if granted_s <= 150 else granted_s - 30.0


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')

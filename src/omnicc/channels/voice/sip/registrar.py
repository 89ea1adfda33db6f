"""A SIP registrar for agent phones (RFC 3261 §10.3) with digest authentication (§22).

``Registrar.handle(incoming)`` answers a REGISTER: 401 with a challenge until the request
carries valid credentials (stale nonces re-challenged with ``stale=true``), 403 for an unknown
user, a wrong password or someone else's address of record, 400 for malformed credentials or
headers, 423 for an expiry below ``min_expires``, 500 for an out-of-order CSeq, else 200 listing
the current bindings.  Credentials come from an injected async lookup returning the user's HA1
per digest algorithm (the password is never needed).

Each ``Binding`` remembers the ``Peer`` the REGISTER came from, so requests to a phone behind
NAT go back through the same flow (RFC 5626's idea, without its Path/outbound machinery).
Bindings expire on their own; ``on_change(username, bindings)`` reports every change of a user's
set of contacts (registered, moved, removed, expired).

``authenticate(incoming)`` checks other requests from phones (INVITE: 407 Proxy-Authenticate,
§22.3) and returns the username, or None after having answered the request.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from .digest import (
    Algorithm,
    DigestCredentials,
    DigestParseError,
    DigestServer,
    HA1Store,
    Verdict,
    compute_ha1,
    parse_credentials,
)
from .message import Headers, SipParseError, uri_user
from .stack import IncomingRequest
from .transport import Peer

__all__ = [
    "Binding",
    "CredentialLookup",
    "Registrar",
    "ha1_for_password",
    "ha1_lookup",
]

log = logging.getLogger(__name__)

CredentialLookup = Callable[[str], Awaitable[Mapping[Algorithm, str] | None]]
"""``username -> {Algorithm.MD5: ha1, Algorithm.SHA256: ha1}`` (either may be absent), or None."""


def ha1_for_password(username: str, realm: str, password: str) -> dict[Algorithm, str]:
    """The HA1s to store for a user (MD5 and SHA-256); the password itself is not kept."""
    return {
        alg: compute_ha1(alg, username, realm, password)
        for alg in (Algorithm.MD5, Algorithm.SHA256)
    }


def ha1_lookup(store: HA1Store) -> CredentialLookup:
    """A lookup reading an in-memory ``HA1Store`` (tests, static configuration)."""

    async def lookup(username: str) -> Mapping[Algorithm, str] | None:
        found = {
            alg: ha1
            for alg in (Algorithm.MD5, Algorithm.SHA256)
            if (ha1 := store.ha1(username, alg)) is not None
        }
        return found or None

    return lookup


@dataclass(frozen=True, slots=True)
class Binding:
    """One registered contact of a user."""

    contact: str
    peer: Peer
    expires_at: float
    user_agent: str | None
    call_id: str
    cseq: int
    q: str | None = None

    def expires_in(self, now: float) -> int:
        return max(0, round(self.expires_at - now))


class _Reject(Exception):
    """The answer refusing a request (a challenge or an error)."""

    def __init__(
        self, status: int, reason: str | None = None, headers: list[tuple[str, str]] | None = None
    ) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason
        self.headers = Headers(headers or [])

    async def send(self, incoming: IncomingRequest) -> None:
        await incoming.respond(self.status, self.reason, headers=self.headers)


class Registrar:
    """REGISTER handling and digest authentication for one realm."""

    def __init__(
        self,
        realm: str,
        credentials: CredentialLookup,
        digest_server: DigestServer | None = None,
        *,
        min_expires: int = 60,
        max_expires: int = 3600,
        default_expires: int = 3600,
        max_bindings: int = 10,
        algorithms: tuple[Algorithm, ...] = (Algorithm.MD5,),
        clock: Callable[[], float] = time.time,
        on_change: Callable[[str, list[Binding]], None] | None = None,
    ) -> None:
        self.realm = realm
        self.credentials = credentials
        self.digest = digest_server or DigestServer(realm, HA1Store(realm), clock=clock)
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self.max_bindings = max_bindings
        self.algorithms = algorithms
        self.clock = clock
        self.on_change = on_change
        self._bindings: dict[str, dict[str, Binding]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}

    # ------------------------------------------------------------------ queries

    def bindings(self, username: str) -> list[Binding]:
        """The user's unexpired bindings, most recently refreshed last."""
        now = self.clock()
        return [b for b in self._bindings.get(username, {}).values() if b.expires_at > now]

    def usernames(self) -> list[str]:
        """Users with at least one unexpired binding."""
        return [user for user in self._bindings if self.bindings(user)]

    # ------------------------------------------------------------------ authentication

    async def authenticate(self, incoming: IncomingRequest) -> str | None:
        """The authenticated username of a non-REGISTER request, or None once answered.

        Uses Proxy-Authenticate / Proxy-Authorization (407, §22.3), as a phone expects from
        the server it sends INVITEs to.
        """
        try:
            return await self._authenticate(incoming, proxy=True)
        except _Reject as reject:
            await reject.send(incoming)
            return None

    async def _authenticate(self, incoming: IncomingRequest, *, proxy: bool) -> str | None:
        """The username, or raises ``_Reject`` with the challenge or refusal to send."""
        message = incoming.message
        header = "Proxy-Authorization" if proxy else "Authorization"
        credentials: DigestCredentials | None = None
        for value in message.headers.get_all(header):
            try:
                parsed = parse_credentials(value)
            except DigestParseError as exc:
                raise _Reject(400, f"Malformed Credentials: {exc}"[:120]) from exc
            if parsed.realm == self.realm:
                credentials = parsed
                break
        if credentials is None:
            raise self._challenge(proxy, stale=False)
        ha1s = await self.credentials(credentials.username)
        if not ha1s:
            log.info(
                "SIP %s from %s: unknown user %r",
                message.method,
                incoming.source,
                credentials.username,
            )
            raise _Reject(403, "Forbidden")
        store = HA1Store(self.realm)
        for algorithm, ha1 in ha1s.items():
            store.set_ha1(credentials.username, algorithm, ha1)
        result = self.digest.verify(message.method, credentials, store=store)
        verdict = result.verdict
        if verdict is Verdict.OK:
            return credentials.username
        if verdict is Verdict.STALE:
            raise self._challenge(proxy, stale=True)
        if verdict in (Verdict.UNKNOWN_USER, Verdict.BAD_RESPONSE):
            log.info(
                "SIP %s from %s: wrong password for %r",
                message.method,
                incoming.source,
                credentials.username,
            )
            raise _Reject(403, "Forbidden")
        if verdict is Verdict.MALFORMED:
            raise _Reject(400, "Malformed Credentials")
        raise self._challenge(proxy, stale=False)  # bad or replayed nonce, opaque mismatch

    def _challenge(self, proxy: bool, *, stale: bool) -> _Reject:
        values = [self.digest.challenge(alg, stale=stale).header_value() for alg in self.algorithms]
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        return _Reject(407 if proxy else 401, headers=[(name, value) for value in values])

    # ------------------------------------------------------------------ REGISTER

    async def handle(self, incoming: IncomingRequest) -> None:
        """Answer a REGISTER (§10.3)."""
        try:
            username = await self._authenticate(incoming, proxy=False)
            assert username is not None
            bindings = self._register(incoming, username)
        except _Reject as reject:
            await reject.send(incoming)
            return
        now = self.clock()
        headers = Headers(
            [("Contact", f"<{b.contact}>;expires={b.expires_in(now)}") for b in bindings]
        )
        headers.add("Date", email.utils.formatdate(now, usegmt=True))
        await incoming.respond(200, headers=headers)

    def _register(self, incoming: IncomingRequest, username: str) -> list[Binding]:
        message = incoming.message
        try:
            to = message.to
            contacts = message.contacts
            wildcard = message.is_wildcard_contact
            call_id = message.call_id
            cseq = message.cseq.number
        except SipParseError as exc:
            raise _Reject(400, f"Bad Request: {exc}"[:120]) from exc
        if uri_user(to.uri) != username:
            raise _Reject(403, "Not Your Address of Record")
        header_expires = _expires(message.headers.get("Expires"))
        now = self.clock()
        current = {b.contact: b for b in self.bindings(username)}
        updated = dict(current)
        if wildcard:
            if header_expires != 0 or len(message.headers.values("Contact")) != 1:
                raise _Reject(400, "Wildcard Contact Needs Expires 0")
            for binding in current.values():
                if binding.call_id == call_id and cseq <= binding.cseq:
                    raise _Reject(500, "Out of Order CSeq")
            updated = {}
        for contact in contacts:
            expires = _expires(contact.params.get("expires"))
            if expires is None:
                expires = header_expires if header_expires is not None else self.default_expires
            if 0 < expires < self.min_expires:
                raise _Reject(423, "Interval Too Brief", [("Min-Expires", str(self.min_expires))])
            expires = min(expires, self.max_expires)
            existing = current.get(contact.uri)
            if existing is not None and existing.call_id == call_id and cseq <= existing.cseq:
                raise _Reject(500, "Out of Order CSeq")
            updated.pop(contact.uri, None)
            if expires > 0:
                updated[contact.uri] = Binding(
                    contact=contact.uri,
                    peer=incoming.source,
                    expires_at=now + expires,
                    user_agent=message.headers.get("User-Agent"),
                    call_id=call_id,
                    cseq=cseq,
                    q=contact.params.get("q"),
                )
        if len(updated) > self.max_bindings:
            raise _Reject(403, "Too Many Contacts")
        changed = _shape(current) != _shape(updated)
        self._bindings[username] = updated
        if not updated:
            self._bindings.pop(username, None)
        self._schedule_expiry(username)
        if changed:
            self._notify(username)
        return list(updated.values())

    # ------------------------------------------------------------------ expiry

    def _schedule_expiry(self, username: str) -> None:
        handle = self._timers.pop(username, None)
        if handle is not None:
            handle.cancel()
        bindings = self._bindings.get(username)
        if not bindings:
            return
        delay = min(b.expires_at for b in bindings.values()) - self.clock()
        loop = asyncio.get_running_loop()
        self._timers[username] = loop.call_later(max(0.0, delay) + 0.01, self._expire, username)

    def _expire(self, username: str) -> None:
        self._timers.pop(username, None)
        before = self._bindings.get(username, {})
        now = self.clock()
        alive = {uri: b for uri, b in before.items() if b.expires_at > now}
        if len(alive) != len(before):
            if alive:
                self._bindings[username] = alive
            else:
                self._bindings.pop(username, None)
            self._notify(username)
        self._schedule_expiry(username)

    def _notify(self, username: str) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(username, self.bindings(username))
        except Exception:
            log.exception("registrar on_change failed for %r", username)

    def close(self) -> None:
        """Cancel the expiry timers (bindings stay readable)."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()


def _shape(bindings: Mapping[str, Binding]) -> set[tuple[str, Peer]]:
    return {(uri, b.peer) for uri, b in bindings.items()}


def _expires(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit():
        raise _Reject(400, "Bad Expires")
    return min(int(value), 2**32 - 1)




"""Web UI sessions: a signed, timestamped cookie, a server-side revocation list, and CSRF tokens.

The cookie carries the session id, user, tenant, role and the time the session began, signed
with itsdangerous under a per-purpose salt. Its signature timestamp is the last renewal, which
gives two limits: ``idle_timeout_s`` since the last renewal and ``max_age_s`` since login. The
cookie itself is stateless; logout puts the session id on a revocation list until the cookie
could no longer be valid anyway, so the list stays small. The role in the cookie is the role at
login: a password or role change, or disabling the account, must call ``close_all`` so that the
user's older cookies stop working.

CSRF uses the synchronizer-token pattern without server state: the token is an HMAC of the
session id under a key of its own, sent by the page in a header on unsafe methods. Requests
authenticated by an API token are exempt: CSRF works because a browser attaches cookies to a
cross-site request by itself, whereas an ``Authorization`` header is only sent by code that
already holds the token, so a forged request cannot carry it. A WebSocket handshake is a GET
that carries cookies and no custom header, so the API checks its ``Origin`` instead
(``verify_origin``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer

from omnicc.app.principals import Credential, Forbidden, Principal, Role, Unauthenticated
from omnicc.core.clock import Clock
from omnicc.core.errors import InvalidConfiguration

SESSION_SALT = "omnicc.session.cookie"
CSRF_SALT = b"omnicc.session.csrf"
MIN_SECRET_KEY_LENGTH = 32
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# Nodes' clocks differ a little; a cookie signed a moment "in the future" is still fine.
CLOCK_SKEW_S = 5.0


@dataclass(frozen=True, slots=True)
class Session:
    """A verified web session."""

    session_id: str
    user_id: str
    tenant_id: str
    role: Role
    issued_at_s: float
    renewed_at_s: float

    @property
    def principal(self) -> Principal:
        return Principal(
            subject_id=self.user_id,
            tenant_id=self.tenant_id,
            role=self.role,
            credential=Credential.SESSION,
            session_id=self.session_id,
        )


class SessionRevocations(Protocol):
    """Sessions ended before their time. Async so the store or Redis can back it across nodes.

    Each entry carries ``until_s``, the moment after which every cookie it could match has
    expired anyway, so a backing store may delete it then.
    """

    async def revoke(self, session_id: str, *, until_s: float) -> None:
        """Reject one session (logout)."""

    async def revoke_user(self, user_id: str, *, issued_before_s: float, until_s: float) -> None:
        """Reject every session of a user that began before ``issued_before_s``: on a password
        change, a role change or when the account is disabled."""

    async def is_revoked(self, session: Session) -> bool: ...


class MemorySessionRevocations:
    """Revocations held in this process: for one node, and for tests."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._sessions: dict[str, float] = {}
        self._users: dict[str, tuple[float, float]] = {}

    async def revoke(self, session_id: str, *, until_s: float) -> None:
        self._forget_expired()
        self._sessions[session_id] = max(until_s, self._sessions.get(session_id, until_s))

    async def revoke_user(self, user_id: str, *, issued_before_s: float, until_s: float) -> None:
        self._forget_expired()
        earlier_before_s, earlier_until_s = self._users.get(user_id, (issued_before_s, until_s))
        self._users[user_id] = (
            max(issued_before_s, earlier_before_s),
            max(until_s, earlier_until_s),
        )

    async def is_revoked(self, session: Session) -> bool:
        now_s = self._clock.now()
        until_s = self._sessions.get(session.session_id)
        if until_s is not None and now_s < until_s:
            return True
        user = self._users.get(session.user_id)
        return user is not None and now_s < user[1] and session.issued_at_s < user[0]

    def __len__(self) -> int:
        return len(self._sessions) + len(self._users)

    def _forget_expired(self) -> None:
        now_s = self._clock.now()
        for session_id in [k for k, until_s in self._sessions.items() if until_s <= now_s]:
            del self._sessions[session_id]
        for user_id in [k for k, (_, until_s) in self._users.items() if until_s <= now_s]:
            del self._users[user_id]


class _ClockedSigner(TimestampSigner):
    """A timestamp signer that reads the injected clock instead of ``time.time``."""

    def __init__(self, *args: Any, clock: Clock, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock.now())


class Sessions:
    """Open, read, renew and close web sessions; issue and check their CSRF tokens."""

    def __init__(
        self,
        secret_key: str | bytes,
        *,
        clock: Clock,
        revocations: SessionRevocations,
        max_age_s: float = 12 * 3600.0,
        idle_timeout_s: float = 3600.0,
        old_secret_keys: Sequence[str | bytes] = (),
    ) -> None:
        """``secret_key`` comes from settings; ``old_secret_keys`` still verify during rotation.

        Defaults: a session lasts a 12-hour shift at most and ends after an hour without
        renewal (the desktop renews while in use, see ``should_renew``).
        """
        keys = [_key_bytes(k) for k in (*old_secret_keys, secret_key)]
        if any(len(k) < MIN_SECRET_KEY_LENGTH for k in keys):
            raise InvalidConfiguration(
                f"session secret keys must be at least {MIN_SECRET_KEY_LENGTH} bytes "
                "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        if not 0 < idle_timeout_s <= max_age_s:
            raise InvalidConfiguration("need 0 < idle_timeout_s <= max_age_s")
        self.max_age_s = max_age_s
        self.idle_timeout_s = idle_timeout_s
        self._clock = clock
        self._revocations = revocations
        # itsdangerous signs with the last key and verifies with any of them.
        self._serializer = URLSafeTimedSerializer(
            keys, salt=SESSION_SALT, signer=_ClockedSigner, signer_kwargs={"clock": clock}
        )
        self._csrf_keys = [hmac.new(k, CSRF_SALT, hashlib.sha256).digest() for k in keys]

    def open(self, *, user_id: str, tenant_id: str, role: Role) -> tuple[Session, str]:
        """A new session after a successful login, and the cookie value that carries it."""
        now_s = self._clock.now()
        session = Session(
            session_id=secrets.token_urlsafe(32),
            user_id=user_id,
            tenant_id=tenant_id,
            role=role,
            # Milliseconds, so that a login just after ``close_all`` is told apart from those
            # it revoked; the signature's own timestamp has whole seconds only.
            issued_at_s=round(now_s, 3),
            renewed_at_s=float(int(now_s)),
        )
        return session, self._dump(session)

    def read(self, cookie: str | None) -> Session:
        """The session a cookie carries; ``Unauthenticated`` if missing, tampered or expired.

        Pure with respect to the revocation list: ``authenticate`` adds that check.
        """
        if not cookie:
            raise Unauthenticated("no session")
        try:
            payload, signed_at = self._serializer.loads(cookie, return_timestamp=True)
        except BadData:
            raise Unauthenticated("invalid session") from None
        session = _session_from_payload(payload, renewed_at_s=signed_at.timestamp())
        now_s = self._clock.now()
        if max(session.issued_at_s, session.renewed_at_s) > now_s + CLOCK_SKEW_S:
            raise Unauthenticated("invalid session")
        if now_s - session.issued_at_s > self.max_age_s:
            raise Unauthenticated("session expired, please log in again")
        if now_s - session.renewed_at_s > self.idle_timeout_s:
            raise Unauthenticated("session expired after inactivity, please log in again")
        return session

    async def authenticate(self, cookie: str | None) -> Session:
        """``read`` plus the revocation list: what every cookie-authenticated request calls."""
        session = self.read(cookie)
        if await self._revocations.is_revoked(session):
            raise Unauthenticated("session ended, please log in again")
        return session

    def should_renew(self, session: Session) -> bool:
        """Whether to send a fresh cookie now: after a tenth of the idle timeout, so an active
        user never times out and a busy page does not set a cookie on every request."""
        return self._clock.now() - session.renewed_at_s >= self.idle_timeout_s / 10

    def renew(self, session: Session) -> tuple[Session, str]:
        """The same session with a fresh idle timer; its absolute ``max_age_s`` does not move."""
        renewed = Session(
            session_id=session.session_id,
            user_id=session.user_id,
            tenant_id=session.tenant_id,
            role=session.role,
            issued_at_s=session.issued_at_s,
            renewed_at_s=float(int(self._clock.now())),
        )
        return renewed, self._dump(renewed)

    async def close(self, session: Session) -> None:
        """Logout: the cookie is refused from now on, on every node sharing the revocations."""
        await self._revocations.revoke(
            session.session_id, until_s=session.issued_at_s + self.max_age_s + CLOCK_SKEW_S
        )

    async def close_all(self, user_id: str) -> None:
        """End every session the user has now, on every node: after a password or role change,
        or when the account is disabled. Sessions opened afterwards are not affected."""
        now_s = self._clock.now()
        await self._revocations.revoke_user(
            user_id, issued_before_s=now_s, until_s=now_s + self.max_age_s + CLOCK_SKEW_S
        )

    def csrf_token(self, session: Session) -> str:
        """The token the page sends back in a header on unsafe methods."""
        return _csrf_token(self._csrf_keys[-1], session.session_id)

    def verify_csrf(self, session: Session, header_value: str | None) -> None:
        """``Forbidden`` unless ``header_value`` is this session's CSRF token."""
        if not header_value:
            raise Forbidden("missing CSRF token")
        presented = header_value.encode("utf-8", "replace")
        if not any(
            hmac.compare_digest(presented, _csrf_token(key, session.session_id).encode())
            for key in self._csrf_keys
        ):
            raise Forbidden("invalid CSRF token")

    def _dump(self, session: Session) -> str:
        payload = {
            "sid": session.session_id,
            "uid": session.user_id,
            "tid": session.tenant_id,
            "role": session.role.value,
            "iat_ms": round(session.issued_at_s * 1000),
        }
        value = self._serializer.dumps(payload)
        return value if isinstance(value, str) else value.decode()


def requires_csrf(method: str, credential: Credential) -> bool:
    """Whether a request must carry a CSRF token: unsafe methods authenticated by cookie.

    Decided by the credential that authenticated the request, not by which headers are present,
    so a request bearing both a cookie and a token is checked whenever the cookie is used.
    """
    return credential is Credential.SESSION and method.upper() not in SAFE_METHODS


def verify_origin(origin: str | None, allowed_origins: Collection[str]) -> None:
    """``Forbidden`` unless a cookie-authenticated WebSocket handshake comes from our own pages.

    Browsers always send ``Origin`` on WebSocket handshakes, so a missing one is refused too.
    Origins compare case-insensitively and without a trailing slash.
    """
    if not origin or _origin(origin) not in {_origin(o) for o in allowed_origins}:
        raise Forbidden("cross-origin WebSocket refused")


def _origin(value: str) -> str:
    return value.strip().rstrip("/").lower()


def _csrf_token(key: bytes, session_id: str) -> str:
    mac = hmac.new(key, session_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def _key_bytes(key: str | bytes) -> bytes:
    return key.encode() if isinstance(key, str) else key


def _session_from_payload(payload: Any, *, renewed_at_s: float) -> Session:
    """Rebuild a session from a correctly signed payload, refusing shapes we never wrote."""
    try:
        session = Session(
            session_id=_text(payload["sid"]),
            user_id=_text(payload["uid"]),
            tenant_id=_text(payload["tid"]),
            role=Role(payload["role"]),
            issued_at_s=_milliseconds(payload["iat_ms"]) / 1000,
            renewed_at_s=renewed_at_s,
        )
    except (KeyError, TypeError, ValueError):
        raise Unauthenticated("invalid session") from None
    return session


def _milliseconds(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("expected integer milliseconds")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a non-empty string")
    return value

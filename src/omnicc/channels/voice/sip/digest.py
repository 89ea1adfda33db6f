"""HTTP Digest authentication as SIP uses it (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760).

Server side: :class:`DigestServer` issues challenges (``WWW-Authenticate`` /
``Proxy-Authenticate`` values) and verifies ``Authorization`` /
``Proxy-Authorization`` values.  Nonces are stateless: each carries its issue
time and a random part, signed with HMAC-SHA256 under a server secret, so any
worker holding the secret can check it and its age; an expired but authentic
nonce yields ``stale=true`` so the peer retries without asking the user again.
Replayed nonce counts (``nc``) are refused by a bounded in-memory tracker.

Credentials: the server stores only **HA1** = H(username:realm:password) per
user and algorithm (:class:`HA1Store`); the password itself is never kept.

Client side: :class:`DigestClient` answers a challenge (used when OmniCC
registers to a carrier trunk).

Supported: algorithms MD5, MD5-sess, SHA-256, SHA-256-sess; qop ``auth`` and
the legacy RFC 2069 form without qop.  Not supported: ``auth-int``,
``userhash``.  Everything here is pure (no I/O); the clock is injectable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

__all__ = [
    "Algorithm",
    "Challenge",
    "DigestClient",
    "DigestCredentials",
    "DigestParseError",
    "DigestServer",
    "HA1Store",
    "NonceCountTracker",
    "Verdict",
    "VerifyResult",
    "compute_ha1",
    "compute_response",
    "format_params",
    "parse_challenge",
    "parse_credentials",
    "parse_digest_header",
]


class DigestParseError(ValueError):
    """A malformed ``Authorization`` or ``WWW-Authenticate`` value."""


class Algorithm(StrEnum):
    """Digest algorithms (RFC 7616 §3.7, RFC 8760)."""

    MD5 = "MD5"
    MD5_SESS = "MD5-sess"
    SHA256 = "SHA-256"
    SHA256_SESS = "SHA-256-sess"

    @property
    def hash_name(self) -> str:
        return "md5" if self in (Algorithm.MD5, Algorithm.MD5_SESS) else "sha256"

    @property
    def is_session(self) -> bool:
        return self in (Algorithm.MD5_SESS, Algorithm.SHA256_SESS)

    @property
    def base(self) -> Algorithm:
        """The non-session algorithm whose HA1 this algorithm builds on."""
        return Algorithm.MD5 if self.hash_name == "md5" else Algorithm.SHA256

    @classmethod
    def parse(cls, value: str | None) -> Algorithm:
        """Parse an ``algorithm`` parameter (case-insensitive; absent means MD5)."""
        if value is None:
            return cls.MD5
        for alg in cls:
            if alg.value.lower() == value.lower():
                return alg
        raise DigestParseError(f"unsupported digest algorithm {value!r}")


def _h(algorithm: Algorithm, data: str) -> str:
    return hashlib.new(algorithm.hash_name, data.encode("utf-8")).hexdigest()


def compute_ha1(algorithm: Algorithm, username: str, realm: str, password: str) -> str:
    """HA1 = H(username:realm:password) for the base algorithm (no ``-sess``)."""
    return _h(algorithm.base, f"{username}:{realm}:{password}")


def compute_response(
    *,
    algorithm: Algorithm,
    ha1: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None,
    nc: str | None = None,
    cnonce: str | None = None,
) -> str:
    """The ``response`` value from a stored (base) HA1.

    ``qop=None`` is the legacy RFC 2069 form: H(HA1:nonce:HA2).
    """
    if algorithm.is_session:
        if cnonce is None:
            raise ValueError("session algorithms need a cnonce")
        ha1 = _h(algorithm, f"{ha1}:{nonce}:{cnonce}")
    ha2 = _h(algorithm, f"{method}:{uri}")
    if qop is None:
        return _h(algorithm, f"{ha1}:{nonce}:{ha2}")
    if qop != "auth":
        raise ValueError(f"unsupported qop {qop!r}")
    if nc is None or cnonce is None:
        raise ValueError("qop=auth needs nc and cnonce")
    return _h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


# --------------------------------------------------------------------------- parsing

_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN_VALUE_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z/:@?=]+")
_WS = " \t\r\n"


def parse_digest_header(value: str) -> dict[str, str]:
    """Parse ``Digest k=v, k="quoted", ...`` into lower-cased names -> values.

    Quoted strings may contain backslash escapes; duplicate names are refused.
    """
    i = 0
    n = len(value)

    def skip_ws(pos: int) -> int:
        while pos < n and value[pos] in _WS:
            pos += 1
        return pos

    i = skip_ws(i)
    m = _TOKEN_RE.match(value, i)
    if m is None or m.group().lower() != "digest":
        raise DigestParseError("not a Digest header value")
    i = m.end()
    if i < n and value[i] not in _WS:
        raise DigestParseError("missing space after scheme")
    params: dict[str, str] = {}
    i = skip_ws(i)
    while i < n:
        m = _TOKEN_RE.match(value, i)
        if m is None:
            raise DigestParseError(f"expected parameter name at {i}")
        name = m.group().lower()
        i = skip_ws(m.end())
        if i >= n or value[i] != "=":
            raise DigestParseError(f"expected '=' after {name!r}")
        i = skip_ws(i + 1)
        if i < n and value[i] == '"':
            i += 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise DigestParseError("unterminated quoted string")
                c = value[i]
                if c == "\\":
                    if i + 1 >= n:
                        raise DigestParseError("dangling escape")
                    chars.append(value[i + 1])
                    i += 2
                elif c == '"':
                    i += 1
                    break
                else:
                    chars.append(c)
                    i += 1
            param_value = "".join(chars)
        else:
            m = _TOKEN_VALUE_RE.match(value, i)
            if m is None:
                raise DigestParseError(f"expected value for {name!r}")
            param_value = m.group()
            i = m.end()
        if name in params:
            raise DigestParseError(f"duplicate parameter {name!r}")
        params[name] = param_value
        i = skip_ws(i)
        if i < n:
            if value[i] != ",":
                raise DigestParseError(f"expected ',' at {i}")
            i = skip_ws(i + 1)
            if i >= n:
                raise DigestParseError("trailing comma")
    return params


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_UNQUOTED = frozenset({"algorithm", "stale", "nc"})


def format_params(params: Iterable[tuple[str, str]]) -> str:
    """Format ``Digest`` parameters; ``algorithm``, ``stale``, ``nc`` and a
    response's ``qop`` are tokens, everything else is a quoted string."""
    parts = []
    for name, value in params:
        parts.append(f"{name}={value}" if name in _UNQUOTED else f"{name}={_quote(value)}")
    return "Digest " + ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Challenge:
    """A parsed or generated ``WWW-Authenticate`` / ``Proxy-Authenticate`` value."""

    realm: str
    nonce: str
    algorithm: Algorithm = Algorithm.MD5
    qop: tuple[str, ...] = ("auth",)
    opaque: str | None = None
    stale: bool = False

    def header_value(self) -> str:
        params: list[tuple[str, str]] = [("realm", self.realm)]
        if self.qop:
            params.append(("qop", ",".join(self.qop)))
        params.append(("nonce", self.nonce))
        if self.opaque is not None:
            params.append(("opaque", self.opaque))
        params.append(("algorithm", self.algorithm.value))
        if self.stale:
            params.append(("stale", "true"))
        return format_params(params)


def parse_challenge(value: str) -> Challenge:
    p = parse_digest_header(value)
    try:
        realm, nonce = p["realm"], p["nonce"]
    except KeyError as exc:
        raise DigestParseError(f"challenge lacks {exc.args[0]}") from None
    qop = tuple(q.strip() for q in p["qop"].split(",") if q.strip()) if "qop" in p else ()
    return Challenge(
        realm=realm,
        nonce=nonce,
        algorithm=Algorithm.parse(p.get("algorithm")),
        qop=qop,
        opaque=p.get("opaque"),
        stale=p.get("stale", "").lower() == "true",
    )


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    """A parsed ``Authorization`` / ``Proxy-Authorization`` value."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: Algorithm = Algorithm.MD5
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = None
    opaque: str | None = None

    def header_value(self) -> str:
        params: list[tuple[str, str]] = [
            ("username", self.username),
            ("realm", self.realm),
            ("nonce", self.nonce),
            ("uri", self.uri),
            ("response", self.response),
            ("algorithm", self.algorithm.value),
        ]
        if self.opaque is not None:
            params.append(("opaque", self.opaque))
        out = format_params(params)
        if self.qop is not None:
            out += f", qop={self.qop}, nc={self.nc}, cnonce={_quote(self.cnonce or '')}"
        return out


_NC_RE = re.compile(r"[0-9a-fA-F]{8}")
_RESPONSE_RE = re.compile(r"[0-9a-fA-F]+")


def parse_credentials(value: str) -> DigestCredentials:
    p = parse_digest_header(value)
    missing = [k for k in ("username", "realm", "nonce", "uri", "response") if k not in p]
    if missing:
        raise DigestParseError(f"credentials lack {', '.join(missing)}")
    qop = p.get("qop")
    nc = p.get("nc")
    cnonce = p.get("cnonce")
    if qop is not None:
        if nc is None or cnonce is None:
            raise DigestParseError("qop requires nc and cnonce")
        if not _NC_RE.fullmatch(nc):
            raise DigestParseError("nc must be 8 hex digits")
    if not _RESPONSE_RE.fullmatch(p["response"]):
        raise DigestParseError("response must be hex")
    return DigestCredentials(
        username=p["username"],
        realm=p["realm"],
        nonce=p["nonce"],
        uri=p["uri"],
        response=p["response"].lower(),
        algorithm=Algorithm.parse(p.get("algorithm")),
        qop=qop,
        nc=nc,
        cnonce=cnonce,
        opaque=p.get("opaque"),
    )


# --------------------------------------------------------------------------- server


class HA1Store:
    """Per-user HA1 hashes for one realm.  Passwords are hashed on entry and never kept."""

    def __init__(self, realm: str) -> None:
        self.realm = realm
        self._ha1: dict[tuple[str, Algorithm], str] = {}

    def set_password(self, username: str, password: str) -> None:
        """Store HA1 for every base algorithm; the password is discarded."""
        for alg in (Algorithm.MD5, Algorithm.SHA256):
            self._ha1[(username, alg)] = compute_ha1(alg, username, self.realm, password)

    def set_ha1(self, username: str, algorithm: Algorithm, ha1: str) -> None:
        """Store a precomputed HA1 (e.g. provisioned from a database)."""
        self._ha1[(username, algorithm.base)] = ha1.lower()

    def remove(self, username: str) -> None:
        for alg in (Algorithm.MD5, Algorithm.SHA256):
            self._ha1.pop((username, alg), None)

    def ha1(self, username: str, algorithm: Algorithm) -> str | None:
        return self._ha1.get((username, algorithm.base))


NcStatus = Literal["new", "replay", "untracked"]


class NonceCountTracker:
    """Bounded memory of nonce counts seen per nonce, to refuse replays.

    At most ``max_nonces`` nonces are remembered (least recently used evicted) and
    ``max_counts`` counts per nonce.  When a nonce is evicted, every nonce issued
    at or before it is treated as unknown-and-unsafe (the caller answers stale),
    so eviction never reopens a replay window.
    """

    def __init__(self, max_nonces: int = 10_000, max_counts: int = 256) -> None:
        self._max_nonces = max_nonces
        self._max_counts = max_counts
        self._seen: OrderedDict[str, set[int]] = OrderedDict()
        self._floor_ms = -1

    def check_and_record(self, nonce: str, issued_ms: int, nc: int) -> NcStatus:
        """``"new"`` (and records ``nc``), ``"replay"`` if seen before, or
        ``"untracked"`` if the nonce can no longer be tracked safely (answer stale)."""
        seen = self._seen.get(nonce)
        if seen is None:
            if issued_ms <= self._floor_ms:
                return "untracked"
            seen = set()
            self._seen[nonce] = seen
            while len(self._seen) > self._max_nonces:
                evicted, _counts = self._seen.popitem(last=False)
                self._floor_ms = max(self._floor_ms, self._issued_of_evicted(evicted))
        else:
            self._seen.move_to_end(nonce)
        if nc in seen:
            return "replay"
        if len(seen) >= self._max_counts:
            return "untracked"
        seen.add(nc)
        return "new"

    @staticmethod
    def _issued_of_evicted(nonce: str) -> int:
        decoded = _decode_nonce(nonce)
        return decoded[0] if decoded is not None else -1

    def __len__(self) -> int:
        return len(self._seen)


_NONCE_STRUCT = struct.Struct(">Q8s")
_NONCE_MAC_LEN = 16


def _decode_nonce(nonce: str) -> tuple[int, bytes, bytes] | None:
    try:
        raw = base64.urlsafe_b64decode(nonce.encode("ascii") + b"=" * (-len(nonce) % 4))
    except (ValueError, UnicodeEncodeError):
        return None
    if len(raw) != _NONCE_STRUCT.size + _NONCE_MAC_LEN:
        return None
    issued_ms, rand = _NONCE_STRUCT.unpack(raw[: _NONCE_STRUCT.size])
    return int(issued_ms), bytes(rand), raw[_NONCE_STRUCT.size :]


class Verdict(StrEnum):
    OK = "ok"
    STALE = "stale"  # authentic but expired (or no longer trackable) nonce: re-challenge stale=true
    BAD_NONCE = "bad_nonce"
    REPLAY = "replay"
    UNKNOWN_USER = "unknown_user"
    BAD_RESPONSE = "bad_response"
    MISMATCH = "mismatch"  # realm, uri, opaque or algorithm do not match
    MALFORMED = "malformed"
    QOP_REQUIRED = "qop_required"


@dataclass(frozen=True, slots=True)
class VerifyResult:
    verdict: Verdict
    username: str | None = None

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK

    @property
    def stale(self) -> bool:
        return self.verdict is Verdict.STALE


@dataclass(slots=True)
class DigestServer:
    """Issues challenges and verifies credentials for one realm."""

    realm: str
    store: HA1Store
    secret: bytes = field(default_factory=lambda: os.urandom(32))
    nonce_lifetime: float = 300.0
    allow_legacy: bool = True
    clock: Callable[[], float] = time.time
    tracker: NonceCountTracker = field(default_factory=NonceCountTracker)
    opaque: str = field(default_factory=lambda: os.urandom(12).hex())

    def _mac(self, head: bytes) -> bytes:
        msg = head + self.realm.encode("utf-8")
        return hmac.new(self.secret, msg, hashlib.sha256).digest()[:_NONCE_MAC_LEN]

    def make_nonce(self) -> str:
        head = _NONCE_STRUCT.pack(int(self.clock() * 1000), os.urandom(8))
        return base64.urlsafe_b64encode(head + self._mac(head)).rstrip(b"=").decode("ascii")

    def challenge(self, algorithm: Algorithm = Algorithm.MD5, *, stale: bool = False) -> Challenge:
        """A fresh challenge; send ``.header_value()`` in WWW-/Proxy-Authenticate."""
        return Challenge(
            realm=self.realm,
            nonce=self.make_nonce(),
            algorithm=algorithm,
            qop=("auth",),
            opaque=self.opaque,
            stale=stale,
        )

    def challenges(self, *, stale: bool = False) -> list[Challenge]:
        """SHA-256 first, then MD5 (RFC 8760 §2.4 preference order)."""
        return [
            self.challenge(Algorithm.SHA256, stale=stale),
            self.challenge(Algorithm.MD5, stale=stale),
        ]

    def check_nonce(self, nonce: str) -> tuple[Verdict, int]:
        decoded = _decode_nonce(nonce)
        if decoded is None:
            return Verdict.BAD_NONCE, 0
        issued_ms, rand, mac = decoded
        head = _NONCE_STRUCT.pack(issued_ms, rand)
        if not hmac.compare_digest(mac, self._mac(head)):
            return Verdict.BAD_NONCE, issued_ms
        age = self.clock() - issued_ms / 1000.0
        if age < -5.0:  # from the future beyond clock skew: not ours to trust
            return Verdict.BAD_NONCE, issued_ms
        if age > self.nonce_lifetime:
            return Verdict.STALE, issued_ms
        return Verdict.OK, issued_ms

    def verify(
        self,
        method: str,
        authorization: str | DigestCredentials,
        *,
        request_uri: str | None = None,
        store: HA1Store | None = None,
    ) -> VerifyResult:
        """Verify an Authorization value for a request with ``method``.

        ``request_uri``, when given, must equal the ``uri`` parameter.  The response
        is compared in constant time, and an unknown user costs the same work as a
        known one.  On ``STALE`` answer a new challenge with ``stale=True``.
        ``store`` replaces ``self.store`` for this call (HA1s fetched per request,
        e.g. from a database).
        """
        if isinstance(authorization, DigestCredentials):
            creds = authorization
        else:
            try:
                creds = parse_credentials(authorization)
            except DigestParseError:
                return VerifyResult(Verdict.MALFORMED)
        user = creds.username
        if creds.realm != self.realm:
            return VerifyResult(Verdict.MISMATCH, user)
        if request_uri is not None and creds.uri != request_uri:
            return VerifyResult(Verdict.MISMATCH, user)
        if creds.opaque is not None and not hmac.compare_digest(
            creds.opaque.encode(), self.opaque.encode()
        ):
            return VerifyResult(Verdict.MISMATCH, user)
        if creds.qop is None and not self.allow_legacy:
            return VerifyResult(Verdict.QOP_REQUIRED, user)
        if creds.qop is not None and creds.qop != "auth":
            return VerifyResult(Verdict.MALFORMED, user)
        if creds.algorithm.is_session and creds.cnonce is None:
            return VerifyResult(Verdict.MALFORMED, user)
        nonce_verdict, issued_ms = self.check_nonce(creds.nonce)
        if nonce_verdict is Verdict.BAD_NONCE:
            return VerifyResult(Verdict.BAD_NONCE, user)
        stored = (store or self.store).ha1(user, creds.algorithm)
        ha1 = stored if stored is not None else _h(creds.algorithm.base, f"\0{user}:{self.realm}")
        expected = compute_response(
            algorithm=creds.algorithm,
            ha1=ha1,
            nonce=creds.nonce,
            method=method,
            uri=creds.uri,
            qop=creds.qop,
            nc=creds.nc,
            cnonce=creds.cnonce,
        )
        matches = hmac.compare_digest(expected.encode("ascii"), creds.response.encode("ascii"))
        if stored is None:
            return VerifyResult(Verdict.UNKNOWN_USER, user)
        if not matches:
            return VerifyResult(Verdict.BAD_RESPONSE, user)
        # The right password on an expired nonce: ask the peer to retry with a fresh one.
        if nonce_verdict is Verdict.STALE:
            return VerifyResult(Verdict.STALE, user)
        if creds.nc is not None:
            status = self.tracker.check_and_record(creds.nonce, issued_ms, int(creds.nc, 16))
            if status == "replay":
                return VerifyResult(Verdict.REPLAY, user)
            if status == "untracked":
                return VerifyResult(Verdict.STALE, user)
        return VerifyResult(Verdict.OK, user)


# --------------------------------------------------------------------------- client


def _random_cnonce() -> str:
    return os.urandom(12).hex()


@dataclass(slots=True)
class DigestClient:
    """Answers digest challenges from a carrier trunk (outbound REGISTER/INVITE).

    Holds the trunk password (the carrier gives us one); counts ``nc`` per nonce.
    """

    username: str
    password: str
    cnonce_factory: Callable[[], str] = field(default_factory=lambda: _random_cnonce)
    _nonce: str | None = field(default=None, init=False)
    _nc: int = field(default=0, init=False)

    def authorize(self, challenge: str | Challenge, method: str, uri: str) -> str:
        """The Authorization / Proxy-Authorization value answering ``challenge``."""
        ch = parse_challenge(challenge) if isinstance(challenge, str) else challenge
        if ch.qop and "auth" not in ch.qop:
            raise DigestParseError(f"no supported qop in {ch.qop!r}")
        if ch.algorithm.is_session and not ch.qop:
            raise DigestParseError("session algorithms need qop")
        if ch.nonce != self._nonce:
            self._nonce, self._nc = ch.nonce, 0
        ha1 = compute_ha1(ch.algorithm, self.username, ch.realm, self.password)
        qop = "auth" if ch.qop else None
        nc: str | None = None
        cnonce: str | None = None
        if qop is not None:
            self._nc += 1
            nc = f"{self._nc:08x}"
            cnonce = self.cnonce_factory()
        response = compute_response(
            algorithm=ch.algorithm,
            ha1=ha1,
            nonce=ch.nonce,
            method=method,
            uri=uri,
            qop=qop,
            nc=nc,
            cnonce=cnonce,
        )
        creds = DigestCredentials(
            username=self.username,
            realm=ch.realm,
            nonce=ch.nonce,
            uri=uri,
            response=response,
            algorithm=ch.algorithm,
            qop=qop,
            nc=nc,
            cnonce=cnonce,
            opaque=ch.opaque,
        )
        return creds.header_value()

"""Web sessions: signed cookies, idle and absolute expiry, revocation, renewal and CSRF."""

from __future__ import annotations

import asyncio
import base64
import json
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeTimedSerializer

from omnicc.app.principals import Credential, Forbidden, Role, Unauthenticated
from omnicc.app.sessions import (
    SESSION_SALT,
    MemorySessionRevocations,
    Session,
    Sessions,
    requires_csrf,
    verify_origin,
)
from omnicc.core.clock import ManualClock
from omnicc.core.errors import InvalidConfiguration

KEY = "k" * 40
OTHER_KEY = "o" * 40
START_S = 1_700_000_000.0


class Desk:
    """Sessions on a manual clock, and a logged-in agent."""

    def __init__(self, key: str = KEY, **options: object) -> None:
        self.clock = ManualClock(START_S)
        self.revocations = MemorySessionRevocations(self.clock)
        self.sessions = Sessions(
            key, clock=self.clock, revocations=self.revocations, **options  # type: ignore[arg-type]
        )
        self.session, self.cookie = self.sessions.open(
            user_id="u-ann", tenant_id="acme", role=Role.AGENT
        )


@pytest.fixture
def desk() -> Desk:
    return Desk()


def test_cookie_round_trips_the_session(desk: Desk) -> None:
    read = desk.sessions.read(desk.cookie)
    assert read == desk.session
    assert read.user_id == "u-ann" and read.tenant_id == "acme" and read.role is Role.AGENT
    assert read.issued_at_s == read.renewed_at_s == START_S
    assert len(read.session_id) >= 43


def test_session_principal_carries_tenant_role_and_session_id(desk: Desk) -> None:
    principal = desk.session.principal
    assert principal.subject_id == "u-ann"
    assert principal.tenant_id == "acme"
    assert principal.credential is Credential.SESSION
    assert principal.session_id == desk.session.session_id


def test_each_login_gets_its_own_session_id(desk: Desk) -> None:
    other, _ = desk.sessions.open(user_id="u-ann", tenant_id="acme", role=Role.AGENT)
    assert other.session_id != desk.session.session_id


@pytest.mark.parametrize("cookie", [None, "", "garbage", "a.b.c", "." * 10])
def test_missing_or_malformed_cookie_is_unauthenticated(desk: Desk, cookie: str | None) -> None:
    with pytest.raises(Unauthenticated):
        desk.sessions.read(cookie)


def test_cookie_signed_with_another_key_is_refused(desk: Desk) -> None:
    with pytest.raises(Unauthenticated, match="invalid session"):
        Desk(OTHER_KEY).sessions.read(desk.cookie)


def test_cookie_signed_for_another_purpose_is_refused(desk: Desk) -> None:
    forged = URLSafeTimedSerializer(KEY, salt="omnicc.other.purpose").dumps(
        {"sid": "s", "uid": "u-ann", "tid": "acme", "role": "admin", "iat_ms": int(START_S * 1000)}
    )
    with pytest.raises(Unauthenticated):
        desk.sessions.read(forged)


@pytest.mark.parametrize(
    "payload",
    [
        {},
        [],
        "text",
        {"sid": "s", "uid": "u", "tid": "t", "role": "emperor", "iat_ms": int(START_S * 1000)},
        {"sid": "", "uid": "u", "tid": "t", "role": "agent", "iat_ms": int(START_S * 1000)},
        {"sid": 1, "uid": "u", "tid": "t", "role": "agent", "iat_ms": int(START_S * 1000)},
        {"sid": "s", "uid": "u", "tid": "t", "role": "agent"},
        {"sid": "s", "uid": "u", "tid": "t", "role": "agent", "iat_ms": "soon"},
        {"sid": "s", "uid": "u", "tid": "t", "role": "agent", "iat_ms": 1.7e12},
        {"sid": "s", "uid": "u", "tid": "t", "role": "agent", "iat_ms": True},
        {"sid": "s", "uid": "u", "tid": "t", "role": "agent", "iat": int(START_S)},
    ],
)
def test_correctly_signed_but_malformed_payload_is_refused(desk: Desk, payload: object) -> None:
    # Signed with the real key and salt, as an old or buggy release might have written it.
    signed = URLSafeTimedSerializer(KEY, salt=SESSION_SALT).dumps(payload)
    desk.clock.set(START_S)
    with pytest.raises(Unauthenticated, match="invalid session"):
        desk.sessions.read(signed)


def _decoded_payload(cookie: str) -> bytes:
    body = cookie.split(".")[0 if not cookie.startswith(".") else 1]
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    return zlib.decompress(raw) if cookie.startswith(".") else raw


def test_cookie_payload_is_readable_but_holds_no_secret(desk: Desk) -> None:
    # Signed, not encrypted: only identifiers may go in it.
    payload = json.loads(_decoded_payload(desk.cookie))
    assert set(payload) == {"sid", "uid", "tid", "role", "iat_ms"}


def test_editing_the_role_breaks_the_signature(desk: Desk) -> None:
    payload = json.loads(_decoded_payload(desk.cookie))
    payload["role"] = "admin"
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    timestamp, signature = desk.cookie.rsplit(".", 2)[1:]
    with pytest.raises(Unauthenticated):
        desk.sessions.read(f"{body}.{timestamp}.{signature}")


# One cookie for every example: a fresh one would differ in length (its random session id
# compresses differently), and Hypothesis needs the same draws to replay a failure.
SIGNED = Desk()


@settings(max_examples=300)
@given(data=st.data())
def test_tampering_never_yields_a_different_session(data: st.DataObject) -> None:
    desk = SIGNED
    cookie = desk.cookie
    position = data.draw(st.integers(min_value=0, max_value=len(cookie) - 1))
    edit = data.draw(st.sampled_from(["replace", "delete", "insert"]))
    char = data.draw(st.characters(codec="ascii"))
    if edit == "replace":
        tampered = cookie[:position] + char + cookie[position + 1 :]
    elif edit == "delete":
        tampered = cookie[:position] + cookie[position + 1 :]
    else:
        tampered = cookie[:position] + char + cookie[position:]
    try:
        read = desk.sessions.read(tampered)
    except Unauthenticated:
        return
    # base64's spare low bits can absorb an edit of a final character: the decoded bytes, and
    # so the session, are the same. Anything else must have been refused above.
    assert read == desk.session


@given(st.text(max_size=300))
def test_arbitrary_text_is_refused_cleanly(text: str) -> None:
    with pytest.raises(Unauthenticated):
        Desk().sessions.read(text)


def test_idle_timeout_counts_from_the_last_renewal(desk: Desk) -> None:
    desk.clock.advance(3600)
    desk.sessions.read(desk.cookie)
    desk.clock.advance(1)
    with pytest.raises(Unauthenticated, match="inactivity"):
        desk.sessions.read(desk.cookie)


def test_renewal_restarts_the_idle_timer_but_not_the_absolute_age(desk: Desk) -> None:
    cookie = desk.cookie
    session = desk.session
    for _ in range(14):
        desk.clock.advance(3000)
        session, cookie = desk.sessions.renew(desk.sessions.read(cookie))
        assert session.issued_at_s == START_S
        assert session.renewed_at_s == desk.clock.now()
    desk.clock.set(START_S + 12 * 3600)
    desk.sessions.read(cookie)
    desk.clock.advance(1)
    with pytest.raises(Unauthenticated, match="log in again"):
        desk.sessions.read(cookie)
    assert session.session_id == desk.session.session_id


def test_should_renew_after_a_tenth_of_the_idle_timeout(desk: Desk) -> None:
    assert not desk.sessions.should_renew(desk.session)
    desk.clock.advance(359)
    assert not desk.sessions.should_renew(desk.session)
    desk.clock.advance(1)
    assert desk.sessions.should_renew(desk.session)


def test_limits_are_configurable() -> None:
    desk = Desk(max_age_s=600.0, idle_timeout_s=60.0)
    desk.clock.advance(61)
    with pytest.raises(Unauthenticated):
        desk.sessions.read(desk.cookie)


def test_cookie_from_the_future_is_refused_beyond_clock_skew(desk: Desk) -> None:
    early = Desk()
    early.clock.set(START_S + 60)
    _, future_cookie = early.sessions.open(user_id="u", tenant_id="acme", role=Role.AGENT)
    with pytest.raises(Unauthenticated):
        desk.sessions.read(future_cookie)
    desk.clock.advance(56)
    desk.sessions.read(future_cookie)


@pytest.mark.parametrize("key", ["", "short", "x" * 31, b"x" * 31])
def test_short_secret_keys_are_refused(key: str | bytes) -> None:
    clock = ManualClock()
    with pytest.raises(InvalidConfiguration, match="at least 32 bytes"):
        Sessions(key, clock=clock, revocations=MemorySessionRevocations(clock))


def test_idle_timeout_must_fit_in_max_age() -> None:
    clock = ManualClock()
    with pytest.raises(InvalidConfiguration):
        Sessions(
            KEY,
            clock=clock,
            revocations=MemorySessionRevocations(clock),
            max_age_s=60.0,
            idle_timeout_s=120.0,
        )


def test_key_rotation_keeps_old_cookies_valid_and_signs_with_the_new_key(desk: Desk) -> None:
    rotated = Sessions(
        OTHER_KEY,
        clock=desk.clock,
        revocations=desk.revocations,
        old_secret_keys=[KEY],
    )
    session = rotated.read(desk.cookie)
    _, fresh_cookie = rotated.renew(session)
    assert Desk(OTHER_KEY).sessions.read(fresh_cookie).session_id == session.session_id
    rotated.verify_csrf(session, desk.sessions.csrf_token(session))
    with pytest.raises(Unauthenticated):
        desk.sessions.read(fresh_cookie)


def test_authenticate_accepts_a_live_session(desk: Desk) -> None:
    assert asyncio.run(desk.sessions.authenticate(desk.cookie)) == desk.session


def test_logout_revokes_the_session_everywhere_it_is_presented(desk: Desk) -> None:
    _, other_cookie = desk.sessions.open(user_id="u-ann", tenant_id="acme", role=Role.AGENT)
    asyncio.run(desk.sessions.close(desk.session))
    with pytest.raises(Unauthenticated, match="session ended"):
        asyncio.run(desk.sessions.authenticate(desk.cookie))
    renewed_cookie = desk.sessions.renew(desk.session)[1]
    with pytest.raises(Unauthenticated, match="session ended"):
        asyncio.run(desk.sessions.authenticate(renewed_cookie))
    # Another login of the same user is another session.
    asyncio.run(desk.sessions.authenticate(other_cookie))


def test_revocations_are_forgotten_once_the_cookie_would_be_expired(desk: Desk) -> None:
    asyncio.run(desk.sessions.close(desk.session))
    assert len(desk.revocations) == 1
    desk.clock.advance(12 * 3600 + 10)
    assert not asyncio.run(desk.revocations.is_revoked(desk.session))
    asyncio.run(desk.revocations.revoke("another", until_s=desk.clock.now() + 60))
    assert len(desk.revocations) == 1


def test_close_all_ends_every_older_session_of_the_user_only(desk: Desk) -> None:
    desk.clock.advance(0.25)
    second, second_cookie = desk.sessions.open(user_id="u-ann", tenant_id="acme", role=Role.AGENT)
    _, bob_cookie = desk.sessions.open(user_id="u-bob", tenant_id="acme", role=Role.AGENT)
    desk.clock.advance(0.25)
    asyncio.run(desk.sessions.close_all("u-ann"))
    for cookie in (desk.cookie, second_cookie, desk.sessions.renew(second)[1]):
        with pytest.raises(Unauthenticated, match="session ended"):
            asyncio.run(desk.sessions.authenticate(cookie))
    asyncio.run(desk.sessions.authenticate(bob_cookie))
    # A login in the same second, just after, is a new session and is let in.
    desk.clock.advance(0.001)
    _, fresh_cookie = desk.sessions.open(user_id="u-ann", tenant_id="acme", role=Role.ADMIN)
    assert asyncio.run(desk.sessions.authenticate(fresh_cookie)).role is Role.ADMIN


def test_user_revocations_are_forgotten_and_keep_their_widest_reach() -> None:
    clock = ManualClock(START_S)
    revocations = MemorySessionRevocations(clock)
    old = Session("s1", "u1", "acme", Role.AGENT, issued_at_s=START_S - 5, renewed_at_s=START_S)
    asyncio.run(revocations.revoke_user("u1", issued_before_s=START_S, until_s=START_S + 100))
    asyncio.run(revocations.revoke_user("u1", issued_before_s=START_S - 10, until_s=START_S + 50))
    clock.advance(60)
    assert asyncio.run(revocations.is_revoked(old))
    clock.advance(40)
    assert not asyncio.run(revocations.is_revoked(old))
    asyncio.run(revocations.revoke("s2", until_s=clock.now() + 1))
    assert len(revocations) == 1


def test_revoking_twice_keeps_the_later_limit() -> None:
    clock = ManualClock(START_S)
    revocations = MemorySessionRevocations(clock)
    session = Session("s", "u1", "acme", Role.AGENT, issued_at_s=START_S, renewed_at_s=START_S)
    asyncio.run(revocations.revoke("s", until_s=START_S + 100))
    asyncio.run(revocations.revoke("s", until_s=START_S + 10))
    clock.advance(50)
    assert asyncio.run(revocations.is_revoked(session))


def test_csrf_token_is_bound_to_the_session(desk: Desk) -> None:
    token = desk.sessions.csrf_token(desk.session)
    desk.sessions.verify_csrf(desk.session, token)
    other, _ = desk.sessions.open(user_id="u-ann", tenant_id="acme", role=Role.AGENT)
    assert desk.sessions.csrf_token(other) != token
    with pytest.raises(Forbidden, match="invalid CSRF token"):
        desk.sessions.verify_csrf(other, token)


def test_csrf_token_is_stable_across_renewals(desk: Desk) -> None:
    token = desk.sessions.csrf_token(desk.session)
    desk.clock.advance(600)
    renewed, _ = desk.sessions.renew(desk.session)
    desk.sessions.verify_csrf(renewed, token)


def test_csrf_token_depends_on_the_secret_key(desk: Desk) -> None:
    foreign = Desk(OTHER_KEY).sessions.csrf_token(desk.session)
    with pytest.raises(Forbidden):
        desk.sessions.verify_csrf(desk.session, foreign)


@pytest.mark.parametrize("header", [None, ""])
def test_missing_csrf_header_is_forbidden(desk: Desk, header: str | None) -> None:
    with pytest.raises(Forbidden, match="missing CSRF token"):
        desk.sessions.verify_csrf(desk.session, header)


@given(st.text(max_size=100))
def test_any_other_csrf_value_is_forbidden(header: str) -> None:
    desk = Desk()
    if header == desk.sessions.csrf_token(desk.session):
        return
    with pytest.raises(Forbidden):
        desk.sessions.verify_csrf(desk.session, header)


def test_csrf_token_is_not_the_plain_session_id_mac_under_the_cookie_key(desk: Desk) -> None:
    # A key of its own (derived with another salt), so the cookie signature cannot serve as one.
    token = desk.sessions.csrf_token(desk.session)
    assert token not in desk.cookie
    assert desk.session.session_id not in token


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "post"])
def test_unsafe_methods_by_cookie_need_csrf(method: str) -> None:
    assert requires_csrf(method, Credential.SESSION)


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "get"])
def test_safe_methods_need_no_csrf(method: str) -> None:
    assert not requires_csrf(method, Credential.SESSION)


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_api_token_requests_are_exempt(method: str) -> None:
    assert not requires_csrf(method, Credential.API_TOKEN)


def test_session_is_immutable(desk: Desk) -> None:
    with pytest.raises(AttributeError):
        desk.session.role = Role.ADMIN  # type: ignore[misc]
    assert isinstance(desk.session, Session)


ORIGINS = ["https://cc.example.com", "http://localhost:8000"]


@pytest.mark.parametrize(
    "origin", ["https://cc.example.com", "HTTPS://CC.EXAMPLE.COM", "http://localhost:8000/"]
)
def test_websocket_from_our_own_pages_is_accepted(origin: str) -> None:
    verify_origin(origin, ORIGINS)


@pytest.mark.parametrize(
    "origin",
    [
        None,
        "",
        "null",
        "https://evil.example",
        "https://cc.example.com.evil.example",
        "http://cc.example.com",
        "http://localhost:8001",
    ],
)
def test_websocket_from_elsewhere_is_forbidden(origin: str | None) -> None:
    with pytest.raises(Forbidden, match="cross-origin"):
        verify_origin(origin, ORIGINS)

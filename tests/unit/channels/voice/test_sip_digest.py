"""SIP digest authentication: RFC vectors, server verification, client round trip."""

from __future__ import annotations

import pytest

from omnicc.channels.voice.sip.digest import (
    Algorithm,
    Challenge,
    DigestClient,
    DigestParseError,
    DigestServer,
    HA1Store,
    NonceCountTracker,
    Verdict,
    compute_ha1,
    compute_response,
    parse_challenge,
    parse_credentials,
    parse_digest_header,
)


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_rfc2617_section_3_5_example() -> None:
    ha1 = compute_ha1(Algorithm.MD5, "Mufasa", "testrealm@host.com", "Circle Of Life")
    response = compute_response(
        algorithm=Algorithm.MD5,
        ha1=ha1,
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        method="GET",
        uri="/dir/index.html",
        qop="auth",
        nc="00000001",
        cnonce="0a4f113b",
    )
    assert response == "6629fae49393a05397450978507c4ef1"


RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        (Algorithm.MD5, "8ca523f5e9506fed4657c9700eebdbec"),
        (
            Algorithm.SHA256,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        ),
    ],
)
def test_rfc7616_section_3_9_1(algorithm: Algorithm, expected: str) -> None:
    challenge = parse_challenge(
        'Digest realm="http-auth@example.org", qop="auth, auth-int", '
        f'algorithm={algorithm.value}, nonce="{RFC7616_NONCE}", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    assert challenge.qop == ("auth", "auth-int")
    client = DigestClient("Mufasa", "Circle of Life", cnonce_factory=lambda: RFC7616_CNONCE)
    value = client.authorize(challenge, "GET", "/dir/index.html")
    creds = parse_credentials(value)
    assert creds.response == expected
    assert creds.nc == "00000001"
    assert creds.opaque == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"


def test_parse_quoted_escapes_and_tokens() -> None:
    params = parse_digest_header(
        'Digest  username="Mu\\"fa\\\\sa" ,realm="a, b",nc=0000000a,  algorithm=sha-256'
    )
    assert params == {
        "username": 'Mu"fa\\sa',
        "realm": "a, b",
        "nc": "0000000a",
        "algorithm": "sha-256",
    }
    assert Algorithm.parse(params["algorithm"]) is Algorithm.SHA256


@pytest.mark.parametrize(
    "bad",
    [
        "Basic abc",
        'Digest username="unterminated',
        'Digest username="a" realm="b"',
        'Digest username="a", username="b"',
        'Digest username="a",',
        "Digest =x",
    ],
)
def test_parse_refuses_malformed(bad: str) -> None:
    with pytest.raises(DigestParseError):
        parse_digest_header(bad)


def test_challenge_header_round_trips() -> None:
    ch = Challenge(realm='sip "x"', nonce="n1", algorithm=Algorithm.SHA256, opaque="o", stale=True)
    assert parse_challenge(ch.header_value()) == ch


def _server(
    clock: Clock,
    *,
    nonce_lifetime: float = 300.0,
    allow_legacy: bool = True,
    tracker: NonceCountTracker | None = None,
) -> DigestServer:
    store = HA1Store("omnicc.example")
    store.set_password("alice", "s3cret")
    return DigestServer(
        realm="omnicc.example",
        store=store,
        secret=b"k" * 32,
        clock=clock,
        nonce_lifetime=nonce_lifetime,
        allow_legacy=allow_legacy,
        tracker=tracker if tracker is not None else NonceCountTracker(),
    )


def test_store_keeps_ha1_not_password() -> None:
    store = HA1Store("r")
    store.set_password("bob", "hunter2")
    assert store.ha1("bob", Algorithm.MD5) == compute_ha1(Algorithm.MD5, "bob", "r", "hunter2")
    assert store.ha1("bob", Algorithm.SHA256_SESS) == compute_ha1(
        Algorithm.SHA256, "bob", "r", "hunter2"
    )
    assert "hunter2" not in repr(vars(store))


@pytest.mark.parametrize(
    "algorithm", [Algorithm.MD5, Algorithm.SHA256, Algorithm.MD5_SESS, Algorithm.SHA256_SESS]
)
def test_client_server_round_trip(algorithm: Algorithm) -> None:
    server = _server(Clock())
    client = DigestClient("alice", "s3cret")
    ch = server.challenge(algorithm)
    uri = "sip:omnicc.example"
    first = client.authorize(ch.header_value(), "REGISTER", uri)
    assert server.verify("REGISTER", first, request_uri=uri).ok
    second = client.authorize(ch.header_value(), "REGISTER", uri)
    assert parse_credentials(second).nc == "00000002"
    assert server.verify("REGISTER", second, request_uri=uri).ok


def test_wrong_method_uri_password_user_refused() -> None:
    server = _server(Clock())
    ch = server.challenge().header_value()
    good = DigestClient("alice", "s3cret").authorize(ch, "INVITE", "sip:100@omnicc.example")
    assert server.verify("BYE", good).verdict is Verdict.BAD_RESPONSE
    assert (
        server.verify("INVITE", good, request_uri="sip:200@omnicc.example").verdict
        is Verdict.MISMATCH
    )
    wrong = DigestClient("alice", "nope").authorize(ch, "INVITE", "sip:100@omnicc.example")
    assert server.verify("INVITE", wrong).verdict is Verdict.BAD_RESPONSE
    ghost = DigestClient("mallory", "s3cret").authorize(ch, "INVITE", "sip:100@omnicc.example")
    assert server.verify("INVITE", ghost).verdict is Verdict.UNKNOWN_USER


def test_tampered_response_refused() -> None:
    server = _server(Clock())
    value = DigestClient("alice", "s3cret").authorize(
        server.challenge().header_value(), "REGISTER", "sip:omnicc.example"
    )
    response = parse_credentials(value).response
    flipped = ("0" if response[0] != "0" else "1") + response[1:]
    tampered = value.replace(response, flipped)
    assert server.verify("REGISTER", tampered).verdict is Verdict.BAD_RESPONSE
    assert server.verify("REGISTER", value).ok


def test_forged_nonce_refused() -> None:
    server = _server(Clock())
    other = DigestServer(realm="omnicc.example", store=server.store, secret=b"x" * 32)
    value = DigestClient("alice", "s3cret").authorize(
        other.challenge().header_value(), "REGISTER", "sip:omnicc.example"
    )
    value = value.replace(other.opaque, server.opaque)
    assert server.verify("REGISTER", value).verdict is Verdict.BAD_NONCE
    assert server.verify("REGISTER", 'Digest username="alice"').verdict is Verdict.MALFORMED


def test_expired_nonce_is_stale_and_rechallenge_works() -> None:
    clock = Clock()
    server = _server(clock, nonce_lifetime=60.0)
    client = DigestClient("alice", "s3cret")
    ch = server.challenge()
    clock.now += 61
    value = client.authorize(ch, "REGISTER", "sip:omnicc.example")
    result = server.verify("REGISTER", value)
    assert result.stale and not result.ok
    fresh = server.challenge(stale=True)
    assert "stale=true" in fresh.header_value()
    assert server.verify("REGISTER", client.authorize(fresh, "REGISTER", "sip:omnicc.example")).ok
    # A wrong password on an expired nonce is a bad response, not stale.
    clock.now += 61
    wrong = DigestClient("alice", "bad").authorize(fresh, "REGISTER", "sip:omnicc.example")
    assert server.verify("REGISTER", wrong).verdict is Verdict.BAD_RESPONSE


def test_replayed_nc_refused() -> None:
    server = _server(Clock())
    client = DigestClient("alice", "s3cret")
    ch = server.challenge()
    value = client.authorize(ch, "INVITE", "sip:100@omnicc.example")
    assert server.verify("INVITE", value).ok
    assert server.verify("INVITE", value).verdict is Verdict.REPLAY
    assert server.verify("INVITE", client.authorize(ch, "INVITE", "sip:100@omnicc.example")).ok


def test_legacy_no_qop() -> None:
    server = _server(Clock())
    ch = Challenge(realm=server.realm, nonce=server.make_nonce(), qop=(), opaque=server.opaque)
    value = DigestClient("alice", "s3cret").authorize(ch, "REGISTER", "sip:omnicc.example")
    assert "qop" not in value and "nc=" not in value
    assert server.verify("REGISTER", value).ok
    strict = _server(Clock(), allow_legacy=False)
    strict_ch = Challenge(realm=strict.realm, nonce=strict.make_nonce(), qop=())
    value = DigestClient("alice", "s3cret").authorize(strict_ch, "REGISTER", "sip:omnicc.example")
    assert strict.verify("REGISTER", value).verdict is Verdict.QOP_REQUIRED


def test_tracker_is_bounded_and_eviction_never_reopens_replay() -> None:
    clock = Clock()
    server = _server(clock, tracker=NonceCountTracker(max_nonces=2, max_counts=3))
    client = DigestClient("alice", "s3cret")
    old = server.challenge()
    old_value = client.authorize(old, "REGISTER", "sip:omnicc.example")
    assert server.verify("REGISTER", old_value).ok
    for _ in range(3):
        clock.now += 1
        ch = server.challenge()
        assert server.verify("REGISTER", client.authorize(ch, "REGISTER", "sip:omnicc.example")).ok
    assert len(server.tracker) == 2
    # The evicted nonce's replay is not accepted: it must be re-challenged.
    assert server.verify("REGISTER", old_value).verdict is Verdict.STALE
    # Too many counts on one nonce: stale, so the client fetches a new nonce.
    for _ in range(2):
        assert server.verify("REGISTER", client.authorize(ch, "REGISTER", "sip:omnicc.example")).ok
    last = client.authorize(ch, "REGISTER", "sip:omnicc.example")
    assert server.verify("REGISTER", last).verdict is Verdict.STALE

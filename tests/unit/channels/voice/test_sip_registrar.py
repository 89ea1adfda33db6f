"""Registrar (RFC 3261 §10.3) and digest authentication, driven through two real SipStacks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from omnicc.channels.voice.sip.digest import (
    Algorithm,
    DigestClient,
    DigestServer,
    HA1Store,
    parse_challenge,
)
from omnicc.channels.voice.sip.message import SipRequest, SipResponse
from omnicc.channels.voice.sip.registrar import Binding, Registrar, ha1_for_password
from omnicc.channels.voice.sip.stack import IncomingRequest, SipStack

from .sip_fakes import FAST, WAIT

pytestmark = pytest.mark.anyio

REALM = "omnicc.test"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Setup:
    phone: SipStack
    server: SipStack
    registrar: Registrar
    clock: Clock
    changes: list[tuple[str, list[Binding]]] = field(default_factory=list)
    lookups: list[str] = field(default_factory=list)

    def register(
        self,
        user: str = "alice",
        *,
        contact: str | None = None,
        expires: int | None = 300,
        call_id: str = "reg-1",
        cseq: int = 1,
        extra: dict[str, str] | None = None,
    ) -> SipRequest:
        headers = dict(extra or {})
        if expires is not None:
            headers["Expires"] = str(expires)
        request = self.phone.request(
            "REGISTER",
            f"sip:{REALM}",
            to=self.server.udp,
            from_uri=f"sip:{user}@{REALM}",
            to_uri=f"sip:{user}@{REALM}",
            call_id=call_id,
            cseq=cseq,
            headers=headers,
        )
        if contact is not None:
            request.headers.set("Contact", contact)
        return request

    async def send(
        self, request: SipRequest, password: str | None = "s3cret", user: str = "alice"
    ) -> SipResponse:
        credentials = DigestClient(user, password) if password is not None else None
        return await asyncio.wait_for(
            self.phone.send(request, self.server.udp, credentials=credentials), WAIT
        )


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    clock = Clock()
    users = {"alice": ha1_for_password("alice", REALM, "s3cret")}
    phone = SipStack(timers=FAST, user_agent="phone/1.0")
    server = SipStack(timers=FAST)
    result: Setup

    async def lookup(username: str) -> dict[Algorithm, str] | None:
        result.lookups.append(username)
        return users.get(username)

    registrar = Registrar(
        REALM,
        lookup,
        DigestServer(REALM, HA1Store(REALM), clock=clock),
        min_expires=60,
        max_expires=3600,
        clock=clock,
    )
    result = Setup(phone, server, registrar, clock)
    registrar.on_change = lambda user, bindings: result.changes.append((user, bindings))

    async def handler(incoming: IncomingRequest) -> None:
        if incoming.method == "REGISTER":
            await registrar.handle(incoming)
        elif incoming.method == "INVITE":
            user = await registrar.authenticate(incoming)
            if user is not None:
                await incoming.respond(200, headers={"X-User": user})

    server.set_handler(handler)
    await phone.start()
    await server.start()
    try:
        yield result
    finally:
        registrar.close()
        await phone.stop()
        await server.stop()


async def test_register_is_challenged_then_accepted(setup: Setup) -> None:
    challenge = await setup.send(setup.register(), password=None)
    assert challenge.status == 401
    parsed = parse_challenge(challenge.headers.get("WWW-Authenticate") or "")
    assert parsed.realm == REALM and parsed.algorithm is Algorithm.MD5
    ok = await setup.send(setup.register(cseq=2))
    assert ok.status == 200
    contacts = ok.contacts
    assert len(contacts) == 1 and contacts[0].params["expires"] == "300"
    assert ok.headers.get("Date")
    [binding] = setup.registrar.bindings("alice")
    assert binding.peer == setup.phone.udp  # the flow the REGISTER came from
    assert binding.user_agent == "phone/1.0"
    assert binding.expires_at == setup.clock.now + 300
    assert setup.changes == [("alice", [binding])]
    assert setup.registrar.usernames() == ["alice"]


async def test_wrong_password_and_unknown_user_get_403(setup: Setup) -> None:
    assert (await setup.send(setup.register(), password="nope")).status == 403
    unknown = setup.register("mallory")
    assert (await setup.send(unknown, user="mallory")).status == 403
    assert "mallory" in setup.lookups
    assert setup.registrar.bindings("alice") == []
    assert setup.changes == []


async def test_someone_elses_address_of_record_is_refused(setup: Setup) -> None:
    request = setup.register("bob")
    response = await setup.send(request, user="alice")
    assert response.status == 403


async def test_malformed_credentials_get_400(setup: Setup) -> None:
    request = setup.register(extra={"Authorization": f'Digest username="alice", realm="{REALM}"'})
    assert (await setup.send(request, password=None)).status == 400


async def test_an_expired_nonce_is_rechallenged_as_stale(setup: Setup) -> None:
    first = await setup.send(setup.register(), password=None)
    challenge = first.headers.get("WWW-Authenticate") or ""
    setup.clock.now += 3600  # the nonce is now older than its lifetime
    client = DigestClient("alice", "s3cret")
    request = setup.register(cseq=2)
    request.headers.set("Authorization", client.authorize(challenge, "REGISTER", request.uri))
    stale = await setup.send(request, password=None)
    assert stale.status == 401
    assert parse_challenge(stale.headers.get("WWW-Authenticate") or "").stale


async def test_too_brief_an_expiry_gets_423_and_long_ones_are_capped(setup: Setup) -> None:
    brief = await setup.send(setup.register(expires=10))
    assert brief.status == 423
    assert brief.headers.get("Min-Expires") == "60"
    ok = await setup.send(setup.register(expires=99999, cseq=3))
    assert ok.status == 200
    assert ok.contacts[0].params["expires"] == "3600"


async def test_several_contacts_per_contact_expiry_and_removal(setup: Setup) -> None:
    two = setup.register(
        contact="<sip:alice@10.0.0.1:5060>;expires=120, <sip:alice@10.0.0.2:5060>", cseq=1
    )
    ok = await setup.send(two)
    assert ok.status == 200
    by_uri = {c.uri: c.params["expires"] for c in ok.contacts}
    assert by_uri == {"sip:alice@10.0.0.1:5060": "120", "sip:alice@10.0.0.2:5060": "300"}
    remove = setup.register(contact="<sip:alice@10.0.0.1:5060>", expires=0, cseq=3)
    ok = await setup.send(remove)
    assert [c.uri for c in ok.contacts] == ["sip:alice@10.0.0.2:5060"]
    query = setup.register(expires=None, cseq=5)
    query.headers.remove("Contact")
    listed = await setup.send(query)
    assert [c.uri for c in listed.contacts] == ["sip:alice@10.0.0.2:5060"]
    assert [len(bindings) for _, bindings in setup.changes] == [2, 1]


async def test_wildcard_with_expires_zero_removes_everything(setup: Setup) -> None:
    await setup.send(setup.register(contact="<sip:alice@10.0.0.1>, <sip:alice@10.0.0.2>"))
    assert len(setup.registrar.bindings("alice")) == 2
    bad = setup.register(contact="*", expires=300, cseq=3)
    assert (await setup.send(bad)).status == 400
    clear = setup.register(contact="*", expires=0, cseq=5)
    ok = await setup.send(clear)
    assert ok.status == 200 and ok.contacts == []
    assert setup.registrar.bindings("alice") == []
    assert setup.changes[-1] == ("alice", [])


async def test_an_old_cseq_for_the_same_call_id_is_refused(setup: Setup) -> None:
    assert (await setup.send(setup.register(cseq=10))).status == 200  # 401 at 10, 200 at 11
    stale = await setup.send(setup.register(cseq=5))  # 401 at 5, retried at 6 < 11
    assert stale.status == 500
    other_call = await setup.send(setup.register(call_id="reg-2", cseq=1))
    assert other_call.status == 200


async def test_bindings_expire_and_the_change_is_reported(setup: Setup) -> None:
    assert (await setup.send(setup.register(expires=60))).status == 200
    assert setup.registrar.bindings("alice")
    setup.clock.now += 61
    assert setup.registrar.bindings("alice") == []
    setup.registrar._expire("alice")  # the expiry timer's work, without waiting a minute
    assert setup.changes[-1] == ("alice", [])


async def test_invites_are_authenticated_with_407(setup: Setup) -> None:
    invite = setup.phone.request(
        "INVITE",
        f"sip:queue@{REALM}",
        to=setup.server.udp,
        from_uri=f"sip:alice@{REALM}",
        to_uri=f"sip:queue@{REALM}",
    )
    call = setup.phone.invite(invite, setup.server.udp)
    assert (await asyncio.wait_for(call.final(), WAIT)).status == 407
    invite2 = setup.phone.request(
        "INVITE",
        f"sip:queue@{REALM}",
        to=setup.server.udp,
        from_uri=f"sip:alice@{REALM}",
        to_uri=f"sip:queue@{REALM}",
    )
    call2 = setup.phone.invite(
        invite2, setup.server.udp, credentials=DigestClient("alice", "s3cret")
    )
    final = await asyncio.wait_for(call2.final(), WAIT)
    assert final.status == 200
    assert final.headers.get("X-User") == "alice"
    assert call2.request.headers.get("Proxy-Authorization")
    assert call2.dialog is not None
    assert (await asyncio.wait_for(call2.dialog.request("BYE"), WAIT)).status == 200


async def test_the_client_answers_a_stale_challenge_once_more(setup: Setup) -> None:
    challenged = 0

    async def aging(incoming: IncomingRequest) -> None:
        nonlocal challenged
        await setup.registrar.handle(incoming)
        if incoming.response is not None and incoming.response.status == 401:
            challenged += 1
            if challenged == 1:
                setup.clock.now += 3600  # the nonce just issued will be stale when answered

    setup.server.set_handler(aging)
    ok = await setup.send(setup.register())
    assert ok.status == 200
    assert challenged == 2
    assert ok.cseq.number == 3  # 1 challenged, 2 stale, 3 accepted

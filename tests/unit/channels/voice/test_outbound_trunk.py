"""The carrier trunk and the pieces of an outbound call that need no media: numbers in E.164,
the INVITE the carrier gets (caller ID, P-Asserted-Identity, a 407 answered with the trunk's
password), registration status through a refusing and a silent registrar, codec narrowing."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from omnicc.channels.voice.outbound import one_codec, outcome_of
from omnicc.channels.voice.sip.digest import DigestServer, HA1Store, Verdict
from omnicc.channels.voice.sip.stack import IncomingRequest, SipStack
from omnicc.channels.voice.sip.transaction import Timers
from omnicc.channels.voice.trunk import (
    InvalidNumber,
    Trunk,
    TrunkConfig,
    TrunkState,
    TrunkStatus,
    trunk_config,
)
from omnicc.config import Settings

pytestmark = pytest.mark.anyio

FAST = Timers(t1=0.05, t2=0.2, t4=0.25, d=0.5)
SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def stacks() -> AsyncIterator[tuple[SipStack, SipStack]]:
    omnicc = SipStack(timers=FAST, user_agent="OmniCC")
    carrier = SipStack(timers=FAST, user_agent="Carrier")
    await omnicc.start()
    await carrier.start()
    try:
        yield omnicc, carrier
    finally:
        await omnicc.stop()
        await carrier.stop()


def config_for(carrier: SipStack, **overrides: object) -> TrunkConfig:
    values: dict[str, object] = {"uri": f"sip:omnicc@127.0.0.1:{carrier.udp.port}",
                                 "password": "trunk-secret", "default_region": "FI",
                                 "retry_s": 0.05, "retry_max_s": 0.1, **overrides}
    return TrunkConfig(**values)  # type: ignore[arg-type]


def test_numbers_are_dialled_in_e164() -> None:
    trunk_settings = TrunkConfig(uri="sip:omnicc@carrier.example:5070;transport=tcp",
                                 default_region="FI")
    trunk = Trunk(SipStack(), trunk_settings)
    assert trunk.dialable("040 123 4567") == "+358401234567"
    assert trunk.dialable("+44 20 7946 0958") == "+442079460958"
    assert trunk.dialable("00358 40 1234567") == "+358401234567"
    for bad in ("123", "anonymous", "", "+1"):
        with pytest.raises(InvalidNumber):
            trunk.dialable(bad)
    assert trunk_settings.username == "omnicc"
    assert trunk_settings.domain == "carrier.example:5070"
    assert trunk_settings.peer.transport == "TCP"


def test_a_bad_trunk_uri_fails_at_once() -> None:
    with pytest.raises(ValueError):
        TrunkConfig(uri="mailto:someone")


def test_settings_make_the_trunk() -> None:
    assert trunk_config(Settings(sip_trunk="")) is None
    config = trunk_config(Settings(sip_trunk="sip:acme@127.0.0.1:5080",
                                   sip_trunk_password="pw",  # type: ignore[arg-type]
                                   sip_trunk_register=True, phone_region="SE"))
    assert config is not None
    assert (config.username, config.password, config.register, config.default_region) == (
        "acme", "pw", True, "SE")


def test_outcomes_of_sip_statuses() -> None:
    assert [outcome_of(s) for s in (200, 486, 600, 408, 480, 487, 404, 503)] == [
        "answered", "busy", "busy", "no_answer", "no_answer", "no_answer", "failed", "failed"]


def test_the_agents_offer_is_narrowed_to_the_carriers_codec() -> None:
    offer = ("v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/AVP 0 8 9 101\r\n"
             "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
             "a=fmtp:101 0-15\r\na=rtcp-fb:0 nack\r\na=sendrecv\r\n")
    narrowed = one_codec(offer, ("PCMA", "PCMU"))
    assert "m=audio 4000 RTP/AVP 8 101\r\n" in narrowed
    assert "a=rtpmap:0" not in narrowed and "a=rtcp-fb:0" not in narrowed
    assert "a=fmtp:101 0-15" in narrowed and "a=sendrecv" in narrowed
    assert "RTP/AVP 0 101" in one_codec(offer, ("PCMU",))
    assert one_codec(offer, ("G729",)) == offer
    assert one_codec("v=0\r\n", ("PCMA",)) == "v=0\r\n"


async def test_the_invite_shows_the_queues_number_and_answers_a_proxy_challenge(
        stacks: tuple[SipStack, SipStack]) -> None:
    omnicc, carrier = stacks
    store = HA1Store("carrier.example")
    store.set_password("omnicc", "trunk-secret")
    server = DigestServer("carrier.example", store)
    seen = []

    async def carrier_side(incoming: IncomingRequest) -> None:
        seen.append(incoming.message)
        authorization = incoming.message.headers.get("Proxy-Authorization")
        if authorization is None:
            await incoming.respond(407, headers={
                "Proxy-Authenticate": server.challenge().header_value()})
            return
        verdict = server.verify("INVITE", authorization).verdict
        await incoming.respond(486 if verdict is Verdict.OK else 403)

    carrier.set_handler(carrier_side)
    trunk = Trunk(omnicc, config_for(carrier))
    invite = trunk.invite("+358401234567", caller_id="+358201234567", sdp=SDP,
                          caller_name='Acme "Support"')
    final = await invite.final()
    assert final.status == 486
    assert len(seen) == 2
    request = seen[1]
    assert request.uri == f"sip:+358401234567@127.0.0.1:{carrier.udp.port}"
    assert request.from_.uri == f"sip:+358201234567@127.0.0.1:{carrier.udp.port}"
    assert request.headers.get("P-Asserted-Identity") == (
        f'"Acme \\"Support\\"" <sip:+358201234567@127.0.0.1:{carrier.udp.port}>')
    assert request.body.decode() == SDP
    assert request.call_id == seen[0].call_id


async def test_registration_failures_are_reported_and_retried(
        stacks: tuple[SipStack, SipStack]) -> None:
    omnicc, carrier = stacks
    answers = [403, 200]
    statuses: list[TrunkStatus] = []

    async def registrar(incoming: IncomingRequest) -> None:
        code = answers.pop(0) if answers else 200
        await incoming.respond(code, headers={"Expires": "3600"} if code == 200 else None)

    carrier.set_handler(registrar)
    trunk = Trunk(omnicc, config_for(carrier, register=True), on_status=statuses.append)
    trunk.start()
    for _ in range(200):
        if trunk.status.state is TrunkState.REGISTERED:
            break
        await asyncio.sleep(0.025)
    assert [(s.state, s.reason) for s in statuses] == [
        (TrunkState.REGISTERING, ""), (TrunkState.FAILING, "403 Forbidden"),
        (TrunkState.REGISTERING, "403 Forbidden"), (TrunkState.REGISTERED, "")]
    assert trunk.healthy and trunk.registrations == 1
    assert trunk.status.as_json()["state"] == "registered"
    await trunk.stop()
    assert trunk.status.state is TrunkState.UNREGISTERED and not trunk.healthy


async def test_a_silent_registrar_makes_the_trunk_fail_with_the_reason(
        stacks: tuple[SipStack, SipStack]) -> None:
    omnicc, _ = stacks
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        silent = probe.getsockname()[1]  # nothing answers on that port once it is closed
    trunk = Trunk(omnicc, TrunkConfig(uri=f"sip:omnicc@127.0.0.1:{silent}", register=True,
                                      retry_s=30))
    trunk.start()
    for _ in range(400):
        if trunk.status.state is TrunkState.FAILING:
            break
        await asyncio.sleep(0.025)
    assert trunk.status.state is TrunkState.FAILING and trunk.status.reason
    assert not trunk.healthy
    await trunk.stop()


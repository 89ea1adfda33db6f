"""SipStack over real loopback sockets: UAS and UAC, INVITE/ACK/BYE, OPTIONS, CANCEL, defaults.

Timers use a small T1 so that timeouts come quickly; waits are bounded, never asserted on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from omnicc.channels.voice.sip.dialog import DialogState, uri_peer
from omnicc.channels.voice.sip.message import SipRequest
from omnicc.channels.voice.sip.stack import IncomingRequest, SipStack
from omnicc.channels.voice.sip.transaction import Timers, TransactionTimeout, TransportFailure
from omnicc.channels.voice.sip.transport import Peer

pytestmark = pytest.mark.anyio

FAST = Timers(t1=0.05, t2=0.2, t4=0.25, d=0.5)
SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
WAIT = 10.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def pair() -> AsyncIterator[tuple[SipStack, SipStack]]:
    a = SipStack(timers=FAST, user_agent="A")
    b = SipStack(timers=FAST, user_agent="B")
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await a.stop()
        await b.stop()


def options(stack: SipStack, to: Peer) -> SipRequest:
    return stack.request(
        "OPTIONS",
        f"sip:{to.host}:{to.port}",
        to=to,
        from_uri="sip:a@127.0.0.1",
        to_uri=f"sip:{to.host}",
    )


def invite(stack: SipStack, to: Peer, body: bytes = SDP) -> SipRequest:
    return stack.request(
        "INVITE",
        f"sip:bob@{to.host}:{to.port}",
        to=to,
        from_uri="sip:alice@127.0.0.1",
        to_uri="sip:bob@127.0.0.1",
        body=body,
        content_type="application/sdp",
    )


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_options_is_answered_200_by_default(
    pair: tuple[SipStack, SipStack], transport: str
) -> None:
    a, b = pair
    to = getattr(b, transport)
    response = await asyncio.wait_for(a.send(options(a, to), to), WAIT)
    assert response.status == 200
    assert "INVITE" in (response.headers.get("Allow") or "")
    assert response.headers.get("Accept") == "application/sdp"
    assert response.to.tag


async def test_unknown_method_501_and_unhandled_known_method_405(
    pair: tuple[SipStack, SipStack],
) -> None:
    a, b = pair
    request = options(a, b.udp)
    request.method = "FROB"
    request.headers.set("CSeq", "1 FROB")
    assert (await asyncio.wait_for(a.send(request, b.udp), WAIT)).status == 501
    message = options(a, b.udp)
    message.method = "MESSAGE"
    message.headers.set("CSeq", "1 MESSAGE")
    response = await asyncio.wait_for(a.send(message, b.udp), WAIT)
    assert response.status == 405
    assert "MESSAGE" in (response.headers.get("Allow") or "")


async def test_handler_exception_is_answered_500(pair: tuple[SipStack, SipStack]) -> None:
    a, b = pair

    async def broken(incoming: IncomingRequest) -> None:
        raise RuntimeError("boom")

    b.set_handler(broken)
    response = await asyncio.wait_for(a.send(options(a, b.udp), b.udp), WAIT)
    assert response.status == 500


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_invite_answer_then_bye_from_caller(
    pair: tuple[SipStack, SipStack], transport: str
) -> None:
    a, b = pair
    answered: asyncio.Queue[IncomingRequest] = asyncio.Queue()

    async def handler(incoming: IncomingRequest) -> None:
        assert incoming.method == "INVITE"
        await incoming.respond(180)
        await incoming.respond(200, body=SDP, content_type="application/sdp")
        await answered.put(incoming)

    b.set_handler(handler)
    to = getattr(b, transport)
    call = a.invite(invite(a, to), to)
    statuses = [response.status async for response in call.responses()]
    assert statuses[-1] == 200
    assert 180 in statuses
    incoming = await asyncio.wait_for(answered.get(), WAIT)
    uas = incoming.dialog
    uac = call.dialog
    assert uas is not None and uac is not None
    assert uac.state is DialogState.CONFIRMED
    assert uac.call_id == uas.call_id
    assert uac.local_tag == uas.remote_tag and uac.remote_tag == uas.local_tag
    await asyncio.wait_for(uas.ack_received.wait(), WAIT)
    response = await asyncio.wait_for(uac.request("BYE"), WAIT)
    assert response.status == 200
    await asyncio.wait_for(uas.terminated.wait(), WAIT)
    assert uac.terminated.is_set()
    assert not a.dialogs and not b.dialogs


async def test_bye_from_callee_and_in_dialog_info(pair: tuple[SipStack, SipStack]) -> None:
    a, b = pair
    infos: list[bytes] = []

    async def on_info(incoming: IncomingRequest) -> None:
        if incoming.method == "INFO":
            infos.append(incoming.message.body)
            await incoming.respond(200)

    async def handler(incoming: IncomingRequest) -> None:
        await incoming.respond(200, body=SDP, content_type="application/sdp")

    b.set_handler(handler)
    call = a.invite(invite(a, b.udp), b.udp)
    assert (await asyncio.wait_for(call.final(), WAIT)).status == 200
    assert call.dialog is not None
    call.dialog.on_request = on_info
    uas = next(iter(b.dialogs.values()))
    info = await asyncio.wait_for(
        uas.request("INFO", body=b"Signal=5\r\n", content_type="application/dtmf-relay"), WAIT
    )
    assert info.status == 200
    assert infos == [b"Signal=5\r\n"]
    bye = await asyncio.wait_for(uas.request("BYE"), WAIT)
    assert bye.status == 200
    await asyncio.wait_for(call.dialog.terminated.wait(), WAIT)
    assert call.dialog.termination_reason == "bye received"


async def test_rejected_invite_is_acked_by_the_transaction(
    pair: tuple[SipStack, SipStack],
) -> None:
    a, b = pair
    seen: list[IncomingRequest] = []

    async def handler(incoming: IncomingRequest) -> None:
        seen.append(incoming)
        await incoming.respond(486)

    b.set_handler(handler)
    call = a.invite(invite(a, b.udp), b.udp)
    assert (await asyncio.wait_for(call.final(), WAIT)).status == 486
    assert call.dialog is None
    server = seen[0].transaction
    for _ in range(200):
        if server.state.value in ("confirmed", "terminated"):
            break
        await asyncio.sleep(0.01)
    assert server.state.value in ("confirmed", "terminated")


async def test_cancel_after_ringing(pair: tuple[SipStack, SipStack]) -> None:
    a, b = pair
    ringing: asyncio.Queue[IncomingRequest] = asyncio.Queue()

    async def handler(incoming: IncomingRequest) -> None:
        await incoming.respond(180)
        await ringing.put(incoming)
        await incoming.cancelled.wait()

    b.set_handler(handler)
    call = a.invite(invite(a, b.udp), b.udp)
    cancel = asyncio.ensure_future(call.cancel())  # waits for the 180 before sending (§9.1)
    incoming = await asyncio.wait_for(ringing.get(), WAIT)
    final = await asyncio.wait_for(cancel, WAIT)
    assert final is not None and final.status == 487
    assert incoming.cancelled.is_set()
    assert incoming.response is not None and incoming.response.status == 487
    assert call.dialog is None


async def test_request_to_a_silent_peer_times_out(pair: tuple[SipStack, SipStack]) -> None:
    a, _b = pair
    loop = asyncio.get_running_loop()
    silent, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    try:
        port = silent.get_extra_info("sockname")[1]
        to = Peer("UDP", "127.0.0.1", port)
        with pytest.raises(TransactionTimeout):
            await asyncio.wait_for(a.send(options(a, to), to), WAIT)
        call = a.invite(invite(a, to), to)
        with pytest.raises(TransactionTimeout):
            await asyncio.wait_for(call.final(), WAIT)
    finally:
        silent.close()


async def test_in_dialog_request_for_unknown_dialog_gets_481(
    pair: tuple[SipStack, SipStack],
) -> None:
    a, b = pair
    bye = options(a, b.udp)
    bye.method = "BYE"
    bye.headers.set("CSeq", "2 BYE")
    bye.headers.set("To", "<sip:bob@127.0.0.1>;tag=nosuchdialog")
    response = await asyncio.wait_for(a.send(bye, b.udp), WAIT)
    assert response.status == 481


async def test_reinvite_glare_is_refused_with_491(pair: tuple[SipStack, SipStack]) -> None:
    a, b = pair
    release = asyncio.Event()
    reinvites: list[IncomingRequest] = []

    async def slow_reinvite(incoming: IncomingRequest) -> None:
        if incoming.method == "INVITE":
            reinvites.append(incoming)
            await release.wait()
            await incoming.respond(200, body=SDP, content_type="application/sdp")

    async def handler(incoming: IncomingRequest) -> None:
        await incoming.respond(200, body=SDP, content_type="application/sdp")
        assert incoming.dialog is not None
        incoming.dialog.on_request = slow_reinvite

    b.set_handler(handler)
    call = a.invite(invite(a, b.udp), b.udp)
    assert (await asyncio.wait_for(call.final(), WAIT)).status == 200
    uac = call.dialog
    assert uac is not None
    uas = next(iter(b.dialogs.values()))
    await asyncio.wait_for(uas.ack_received.wait(), WAIT)
    ours = asyncio.ensure_future(uac.request("INVITE", body=SDP, content_type="application/sdp"))
    for _ in range(500):
        if reinvites:
            break
        await asyncio.sleep(0.01)
    assert reinvites, "the re-INVITE did not reach B"
    theirs = await asyncio.wait_for(uas.request("INVITE", body=SDP), WAIT)
    assert theirs.status == 491
    release.set()
    assert (await asyncio.wait_for(ours, WAIT)).status == 200
    assert uac.state is DialogState.CONFIRMED and uas.state is DialogState.CONFIRMED
    await asyncio.wait_for(uac.request("BYE"), WAIT)


async def test_tcp_connections_are_reused_and_limited() -> None:
    async with SipStack(timers=FAST) as a, SipStack(timers=FAST, max_connections=1) as b:
        for _ in range(3):
            response = await asyncio.wait_for(a.send(options(a, b.tcp), b.tcp), WAIT)
            assert response.status == 200
        assert a.transport.connection_count == 1
        assert b.transport.connection_count == 1
        reader, writer = await asyncio.open_connection(b.tcp.host, b.tcp.port)
        assert await asyncio.wait_for(reader.read(), WAIT) == b""  # over the limit: closed
        writer.close()


async def test_a_malformed_tcp_stream_closes_only_that_connection() -> None:
    async with SipStack(timers=FAST) as b, SipStack(timers=FAST) as a:
        reader, writer = await asyncio.open_connection(b.tcp.host, b.tcp.port)
        writer.write(b"NOT SIP\r\nat all\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), WAIT) == b""
        writer.close()
        response = await asyncio.wait_for(a.send(options(a, b.tcp), b.tcp), WAIT)
        assert response.status == 200


async def test_a_message_over_the_size_limit_is_dropped() -> None:
    async with SipStack(timers=FAST, max_message_bytes=2000) as b, SipStack(timers=FAST) as a:
        big = options(a, b.udp)
        big.headers.add("X-Padding", "x" * 3000)
        with pytest.raises(TransactionTimeout):  # a's limit is 64 KiB: sent, and b drops it
            await asyncio.wait_for(a.send(big, b.udp), WAIT)
        with pytest.raises(TransportFailure):  # b refuses to send beyond its own limit
            await asyncio.wait_for(b.send(big, a.udp), WAIT)
        response = await asyncio.wait_for(a.send(options(a, b.udp), b.udp), WAIT)
        assert response.status == 200


async def test_idle_outbound_tcp_connections_are_closed() -> None:
    idle = SipStack(timers=FAST)
    idle.transport.idle_timeout = 0.2  # swept every second at most
    async with SipStack(timers=FAST) as b, idle as a:
        assert (await asyncio.wait_for(a.send(options(a, b.tcp), b.tcp), WAIT)).status == 200
        assert a.transport.connection_count == 1

        async def closed() -> None:
            while a.transport.connection_count or b.transport.connection_count:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(closed(), WAIT)
        assert (await asyncio.wait_for(a.send(options(a, b.tcp), b.tcp), WAIT)).status == 200


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("sip:alice@10.0.0.1", Peer("UDP", "10.0.0.1", 5060)),
        ("sip:alice@10.0.0.1:5080;transport=tcp", Peer("TCP", "10.0.0.1", 5080)),
        ("<sip:proxy.example.com;lr>", Peer("UDP", "proxy.example.com", 5060)),
        ("sip:[2001:db8::1]:5062", Peer("UDP", "2001:db8::1", 5062)),
        ("sips:bob@host:5061?subject=x", Peer("UDP", "host", 5061)),
    ],
)
def test_uri_peer(uri: str, expected: Peer) -> None:
    assert uri_peer(uri) == expected


async def test_late_offer_the_answer_goes_in_the_ack(pair: tuple[SipStack, SipStack]) -> None:
    a, b = pair
    answered: list[IncomingRequest] = []

    async def handler(incoming: IncomingRequest) -> None:
        assert incoming.message.body == b""
        await incoming.respond(200, body=SDP, content_type="application/sdp")  # the offer
        answered.append(incoming)

    b.set_handler(handler)
    call = a.invite(invite(a, b.udp, body=b""), b.udp, auto_ack=False)
    ok = await asyncio.wait_for(call.final(), WAIT)
    assert ok.body == SDP
    assert call.dialog is not None
    call.dialog.send_ack(ok.cseq.number, body=b"answer", content_type="application/sdp")
    uas = answered[0].dialog
    assert uas is not None
    await asyncio.wait_for(uas.ack_received.wait(), WAIT)
    assert uas.last_ack is not None and uas.last_ack.body == b"answer"
    await asyncio.wait_for(call.dialog.request("BYE"), WAIT)

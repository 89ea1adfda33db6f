"""RFC 3261 transaction and UA-core behaviour seen from a hand-driven phone on a raw UDP socket.

Every wait is bounded; nothing asserts how long something took.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from omnicc.channels.voice.sip.message import SipRequest, SipResponse
from omnicc.channels.voice.sip.stack import IncomingRequest, SipStack
from omnicc.channels.voice.sip.transaction import State

from .sip_fakes import (
    FAST,
    WAIT,
    RawPeer,
    ack_for,
    raw_request,
    request,
    response_to,
    status,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def stack() -> AsyncIterator[SipStack]:
    sip = SipStack(timers=FAST)
    await sip.start()
    try:
        yield sip
    finally:
        await sip.stop()


@pytest.fixture
async def phone() -> AsyncIterator[RawPeer]:
    raw = await RawPeer.open()
    try:
        yield raw
    finally:
        raw.close()


async def test_a_retransmitted_invite_is_absorbed_and_the_last_provisional_repeated(
    stack: SipStack, phone: RawPeer
) -> None:
    calls: list[IncomingRequest] = []
    go = asyncio.Event()

    async def handler(incoming: IncomingRequest) -> None:
        calls.append(incoming)
        await incoming.respond(180)
        await go.wait()
        await incoming.respond(200)

    stack.set_handler(handler)
    invite = raw_request("INVITE", stack.udp, phone.port)
    phone.send(invite, stack.udp)
    await phone.wait_for(status(180))
    phone.send(invite, stack.udp)  # retransmission: same branch
    await phone.wait_for(status(180), count=2)
    assert len(calls) == 1
    assert len([m for m in phone.received if isinstance(m, SipResponse) and m.status == 100]) == 1
    go.set()
    ok = (await phone.wait_for(status(200)))[0]
    assert isinstance(ok, SipResponse)
    phone.send(invite, stack.udp)  # a late retransmission after the 2xx is absorbed too
    phone.send(ack_for(ok, stack.udp, phone.port, branch="z9hG4bK-ack-1"), stack.udp)
    dialog = calls[0].dialog
    assert dialog is not None
    await asyncio.wait_for(dialog.ack_received.wait(), WAIT)
    assert len(calls) == 1


async def test_a_2xx_is_retransmitted_until_the_ack(stack: SipStack, phone: RawPeer) -> None:
    answered: list[IncomingRequest] = []

    async def handler(incoming: IncomingRequest) -> None:
        await incoming.respond(200)
        answered.append(incoming)

    stack.set_handler(handler)
    phone.send(raw_request("INVITE", stack.udp, phone.port), stack.udp)
    oks = await phone.wait_for(status(200), count=3)
    assert {m.headers.get("To") for m in oks} == {oks[0].headers.get("To")}
    assert isinstance(oks[0], SipResponse)
    phone.send(ack_for(oks[0], stack.udp, phone.port, branch="z9hG4bK-ack-2"), stack.udp)
    dialog = answered[0].dialog
    assert dialog is not None
    await asyncio.wait_for(dialog.ack_received.wait(), WAIT)
    assert not dialog.terminated.is_set()


async def test_without_ack_the_2xx_gives_up_and_the_call_is_hung_up(
    stack: SipStack, phone: RawPeer
) -> None:
    answered: list[IncomingRequest] = []

    async def handler(incoming: IncomingRequest) -> None:
        await incoming.respond(200)
        answered.append(incoming)

    stack.set_handler(handler)
    phone.send(raw_request("INVITE", stack.udp, phone.port), stack.udp)
    bye = (await phone.wait_for(request("BYE")))[0]
    assert isinstance(bye, SipRequest)
    phone.send(response_to(bye, 200, "OK", to_tag=None), stack.udp)
    dialog = answered[0].dialog
    assert dialog is not None
    await asyncio.wait_for(dialog.terminated.wait(), WAIT)
    assert dialog.termination_reason == "no ACK"


async def test_a_non_2xx_final_is_retransmitted_until_the_ack(
    stack: SipStack, phone: RawPeer
) -> None:
    seen: list[IncomingRequest] = []

    async def handler(incoming: IncomingRequest) -> None:
        seen.append(incoming)
        await incoming.respond(486)

    stack.set_handler(handler)
    phone.send(raw_request("INVITE", stack.udp, phone.port), stack.udp)
    busy = await phone.wait_for(status(486), count=2)
    assert isinstance(busy[0], SipResponse)
    phone.send(ack_for(busy[0], stack.udp, phone.port, branch="z9hG4bK-raw-1"), stack.udp)
    txn = seen[0].transaction

    async def confirmed() -> None:
        while txn.state not in (State.CONFIRMED, State.TERMINATED):
            await asyncio.sleep(0.01)

    await asyncio.wait_for(confirmed(), WAIT)


async def test_a_retransmitted_non_invite_request_reaches_the_handler_once(
    stack: SipStack, phone: RawPeer
) -> None:
    calls: list[IncomingRequest] = []

    async def handler(incoming: IncomingRequest) -> None:
        calls.append(incoming)
        await incoming.respond(200)

    stack.set_handler(handler)
    message = raw_request("MESSAGE", stack.udp, phone.port, body=b"hi")
    phone.send(message, stack.udp)
    await phone.wait_for(status(200))
    phone.send(message, stack.udp)
    await phone.wait_for(status(200), count=2)
    assert len(calls) == 1


async def test_the_uac_retransmits_acks_a_failure_and_repeats_the_ack(
    stack: SipStack, phone: RawPeer
) -> None:
    call = stack.invite(
        stack.request(
            "INVITE",
            f"sip:phone@127.0.0.1:{phone.port}",
            to=phone.peer,
            from_uri="sip:omnicc@127.0.0.1",
            to_uri="sip:phone@127.0.0.1",
        ),
        phone.peer,
    )
    invites = await phone.wait_for(request("INVITE"), count=3)  # timer A
    assert len({m.vias[0].branch for m in invites}) == 1
    invite = invites[0]
    assert isinstance(invite, SipRequest)
    phone.send(response_to(invite, 180, "Ringing"), stack.udp)
    phone.send(response_to(invite, 486, "Busy Here"), stack.udp)
    final = await asyncio.wait_for(call.final(), WAIT)
    assert final.status == 486
    acks = await phone.wait_for(request("ACK"))
    assert acks[0].vias[0].branch == invite.vias[0].branch  # §17.1.1.3: same transaction
    phone.send(response_to(invite, 486, "Busy Here"), stack.udp)
    await phone.wait_for(request("ACK"), count=2)
    assert [r.status async for r in call.responses()] == [180, 486]


async def test_a_retransmitted_2xx_gets_the_same_ack_again(stack: SipStack, phone: RawPeer) -> None:
    call = stack.invite(
        stack.request(
            "INVITE",
            f"sip:phone@127.0.0.1:{phone.port}",
            to=phone.peer,
            from_uri="sip:omnicc@127.0.0.1",
            to_uri="sip:phone@127.0.0.1",
        ),
        phone.peer,
    )
    invite = (await phone.wait_for(request("INVITE")))[0]
    assert isinstance(invite, SipRequest)
    ok = response_to(invite, 200, "OK")
    phone.send(ok, stack.udp)
    assert (await asyncio.wait_for(call.final(), WAIT)).status == 200
    first = (await phone.wait_for(request("ACK")))[0]
    phone.send(ok, stack.udp)
    acks = await phone.wait_for(request("ACK"), count=2)
    assert acks[1].vias[0].branch == first.vias[0].branch
    assert first.vias[0].branch != invite.vias[0].branch  # 2xx ACK is its own transaction
    assert call.dialog is not None and call.dialog.remote_tag == "ph1"


async def test_cancel_waits_for_a_provisional_then_ends_with_487(
    stack: SipStack, phone: RawPeer
) -> None:
    call = stack.invite(
        stack.request(
            "INVITE",
            f"sip:phone@127.0.0.1:{phone.port}",
            to=phone.peer,
            from_uri="sip:omnicc@127.0.0.1",
            to_uri="sip:phone@127.0.0.1",
        ),
        phone.peer,
    )
    cancelling = asyncio.ensure_future(call.cancel())
    invite = (await phone.wait_for(request("INVITE")))[0]
    assert isinstance(invite, SipRequest)
    await asyncio.sleep(FAST.t1 * 4)  # a CANCEL now would be premature (§9.1)
    assert not [m for m in phone.received if isinstance(m, SipRequest) and m.method == "CANCEL"]
    phone.send(response_to(invite, 180, "Ringing"), stack.udp)
    cancel = (await phone.wait_for(request("CANCEL")))[0]
    assert isinstance(cancel, SipRequest)
    assert cancel.vias[0].branch == invite.vias[0].branch
    assert cancel.cseq.number == invite.cseq.number
    phone.send(response_to(cancel, 200, "OK"), stack.udp)
    phone.send(response_to(invite, 487, "Request Terminated"), stack.udp)
    final = await asyncio.wait_for(cancelling, WAIT)
    assert final is not None and final.status == 487
    await phone.wait_for(request("ACK"))


async def test_cancel_without_a_matching_invite_gets_481(stack: SipStack, phone: RawPeer) -> None:
    phone.send(raw_request("CANCEL", stack.udp, phone.port, branch="z9hG4bK-none"), stack.udp)
    await phone.wait_for(status(481, "CANCEL"))


async def test_responses_follow_rport_and_record_received(stack: SipStack, phone: RawPeer) -> None:
    # The Via names port 9 (nothing there); rport asks to answer the source port instead.
    phone.send(raw_request("OPTIONS", stack.udp, phone.port, via_port=9, rport=True), stack.udp)
    ok = (await phone.wait_for(status(200, "OPTIONS")))[0]
    via = ok.vias[0]
    assert via.rport == phone.port
    assert via.port == 9


async def test_malformed_requests_get_400_with_a_reason_and_garbage_is_dropped(
    stack: SipStack, phone: RawPeer
) -> None:
    bad_cseq = raw_request("OPTIONS", stack.udp, phone.port).replace(
        b"CSeq: 1 OPTIONS", b"CSeq: one OPTIONS"
    )
    phone.send(bad_cseq, stack.udp)
    answer = (await phone.wait_for(status(400)))[0]
    assert "CSeq" in answer.reason
    mismatch = raw_request("OPTIONS", stack.udp, phone.port, branch="z9hG4bK-m2").replace(
        b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE"
    )
    phone.send(mismatch, stack.udp)
    await phone.wait_for(status(400), count=2)
    bad_header = raw_request("OPTIONS", stack.udp, phone.port, branch="z9hG4bK-m3").replace(
        b"Max-Forwards: 70", b"Max Forwards 70"
    )
    phone.send(bad_header, stack.udp)
    await phone.wait_for(status(400), count=3)
    phone.send(b"\x00\xffnot sip at all\r\n\r\n", stack.udp)
    phone.send(raw_request("OPTIONS", stack.udp, phone.port, branch="z9hG4bK-ok"), stack.udp)
    await phone.wait_for(status(200, "OPTIONS"))
    assert len([m for m in phone.received if isinstance(m, SipResponse)]) == 4


async def test_an_unsupported_required_extension_gets_420(stack: SipStack, phone: RawPeer) -> None:
    phone.send(raw_request("INVITE", stack.udp, phone.port, extra="Require: 100rel\r\n"), stack.udp)
    refused = (await phone.wait_for(status(420)))[0]
    assert refused.headers.get("Unsupported") == "100rel"


async def test_out_of_order_in_dialog_requests_get_500(stack: SipStack, phone: RawPeer) -> None:
    answered: list[IncomingRequest] = []

    async def handler(incoming: IncomingRequest) -> None:
        await incoming.respond(200)
        answered.append(incoming)

    stack.set_handler(handler)
    phone.send(raw_request("INVITE", stack.udp, phone.port, cseq=5), stack.udp)
    ok = (await phone.wait_for(status(200, "INVITE")))[0]
    assert isinstance(ok, SipResponse)
    phone.send(ack_for(ok, stack.udp, phone.port, branch="z9hG4bK-ack-5"), stack.udp)
    tag = ok.to.tag
    info = raw_request("INFO", stack.udp, phone.port, branch="z9hG4bK-info-4", cseq=4, to_tag=tag)
    phone.send(info, stack.udp)
    refused = (await phone.wait_for(status(500, "INFO")))[0]
    assert refused.reason == "Out of Order CSeq"
    bye = raw_request("BYE", stack.udp, phone.port, branch="z9hG4bK-bye-6", cseq=6, to_tag=tag)
    phone.send(bye, stack.udp)
    await phone.wait_for(status(200, "BYE"))
    dialog = answered[0].dialog
    assert dialog is not None
    await asyncio.wait_for(dialog.terminated.wait(), WAIT)


async def test_in_dialog_requests_follow_the_record_route(stack: SipStack, phone: RawPeer) -> None:
    proxy = await RawPeer.open()
    try:
        answered: list[IncomingRequest] = []

        async def handler(incoming: IncomingRequest) -> None:
            await incoming.respond(200)
            answered.append(incoming)

        stack.set_handler(handler)
        record_route = f"Record-Route: <sip:127.0.0.1:{proxy.port};lr>\r\n"
        phone.send(raw_request("INVITE", stack.udp, phone.port, extra=record_route), stack.udp)
        ok = (await phone.wait_for(status(200, "INVITE")))[0]
        assert ok.headers.get("Record-Route") == f"<sip:127.0.0.1:{proxy.port};lr>"
        assert isinstance(ok, SipResponse)
        phone.send(ack_for(ok, stack.udp, phone.port, branch="z9hG4bK-ack-rr"), stack.udp)
        dialog = answered[0].dialog
        assert dialog is not None
        assert dialog.peer.port == proxy.port
        bye = asyncio.ensure_future(dialog.request("BYE"))
        sent = (await proxy.wait_for(request("BYE")))[0]
        assert isinstance(sent, SipRequest)
        assert sent.uri == f"sip:phone@127.0.0.1:{phone.port}"  # the remote target (Contact)
        assert sent.headers.get("Route") == f"<sip:127.0.0.1:{proxy.port};lr>"
        assert sent.to.tag == "rawtag" and sent.from_.tag == ok.to.tag
        proxy.send(response_to(sent, 200, "OK", to_tag=None), stack.udp)
        assert (await asyncio.wait_for(bye, WAIT)).status == 200
        assert dialog.terminated.is_set()
    finally:
        proxy.close()


async def test_a_2xx_from_a_second_fork_is_acked_and_hung_up(
    stack: SipStack, phone: RawPeer
) -> None:
    call = stack.invite(
        stack.request(
            "INVITE",
            f"sip:phone@127.0.0.1:{phone.port}",
            to=phone.peer,
            from_uri="sip:omnicc@127.0.0.1",
            to_uri="sip:phone@127.0.0.1",
        ),
        phone.peer,
    )
    invite = (await phone.wait_for(request("INVITE")))[0]
    assert isinstance(invite, SipRequest)
    phone.send(response_to(invite, 200, "OK", to_tag="fork1"), stack.udp)
    assert (await asyncio.wait_for(call.final(), WAIT)).status == 200
    phone.send(response_to(invite, 200, "OK", to_tag="fork2"), stack.udp)
    bye = (await phone.wait_for(request("BYE")))[0]
    assert bye.to.tag == "fork2"
    acks = await phone.wait_for(request("ACK"), count=2)
    assert {ack.to.tag for ack in acks} == {"fork1", "fork2"}
    assert call.dialog is not None and call.dialog.remote_tag == "fork1"
    assert call.dialog.state.value == "confirmed"

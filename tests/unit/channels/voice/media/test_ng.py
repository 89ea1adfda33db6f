"""Bencode and the ng client's request/response matching, retries and errors (fake server)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omnicc.channels.voice.media.ng import (
    BencodeError,
    NgClient,
    NgError,
    NgTimeoutError,
    bdecode,
    bencode,
)


def test_bencode_follows_the_four_rules() -> None:
    assert bencode(42) == b"i42e"
    assert bencode(-3) == b"i-3e"
    assert bencode("spam") == b"4:spam"
    assert bencode(b"\x00\xff") == b"2:\x00\xff"
    assert bencode(["a", 1]) == b"l1:ai1ee"
    assert bencode({"sdp": "v=0", "command": "offer"}) == b"d7:command5:offer3:sdp3:v=0e"
    assert bencode("é") == b"2:\xc3\xa9"  # length in bytes, not characters


def test_bencode_refuses_what_it_cannot_express() -> None:
    for value in (True, 1.5, None, {1: "x"}):
        with pytest.raises(BencodeError):
            bencode(value)


@pytest.mark.parametrize(
    "data", [b"", b"i12", b"ixe", b"5:abc", b"l1:a", b"d1:ai1e", b"di1ei2ee", b"x", b"i1ei2e"]
)
def test_bdecode_rejects_malformed_data(data: bytes) -> None:
    with pytest.raises(BencodeError):
        bdecode(data)


values = st.recursive(
    st.integers() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(values)
def test_bdecode_inverts_bencode(value: Any) -> None:
    assert bdecode(bencode(value)) == value


class FakeEngine(asyncio.DatagramProtocol):
    """Answers ng requests with ``reply(request) -> dict | None`` (None: stay silent)."""

    def __init__(self, reply: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
        self.reply = reply
        self.received: list[tuple[bytes, dict[str, Any]]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        cookie, _, payload = data.partition(b" ")
        request = bdecode(payload)
        self.received.append((cookie, request))
        answer = self.reply(request)
        if answer is not None and self.transport is not None:
            self.transport.sendto(cookie + b" " + bencode(answer), addr)


async def fake_engine(
    reply: Callable[[dict[str, Any]], dict[str, Any] | None],
) -> tuple[FakeEngine, tuple[str, int]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: FakeEngine(reply), local_addr=("127.0.0.1", 0)
    )
    return protocol, transport.get_extra_info("sockname")[:2]


def test_requests_carry_the_command_and_parameters() -> None:
    async def scenario() -> None:
        engine, address = await fake_engine(lambda r: {"result": "ok", "sdp": "v=1"})
        async with NgClient(address) as ng:
            sdp = await ng.offer("c1", "tag", "v=0", {"flags": ["port latching"]})
        assert sdp == "v=1"
        (_, request), *_ = engine.received
        assert request == {
            "command": "offer",
            "call-id": "c1",
            "from-tag": "tag",
            "sdp": "v=0",
            "flags": ["port latching"],
        }
        assert engine.transport is not None
        engine.transport.close()

    asyncio.run(scenario())


def test_a_lost_reply_is_retried_with_the_same_cookie() -> None:
    async def scenario() -> None:
        calls = 0

        def reply(request: dict[str, Any]) -> dict[str, Any] | None:
            nonlocal calls
            calls += 1
            return {"result": "pong"} if calls == 3 else None

        engine, address = await fake_engine(reply)
        async with NgClient(address, timeout=0.1, retries=2) as ng:
            await ng.ping()
        cookies = {cookie for cookie, _ in engine.received}
        assert len(engine.received) == 3 and len(cookies) == 1
        assert engine.transport is not None
        engine.transport.close()

    asyncio.run(scenario())


def test_no_reply_at_all_is_a_timeout_and_errors_carry_the_reason() -> None:
    async def scenario() -> None:
        silent, silent_address = await fake_engine(lambda r: None)
        async with NgClient(silent_address, timeout=0.05, retries=1) as ng:
            with pytest.raises(NgTimeoutError):
                await ng.ping()
        assert len(silent.received) == 2

        failing, failing_address = await fake_engine(
            lambda r: {"result": "error", "error-reason": "Unknown call-id"}
        )
        async with NgClient(failing_address) as ng:
            with pytest.raises(NgError) as caught:
                await ng.delete("nope")
        assert caught.value.reason == "Unknown call-id"
        assert caught.value.command == "delete"
        for engine in (silent, failing):
            assert engine.transport is not None
            engine.transport.close()

    asyncio.run(scenario())


def test_concurrent_requests_get_their_own_replies() -> None:
    async def scenario() -> None:
        engine, address = await fake_engine(lambda r: {"result": "ok", "calls": [r["call-id"]]})
        async with NgClient(address) as ng:
            replies = await asyncio.gather(*(ng.query(f"call-{i}") for i in range(20)))
        assert [r["calls"] for r in replies] == [[f"call-{i}"] for i in range(20)]
        assert engine.transport is not None
        engine.transport.close()

    asyncio.run(scenario())

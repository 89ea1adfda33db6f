"""Client for rtpengine's ng control protocol (UDP).

A datagram is ``<cookie> <bencoded dict>``; the reply carries the same cookie.
rtpengine caches replies by cookie, so a request is retried with the *same*
cookie when no reply arrives in time: a lost reply is answered again from the
cache instead of executing the command twice (an ``offer`` must not allocate
ports twice).  ``result: error`` becomes :class:`NgError` carrying rtpengine's
``error-reason``.

Bencode is written here rather than taken from a package: it is four rules
(integers, byte strings, lists, dictionaries with sorted keys), the ng protocol
uses nothing else, and the maintained packages (``fastbencode``) are compiled
extensions that would add a build dependency for 60 lines of code.

The client takes the ng address, so an embedded daemon
(:mod:`omnicc.channels.voice.media.daemon`) or an external rtpengine work the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping
from typing import Any

__all__ = [
    "BencodeError",
    "NgClient",
    "NgError",
    "NgTimeoutError",
    "bdecode",
    "bencode",
]


class BencodeError(ValueError):
    """Malformed bencoded data, or a value bencode cannot express."""


def bencode(value: Any) -> bytes:
    """Encode ints, str/bytes, lists/tuples and dicts with str keys (keys sorted as bytes)."""
    out: list[bytes] = []
    _encode(value, out)
    return b"".join(out)


def _encode(value: Any, out: list[bytes]) -> None:
    if isinstance(value, bool):
        raise BencodeError("bencode has no booleans")
    if isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, str | bytes):
        raw = value.encode() if isinstance(value, str) else value
        out.append(b"%d:" % len(raw))
        out.append(raw)
    elif isinstance(value, list | tuple):
        out.append(b"l")
        for item in value:
            _encode(item, out)
        out.append(b"e")
    elif isinstance(value, Mapping):
        items = sorted(((k.encode() if isinstance(k, str) else k), v) for k, v in value.items())
        out.append(b"d")
        for key, item in items:
            if not isinstance(key, bytes):
                raise BencodeError(f"dictionary key must be a string, not {key!r}")
            _encode(key, out)
            _encode(item, out)
        out.append(b"e")
    else:
        raise BencodeError(f"cannot bencode {type(value).__name__}")


def bdecode(data: bytes) -> Any:
    """Decode one bencoded value; strings become ``str`` (UTF-8, undecodable bytes escaped)."""
    value, end = _decode(data, 0)
    if end != len(data):
        raise BencodeError(f"trailing data at offset {end}")
    return value


def _decode(data: bytes, pos: int) -> tuple[Any, int]:
    if pos >= len(data):
        raise BencodeError("unexpected end of data")
    lead = data[pos : pos + 1]
    if lead == b"i":
        end = data.find(b"e", pos)
        if end < 0:
            raise BencodeError("unterminated integer")
        try:
            return int(data[pos + 1 : end]), end + 1
        except ValueError as exc:
            raise BencodeError(f"bad integer at offset {pos}") from exc
    if lead == b"l":
        items: list[Any] = []
        pos += 1
        while data[pos : pos + 1] != b"e":
            item, pos = _decode(data, pos)
            items.append(item)
        return items, pos + 1
    if lead == b"d":
        result: dict[str, Any] = {}
        pos += 1
        while data[pos : pos + 1] != b"e":
            key, pos = _decode(data, pos)
            if not isinstance(key, str):
                raise BencodeError("dictionary key is not a string")
            result[key], pos = _decode(data, pos)
        return result, pos + 1
    if lead.isdigit():
        colon = data.find(b":", pos)
        if colon < 0 or not data[pos:colon].isdigit():
            raise BencodeError(f"bad string length at offset {pos}")
        start = colon + 1
        end = start + int(data[pos:colon])
        if end > len(data):
            raise BencodeError("string runs past the end of data")
        return data[start:end].decode("utf-8", "surrogateescape"), end
    raise BencodeError(f"unexpected byte {lead!r} at offset {pos}")


class NgError(Exception):
    """rtpengine answered ``result: error`` (``reason`` is its ``error-reason``)."""

    def __init__(self, command: str, reason: str) -> None:
        super().__init__(f"rtpengine {command}: {reason}")
        self.command = command
        self.reason = reason


class NgTimeoutError(NgError, TimeoutError):
    """No reply after every retry: rtpengine is down or unreachable."""


class _NgProtocol(asyncio.DatagramProtocol):
    def __init__(self, client: NgClient) -> None:
        self._client = client

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._client._received(data)

    def error_received(self, exc: Exception) -> None:
        """ICMP port unreachable while rtpengine is down: the retry loop handles it."""


class NgClient:
    """An ng client bound to one rtpengine control address.

    ``timeout`` is per attempt; a request is sent ``1 + retries`` times with the
    same cookie before :class:`NgTimeoutError`.
    """

    def __init__(self, address: tuple[str, int], *, timeout: float = 1.0, retries: int = 2) -> None:
        self.address = address
        self.timeout = timeout
        self.retries = retries
        self._transport: asyncio.DatagramTransport | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._prefix = os.urandom(4).hex()
        self._counter = 0

    async def open(self) -> None:
        if self._transport is None:
            loop = asyncio.get_running_loop()
            self._transport, _ = await loop.create_datagram_endpoint(
                lambda: _NgProtocol(self), remote_addr=self.address
            )

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()

    async def __aenter__(self) -> NgClient:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _received(self, data: bytes) -> None:
        cookie, _, payload = data.partition(b" ")
        future = self._pending.get(cookie.decode("ascii", "replace"))
        if future is None or future.done():
            return  # a late duplicate of a reply already taken
        try:
            reply = bdecode(payload)
        except BencodeError as exc:
            future.set_exception(exc)
            return
        if not isinstance(reply, dict):
            future.set_exception(BencodeError("ng reply is not a dictionary"))
            return
        future.set_result(reply)

    async def request(
        self, command: str, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Send one command; return the reply dict or raise :class:`NgError`."""
        await self.open()
        assert self._transport is not None
        self._counter += 1
        cookie = f"{self._prefix}_{self._counter}"
        message = {**(params or {}), "command": command}
        datagram = cookie.encode() + b" " + bencode(message)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[cookie] = future
        try:
            for _attempt in range(1 + self.retries):
                self._transport.sendto(datagram)
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that arrives as the reply does, and the caller never stops.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.timeout):
                        reply = await asyncio.shield(future)
                    break
            else:
                raise NgTimeoutError(command, f"no reply from {self.address} (timed out)")
        finally:
            self._pending.pop(cookie, None)
            if not future.done():
                future.cancel()
        result = reply.get("result")
        if result == "error":
            raise NgError(command, str(reply.get("error-reason", "unknown error")))
        return reply

    # -- commands --------------------------------------------------------------

    async def ping(self) -> None:
        reply = await self.request("ping")
        if reply.get("result") != "pong":
            raise NgError("ping", f"unexpected reply {reply!r}")

    async def offer(
        self, call_id: str, from_tag: str, sdp: str, options: Mapping[str, Any] | None = None
    ) -> str:
        """Offer ``sdp`` from ``from_tag``; returns the rewritten SDP for the other side."""
        reply = await self.request(
            "offer", {**(options or {}), "call-id": call_id, "from-tag": from_tag, "sdp": sdp}
        )
        return str(reply["sdp"])

    async def answer(
        self,
        call_id: str,
        from_tag: str,
        to_tag: str,
        sdp: str,
        options: Mapping[str, Any] | None = None,
    ) -> str:
        """Answer ``sdp`` from ``to_tag``; returns the rewritten SDP for ``from_tag``."""
        reply = await self.request(
            "answer",
            {
                **(options or {}),
                "call-id": call_id,
                "from-tag": from_tag,
                "to-tag": to_tag,
                "sdp": sdp,
            },
        )
        return str(reply["sdp"])

    async def delete(
        self, call_id: str, options: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return await self.request("delete", {**(options or {}), "call-id": call_id})

    async def query(self, call_id: str) -> dict[str, Any]:
        return await self.request("query", {"call-id": call_id})

    async def list_calls(self, limit: int = 32) -> list[str]:
        reply = await self.request("list", {"limit": limit})
        return [str(call) for call in reply.get("calls", [])]

    async def call_command(
        self, command: str, call_id: str, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Any per-call command (``play media``, ``block media``, ``start recording``...)."""
        return await self.request(command, {**(params or {}), "call-id": call_id})

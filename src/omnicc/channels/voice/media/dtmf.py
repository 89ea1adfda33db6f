"""DTMF digits per call, from rtpengine and from SIP INFO.

rtpengine 10.5 reports every RFC 4733 telephone-event it forwards when started
with ``--dtmf-log-dest=<ip>:<port>``: one JSON datagram per digit, e.g.::

    {"callid": "c4", "source_tag": "ta", "tags": ["sink", "ta"], "type": "DTMF",
     "timestamp": 1795387558, "source_ip": "127.0.0.1", "event": 11,
     "duration": 100, "volume": 10}

(``event`` is the RFC 4733 event code, ``duration`` in milliseconds).
:class:`DtmfListener` receives them and puts :class:`DtmfEvent` s on one
asyncio queue per subscribed call; events of calls nobody subscribed to are
dropped so an unknown call cannot grow memory.  Digits that a phone sends as
SIP INFO are parsed with :func:`parse_dtmf_info` and fed into the same queue
(:meth:`DtmfListener.feed`), so the IVR reads one stream of digits.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass

__all__ = [
    "DTMF_DIGITS",
    "DtmfEvent",
    "DtmfListener",
    "parse_dtmf_info",
    "parse_dtmf_log",
]

DTMF_DIGITS = "0123456789*#ABCD"
QUEUE_LIMIT = 256


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    call_id: str
    digit: str
    source_tag: str | None
    duration_ms: int | None = None
    via: str = "rtp"  # "rtp" (rtpengine) or "info" (SIP INFO)


def parse_dtmf_log(datagram: bytes) -> DtmfEvent | None:
    """One rtpengine DTMF log datagram; ``None`` if it is not a DTMF event."""
    try:
        data = json.loads(datagram)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("type", "DTMF") != "DTMF":
        return None
    event, call_id = data.get("event"), data.get("callid")
    if not isinstance(event, int) or not 0 <= event < len(DTMF_DIGITS):
        return None
    if not isinstance(call_id, str):
        return None
    source = data.get("source_tag")
    duration = data.get("duration")
    return DtmfEvent(
        call_id,
        DTMF_DIGITS[event],
        source if isinstance(source, str) else None,
        duration if isinstance(duration, int) else None,
    )


_RELAY_SIGNAL = re.compile(r"^\s*signal\s*=\s*(\S+)", re.IGNORECASE | re.MULTILINE)


def parse_dtmf_info(body: str | bytes, content_type: str) -> str | None:
    """The digit in a SIP INFO body (``application/dtmf-relay`` or ``application/dtmf``)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "application/dtmf-relay":
        found = _RELAY_SIGNAL.search(text)
        value = found.group(1) if found else ""
    elif media_type == "application/dtmf":
        value = text.strip()
    else:
        return None
    value = value.upper()
    if value.isdigit() and len(value) <= 2 and int(value) < len(DTMF_DIGITS):
        return DTMF_DIGITS[int(value)]  # some phones send the event code (10 = *, 11 = #)
    return value if len(value) == 1 and value in DTMF_DIGITS else None


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, listener: DtmfListener) -> None:
        self._listener = listener

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        event = parse_dtmf_log(data)
        if event is not None:
            self._listener._dispatch(event)


class DtmfListener:
    """The UDP socket rtpengine's ``--dtmf-log-dest`` points at, with a queue per call."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._transport: asyncio.DatagramTransport | None = None
        self._queues: dict[str, asyncio.Queue[DtmfEvent]] = {}

    async def open(self) -> DtmfListener:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self.host, self.port)
        )
        self.port = int(self._transport.get_extra_info("sockname")[1])
        return self

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def __aenter__(self) -> DtmfListener:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def address(self) -> tuple[str, int]:
        """What to pass as the daemon's ``dtmf_log_dest``."""
        return self.host, self.port

    def subscribe(self, call_id: str) -> asyncio.Queue[DtmfEvent]:
        """The call's digit queue (created on first use; same queue on later calls)."""
        return self._queues.setdefault(call_id, asyncio.Queue(QUEUE_LIMIT))

    def unsubscribe(self, call_id: str) -> None:
        self._queues.pop(call_id, None)

    def feed(self, call_id: str, digit: str, *, source_tag: str | None = None) -> None:
        """A digit from SIP INFO, into the same queue as rtpengine's."""
        self._dispatch(DtmfEvent(call_id, digit, source_tag, via="info"))

    def _dispatch(self, event: DtmfEvent) -> None:
        queue = self._queues.get(event.call_id)
        if queue is not None and not queue.full():
            queue.put_nowait(event)

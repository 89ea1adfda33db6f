"""Call-level media operations for the B2BUA, on top of rtpengine.

One rtpengine call per customer call (``call_id``).  The caller's offer is
kept; every new "other side" (OmniCC's sink while in the IVR or the queue, an
agent, a transfer target) gets a fresh *re-offer of the caller's SDP* and its
answer, both with rtpengine's ``port latching`` flag so the port rtpengine
gave the caller never changes: the caller needs no re-INVITE.

What rtpengine 10.5 does (found by experiment, see ``docs/voice.md``):

* a re-offer without ``port latching`` moves the caller's port;
* a to-tag must not be answered twice: after the caller was connected to
  another tag, re-answering an old tag only forwards one way.  Each leg
  therefore gets a fresh tag (SIP to-tags are fresh anyway; sink legs are
  numbered ``omnicc-sink-1``, ``-2``...);
* a re-offer takes the ports of the current other side, so the old party's
  audio stops when the offer for the new party is made;
* ``play media`` to the caller needs no transcoding flags for G.711 WAV files;
  while it plays, the current party's audio is still forwarded too, so hold
  also blocks it.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from omnicc.channels.voice.media.ng import NgClient
from omnicc.channels.voice.media.rtp import PayloadType, RtpEndpoint, media_address

__all__ = [
    "SINK_TAG_PREFIX",
    "WEBRTC_OFFER",
    "MediaCall",
    "MediaError",
    "RecordingHandle",
]

SINK_TAG_PREFIX = "omnicc-sink-"
LOOP_REPEAT_TIMES = 1_000_000

LATCH: dict[str, Any] = {"flags": ["port latching"]}
PLAIN_RTP: dict[str, Any] = {
    "ICE": "remove",
    "transport-protocol": "RTP/AVP",
    "rtcp-mux": ["demux"],
}
WEBRTC_OFFER: dict[str, Any] = {
    "ICE": "force",
    "DTLS": "passive",
    "transport-protocol": "UDP/TLS/RTP/SAVPF",
    "rtcp-mux": ["require"],
    "flags": ["port latching", "generate mid", "SDES-off"],
}

_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ([\w.-]+)/(\d+)", re.MULTILINE)


class MediaError(RuntimeError):
    """A media operation is not possible in the call's current state."""


@dataclass(slots=True)
class RecordingHandle:
    """A recording started on a call; rtpengine writes it under its recording directory."""

    call_id: str
    started_at: datetime
    stopped_at: datetime | None = None
    parties: list[str] = field(default_factory=list)


class MediaCall:
    """The media of one customer call.

    Lifecycle: :meth:`caller_offer` -> :meth:`answer_caller_with_sink` (200 OK
    to the caller) -> prompts with :meth:`play` -> :meth:`offer_to` an agent ->
    :meth:`answered_by` -> :meth:`hold`/:meth:`resume`, transfer by another
    :meth:`offer_to`/:meth:`answered_by` (or :meth:`back_to_sink` when a party
    rejects or leaves) -> :meth:`delete`.
    """

    def __init__(self, client: NgClient, call_id: str, *, sink_host: str = "127.0.0.1") -> None:
        self.client = client
        self.call_id = call_id
        self.sink_host = sink_host
        self.caller_tag: str | None = None
        self.caller_sdp: str | None = None
        self.caller_port: tuple[str, int] | None = None
        self.party_tag: str | None = None
        self.sink: RtpEndpoint | None = None
        self.recording: RecordingHandle | None = None
        self._offered_sdp: str | None = None
        self._pending_tag: str | None = None
        self._pending_webrtc = False
        self._sink_numbers = itertools.count(1)
        self._on_hold = False

    # -- caller side -----------------------------------------------------------

    async def caller_offer(self, sdp: str, from_tag: str) -> None:
        """The caller's INVITE offer; media goes nowhere until an answer."""
        self.caller_sdp, self.caller_tag = sdp, from_tag
        self._offered_sdp = await self.client.offer(
            self.call_id, from_tag, sdp, {**LATCH, **PLAIN_RTP}
        )

    async def answer_caller_with_sink(self) -> str:
        """Answer the caller with an OmniCC sink on the other side; returns the caller's SDP."""
        return await self._connect_sink(reoffer=False)

    async def back_to_sink(self) -> None:
        """Detach the current party (rejected, hung up): the caller goes back to the sink."""
        await self._connect_sink(reoffer=True)

    async def _connect_sink(self, *, reoffer: bool) -> str:
        caller_tag = self._require_caller()
        if reoffer:
            await self._reoffer(webrtc=False)
        assert self._offered_sdp is not None
        if self.sink is None:
            self.sink = await RtpEndpoint(self.sink_host).open()
        self.sink.payload_type, self.sink.event_payload_type = _sink_codecs(self._offered_sdp)
        tag = f"{SINK_TAG_PREFIX}{next(self._sink_numbers)}"
        sdp = await self.client.answer(
            self.call_id,
            caller_tag,
            tag,
            self.sink.sdp(),
            LATCH,
        )
        self.sink.connect(self._offered_sdp)
        self._set_caller_sdp(sdp)
        self.party_tag, self._pending_tag = tag, None
        return sdp

    # -- parties ---------------------------------------------------------------

    async def offer_to(self, party_tag: str, *, webrtc: bool = False) -> str:
        """SDP for the INVITE to a party (agent, transfer target); ``webrtc`` for browsers.

        The party is connected by :meth:`answered_by` with the same tag, which must
        be new in this call (use the tag the party's dialog will carry, or any
        fresh string when the SIP to-tag is not known yet).
        """
        self._require_caller()
        sdp = await self._reoffer(webrtc=webrtc)
        self._pending_tag = party_tag
        return sdp

    async def answered_by(self, party_tag: str, sdp: str) -> None:
        """The party's answer SDP: caller and party now hear each other."""
        caller_tag = self._require_caller()
        if self._pending_tag is None:
            raise MediaError("answered_by without offer_to")
        options = {**LATCH}
        if self._pending_webrtc:
            options = {**PLAIN_RTP, "flags": ["port latching"]}
        reply = await self.client.answer(self.call_id, caller_tag, party_tag, sdp, options)
        self._set_caller_sdp(reply)
        self.party_tag, self._pending_tag = party_tag, None

    async def _reoffer(self, *, webrtc: bool) -> str:
        caller_tag = self._require_caller()
        assert self.caller_sdp is not None
        options = WEBRTC_OFFER if webrtc else {**LATCH, **PLAIN_RTP}
        self._offered_sdp = await self.client.offer(
            self.call_id, caller_tag, self.caller_sdp, options
        )
        self._pending_webrtc = webrtc
        return self._offered_sdp

    def _set_caller_sdp(self, sdp: str) -> None:
        port = media_address(sdp)
        if self.caller_port is not None and port != self.caller_port:
            raise MediaError(
                f"rtpengine moved the caller's media from {self.caller_port} to {port}"
            )
        self.caller_port = port

    def _require_caller(self) -> str:
        if self.caller_tag is None:
            raise MediaError("no caller offer yet")
        return self.caller_tag

    # -- prompts and hold ------------------------------------------------------

    async def play(self, file: Path | str, *, loop: bool = False) -> int | None:
        """Play a WAV to the caller (replacing any playback); returns its duration in ms."""
        params: dict[str, Any] = {"from-tag": self._require_caller(), "file": str(file)}
        if loop:
            params["repeat-times"] = LOOP_REPEAT_TIMES
        reply = await self.client.call_command("play media", self.call_id, params)
        duration = reply.get("duration")
        return int(duration) if duration is not None else None

    async def stop_play(self) -> None:
        await self.client.call_command(
            "stop media", self.call_id, {"from-tag": self._require_caller()}
        )

    async def play_dtmf(self, digit: str, *, duration_ms: int = 100) -> None:
        """Send a DTMF digit to the current party (e.g. a digit relayed from SIP INFO)."""
        await self.client.call_command(
            "play DTMF",
            self.call_id,
            {"from-tag": self._require_caller(), "code": digit, "duration": duration_ms},
        )

    async def hold(self, music: Path | str) -> None:
        """Caller hears ``music`` (looped); the party's audio is blocked, the caller's silenced."""
        if self.party_tag is None:
            raise MediaError("nobody to hold from")
        await self.play(music, loop=True)
        await self.client.call_command("block media", self.call_id, {"from-tag": self.party_tag})
        await self.client.call_command(
            "silence media", self.call_id, {"from-tag": self._require_caller()}
        )
        self._on_hold = True

    async def resume(self) -> None:
        if self.party_tag is None:
            raise MediaError("nobody to resume")
        await self.stop_play()
        await self.client.call_command("unblock media", self.call_id, {"from-tag": self.party_tag})
        await self.client.call_command(
            "unsilence media", self.call_id, {"from-tag": self._require_caller()}
        )
        self._on_hold = False

    @property
    def on_hold(self) -> bool:
        return self._on_hold

    # -- recording and teardown ------------------------------------------------

    async def start_recording(self) -> RecordingHandle:
        """Record the whole call (both directions) from now on."""
        await self.client.call_command("start recording", self.call_id)
        self.recording = RecordingHandle(self.call_id, datetime.now(UTC))
        return self.recording

    async def stop_recording(self) -> RecordingHandle:
        if self.recording is None:
            raise MediaError("not recording")
        await self.client.call_command("stop recording", self.call_id)
        self.recording.stopped_at = datetime.now(UTC)
        return self.recording

    async def delete(self) -> None:
        """End the call in rtpengine (which closes its recording files) and the sink."""
        try:
            await self.client.delete(self.call_id)
        finally:
            if self.sink is not None:
                await self.sink.close()
                self.sink = None


def _sink_codecs(offer: str) -> tuple[int, int | None]:
    """The G.711 payload type and telephone-event payload type the sink answers with."""
    found = re.search(r"^m=audio \d+ \S+ ([\d ]+)", offer, re.MULTILINE)
    formats = found.group(1).split() if found else []
    names = {pt: name.upper() for pt, name, rate in _RTPMAP.findall(offer) if rate == "8000"}
    event = next((int(pt) for pt in formats if names.get(pt) == "TELEPHONE-EVENT"), None)
    for pt in formats:
        if pt == "0" or names.get(pt) == "PCMU":
            return PayloadType.PCMU, event
        if pt == "8" or names.get(pt) == "PCMA":
            return PayloadType.PCMA, event
    raise MediaError("the caller offered no G.711 codec (PCMU or PCMA)")

"""Call-level media operations for the B2BUA, on top of rtpengine.

One rtpengine call per customer call (``call_id``).  The caller's offer is
kept; every "other side" - OmniCC's sink while in the IVR or the queue, an
agent, a transfer target - is an rtpengine *tag* chosen by OmniCC (it is a B2BUA:
these tags need not be SIP tags).  Connecting the caller to a tag is a re-offer
of the caller's SDP **with that to-tag** and then its answer, both with the
``port latching`` flag.  What rtpengine 10.5 does (found by experiment, written
up in ``docs/voice.md``):

* without ``port latching`` every re-offer moves the caller's port (the caller
  would need a re-INVITE); with it the caller's port never changes;
* without a to-tag in the offer, rtpengine hands the *previous* party's ports to
  the new one and the tags stop matching the media (``block media`` on the new
  tag does nothing); with the to-tag each party keeps its own ports, so a party
  can be re-connected later (transfer failed, back to the sink) on the same port;
* the caller keeps receiving from every tag it was ever connected to, so the
  tags not connected are blocked (``block media``) and the connected one unblocked;
* from the re-offer until the answer, the caller's audio goes to nobody (the old
  party still reaches the caller);
* ``play media`` needs no transcoding flags for G.711 WAV prompts, but does not
  silence the party: hold also blocks the party and silences the caller;
* a connected *party* can be moved too, without renegotiating its phone: a re-offer from
  the party's side (from-tag = the party's tag, its answer SDP) to a new to-tag, with ``port
  latching``, keeps the party's port, and the caller's re-offer to another tag leaves the
  party connected to that new tag only.  Supervision moves both sides into OmniCC's mixer
  this way (:meth:`MediaCall.divert_offer`) and back (:meth:`MediaCall.undivert`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from omnicc.channels.voice.media.ng import NgClient
from omnicc.channels.voice.media.rtp import PayloadType, RtpEndpoint, media_address

__all__ = [
    "SINK_TAG",
    "WEBRTC_OFFER",
    "Diversion",
    "MediaCall",
    "MediaError",
    "PhoneMedia",
    "RecordingHandle",
    "g711_codecs",
]

SINK_TAG = "omnicc-sink"
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
    """A recording started on a call; rtpengine writes it under its recording directory.

    Convert it after :meth:`MediaCall.delete` (rtpengine closes the pcap then) with
    ``recording_to_wav(find_recording(recording_dir, call_id), caller_port, target,
    ignore_ports=mixer_ports)``.
    """

    call_id: str
    caller_port: int
    started_at: datetime
    stopped_at: datetime | None = None
    mixer_ports: set[int] = field(default_factory=set)
    """rtpengine's ports that faced a mixer (supervision): left out of the WAV."""


@dataclass(frozen=True, slots=True)
class Diversion:
    """A connected call moved into a mixer: the party's tag, and the tags of the mixer's
    ports facing the caller and facing the party."""

    party: str
    caller_side: str
    party_side: str


class MediaCall:
    """The media of one customer call.

    Lifecycle: :meth:`caller_offer` -> :meth:`answer_caller_with_sink` (200 OK
    to the caller) -> prompts with :meth:`play` -> :meth:`offer_to` an agent ->
    :meth:`answered_by` -> :meth:`hold`/:meth:`resume` -> transfer by another
    :meth:`offer_to`/:meth:`answered_by`, or :meth:`return_to` an earlier party /
    :meth:`back_to_sink` when a party rejects or leaves -> :meth:`delete`.  A
    supervisor listens in with :meth:`monitor_offer`/:meth:`monitor_answer` (a copy of
    the caller), or the call goes through a mixer: :meth:`divert_offer`/
    :meth:`divert_answer` .. :meth:`undivert`.

    One task drives a call (the call controller's); the methods are not meant
    to run concurrently on the same call.
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
        self._pending: tuple[str, bool] | None = None  # (tag, webrtc) offered, not answered
        self._answers: dict[str, tuple[str, bool]] = {}  # tag -> (answer SDP, webrtc)
        self._offered: dict[str, str] = {}  # tag -> the latest SDP offered to that party
        self._on_hold = False
        self._hold_music: Path | str | None = None
        self._hold_party = False  # the party hears the music (see `hold`)
        self.diversion: Diversion | None = None
        self.mixer_ports: set[int] = set()  # rtpengine's ports that ever faced a mixer
        self._diverting: Diversion | None = None
        self._sides: dict[str, tuple[str, bool, str]] = {}  # tag -> (SDP, webrtc, local tag)
        self._caller_webrtc = False  # the first leg is a browser (`browser_first_answer`)

    # -- caller side -----------------------------------------------------------

    async def caller_offer(self, sdp: str, from_tag: str) -> None:
        """The caller's INVITE offer (kept for every re-offer)."""
        self.caller_sdp, self.caller_tag = sdp, from_tag

    async def answer_caller_with_sink(self) -> str:
        """Connect the caller to OmniCC's sink; returns the SDP for the 200 OK to the caller."""
        offered = await self.offer_to(SINK_TAG)
        if self.sink is None:
            self.sink = await RtpEndpoint(self.sink_host).open()
        self.sink.payload_type, self.sink.event_payload_type = g711_codecs(offered)
        self.sink.connect(offered)
        return await self._answer(SINK_TAG, self.sink.sdp())

    async def back_to_sink(self) -> None:
        """Detach the current party (rejected, hung up): the caller goes back to the sink."""
        await self.return_to(SINK_TAG)

    async def return_to(self, party_tag: str) -> None:
        """Reconnect the caller to a party connected before (on that party's same port)."""
        if party_tag not in self._answers:
            raise MediaError(f"{party_tag!r} was never connected")
        sdp, webrtc = self._answers[party_tag]
        await self.offer_to(party_tag, webrtc=webrtc)
        await self._answer(party_tag, sdp)

    # -- a call that starts at a browser (agent first) ---------------------------

    async def browser_first_offer(self, tag: str, payload_type: int) -> str:
        """An agent-first call to a browser, which only answers offers: OmniCC's sink offers
        to ``tag`` (WebRTC; one G.711 codec, ``payload_type``, plus telephone-event); returns
        the SDP for the browser's ring.  :meth:`browser_first_answer` then makes the browser
        the call's first leg, as if it had offered."""
        if self.sink is None:
            self.sink = await RtpEndpoint(self.sink_host, payload_type=payload_type).open()
        sdp = await self.client.offer(
            self.call_id, SINK_TAG, self.sink.sdp(), {**WEBRTC_OFFER, "to-tag": tag}
        )
        self.caller_port = media_address(sdp)
        self._pending = (tag, True)
        return sdp

    async def browser_first_answer(self, tag: str, sdp: str) -> None:
        """The browser's answer: it hears the sink, and is the call's caller from now on.
        Every other party is offered from its side (its answer SDP re-offered with ``port
        latching``): rtpengine keeps its port, ICE and DTLS-SRTP session, and the party gets
        plain RTP (found by experiment with Chromium, rtpengine 10.5; docs/voice.md)."""
        if self._pending != (tag, True) or self.sink is None:
            raise MediaError(f"browser_first_answer({tag!r}) without browser_first_offer")
        reply = await self.client.answer(self.call_id, SINK_TAG, tag, sdp, {**PLAIN_RTP, **LATCH})
        self.sink.connect(reply)
        self.caller_sdp, self.caller_tag = sdp, tag
        self._caller_webrtc = True
        self._answers[SINK_TAG] = (self.sink.sdp(), False)
        self.party_tag = SINK_TAG
        self._pending = None

    def party_becomes_caller(self, tag: str, sdp: str, offered: str) -> None:
        """An agent-first call's party (the customer, ``sdp`` its SDP, ``offered`` the one
        rtpengine gave it) becomes the caller, the first leg the party: the agents change
        behind the customer on a transfer or a consult. An offer from the customer's tag
        keeps its port, and a new party and the customer hear each other (rtpengine 10.5). A
        browser agent stays a WebRTC party: going back to it re-offers ICE and DTLS-SRTP."""
        old = self._require_caller()
        assert self.caller_sdp is not None
        self._answers = {old: (self.caller_sdp, self._caller_webrtc)}
        self._caller_webrtc = False
        self.caller_tag, self.caller_sdp = tag, sdp
        self.caller_port = media_address(offered)
        self.party_tag, self._pending = old, None

    # -- parties ---------------------------------------------------------------

    async def offer_to(self, party_tag: str, *, webrtc: bool = False) -> str:
        """SDP for the INVITE to a party (agent, transfer target); ``webrtc`` for browsers.

        ``party_tag`` is OmniCC's name for the party's side in rtpengine, unique in
        this call.  From now until :meth:`answered_by`, the caller's audio reaches
        nobody (the current party is still heard by the caller).
        """
        caller_tag = self._require_caller()
        assert self.caller_sdp is not None
        options = WEBRTC_OFFER if webrtc else {**LATCH, **PLAIN_RTP}
        sdp = await self.client.offer(
            self.call_id, caller_tag, self.caller_sdp, {**options, "to-tag": party_tag}
        )
        self._pending = (party_tag, webrtc)
        self._offered[party_tag] = sdp
        return sdp

    async def answered_by(self, party_tag: str, sdp: str) -> None:
        """The party's answer SDP: caller and party now hear each other, nobody else."""
        if self._pending is None or self._pending[0] != party_tag:
            raise MediaError(f"answered_by({party_tag!r}) without offer_to({party_tag!r})")
        await self._answer(party_tag, sdp)

    async def _answer(self, party_tag: str, sdp: str) -> str:
        reply = await self._connect_caller(party_tag, sdp)
        self.party_tag = party_tag
        if self._on_hold:
            await self.resume()
        return reply

    async def _connect_caller(self, tag: str, sdp: str) -> str:
        """Answer the caller's pending re-offer with ``sdp`` for ``tag``: the caller hears
        that tag only (the others are blocked); its port must not move."""
        caller_tag = self._require_caller()
        assert self._pending is not None
        webrtc = self._pending[1]
        options = {**PLAIN_RTP, **LATCH} if webrtc else LATCH
        reply = await self.client.answer(self.call_id, caller_tag, tag, sdp, options)
        port = media_address(reply)
        if self.caller_port is not None and port != self.caller_port:
            raise MediaError(
                f"rtpengine moved the caller's media from {self.caller_port} to {port}"
            )
        self.caller_port = port
        self._answers[tag] = (sdp, webrtc)
        self._pending = None
        if self.diversion is not None and tag != self.diversion.caller_side:
            self.diversion = None  # the caller went elsewhere (transfer, sink): mixer bypassed
        for known in self._answers:
            command = "unblock media" if known == tag else "block media"
            await self.client.call_command(command, self.call_id, {"from-tag": known})
        return reply

    def _require_caller(self) -> str:
        if self.caller_tag is None:
            raise MediaError("no caller offer yet")
        return self.caller_tag

    # -- prompts and hold ------------------------------------------------------

    async def play(self, file: Path | str, *, loop: bool = False,
                   to: str | None = None) -> int | None:
        """Play a WAV to the caller, or to the side tagged `to` (replacing any playback);
        returns its duration in ms."""
        params: dict[str, Any] = {"from-tag": to or self._require_caller(), "file": str(file)}
        if loop:
            params["repeat-times"] = LOOP_REPEAT_TIMES
        reply = await self.client.call_command("play media", self.call_id, params)
        duration = reply.get("duration")
        return int(duration) if duration is not None else None

    async def stop_play(self, to: str | None = None) -> None:
        await self.client.call_command(
            "stop media", self.call_id, {"from-tag": to or self._require_caller()}
        )

    def _caller_source(self) -> str | None:
        """The tag whose audio the caller hears: the party, or the mixer while diverted."""
        return self.diversion.caller_side if self.diversion is not None else self.party_tag

    async def hold(self, music: Path | str, *, party_hears: bool = False) -> None:
        """Caller hears ``music`` (looped); what the caller heard is blocked (the party, or
        the mixer: a supervisor can still talk with the agent), the caller's audio silenced.
        ``party_hears``: the other way round, the party hears the music - an agent-first
        call, whose first leg is the agent's and whose party is the customer."""
        listener, source = self._hold_sides(party_hears)
        await self.play(music, loop=True, to=listener)
        await self.client.call_command("block media", self.call_id, {"from-tag": source})
        await self.client.call_command("silence media", self.call_id, {"from-tag": listener})
        self._on_hold = True
        self._hold_music = music
        self._hold_party = party_hears

    async def resume(self) -> None:
        listener, source = self._hold_sides(self._hold_party)
        await self.stop_play(to=listener)
        await self.client.call_command("unblock media", self.call_id, {"from-tag": source})
        await self.client.call_command("unsilence media", self.call_id, {"from-tag": listener})
        self._on_hold = False

    def _hold_sides(self, party_hears: bool) -> tuple[str, str]:
        """Who hears the music on hold, and the tag whose audio they stop hearing."""
        if party_hears:
            if self.party_tag is None:
                raise MediaError("no party to hold")
            source = (self.diversion.party_side if self.diversion is not None
                      else self._require_caller())
            return self.party_tag, source
        caller_source = self._caller_source()
        if caller_source is None:
            raise MediaError("nobody to hold from")
        return self._require_caller(), caller_source

    @property
    def on_hold(self) -> bool:
        return self._on_hold

    # -- the mixer (supervision) ---------------------------------------------------

    async def divert_offer(self, caller_side: str, party_side: str) -> tuple[str, str]:
        """Start moving the connected call into a mixer: returns rtpengine's SDPs for the
        mixer's port facing the caller (tag ``caller_side``) and the one facing the party
        (``party_side``).  Neither the caller's nor the party's phone renegotiates."""
        party = self.party_tag
        if party is None or party == SINK_TAG or party not in self._answers:
            raise MediaError("no party connected to divert")
        if self.diversion is not None:
            raise MediaError("the call is already in a mixer")
        party_sdp, _ = self._answers[party]
        to_caller = await self.offer_to(caller_side)
        # The party's side re-offers its own (answer) SDP to the new tag: its port stays.
        to_party = await self.client.offer(
            self.call_id, party, party_sdp, {**LATCH, **PLAIN_RTP, "to-tag": party_side}
        )
        self._diverting = Diversion(party, caller_side, party_side)
        self.mixer_ports |= {media_address(to_caller)[1], media_address(to_party)[1]}
        return to_caller, to_party

    async def divert_answer(self, caller_side_sdp: str, party_side_sdp: str) -> None:
        """The mixer's ports' SDPs: from now on caller and party each talk with the mixer."""
        diversion = self._diverting
        if diversion is None or self._pending is None:
            raise MediaError("divert_answer() without divert_offer()")
        reply = await self.client.answer(
            self.call_id, diversion.party, diversion.party_side, party_side_sdp, LATCH
        )
        offered = self._offered.get(diversion.party)
        if offered is not None and media_address(reply) != media_address(offered):
            raise MediaError(f"rtpengine moved the media of {diversion.party!r}")
        await self._connect_caller(diversion.caller_side, caller_side_sdp)
        self._diverting = None
        self.diversion = diversion
        for tag in (diversion.party, diversion.party_side):
            await self.client.call_command("unblock media", self.call_id, {"from-tag": tag})
        if self._on_hold and self._hold_music is not None:
            await self.hold(self._hold_music, party_hears=self._hold_party)

    @property
    def pending_diversion(self) -> Diversion | None:
        """A diversion offered and not answered yet (undivert() abandons it)."""
        return self._diverting

    async def undivert(self) -> None:
        """Back to the direct path: caller and party hear each other in rtpengine again
        (also after a :meth:`divert_offer` that was never answered)."""
        diversion = self.diversion or self._diverting
        if diversion is None:
            raise MediaError("the call is not in a mixer")
        self._diverting = None
        sdp, webrtc = self._answers[diversion.party]
        await self.offer_to(diversion.party, webrtc=webrtc)
        await self._connect_caller(diversion.party, sdp)
        await self.client.call_command(
            "block media", self.call_id, {"from-tag": diversion.party_side}
        )
        self.party_tag = diversion.party
        if self._on_hold and self._hold_music is not None:
            await self.hold(self._hold_music, party_hears=self._hold_party)

    # -- a third party in the same call (consult transfer) --------------------------

    async def side_offer(self, local_tag: str, party_tag: str, local_sdp: str, *,
                         webrtc: bool = False) -> str:
        """SDP for the INVITE to a party that first talks with one of OmniCC's ports (a
        mixer port, SDP ``local_sdp``, tag ``local_tag``), in this same rtpengine call, so the
        caller can later be connected to it directly (:meth:`connect_side_party`)."""
        options = WEBRTC_OFFER if webrtc else {**LATCH, **PLAIN_RTP}
        sdp = await self.client.offer(
            self.call_id, local_tag, local_sdp, {**options, "to-tag": party_tag})
        self._offered[party_tag] = sdp
        return sdp

    async def side_answer(self, local_tag: str, party_tag: str, party_sdp: str, *,
                          webrtc: bool = False) -> str:
        """The party's answer to :meth:`side_offer`; returns the SDP OmniCC's port sends to."""
        options = {**PLAIN_RTP, **LATCH} if webrtc else LATCH
        reply = await self.client.answer(self.call_id, local_tag, party_tag, party_sdp, options)
        self.mixer_ports.add(media_address(reply)[1])  # rtpengine's port facing OmniCC's
        self._sides[party_tag] = (party_sdp, webrtc, local_tag)
        return reply

    async def connect_side_party(self, party_tag: str) -> None:
        """Connect the caller directly to a party answered through :meth:`side_answer`
        (a completed consult transfer): neither the caller's nor the party's port moves, the
        mixer is bypassed and the party's port towards OmniCC's is blocked."""
        if party_tag not in self._sides:
            raise MediaError(f"{party_tag!r} was never answered on a side")
        sdp, webrtc, local_tag = self._sides[party_tag]
        if self._on_hold:
            await self.resume()
        before = media_address(self._offered[party_tag])
        if media_address(await self.offer_to(party_tag, webrtc=webrtc)) != before:
            raise MediaError(f"rtpengine moved the media of {party_tag!r}")
        await self._connect_caller(party_tag, sdp)
        self.party_tag = party_tag
        await self.client.call_command("block media", self.call_id, {"from-tag": local_tag})

    # -- silent monitoring -------------------------------------------------------

    async def monitor_offer(self, *tags: str) -> tuple[str, str]:
        """A send-only copy of the given sides (default: the caller) for a listener, e.g. a
        supervisor's phone: returns (subscription tag, SDP offer).  Each tag is its own
        ``m=audio`` line (rtpengine 10.5 does not mix them without transcoding)."""
        chosen = list(tags) or [self._require_caller()]
        params: dict[str, Any] = (
            {"from-tags": chosen} if len(chosen) > 1 else {"from-tag": chosen[0]}
        )
        reply = await self.client.call_command("subscribe request", self.call_id, params)
        return str(reply["to-tag"]), str(reply["sdp"])

    async def monitor_answer(self, subscription: str, sdp: str) -> None:
        """The listener's answer: the copy starts flowing."""
        await self.client.call_command(
            "subscribe answer", self.call_id, {"to-tag": subscription, "sdp": sdp}
        )

    async def stop_monitor(self, subscription: str) -> None:
        await self.client.call_command("unsubscribe", self.call_id, {"to-tag": subscription})

    # -- recording and teardown ------------------------------------------------

    async def start_recording(self) -> RecordingHandle:
        """Record the whole call (both directions) from now on."""
        if self.caller_port is None:
            raise MediaError("the caller is not answered yet")
        await self.client.call_command("start recording", self.call_id)
        self.recording = RecordingHandle(self.call_id, self.caller_port[1], datetime.now(UTC),
                                         mixer_ports=self.mixer_ports)
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


class PhoneMedia:
    """A phone's media as its own rtpengine call, whose other side is a port of OmniCC's
    (a mixer port): rtpengine does what the phone needs (latching, WebRTC's ICE and
    DTLS-SRTP), OmniCC's port sees plain RTP."""

    LOCAL_TAG = "omnicc"
    PHONE_TAG = "phone"

    def __init__(self, client: NgClient, call_id: str) -> None:
        self.client = client
        self.call_id = call_id
        self.webrtc = False

    async def offer(self, local_sdp: str, *, webrtc: bool = False) -> str:
        """The SDP offer for the phone's INVITE (or the browser's ring)."""
        self.webrtc = webrtc
        options = WEBRTC_OFFER if webrtc else {**LATCH, **PLAIN_RTP}
        return await self.client.offer(self.call_id, self.LOCAL_TAG, local_sdp, options)

    async def answered(self, phone_sdp: str) -> str:
        """The phone's answer; returns the SDP OmniCC's port sends to."""
        options = {**PLAIN_RTP, **LATCH} if self.webrtc else LATCH
        return await self.client.answer(
            self.call_id, self.LOCAL_TAG, self.PHONE_TAG, phone_sdp, options
        )

    async def delete(self) -> None:
        await self.client.delete(self.call_id)


def g711_codecs(offer: str) -> tuple[int, int | None]:
    """The G.711 payload type and telephone-event payload type to answer ``offer`` with."""
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

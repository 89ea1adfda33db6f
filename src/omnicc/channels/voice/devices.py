"""The phones an agent answers on: a registered SIP phone, or the agent desktop's browser
softphone (WebRTC, signalled over the desk's WebSocket).

The call controller rings a device with the SDP offer rtpengine made for the agent's side
and gets back a `Ring`: `answered()` is the agent's answer SDP (or None: declined, failed,
cancelled); after it, `leg` is the live `AgentLeg` whose `terminated` is set when the agent
hangs up or the leg is lost. A browser needs a WebRTC offer (ICE, DTLS-SRTP), a SIP phone a
plain RTP one: `Device.webrtc` says which.

Browser protocol (desk WebSocket): OmniCC sends `call.ringing` {ring_id, sdp, caller,
caller_name, task_id, call_id, outbound (an agent-first call: answering dials the
customer)}, `call.cancelled` {ring_id} and `call.ended` {ring_id}; the desk sends
`phone.online` / `phone.offline`, `call.answer` {ring_id, sdp}, `call.decline` {ring_id} and
`call.hangup` {ring_id}.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from typing import Protocol

from omnicc.bus import Bus, Notice
from omnicc.channels.voice.sip.dialog import Dialog
from omnicc.channels.voice.sip.stack import IncomingRequest, OutgoingInvite, SipStack
from omnicc.channels.voice.sip.transport import Peer

log = logging.getLogger("omnicc.voice.devices")

SDP = "application/sdp"


def agent_topic(agent_id: str) -> str:
    return f"agent:{agent_id}"


@dataclass(frozen=True, slots=True)
class CallInfo:
    """What the agent's phone shows while it rings."""

    call_id: str
    caller: str
    caller_name: str
    task_id: str
    outbound: bool = False
    """An agent-first call: the agent's own (or a callback); the customer is dialled once
    the agent answered."""


class AgentLeg(Protocol):
    terminated: asyncio.Event

    @property
    def lost(self) -> bool:
        """Ended without the agent hanging up (no answer, connection gone)."""
        ...

    async def hang_up(self) -> None: ...

    async def check(self) -> None:
        """Probe the leg (a keepalive); a dead leg ends up terminated and lost."""
        ...


class Ring(Protocol):
    leg: AgentLeg | None

    async def answered(self) -> str | None: ...

    async def cancel(self) -> None: ...


class Device(Protocol):
    @property
    def webrtc(self) -> bool: ...

    def ring(self, offer_sdp: str, info: CallInfo) -> Ring: ...


# --- SIP phones ----------------------------------------------------------------------------


class SipLeg:
    def __init__(self, dialog: Dialog) -> None:
        self.dialog = dialog
        self.terminated = dialog.terminated

    @property
    def lost(self) -> bool:
        return self.dialog.termination_reason not in ("bye received", "bye sent")

    async def hang_up(self) -> None:
        await self.dialog.bye()

    async def check(self) -> None:
        # An in-dialog OPTIONS: no answer ends the dialog ("no answer to OPTIONS").
        with contextlib.suppress(Exception):
            await self.dialog.request("OPTIONS")


class SipRing:
    def __init__(self, invite: OutgoingInvite) -> None:
        self.invite = invite
        self.leg: AgentLeg | None = None
        self.status: int | None = None

    async def answered(self) -> str | None:
        try:
            final = await self.invite.final()
        except Exception as error:  # a transport failure or no answer: the phone cannot ring
            log.info("voice: ringing %s failed: %s", self.invite.request.uri, error)
            return None
        self.status = final.status
        if not 200 <= final.status < 300 or self.invite.dialog is None:
            return None
        dialog = self.invite.dialog

        async def refuse_reinvite(incoming: IncomingRequest) -> None:
            if incoming.method == "INVITE":
                await incoming.respond(488, "Not Acceptable Here")

        dialog.on_request = refuse_reinvite
        self.leg = SipLeg(dialog)
        return final.body.decode(errors="replace")

    async def cancel(self) -> None:
        if not self.invite.done:
            with contextlib.suppress(Exception):
                await self.invite.cancel()
        elif self.leg is not None:
            await self.leg.hang_up()


@dataclass(frozen=True, slots=True)
class SipPhone:
    """A phone registered to OmniCC (the latest binding of the agent's SIP account)."""

    stack: SipStack
    contact: str
    peer: Peer
    aor: str
    webrtc: bool = False

    def ring(self, offer_sdp: str, info: CallInfo) -> Ring:
        request = self.stack.request(
            "INVITE", self.contact, to=self.peer,
            from_uri=f"sip:{info.caller or 'anonymous'}@{self.stack.host}",
            from_display=info.caller_name or info.caller, to_uri=self.aor,
            body=offer_sdp.encode(), content_type=SDP,
            headers={"X-OmniCC-Task": info.task_id} if info.task_id else None)
        return SipRing(self.stack.invite(request, self.peer))


# --- the browser softphone -------------------------------------------------------------------


@dataclass(slots=True)
class BrowserLeg:
    phones: BrowserPhones
    tenant_id: str
    agent_id: str
    ring_id: str
    terminated: asyncio.Event = field(default_factory=asyncio.Event)
    lost: bool = False

    async def check(self) -> None:
        """The desk's socket is the keepalive: its close makes the leg lost."""

    async def hang_up(self) -> None:
        if not self.terminated.is_set():
            self.terminated.set()
            self.phones.tell(self.tenant_id, self.agent_id, "call.ended", self.ring_id)
        self.phones.forget(self.ring_id)


class BrowserRing:
    def __init__(self, phones: BrowserPhones, tenant_id: str, agent_id: str) -> None:
        self.phones = phones
        self.tenant_id = tenant_id
        self.agent_id = agent_id
        self.ring_id = uuid.uuid4().hex
        self.answer: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self.leg: AgentLeg | None = None

    async def answered(self) -> str | None:
        sdp = await self.answer
        if sdp is None:
            self.phones.forget(self.ring_id)
            return None
        self.leg = BrowserLeg(self.phones, self.tenant_id, self.agent_id, self.ring_id)
        self.phones.legs[self.ring_id] = self.leg
        return sdp

    async def cancel(self) -> None:
        if not self.answer.done():
            self.answer.set_result(None)
            self.phones.tell(self.tenant_id, self.agent_id, "call.cancelled", self.ring_id)
        elif self.leg is not None:
            await self.leg.hang_up()


@dataclass(frozen=True, slots=True)
class BrowserPhone:
    phones: BrowserPhones
    tenant_id: str
    agent_id: str
    webrtc: bool = True

    def ring(self, offer_sdp: str, info: CallInfo) -> Ring:
        ring = BrowserRing(self.phones, self.tenant_id, self.agent_id)
        self.phones.rings[ring.ring_id] = ring
        self.phones.bus.publish(self.tenant_id, [agent_topic(self.agent_id)], Notice(
            "call.ringing", {"ring_id": ring.ring_id, "sdp": offer_sdp, "caller": info.caller,
                             "caller_name": info.caller_name, "task_id": info.task_id,
                             "call_id": info.call_id, "outbound": info.outbound}))
        return ring


class BrowserPhones:
    """Which agents have their desk's softphone switched on, and the browser calls in flight.

    A desk says `phone.online` when its softphone is ready; closing the desk (its socket) says
    `offline`. An agent with several desks open counts as online while any of them is.
    """

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._online: dict[tuple[str, str], int] = {}
        self.rings: dict[str, BrowserRing] = {}
        self.legs: dict[str, BrowserLeg] = {}

    def online(self, tenant_id: str, agent_id: str) -> None:
        key = (tenant_id, agent_id)
        self._online[key] = self._online.get(key, 0) + 1

    def offline(self, tenant_id: str, agent_id: str) -> None:
        key = (tenant_id, agent_id)
        left = self._online.get(key, 0) - 1
        if left > 0:
            self._online[key] = left
            return
        self._online.pop(key, None)
        for ring in list(self.rings.values()):
            if (ring.tenant_id, ring.agent_id) == key and not ring.answer.done():
                ring.answer.set_result(None)
        for leg in list(self.legs.values()):
            if (leg.tenant_id, leg.agent_id) == key:
                leg.lost = True
                leg.terminated.set()
                self.forget(leg.ring_id)

    def is_online(self, tenant_id: str, agent_id: str) -> bool:
        return (tenant_id, agent_id) in self._online

    def phone(self, tenant_id: str, agent_id: str) -> BrowserPhone | None:
        if not self.is_online(tenant_id, agent_id):
            return None
        return BrowserPhone(self, tenant_id, agent_id)

    def answer(self, tenant_id: str, agent_id: str, ring_id: str, sdp: str) -> bool:
        ring = self._ring_of(tenant_id, agent_id, ring_id)
        if ring is None or ring.answer.done():
            return False
        ring.answer.set_result(sdp)
        return True

    def decline(self, tenant_id: str, agent_id: str, ring_id: str) -> bool:
        ring = self._ring_of(tenant_id, agent_id, ring_id)
        if ring is None or ring.answer.done():
            return False
        ring.answer.set_result(None)
        return True

    def hang_up(self, tenant_id: str, agent_id: str, ring_id: str) -> bool:
        """The agent hung up in the browser."""
        leg = self.legs.get(ring_id)
        if leg is None or (leg.tenant_id, leg.agent_id) != (tenant_id, agent_id):
            return self.decline(tenant_id, agent_id, ring_id)
        leg.terminated.set()
        self.forget(ring_id)
        return True

    def lose(self, tenant_id: str, agent_id: str, ring_id: str) -> bool:
        """The desk that answered went away without hanging up: the leg is lost (the caller
        goes back in line)."""
        leg = self.legs.get(ring_id)
        if leg is None or (leg.tenant_id, leg.agent_id) != (tenant_id, agent_id):
            return False
        leg.lost = True
        leg.terminated.set()
        self.forget(ring_id)
        return True

    def tell(self, tenant_id: str, agent_id: str, kind: str, ring_id: str) -> None:
        self.bus.publish(tenant_id, [agent_topic(agent_id)], Notice(kind, {"ring_id": ring_id}))

    def forget(self, ring_id: str) -> None:
        self.rings.pop(ring_id, None)
        self.legs.pop(ring_id, None)

    def _ring_of(self, tenant_id: str, agent_id: str, ring_id: str) -> BrowserRing | None:
        ring = self.rings.get(ring_id)
        if ring is None or (ring.tenant_id, ring.agent_id) != (tenant_id, agent_id):
            return None
        return ring

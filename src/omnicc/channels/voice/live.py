"""What an agent's live call is to the desk's controls and to supervision, whichever way it
was placed: a customer's call (`InboundCall`) or the agent's own call to a customer
(`OutboundCall`, a callback's or the dial pad's).

The two differ in where the customer is in the media. An inbound call's first leg in
rtpengine (`MediaCall`'s "caller") is the customer, and agents are connected behind it; an
agent-first outbound call's first leg is the agent's and the customer is the party behind
it (`agent_first`). Hold (music to the customer) and supervision (whom a whisper reaches)
follow that; everything else is the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from abc import ABC, abstractmethod
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, Generic, Protocol, TypeVar

from omnicc.core.errors import Conflict

if TYPE_CHECKING:
    from omnicc.app.runtime import TenantRuntime
    from omnicc.app.voice import VoiceContact
    from omnicc.channels.voice.consult import Consult
    from omnicc.channels.voice.devices import AgentLeg
    from omnicc.channels.voice.media.bridge import MediaCall
    from omnicc.channels.voice.service import VoiceService
    from omnicc.channels.voice.sip.dialog import Dialog
    from omnicc.channels.voice.sip.message import SipResponse
    from omnicc.channels.voice.trunk import Trunk


class CallTimes(Protocol):
    """The times of a call's record that the shared controls keep or show."""

    answered_at: datetime | None
    hold_started: float | None
    hold_s: float


Figures = TypeVar("Figures", bound=CallTimes)


class LiveCall(ABC, Generic[Figures]):
    """The desk's in-call controls shared by inbound and outbound calls (the subclasses set
    the attributes in their constructors)."""

    @property
    def agent_first(self) -> bool:
        """True when the agent's leg is the media's first leg (outbound): the customer is then
        the party, and hears the music on hold."""
        return False
    direction: ClassVar[str] = "inbound"

    service: VoiceService
    runtime: TenantRuntime
    call_id: str
    media: MediaCall
    agent_leg: AgentLeg | None
    agent_id: str | None
    contact: VoiceContact | None
    connected: asyncio.Event
    ended: asyncio.Event
    figures: Figures
    consult: Consult | None
    caller: str
    """The customer's number (E.164 when known)."""
    caller_name: str
    dialled: str
    """The tenant's number: the one called (inbound) or shown (outbound)."""

    @abstractmethod
    async def _write_record(self) -> None:
        """Save the call's record as it stands."""

    @abstractmethod
    async def hang_up_by_agent(self) -> None:
        """The agent ends the call from the desk."""

    async def customer_first(self) -> None:
        """Before a consult: the customer is the media's first leg, so the consulted party
        joins the customer's side (an inbound call's already is; hold stays as it was)."""

    @abstractmethod
    async def adopt_consulted(self, leg: AgentLeg, *, agent_id: str | None,
                              number: str | None) -> None:
        """A consult transfer completed: the consulted party's leg (the customer talks with
        it already) is the call's agent leg now, the consulting agent's leg ends."""

    async def _ring_number(self, trunk: Trunk, e164: str, *, caller_id: str,
                           caller_name: str = "", agent_tag: str | None) -> Dialog:
        """Dial `e164` through the trunk as a new media party while the customer hears music;
        answered -> its dialog, the customer bridged to it; not answered -> the customer is
        back with `agent_tag` and a Conflict says why."""
        tag = f"external-{uuid.uuid4().hex[:12]}"
        invite = trunk.invite(e164, caller_id=caller_id, sdp=await self.media.offer_to(tag),
                              caller_name=caller_name)
        final: SipResponse | None
        try:
            final = await invite.final()
            reason = f"{final.status} {final.reason}"
        except Exception as error:
            final, reason = None, str(error) or type(error).__name__
        if final is None or not 200 <= final.status < 300 or invite.dialog is None:
            with contextlib.suppress(Exception):
                await self.media.stop_play()
            if agent_tag is not None:
                await self.media.return_to(agent_tag)
            raise Conflict(f"{e164} did not answer: {reason}")
        await self.media.stop_play()
        await self.media.answered_by(tag, final.body.decode(errors="replace"))
        return invite.dialog

    async def hold(self) -> None:
        """The customer hears music; customer and agent no longer hear each other."""
        if not self.connected.is_set() or self.media.on_hold:
            raise Conflict("the call is not connected, or already on hold")
        await self.media.hold(self.service.music, party_hears=self.agent_first)
        self.figures.hold_started = time.monotonic()
        await self._write_record()

    async def resume(self) -> None:
        if not self.media.on_hold:
            raise Conflict("the call is not on hold")
        await self.media.resume()
        self._count_hold()
        await self._write_record()

    def _count_hold(self) -> None:
        """The hold going on (if any) ends now: its time counts (also at hang-up on hold)."""
        if self.figures.hold_started is not None:
            self.figures.hold_s += time.monotonic() - self.figures.hold_started
            self.figures.hold_started = None

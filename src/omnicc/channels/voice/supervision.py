"""A supervisor on a live call: listen (silent), whisper (only the agent hears them) or
barge (a three-way call), switching between them at will.

While nobody supervises, caller and agent talk directly through rtpengine: no Python in
the media path.  A supervision rings the supervisor's phone first; once it is answered the
call moves into OmniCC's mixer (`omnicc.channels.voice.media.mixer`) without any phone
renegotiating:

    caller --rtpengine-- [mixer: caller port]          (caller's re-offer, same port)
    agent  --rtpengine-- [mixer: agent port]           (agent side's re-offer, same port)
    supervisor --rtpengine (own call)-- [mixer: supervisor port]

The mode is the mixer's "who hears whom" matrix, so switching is instant.  When the
supervisor leaves (or hangs up), the call goes back to the direct path and the mixer
stops; when the call itself changes (it ends, the agent hangs up, is lost or transfers),
the supervision ends and the call controller does what it always does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from enum import StrEnum
from typing import Protocol

from omnicc.app.voice import VoiceContact
from omnicc.channels.voice.devices import AgentLeg, CallInfo, Device, Ring
from omnicc.channels.voice.media.bridge import MediaCall, PhoneMedia, g711_codecs
from omnicc.channels.voice.media.mixer import AGENT, CALLER, SUPERVISOR, Mixer, Mode
from omnicc.channels.voice.media.ng import NgClient
from omnicc.core.errors import Conflict

__all__ = ["Mode", "SupervisedCall", "Supervision", "SupervisionState", "Supervisions"]

log = logging.getLogger("omnicc.voice.supervision")


class SupervisedCall(Protocol):
    """What supervision uses of a call (`InboundCall` and `OutboundCall` are ones, see
    `live.LiveCall`)."""

    @property
    def agent_first(self) -> bool:
        """The agent's leg is the media's first one (an outbound call, not transferred): the
        mixer's roles swap, so a whisper still reaches the agent only."""
    call_id: str
    media: MediaCall
    agent_leg: AgentLeg | None
    connected: asyncio.Event
    ended: asyncio.Event
    contact: VoiceContact | None


class SupervisionState(StrEnum):
    RINGING = "ringing"
    ACTIVE = "active"
    ENDED = "ended"


class Supervision:
    """One supervisor on one call, from ringing their phone to hanging it up."""

    def __init__(self, call: SupervisedCall, device: Device, client: NgClient, *,
                 supervisor_id: str, mode: Mode, host: str = "127.0.0.1") -> None:
        self.call = call
        self.device = device
        self.client = client
        self.supervisor_id = supervisor_id
        self.mode = mode
        self.host = host
        self.state = SupervisionState.RINGING
        self.end_reason: str | None = None
        self.mixer: Mixer | None = None
        self.done = asyncio.Event()
        self._key = uuid.uuid4().hex[:10]
        self._phone = PhoneMedia(client, f"{call.call_id}~supervisor-{self._key}")
        self._ring: Ring | None = None
        self._leave = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Ring the supervisor's phone; the rest happens in the background (see `done`)."""
        if not self.call.connected.is_set() or self.call.ended.is_set():
            raise Conflict("the call is not connected")
        if self.call.agent_leg is None:
            raise Conflict("the call has no agent")
        consult = getattr(self.call, "consult", None)
        if consult is not None and consult.active:
            raise Conflict("the agent is consulting on this call; supervise it afterwards")
        self._task = asyncio.create_task(self._run(), name=f"supervise-{self.call.call_id}")

    def switch(self, mode: Mode) -> None:
        self.mode = mode
        if self.mixer is not None:
            self.mixer.set_mode(mode)

    async def stop(self) -> None:
        """The supervisor leaves: their phone is hung up, the call goes back to direct."""
        self._leave.set()
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        agent_leg = self.call.agent_leg
        assert agent_leg is not None
        try:
            async with Mixer(self.host) as mixer:
                self.mixer = mixer
                supervisor_leg = await self._ring_supervisor(mixer)
                if supervisor_leg is None:
                    return
                if not await self._divert(mixer, agent_leg):
                    return
                self.state = SupervisionState.ACTIVE
                self.end_reason = await self._until_over(supervisor_leg, agent_leg)
                if self.end_reason in ("left", "supervisor hung up"):
                    await self._undivert(agent_leg)
        except Exception:
            log.exception("voice: supervising call %s failed", self.call.call_id)
            self.end_reason = "failed"
            await self._undivert(agent_leg)
        finally:
            self.mixer = None
            await self._release()
            self.state = SupervisionState.ENDED
            self.done.set()

    async def _ring_supervisor(self, mixer: Mixer) -> AgentLeg | None:
        port = await mixer.add(SUPERVISOR)
        offer = await self._phone.offer(port.sdp(), webrtc=self.device.webrtc)
        contact = self.call.contact
        info = CallInfo(call_id=self._phone.call_id, caller="", task_id=contact.task_id
                        if contact is not None else "",
                        caller_name="Supervised call")  # the wallboard shows the mode
        self._ring = self.device.ring(offer, info)
        answered = asyncio.ensure_future(self._ring.answered())
        leave = asyncio.ensure_future(self._leave.wait())
        ended = asyncio.ensure_future(self.call.ended.wait())
        try:
            await asyncio.wait({answered, leave, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            leave.cancel()
            ended.cancel()
        if not answered.done():
            self.end_reason = "left" if self._leave.is_set() else "call ended"
            await self._ring.cancel()
            answered.cancel()
            return None
        answer = answered.result()
        if answer is None or self._ring.leg is None:
            self.end_reason = "supervisor did not answer"
            return None
        port.connect(await self._phone.answered(answer))
        return self._ring.leg

    async def _divert(self, mixer: Mixer, agent_leg: AgentLeg) -> bool:
        """Move the call's two sides into the mixer (no phone renegotiates)."""
        call = self.call
        if (call.ended.is_set() or call.agent_leg is not agent_leg
                or agent_leg.terminated.is_set() or self._leave.is_set()):
            self.end_reason = "left" if self._leave.is_set() else "call changed"
            return False
        to_caller, to_agent = await call.media.divert_offer(
            f"mix-caller-{self._key}", f"mix-agent-{self._key}")
        # "caller" and "agent" are the media's first leg and its party; the mixer's roles
        # are the customer's and the agent's.
        first, party = (AGENT, CALLER) if call.agent_first else (CALLER, AGENT)
        caller = await mixer.add(first, payload_type=g711_codecs(to_caller)[0],
                                 event_payload_type=g711_codecs(to_caller)[1])
        agent = await mixer.add(party, payload_type=g711_codecs(to_agent)[0],
                                event_payload_type=g711_codecs(to_agent)[1])
        caller.connect(to_caller)
        agent.connect(to_agent)
        mixer.set_mode(self.mode)
        mixer.start()
        await call.media.divert_answer(caller.sdp(), agent.sdp())
        return True

    async def _until_over(self, supervisor_leg: AgentLeg, agent_leg: AgentLeg) -> str:
        reasons = {
            asyncio.ensure_future(self._leave.wait()): "left",
            asyncio.ensure_future(supervisor_leg.terminated.wait()): "supervisor hung up",
            asyncio.ensure_future(agent_leg.terminated.wait()): "agent left",
            asyncio.ensure_future(self.call.ended.wait()): "call ended",
        }
        try:
            done, _ = await asyncio.wait(reasons, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in reasons:
                waiter.cancel()
        return next(reasons[waiter] for waiter in reasons if waiter in done)

    async def _undivert(self, agent_leg: AgentLeg) -> None:
        """Caller and agent talk directly again (if the call is still theirs and mixed)."""
        call = self.call
        diversion = call.media.diversion or call.media.pending_diversion
        if (diversion is None or not diversion.caller_side.endswith(self._key)
                or call.ended.is_set() or call.agent_leg is not agent_leg
                or agent_leg.terminated.is_set()):
            return
        try:
            await call.media.undivert()
        except Exception:
            log.exception("voice: call %s could not leave the mixer", call.call_id)

    async def _release(self) -> None:
        if self._ring is not None:
            with contextlib.suppress(Exception):
                await self._ring.cancel()
        with contextlib.suppress(Exception):
            await self._phone.delete()


class Supervisions:
    """The supervisions of live calls, one at a time per call (the latest is kept after it
    ends, so its supervisor can see why, until the call ends)."""

    def __init__(self) -> None:
        self._by_call: dict[str, Supervision] = {}

    def latest(self, call_id: str) -> Supervision | None:
        return self._by_call.get(call_id)

    def of_call(self, call_id: str) -> Supervision | None:
        """The call's supervision in progress (ringing or active)."""
        supervision = self._by_call.get(call_id)
        if supervision is None or supervision.state is SupervisionState.ENDED:
            return None
        return supervision

    def start(self, call: SupervisedCall, device: Device, client: NgClient, *,
              supervisor_id: str, mode: Mode, host: str = "127.0.0.1") -> Supervision:
        """Ring the supervisor to supervise ``call`` in ``mode``; 409 if someone else is."""
        current = self.of_call(call.call_id)
        if current is not None:
            raise Conflict("the call is already supervised")
        supervision = Supervision(call, device, client, supervisor_id=supervisor_id,
                                  mode=mode, host=host)
        supervision.start()
        for call_id in [k for k, v in self._by_call.items() if v.call.ended.is_set()]:
            del self._by_call[call_id]
        self._by_call[call.call_id] = supervision
        return supervision

    async def stop_all(self) -> None:
        for supervision in list(self._by_call.values()):
            await supervision.stop()
        self._by_call.clear()

"""Attended (consult) transfer and three-way conference of a connected call, inbound or
outbound (any `LiveCall`).

The agent talking with a caller consults another agent or an external number (through the
carrier trunk).  The caller is put on hold (music) and the consulted party's phone rings;
once it answers, the call moves into OmniCC's mixer (`media/mixer.py`), like a supervised
call, with no re-INVITE to anyone:

    caller --rtpengine-- [mixer: caller]    hears nobody (rtpengine plays music on hold)
    agent  --rtpengine-- [mixer: agent]     hears the target
    target --rtpengine-- [mixer: target]    hears the agent

The target's leg lives in the *caller's* rtpengine call (an offer from the mixer port's tag
to the target's tag), so completing the transfer connects caller and target directly in
rtpengine - the caller's port and the target's port both stay - and the mixer stops.  Then:

* **complete**: the caller talks with the target, the agent's leg ends.  An agent target
  takes the routing task by the engine's own transfer (`Engine.transfer` to that agent; the
  offer it makes is accepted at once instead of ringing again); an external number completes
  the task, as the blind external transfer does.  The call record counts the transfer and
  logs it with kind ``consult``.
* **conference**: the caller leaves hold, everyone hears everyone (the mixer's
  `CONFERENCE`); the agent may then complete (leave) or cancel (drop the target).
* **cancel**: the target's leg ends, the call leaves the mixer, caller and agent talk again.

The target not answering (30 s, declined, busy) or hanging up puts the agent back with the
caller, and the desk is told why (`call.consult` notices).  The agent hanging up while
talking with the answered target completes the transfer (as on a PBX); while it still rings,
the call ends as any hang-up.  The caller hanging up ends the whole call: the consult exists
for that caller, so the target's leg is hung up too.

"Caller" is the customer, whichever way the call was placed: an agent's outbound call first
makes the customer its media's first leg (`LiveCall.customer_first`, as its blind transfer
does), so the target joins the customer's side and the mixer's ports keep their roles.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from omnicc.bus import Notice
from omnicc.channels.voice.devices import AgentLeg, CallInfo, Ring, SipRing, agent_topic
from omnicc.channels.voice.media.bridge import g711_codecs
from omnicc.channels.voice.media.mixer import AGENT, CALLER, CONFERENCE, CONSULT, TARGET, Mixer
from omnicc.core import events as ev
from omnicc.core.engine import Engine
from omnicc.core.errors import Conflict, NotFound
from omnicc.core.model import VOICE

if TYPE_CHECKING:
    from omnicc.channels.voice.live import LiveCall

__all__ = ["RING_TIMEOUT_S", "Consult", "ConsultState", "ConsultTarget", "is_consulted",
           "next_free_agent", "start_consult"]

log = logging.getLogger("omnicc.voice.consult")

RING_TIMEOUT_S = 30.0
"""How long the consulted party's phone rings before the agent is back with the caller."""
NOTICE = "call.consult"


class ConsultState(StrEnum):
    RINGING = "ringing"
    CONSULTING = "consulting"
    CONFERENCE = "conference"
    COMPLETED = "completed"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class ConsultTarget:
    """Who is consulted: an agent of the tenant, or an E.164 number through the trunk."""

    name: str
    agent_id: str | None = None
    number: str | None = None
    queue_id: str | None = None
    """The queue whose next free agent was chosen (a consult "to a queue")."""

    def view(self) -> dict[str, Any]:
        return {"kind": "agent" if self.agent_id is not None else "number",
                "agent_id": self.agent_id, "number": self.number, "name": self.name,
                "queue_id": self.queue_id}


def _can_take_a_call(engine: Engine, agent_id: str) -> str | None:
    """Why the agent cannot take a voice call now, or None."""
    agent = engine.agent(agent_id)
    if not agent.status.accepts_work:
        return f"{agent.name} is {agent.status.name.replace('_', ' ')}"
    if agent.in_progress.get(VOICE, 0) >= agent.capacity.get(VOICE, 0):
        return f"{agent.name} is busy on another call"
    if any(engine.task(offer.task_id).channel == VOICE for offer in agent.offers.values()):
        return f"{agent.name} is being offered a call"
    return None


def is_consulted(calls: Iterable[LiveCall[Any]], tenant_id: str, agent_id: str) -> bool:
    """Whether the agent is on (or being rung for) a consult: their phone is busy, so an
    offer of another call is declined and the caller keeps their place."""
    return any(call.consult is not None and call.consult.active
               and call.consult.target.agent_id == agent_id
               and call.runtime.tenant_id == tenant_id for call in calls)


async def next_free_agent(call: LiveCall[Any], queue_id: str) -> str:
    """The queue's member who can take a call now and has been idle longest (the queue's own
    order is the routing engine's business: a consult asks for a person now)."""
    engine = call.runtime.routing.engine
    try:
        queue = engine.queue(queue_id)
    except NotFound:
        raise NotFound(f"unknown queue {queue_id!r}") from None
    free = sorted((engine.agent(member) for member in queue.members
                   if member != call.agent_id and _can_take_a_call(engine, member) is None),
                  key=lambda agent: agent.idle_since)
    for agent in free:
        if await call.service.agent_device(call.runtime, agent.id) is not None:
            return agent.id
    raise Conflict(f"nobody in {queue.config.name or queue_id} can take a call now")


async def start_consult(call: LiveCall[Any], *, agent_id: str | None = None,
                        number: str | None = None, queue_id: str | None = None) -> Consult:
    """Put the caller on hold and ring the consulted agent, the next free agent of a queue,
    or a number.

    Conflict (409) when the call cannot be consulted now (not connected, supervised, a
    consult already going on, no trunk, the agent busy or without a phone, nobody free in
    the queue), NotFound (404) for an unknown agent or queue; a number that cannot be dialled
    raises `InvalidNumber`."""
    if (call.contact is None or not call.connected.is_set() or call.ended.is_set()
            or call.agent_leg is None or call.agent_id is None):
        raise Conflict("only a connected call can be consulted")
    if call.consult is not None and call.consult.active:
        raise Conflict("a consult is already in progress on this call")
    if call.media.diversion is not None or call.media.pending_diversion is not None:
        raise Conflict("the call is being supervised; a consult must wait until it ends")
    service, runtime = call.service, call.runtime
    engine = runtime.routing.engine
    consulting = engine.agent(call.agent_id).name
    if queue_id is not None:
        agent_id = await next_free_agent(call, queue_id)
    if agent_id is not None:
        if agent_id == call.agent_id:
            raise Conflict("you cannot consult yourself")
        try:
            name = engine.agent(agent_id).name
        except NotFound:
            raise NotFound(f"unknown agent {agent_id!r}") from None
        why_not = _can_take_a_call(engine, agent_id)
        if why_not is not None:
            raise Conflict(why_not)
        device = await service.agent_device(runtime, agent_id)
        if device is None:
            raise Conflict(f"{name} has no phone online")
        target = ConsultTarget(name=name, agent_id=agent_id, queue_id=queue_id)
        consult = Consult(call, target, consulting=consulting)

        task_id = call.contact.task_id

        def ring(sdp: str) -> Ring:
            # The call's task: once the transfer completes, the target's desk controls the
            # call by it (until then the desk's REST answers 404: not their call yet).
            return device.ring(sdp, CallInfo(
                call_id=f"{call.call_id}~{consult.target_tag}", caller=call.caller,
                caller_name=f"{call.caller_name or call.caller} - consult from {consulting}",
                task_id=task_id))

        await consult.start(ring, webrtc=device.webrtc)
        return consult
    assert number is not None
    outbound = service.outbound
    if outbound is None:
        raise Conflict("no carrier trunk: external consults are off (set sip_trunk)")
    e164 = outbound.trunk.dialable(number)
    consult = Consult(call, ConsultTarget(name=e164, number=e164), consulting=consulting)

    def dial(sdp: str) -> Ring:
        # An inbound caller's own number (as the blind external transfer shows it); an
        # outbound call shows the tenant's number, as its own transfers do.
        caller_id = (call.caller if call.direction == "inbound" and call.caller.startswith("+")
                     else call.dialled)
        return SipRing(outbound.trunk.invite(e164, caller_id=caller_id, sdp=sdp,
                                             caller_name=call.caller_name))

    await consult.start(dial, webrtc=False)
    return consult


class Consult:
    """One consult on one call, from ringing the target to completion or cancellation."""

    def __init__(self, call: LiveCall[Any], target: ConsultTarget, *, consulting: str) -> None:
        self.call = call
        self.target = target
        self.consulting = consulting
        self.agent_id = call.agent_id
        self.state = ConsultState.RINGING
        self.reason: str | None = None
        self.key = uuid.uuid4().hex[:10]
        self.target_tag = f"consult-{self.key}"
        self.local_tag = f"mix-target-{self.key}"
        self.mixer = Mixer(call.service.host)
        self.leg: AgentLeg | None = None
        self.done = asyncio.Event()
        self._agent_leg = call.agent_leg
        self._ring: Ring | None = None
        self._webrtc = False
        self._was_on_hold = False
        self._claimed_offer: str | None = None
        self._handing_over = False
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return self.state in (ConsultState.RINGING, ConsultState.CONSULTING,
                              ConsultState.CONFERENCE)

    def view(self) -> dict[str, Any]:
        return {"state": self.state.value, "target": self.target.view(), "reason": self.reason}

    # --- the consult's life ------------------------------------------------------------------

    async def start(self, ring: Callable[[str], Ring], *, webrtc: bool) -> None:
        """Hold the caller, open the mixer's target port and ring the target through it."""
        call = self.call
        self._webrtc = webrtc
        self._was_on_hold = call.media.on_hold
        call.consult = self
        try:
            await call.customer_first()  # keeps the hold as it was
            if not self._was_on_hold:
                await call.hold()
            # The caller's own G.711 law: once the transfer completes, caller and target talk
            # directly in rtpengine, which does not transcode.
            payload_type, event_type = g711_codecs(call.media.caller_sdp or "")
            port = await self.mixer.add(TARGET, payload_type=payload_type,
                                        event_payload_type=event_type)
            offer = await call.media.side_offer(self.local_tag, self.target_tag, port.sdp(),
                                                webrtc=webrtc)
            self._ring = ring(offer)
        except BaseException:
            self.state, self.reason = ConsultState.ENDED, "failed"
            await self._restore()
            await self.mixer.close()
            self.done.set()
            raise
        self._tell()
        self._task = asyncio.create_task(self._run(), name=f"consult-{call.call_id}")

    async def _run(self) -> None:
        assert self._ring is not None
        try:
            answer, reason = await self._until_answered(self._ring)
            async with self._lock:
                if self.state is not ConsultState.RINGING:
                    with contextlib.suppress(Exception):
                        await self._ring.cancel()
                    return
                if answer is None or self._ring.leg is None:
                    await self._back_to_caller(reason)
                    return
                self.leg = self._ring.leg
                await self._into_mixer(answer)
                self.state = ConsultState.CONSULTING
                self._tell()
            why = await self._until_over()
            async with self._lock:
                if self.active:
                    await self._back_to_caller(why)
        except Exception:
            log.exception("voice: the consult on call %s failed", self.call.call_id)
            async with self._lock:
                if self.active:
                    await self._back_to_caller("failed")
        finally:
            await self.mixer.close()
            self.done.set()

    async def _until_answered(self, ring: Ring) -> tuple[str | None, str]:
        answered = asyncio.ensure_future(ring.answered())
        others = {asyncio.ensure_future(self._stop.wait()): "cancelled",
                  asyncio.ensure_future(self.call.ended.wait()): "the caller hung up"}
        if self._agent_leg is not None:
            others[asyncio.ensure_future(self._agent_leg.terminated.wait())] = "you hung up"
        try:
            done, _ = await asyncio.wait({answered, *others}, timeout=RING_TIMEOUT_S,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in others:
                waiter.cancel()
        if answered not in done:
            answered.cancel()
            with contextlib.suppress(Exception):
                await ring.cancel()
            why = next((others[w] for w in others if w in done), None)
            return None, why or f"{self.target.name} did not answer"
        answer = answered.result()
        if answer is None:
            status = getattr(ring, "status", None)
            detail = f" ({status})" if status else ""
            return None, f"{self.target.name} did not answer{detail}"
        return answer, ""

    async def _into_mixer(self, answer: str) -> None:
        """The target answered: its port is connected and the call's two sides move into the
        mixer (no phone renegotiates); agent and target hear each other only."""
        media, mixer = self.call.media, self.mixer
        mixer.ports[TARGET].connect(await media.side_answer(
            self.local_tag, self.target_tag, answer, webrtc=self._webrtc))
        to_caller, to_agent = await media.divert_offer(f"mix-caller-{self.key}",
                                                       f"mix-agent-{self.key}")
        for name, sdp in ((CALLER, to_caller), (AGENT, to_agent)):
            payload_type, event_type = g711_codecs(sdp)
            port = await mixer.add(name, payload_type=payload_type,
                                   event_payload_type=event_type)
            port.connect(sdp)
        mixer.set_hears(CONSULT)
        mixer.start()
        await media.divert_answer(mixer.ports[CALLER].sdp(), mixer.ports[AGENT].sdp())

    async def _until_over(self) -> str:
        assert self.leg is not None
        reasons = {asyncio.ensure_future(self._stop.wait()): "",
                   asyncio.ensure_future(self.leg.terminated.wait()):
                       f"{self.target.name} hung up",
                   asyncio.ensure_future(self.call.ended.wait()): "the caller hung up"}
        try:
            done, _ = await asyncio.wait(reasons, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in reasons:
                waiter.cancel()
        return next(reasons[waiter] for waiter in reasons if waiter in done)

    async def _back_to_caller(self, reason: str) -> None:
        """The consult is over without a transfer: the target's leg ends, and the agent
        talks with the caller again (off hold unless the caller was on hold before)."""
        self.state, self.reason = ConsultState.ENDED, reason
        self._stop.set()
        if self._ring is not None:
            with contextlib.suppress(Exception):
                await self._ring.cancel()
        await self._restore()
        self._tell()

    async def _restore(self) -> None:
        call, media = self.call, self.call.media
        if call.ended.is_set() or call.agent_leg is not self._agent_leg:
            return
        try:
            if media.diversion is not None or media.pending_diversion is not None:
                await media.undivert()
            if media.on_hold and not self._was_on_hold:
                await call.resume()
        except Exception:
            log.exception("voice: call %s could not go back to its agent", call.call_id)

    # --- the agent's actions -------------------------------------------------------------------

    async def complete(self) -> None:
        """Caller and target talk directly, the agent leaves; the task goes to the target."""
        async with self._lock:
            if self.state not in (ConsultState.CONSULTING, ConsultState.CONFERENCE):
                raise Conflict("the consulted party has not answered" if self.state is
                               ConsultState.RINGING else "no consult in progress")
            assert self.leg is not None
            call = self.call
            if call.contact is None:
                raise Conflict("the call has no routing task")
            task_id = call.contact.task_id
            if self.target.agent_id is not None:
                await self._hand_over(task_id, self.target.agent_id)
            else:
                with contextlib.suppress(Conflict, NotFound):
                    await call.runtime.routing.run(lambda engine: engine.complete(task_id))
            if call.media.on_hold:
                await call.resume()
            await call.media.connect_side_party(self.target_tag)
            self.state = ConsultState.COMPLETED
            self._stop.set()
            # Told before the agent's leg ends: their desk says "transferred", not "ended".
            self._tell()
            await call.adopt_consulted(self.leg, agent_id=self.target.agent_id,
                                       number=self.target.number)

    async def _hand_over(self, task_id: str, agent_id: str) -> None:
        """The engine's transfer to the target agent; its offer is accepted at once (the
        target is already on the line), see `claim`."""
        def hand_over(engine: Engine) -> list[ev.Event]:
            why_not = _can_take_a_call(engine, agent_id)
            if why_not is not None:
                raise Conflict(f"{why_not}: the call cannot be handed over now")
            return engine.transfer(task_id, agent_id=agent_id)

        self._handing_over = True
        try:
            await self.call.runtime.routing.run(hand_over)
        finally:
            self._handing_over = False
        offer_id, self._claimed_offer = self._claimed_offer, None
        if offer_id is None or not await self.call.runtime.voice.accept(offer_id):
            log.warning("voice: call %s: the engine did not offer the task to %s at once",
                        self.call.call_id, agent_id)

    def claim(self, event: ev.OfferCreated) -> bool:
        """True for the engine's offer to the target during the hand-over (the call must
        not ring the target's phone again)."""
        if self._handing_over and event.agent_id == self.target.agent_id:
            self._claimed_offer = event.offer_id
            return True
        return False

    async def conference(self) -> None:
        """All three hear each other (the caller leaves hold)."""
        async with self._lock:
            if self.state is not ConsultState.CONSULTING:
                raise Conflict("the consulted party has not answered" if self.state is
                               ConsultState.RINGING else "no consult to turn into a conference")
            if self.call.media.on_hold:
                await self.call.resume()
            self.mixer.set_hears(CONFERENCE)
            self.state = ConsultState.CONFERENCE
            self._tell()

    async def cancel(self) -> None:
        """The target's leg ends (or stops ringing); the agent is back with the caller."""
        async with self._lock:
            if not self.active:
                raise Conflict("no consult in progress")
            await self._back_to_caller("cancelled")

    async def agent_left(self, leg: AgentLeg) -> bool:
        """The consulting agent hung up: with the target on the line the transfer completes
        (True); otherwise the consult ends and so does the call (False)."""
        if leg is not self._agent_leg or not self.active:
            return False
        if self.state in (ConsultState.CONSULTING, ConsultState.CONFERENCE):
            try:
                await self.complete()
                return True
            except Exception:
                log.exception("voice: call %s: completing on hang-up failed", self.call.call_id)
        async with self._lock:
            if self.active:
                await self._back_to_caller("you hung up")
        return False

    async def end(self) -> None:
        """The call is over: release the target and the mixer (tear-down)."""
        async with self._lock:
            if self.active:
                self.state, self.reason = ConsultState.ENDED, "the caller hung up"
                self._stop.set()
                if self._ring is not None:
                    with contextlib.suppress(Exception):
                        await self._ring.cancel()
                self._tell()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._task)

    def _tell(self) -> None:
        """The consulting agent's desk follows the consult."""
        if self.agent_id is None or self.call.contact is None:
            return
        self.call.service.center.bus.publish(
            self.call.runtime.tenant_id, [agent_topic(self.agent_id)],
            Notice(NOTICE, {"task_id": self.call.contact.task_id, **self.view(),
                            "on_hold": self.call.media.on_hold}))

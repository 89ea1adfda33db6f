"""One customer call through OmniCC, from the INVITE to the last BYE (the B2BUA's core).

An inbound call is answered at once with OmniCC's media (rtpengine, connected to OmniCC's
sink), so the IVR can speak; the caller's leg never changes after that: agents are connected
and disconnected behind it in rtpengine (`MediaCall`), never with a re-INVITE to the caller.

    INVITE -> 200 (sink) -> IVR flow -> queue: music, position announcements
           -> the engine offers the task to an agent -> INVITE to the agent's phone
           -> answered: the engine's offer is accepted, caller and agent hear each other
           -> either side hangs up: BYE to the other, the task completes (wrap-up follows)

The call follows its routing task through `VoiceDesk.watch`-style callbacks: an offer rings
the agent's phone, an offer withdrawn (timed out, rescinded) cancels the ringing, and a phone
that cannot ring rejects the offer so the caller keeps their place and the next agent is
tried. A call detail record is written when the call starts and completed when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.app.voice import VoiceContact, normalize_phone
from omnicc.channels.voice.consult import is_consulted
from omnicc.channels.voice.devices import AgentLeg, CallInfo, Ring, SipLeg
from omnicc.channels.voice.ivr.flow import CallbackNode, Prompt
from omnicc.channels.voice.ivr.inbound import InboundRoute
from omnicc.channels.voice.ivr.interpreter import (
    AbandonedOutcome,
    CallbackOutcome,
    CallContext,
    CallEnded,
    FlowOutcome,
    HangupOutcome,
    QueueOutcome,
    VoicemailOutcome,
    ask_callback_time,
    run_flow,
)
from omnicc.channels.voice.live import LiveCall
from omnicc.channels.voice.media.bridge import MediaCall
from omnicc.channels.voice.media.dtmf import DtmfEvent, parse_dtmf_info
from omnicc.channels.voice.refer import agent_phone_requests
from omnicc.channels.voice.sip.dialog import Dialog
from omnicc.channels.voice.sip.message import uri_user
from omnicc.channels.voice.sip.stack import IncomingRequest
from omnicc.core import events as ev
from omnicc.core.errors import Conflict, NotFound
from omnicc.store.repositories import Queues
from omnicc.store.tables import CallRecord, Customer

if TYPE_CHECKING:
    from omnicc.app.runtime import TenantRuntime
    from omnicc.channels.voice.consult import Consult
    from omnicc.channels.voice.service import VoiceService

log = logging.getLogger("omnicc.voice.calls")

ANNOUNCE_EVERY_S = 30.0
CALLBACK_CHOICE = ("Press 1 to be called back when it is your turn, "
                   "press 2 to choose a time.")
CHOICE_TIMEOUT_S = 5.0
"""Silence after the callback choice: a callback at the caller's place in line (1)."""
BEEP_S = 0.4
SDP = "application/sdp"


def _now() -> datetime:
    return datetime.now(UTC)


def _user_of(uri: str) -> str:
    """The user part of a SIP URI (`sip:+3581234@host` -> `+3581234`), else the URI's body."""
    return uri_user(uri) or uri.partition(":")[2].split(";", 1)[0]


def _spoken_time(at: datetime, zone: ZoneInfo) -> str:
    """A callback time as the caller typed it: local hours and minutes, today or tomorrow
    (the time question only ever gives the next 24 hours)."""
    local = at.astimezone(zone)
    day = "today" if local.date() == _now().astimezone(zone).date() else "tomorrow"
    return f"{local:%H:%M} {day}"


async def finish_despite_cancellation(work: Awaitable[None]) -> None:
    """Run `work` to its end even when the awaiting task is cancelled meanwhile (once or
    more); the cancellation is raised again afterwards. For a call's durable last writes."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done() and task.cancelled():
                raise
            cancelled = True
    task.result()
    if cancelled:
        raise asyncio.CancelledError


@dataclass(slots=True)
class Ringing:
    """An agent's phone being rung for an offer."""

    offer_id: str
    agent_id: str
    tag: str
    ring: Ring | None = None
    withdrawn: bool = False


@dataclass(slots=True)
class CallFigures:
    """What the call detail record says, collected as the call goes."""

    started_at: datetime = field(default_factory=_now)
    queued_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    hold_started: float | None = None
    hold_s: float = 0.0
    transfers: int = 0
    transfer_log: list[dict[str, Any]] = field(default_factory=list)
    """Each transfer: kind (blind, external, consult), the target and when."""
    lost_agents: int = 0
    hangup_side: str | None = None
    outcome: str = "in_progress"
    recording_path: str | None = None


class InboundCall(LiveCall[CallFigures]):
    """A caller's call: their SIP dialog, the media, the IVR, the queue and the agent leg
    (hold, resume and what the desk and supervision use: `LiveCall`)."""

    def __init__(self, service: VoiceService, runtime: TenantRuntime,
                 incoming: IncomingRequest, route: InboundRoute) -> None:
        self.service = service
        self.runtime = runtime
        self.incoming = incoming
        self.route = route
        message = incoming.message
        self.call_id = message.call_id
        self.caller_uri = message.from_.uri
        self.caller_name = message.from_.display_name or ""
        self.caller = normalize_phone(_user_of(self.caller_uri))
        self.dialled = route.number  # the number, also when a carrier names it only in To
        self.media = MediaCall(service.media_client, self.call_id, sink_host=service.host)
        self.dialog: Dialog | None = None
        self.agent_leg: AgentLeg | None = None
        self.agent_id: str | None = None
        self.contact: VoiceContact | None = None
        self.customer_id: str | None = None
        self.customer: Customer | None = None
        self.figures = CallFigures()
        self.record_id = uuid.uuid4().hex
        self.ivr_path: list[dict[str, Any]] = []
        self.ended = asyncio.Event()
        self.connected = asyncio.Event()
        self._digits: asyncio.Queue[DtmfEvent] = service.dtmf.subscribe(self.call_id)
        self._ringing: dict[str, Ringing] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._announcer: asyncio.Task[None] | None = None
        self._language = "en"
        self._record_calls = False
        self.external: str | None = None
        """The number the call was transferred to, when it left OmniCC's agents."""
        self.consult: Consult | None = None
        """The agent's consult (attended transfer, conference), the latest one."""

    # --- the call's life -------------------------------------------------------------------

    async def run(self) -> None:
        """Answer, run the IVR, then queue or end the call; returns when the call is over."""
        try:
            if not await self._answer():
                return
            # Known from the first moment, so a call that ends in the IVR is in the caller's
            # history too: identified in the transaction of the call's first record.
            await self.service.records.save(self.runtime.tenant_id, self.record_id,
                                            self._new_record, self._fill_record,
                                            before=self._identify_caller)
            assert self.route.flow is not None
            context = CallContext(clock=self.runtime.routing.clock, caller=self.caller,
                                  dialled=self.dialled,
                                  business_hours=self.route.business_hours,
                                  timezone=self.route.timezone)
            outcome = await run_flow(self.route.flow, self, context)
            self.ivr_path = outcome.path_json()
            self._language = outcome.language or self._language
            await self._after_ivr(outcome)
            await self.ended.wait()
        except Exception:
            log.exception("voice: call %s failed", self.call_id)
            self.figures.outcome = "failed"
            self.figures.hangup_side = self.figures.hangup_side or "system"
        finally:
            await self._tear_down()

    async def _answer(self) -> bool:
        message = self.incoming.message
        if not message.body:
            await self.incoming.respond(488, "SDP offer required")
            return False
        await self.media.caller_offer(message.body.decode(errors="replace"),
                                      message.from_.tag or "")
        answer = await self.media.answer_caller_with_sink()
        if self.incoming.cancelled.is_set():
            return False
        await self.incoming.respond(200, body=answer.encode(), content_type=SDP)
        dialog = self.incoming.dialog
        assert dialog is not None
        self.dialog = dialog
        dialog.on_request = self._from_caller
        self._spawn(self._watch_dialog(dialog, "caller"))
        return True

    async def _after_ivr(self, outcome: FlowOutcome) -> None:
        if isinstance(outcome, AbandonedOutcome):
            self.figures.outcome, self.figures.hangup_side = "abandoned", "caller"
            self.ended.set()
        elif isinstance(outcome, QueueOutcome):
            await self._enqueue(outcome)
        elif isinstance(outcome, CallbackOutcome):
            await self.service.request_callback(self.runtime, number=outcome.number,
                                                queue_id=outcome.queue_id, due_at=outcome.at,
                                                record_id=self.record_id, source="ivr",
                                                attributes=dict(outcome.attributes))
            self.figures.outcome = "callback"
            await self._hang_up("system")
        elif isinstance(outcome, VoicemailOutcome):
            await self._take_message(outcome)
        else:
            assert isinstance(outcome, HangupOutcome)
            self.figures.outcome = "hangup"
            await self._hang_up("system")

    async def _take_message(self, outcome: VoicemailOutcome) -> None:
        """Voicemail: a beep, then the caller speaks until `max_s`, the hash key or hang-up.
        The message is the call's recording (the caller's side); a callback request asks an
        agent of the flow's queue to listen and call back."""
        await self.media.play(self.service.beep)
        await self._sleep_alive(BEEP_S)
        await self.media.start_recording()
        self.figures.outcome = "voicemail"
        deadline = asyncio.get_running_loop().time() + outcome.max_s
        while not self.ended.is_set():
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            try:
                if await self._next_digit(left) == "#":
                    break
            except (TimeoutError, CallEnded):
                break
        if not self.ended.is_set():
            await self.media.stop_recording()
            with contextlib.suppress(CallEnded):
                await self.play(Prompt(text="Thank you. We will call you back. Goodbye."),
                                interruptible=False)
        if outcome.queue_id is not None and self.caller:
            await self.service.request_callback(
                self.runtime, number=self.caller, queue_id=outcome.queue_id, due_at=None,
                record_id=self.record_id, source="voicemail",
                attributes={**outcome.attributes, "voicemail": True})
        await self._hang_up("system")

    async def _enqueue(self, outcome: QueueOutcome) -> None:
        voice = self.runtime.voice
        # Identified when the call was answered (one lookup per call).
        customer = self.customer or await voice.identify_caller(self.caller, self.caller_name)
        attributes: dict[str, Any] = {**outcome.attributes, "language": outcome.language,
                                      "dialled": self.dialled}
        # A flow records the calls of a queue by setting `record` before routing to it (its
        # greeting says so: the consent announcement is the flow's own prompt).
        self._record_calls = outcome.attributes.get("record") in (True, "true", "yes", 1)
        self.figures.queued_at = _now()
        await self.media.play(self.service.music, loop=True)
        self.contact = await voice.enqueue(
            customer, queue_id=outcome.queue_id, call_id=self.call_id,
            attributes={k: v for k, v in attributes.items() if v is not None},
            priority=outcome.priority or 0, watcher=self._on_task_event,
            record=self._record_queued)
        if self.contact is not None and not self.connected.is_set():
            self._announcer = asyncio.create_task(self._announce_position())
            if self._can_call_back():
                self._spawn(self._listen_for_callback())

    def _can_call_back(self) -> bool:
        """Virtual hold needs a number to call: not a withheld or internal one."""
        return self.caller.startswith("+")

    async def _listen_for_callback(self) -> None:
        """While in line, the star key trades the wait for a callback at the same place."""
        while not self.connected.is_set() and not self.ended.is_set():
            try:
                digit = await self._next_digit(1.0)
            except (TimeoutError, CallEnded):
                continue
            if digit == "*" and not self.connected.is_set():
                with contextlib.suppress(CallEnded):
                    await self._choose_callback()
                return

    async def _choose_callback(self) -> None:
        """After the star key: a callback at the caller's place in line (1, or no choice) or
        at a time they type (2, the IVR `callback` node's time question). The caller stays in
        line while choosing: an agent who answers meanwhile simply takes the call."""
        if self._announcer is not None:
            self._announcer.cancel()
        key = await self.play(Prompt(text=CALLBACK_CHOICE), interruptible=True)
        if key is None and not self.connected.is_set():
            with contextlib.suppress(TimeoutError):
                key = await self._next_digit(CHOICE_TIMEOUT_S)
        chosen = None
        if key == "2" and not self.connected.is_set():
            chosen = await self._ask_callback_time()
        if self.connected.is_set():
            return
        await self._leave_for_callback(chosen)

    async def _ask_callback_time(self) -> tuple[datetime, ZoneInfo] | None:
        """A time within the queue's business hours and the zone it was typed in, or None
        (no valid time came)."""
        assert self.contact is not None
        async with self.service.database.session() as session:
            queue = await Queues(session, self.runtime.tenant_id).get(self.contact.queue_id)
        context = CallContext(clock=self.runtime.routing.clock, caller=self.caller,
                              dialled=self.dialled, business_hours=self.route.business_hours,
                              timezone=self.route.timezone)
        node = CallbackNode(queue_id=queue.id, ask_time=True,
                            business_hours_id=queue.business_hours_id,
                            invalid_prompt=Prompt(text="We are closed at that time, or it is "
                                                       "not a time of day."))
        at = await ask_callback_time(self, context, node, language=self._language)
        hours = self.route.business_hours.get(queue.business_hours_id or "")
        return None if at is None else (at, ZoneInfo(hours.timezone if hours
                                                     else self.route.timezone))

    async def _leave_for_callback(self, chosen: tuple[datetime, ZoneInfo] | None) -> None:
        """The task leaves the line (cancelled: not an abandon) for a callback request: at
        the caller's place in line when `chosen` is None, else at the chosen time."""
        assert self.contact is not None
        task_id = self.contact.task_id
        try:
            task = self.runtime.routing.engine.task(task_id)
        except NotFound:
            return
        arrived_at, priority = task.enqueued_at, task.priority
        await self.runtime.routing.run(
            lambda engine: engine.cancel(task_id, "the caller asked to be called back"))
        await self.service.request_callback(
            self.runtime, number=self.caller, queue_id=self.contact.queue_id,
            due_at=chosen[0] if chosen else None, record_id=self.record_id, source="queue",
            # A booked time is a new arrival then, like the widget's booked callbacks (its
            # wait counts from that time, not from this call).
            attributes={"priority": priority} if chosen else
            {"arrived_at": arrived_at, "priority": priority})
        self.figures.outcome = "callback"
        if self._announcer is not None:
            self._announcer.cancel()
        text = ("Thank you. You keep your place in line, and we will call you back. Goodbye."
                if chosen is None else
                f"Thank you. We will call you back at {_spoken_time(*chosen)}. Goodbye.")
        with contextlib.suppress(CallEnded):
            await self.play(Prompt(text=text), interruptible=False)
        await self._hang_up("system")

    async def _announce_position(self) -> None:
        """Every `ANNOUNCE_EVERY_S` while waiting: the caller's place and the expected wait."""
        assert self.contact is not None
        engine = self.runtime.routing.engine
        while not self.connected.is_set() and not self.ended.is_set():
            await asyncio.sleep(self.service.announce_every_s)
            if self.connected.is_set() or self.ended.is_set():
                return
            try:
                position = engine.task_position(self.contact.task_id)
            except Conflict:  # offered to an agent right now: out of line, first to be served
                text = "Please hold, we are connecting you."
            except NotFound:
                return
            else:
                text = f"You are number {position.position} in line."
                if position.ewt_s is not None and position.ewt_s >= 60:
                    minutes = round(position.ewt_s / 60)
                    unit = "minute" if minutes == 1 else "minutes"
                    text += f" Your expected wait is about {minutes} {unit}."
                if self._can_call_back():
                    text += " To keep your place and be called back, press star."
            try:
                await self.play(Prompt(text=text), interruptible=False)
            except CallEnded:
                return
            if not self.connected.is_set() and not self.ended.is_set():
                await self.media.play(self.service.music, loop=True)

    # --- the routing task ------------------------------------------------------------------

    def _on_task_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.OfferCreated):
            if self.consult is not None and self.consult.claim(event):
                return  # the consulted agent takes the call: they are on the line already
            ringing = Ringing(event.offer_id, event.agent_id, f"agent-{event.offer_id[:12]}")
            self._ringing[event.offer_id] = ringing
            self._spawn(self._ring(ringing))
        elif isinstance(event, ev.OfferTimedOut | ev.OfferRescinded | ev.OfferRejected):
            withdrawn = self._ringing.get(event.offer_id)
            if withdrawn is not None:
                withdrawn.withdrawn = True
                if withdrawn.ring is not None:
                    self._spawn(withdrawn.ring.cancel())
        elif (isinstance(event, ev.TaskEnded) and not self.connected.is_set()
              and not self.ended.is_set()):
            # The engine gave up on the task (its policy ran out): nobody will answer.
            self.figures.outcome = event.outcome
            self._spawn(self._goodbye())

    async def _goodbye(self) -> None:
        with contextlib.suppress(CallEnded):
            await self.play(Prompt(text="Sorry, nobody can take your call now. Please call "
                                        "again later. Goodbye."), interruptible=False)
        await self._hang_up("system")

    async def _ring(self, ringing: Ringing) -> None:
        """Ring the agent's phone for an offer; answered -> accept and connect."""
        voice = self.runtime.voice
        if is_consulted(self.service.live_calls(self.runtime.tenant_id), self.runtime.tenant_id,
                        ringing.agent_id):
            await voice.reject(ringing.offer_id, "on a consult")
            return
        device = await self.service.agent_device(self.runtime, ringing.agent_id)
        if device is None:
            await voice.reject(ringing.offer_id, "no phone")
            return
        if ringing.withdrawn or self.ended.is_set():
            return
        sdp = await self.media.offer_to(ringing.tag, webrtc=device.webrtc)
        info = CallInfo(call_id=self.call_id, caller=self.caller, caller_name=self.caller_name,
                        task_id=self.contact.task_id if self.contact else "")
        ring = device.ring(sdp, info)
        ringing.ring = ring
        answer = await ring.answered()
        self._ringing.pop(ringing.offer_id, None)
        if answer is None:
            if not ringing.withdrawn:
                await voice.reject(ringing.offer_id, "phone did not answer")
            await self._restore_media()
            return
        # The caller may also hang up while the acceptance commits: then the call's tear-down
        # ends the task, and the agent must not be connected to nobody (found under load).
        # The record says answered from the acceptance's transaction on; a caller who left
        # meanwhile is written over at the call's end.
        answered_at = self.figures.answered_at or _now()

        async def record_answered(session: AsyncSession) -> None:
            await self._record_in(session, answered=(ringing.agent_id, answered_at))

        if (self.ended.is_set() or not await voice.accept(ringing.offer_id,
                                                          record=record_answered)
                or self.ended.is_set()):
            # Answered too late (the caller left, the offer timed out): release the phone.
            await ring.cancel()
            await self._restore_media()
            return
        assert ring.leg is not None
        await self._connect(ringing.agent_id, ringing.tag, answer, ring.leg,
                            answered_at=answered_at)

    async def _connect(self, agent_id: str, tag: str, answer: str, leg: AgentLeg, *,
                       answered_at: datetime) -> None:
        """Caller and agent hear each other; the record says so already (written with the
        acceptance)."""
        self.agent_leg = leg
        self.agent_id = agent_id
        if self._announcer is not None:
            self._announcer.cancel()
        self.connected.set()
        with contextlib.suppress(Exception):
            await self.media.stop_play()
        await self.media.answered_by(tag, answer)
        if self.figures.answered_at is None:
            self.figures.answered_at = answered_at
        self.figures.outcome = "answered"
        if self._record_calls and self.media.recording is None:
            await self.start_recording()
        self._take_phone_requests(leg)
        self._spawn(self._watch_agent(leg))

    async def _watch_agent(self, leg: AgentLeg) -> None:
        """Probe the agent's leg while it is connected; a hang-up ends the call, a lost leg
        puts the caller back at their place in line for the next agent."""
        while not leg.terminated.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.service.keepalive_s):
                    await leg.terminated.wait()
            # An external party (through the carrier) is not probed: the carrier's dialog is
            # its business, and the caller ends the call when the line goes dead.
            if not leg.terminated.is_set() and self.external is None:
                await leg.check()
        if self.agent_leg is not leg or self.ended.is_set():
            return
        if self.consult is not None and await self.consult.agent_left(leg):
            return  # hung up while consulting: the consulted party has the caller now
        if leg.lost and self.external is None:
            await self._agent_lost()
        else:
            self._ended_by("agent")

    async def _agent_lost(self) -> None:
        assert self.contact is not None
        log.warning("voice: call %s lost agent %s; back in line", self.call_id, self.agent_id)
        self.agent_leg, self.agent_id = None, None
        self.connected.clear()
        self.figures.lost_agents += 1
        with contextlib.suppress(Exception):
            await self.media.back_to_sink()
        await self.media.play(self.service.music, loop=True)
        task_id = self.contact.task_id
        await self.runtime.routing.run(lambda engine: engine.requeue(task_id))
        self._announcer = asyncio.create_task(self._announce_position())
        await self._write_record()

    async def _restore_media(self) -> None:
        """After a failed ring, the caller goes back to the sink (music keeps playing)."""
        if self.ended.is_set() or self.connected.is_set():
            return
        with contextlib.suppress(Exception):
            await self.media.back_to_sink()

    # --- the agent's controls (desk REST) ------------------------------------------------------

    async def hang_up_by_agent(self) -> None:
        """The agent ends the call from the desk: BYE to the caller (at tear-down) and the
        agent's own phone released now."""
        leg = self.agent_leg
        if self.consult is not None and self.consult.active and leg is not None:
            # As when the phone hangs up: with the consulted party on the line the transfer
            # completes, while it still rings the call ends (`Consult.agent_left`).
            await leg.hang_up()
            return
        self._ended_by("agent")
        if leg is not None and not leg.terminated.is_set():
            await leg.hang_up()

    async def start_recording(self) -> None:
        """Record the call from now on (both sides); the WAV is made when the call ends."""
        if self.media.recording is not None and self.media.recording.stopped_at is None:
            raise Conflict("the call is already being recorded")
        await self.media.start_recording()

    async def stop_recording(self) -> None:
        if self.media.recording is None or self.media.recording.stopped_at is not None:
            raise Conflict("the call is not being recorded")
        await self.media.stop_recording()

    async def transfer(self, *, queue_id: str | None = None, agent_id: str | None = None) -> None:
        """Blind transfer: the agent's leg ends, the caller hears music and the task goes to
        the queue or the agent (the engine offers it, this call rings the new agent)."""
        if self.contact is None or not self.connected.is_set():
            raise Conflict("only a connected call can be transferred")
        if self.media.on_hold:
            await self.resume()
        task_id = self.contact.task_id
        await self.runtime.routing.run(
            lambda engine: engine.transfer(task_id, queue_id=queue_id, agent_id=agent_id))
        leg, self.agent_leg = self.agent_leg, None
        self.agent_id = None
        self.connected.clear()
        self.figures.transfers += 1
        self._log_transfer("blind", agent_id=agent_id, queue_id=queue_id)
        if leg is not None:
            with contextlib.suppress(Exception):
                await leg.hang_up()
        with contextlib.suppress(Exception):
            await self.media.back_to_sink()
        await self.media.play(self.service.music, loop=True)
        await self._write_record()

    async def transfer_to_number(self, number: str) -> None:
        """Transfer to an external number through the carrier trunk. The caller hears music
        while it rings; answered -> the caller talks to that number, the agent's leg ends and
        their task completes (wrap-up follows); not answered -> the caller is back with the
        agent and the error says why."""
        outbound = self.service.outbound
        if outbound is None:
            raise Conflict("no carrier trunk: external transfers are off (set sip_trunk)")
        if self.contact is None or not self.connected.is_set() or self.agent_leg is None:
            raise Conflict("only a connected call can be transferred")
        e164 = outbound.trunk.dialable(number)
        if self.media.on_hold:
            await self.resume()
        agent_tag = self.media.party_tag
        await self.media.play(self.service.music, loop=True)
        dialog = await self._ring_number(
            outbound.trunk, e164, caller_id=self.caller if self.caller.startswith("+")
            else self.dialled, caller_name=self.caller_name, agent_tag=agent_tag)
        task_id = self.contact.task_id
        with contextlib.suppress(Conflict, NotFound):
            await self.runtime.routing.run(lambda engine: engine.complete(task_id))
        leg, self.agent_leg = self.agent_leg, SipLeg(dialog)
        self.figures.transfers += 1
        self._log_transfer("external", number=e164)
        self.external = e164
        with contextlib.suppress(Exception):
            await leg.hang_up()
        self._spawn(self._watch_agent(self.agent_leg))
        await self._write_record()

    async def adopt_consulted(self, leg: AgentLeg, *, agent_id: str | None,
                              number: str | None) -> None:
        """A consult transfer completed: the consulted party's leg is the call's agent leg
        now (the caller is connected to it already), the consulting agent's leg ends."""
        old, self.agent_leg = self.agent_leg, leg
        self.agent_id = agent_id
        if number is not None:
            self.external = number
        self.figures.transfers += 1
        self._log_transfer("consult", agent_id=agent_id, number=number)
        if old is not None:
            with contextlib.suppress(Exception):
                await old.hang_up()
        if number is None:
            self._take_phone_requests(leg)
        self._spawn(self._watch_agent(leg))
        await self._write_record()

    def _take_phone_requests(self, leg: AgentLeg) -> None:
        """An agent's SIP desk phone may transfer the call itself (REFER)."""
        if isinstance(leg, SipLeg):
            agent_phone_requests(self, leg)

    def _log_transfer(self, kind: str, **target: str | None) -> None:
        self.figures.transfer_log.append(
            {"kind": kind, **{k: v for k, v in target.items() if v is not None},
             "at": _now().isoformat()})

    # --- SIP from the two sides --------------------------------------------------------------

    async def _from_caller(self, incoming: IncomingRequest) -> None:
        method = incoming.method
        if method == "BYE":
            await incoming.respond(200)
            self._ended_by("caller")
        elif method == "INFO":
            digit = parse_dtmf_info(incoming.message.body, incoming.message.content_type or "")
            if digit is not None:
                self.service.dtmf.feed(self.call_id, digit, source_tag="caller")
            await incoming.respond(200)
        elif method == "INVITE":
            # A session refresh or the caller's own hold: the media path stays as it is.
            answer = self.dialog_answer()
            await incoming.respond(200, body=answer, content_type=SDP)

    def dialog_answer(self) -> bytes:
        response = self.incoming.response
        return response.body if response is not None else b""

    async def _watch_dialog(self, dialog: Dialog, side: str) -> None:
        await dialog.terminated.wait()
        self._ended_by(side)

    def _ended_by(self, side: str) -> None:
        if self.ended.is_set():
            return
        self.figures.hangup_side = self.figures.hangup_side or side
        if self.figures.outcome == "in_progress":
            self.figures.outcome = "abandoned" if side == "caller" else "ended"
        self.ended.set()

    async def _hang_up(self, side: str) -> None:
        self._ended_by(side)

    # --- CallPort for the IVR ------------------------------------------------------------------

    async def play(self, prompt: Prompt, *, interruptible: bool) -> str | None:
        path = await self.service.prompt_file(self.runtime, prompt, self._language)
        self._check_alive()
        duration_ms = await self.media.play(path)
        wait_s = (duration_ms or 0) / 1000 + 0.2
        if not interruptible:
            await self._sleep_alive(wait_s)
            return None
        try:
            event = await self._next_digit(wait_s)
        except TimeoutError:
            return None
        with contextlib.suppress(Exception):
            await self.media.stop_play()
        return event

    async def collect_digits(self, *, max_digits: int, timeout_s: float,
                             inter_digit_timeout_s: float, terminator: str | None) -> str:
        digits = ""
        wait = timeout_s
        while len(digits) < max_digits:
            try:
                digit = await self._next_digit(wait)
            except TimeoutError:
                break
            if terminator is not None and digit == terminator:
                break
            digits += digit
            wait = inter_digit_timeout_s
        return digits

    async def hangup(self) -> None:
        await self._hang_up("system")

    def _check_alive(self) -> None:
        if self.ended.is_set():
            raise CallEnded

    async def _sleep_alive(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.ended.wait()
        self._check_alive()

    async def _next_digit(self, timeout_s: float) -> str:
        """The caller's next key (from the caller's side only), or TimeoutError."""
        self._check_alive()
        get = asyncio.ensure_future(self._digits.get())
        gone = asyncio.ensure_future(self.ended.wait())
        try:
            done, _ = await asyncio.wait({get, gone}, timeout=timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not get.done():
                get.cancel()
        if get in done:
            return get.result().digit
        self._check_alive()
        raise TimeoutError

    # --- records and the end ---------------------------------------------------------------------

    async def _write_record(self) -> None:
        """Save the call's record as it is now (group commit with other calls' records)."""
        await self.service.records.save(self.runtime.tenant_id, self.record_id,
                                        self._new_record, self._fill_record)

    def _new_record(self) -> CallRecord:
        return CallRecord(id=self.record_id, call_id=self.call_id, direction="inbound",
                          from_number=self.caller, to_number=self.dialled,
                          number_id=self.route.number_id, flow_id=self.route.flow_id,
                          started_at=self.figures.started_at)

    async def _identify_caller(self, session: AsyncSession) -> None:
        customer = await self.runtime.voice.identify_in(session, self.caller, self.caller_name)
        self.customer, self.customer_id = customer, customer.id

    async def _record_in(self, session: AsyncSession, *, contact: VoiceContact | None = None,
                         answered: tuple[str, datetime] | None = None) -> None:
        """Save the call's record in a routing command's transaction: as it is now, or as
        it will be once the command is committed (its contact, its agent answering)."""
        await self.service.records.write(
            session, self.runtime.tenant_id, self.record_id, self._new_record,
            lambda row: self._fill_record(row, contact=contact, answered=answered))

    async def _record_queued(self, session: AsyncSession, contact: VoiceContact) -> None:
        await self._record_in(session, contact=contact)

    def _fill_record(self, row: CallRecord, *, contact: VoiceContact | None = None,
                     answered: tuple[str, datetime] | None = None) -> None:
        """The row as the figures say; `contact` and `answered` (the agent and when) are
        what the routing command being committed will make true."""
        figures = self.figures
        contact = contact or self.contact
        agent_id, answered_at, outcome = self.agent_id, figures.answered_at, figures.outcome
        if answered is not None:
            agent_id, answered_at, outcome = answered[0], answered_at or answered[1], "answered"
        queue_s = 0.0
        if figures.queued_at is not None:
            end = answered_at or figures.ended_at or _now()
            queue_s = max(0.0, (end - figures.queued_at).total_seconds())
        talk_s = 0.0
        if answered_at is not None and figures.ended_at is not None:
            talk_s = max(0.0, (figures.ended_at - answered_at).total_seconds())
        row.contact_id = contact.contact_id if contact else None
        row.conversation_id = contact.conversation_id if contact else None
        row.customer_id = self.customer_id
        row.queue_id = contact.queue_id if contact else None
        row.agent_id = agent_id
        row.ivr_path = list(self.ivr_path)
        row.answered_at = answered_at
        row.ended_at = figures.ended_at
        row.queue_s = round(queue_s, 3)
        row.talk_s = round(talk_s, 3)
        row.hold_s = round(figures.hold_s, 3)
        row.transfers = figures.transfers
        row.hangup_side = figures.hangup_side
        row.outcome = outcome
        row.recording_path = figures.recording_path
        row.details = {**(row.details or {}), "lost_agents": figures.lost_agents,
                       "transferred_to": self.external,
                       "transfer_log": list(figures.transfer_log)}

    async def _tear_down(self) -> None:
        try:
            await self._release_legs()
        finally:
            # Also when the service stops mid-way (cancelling this task): the task, the
            # media and the record are settled, or the agent stays busy and the record open.
            await finish_despite_cancellation(self._settle())

    async def _release_legs(self) -> None:
        """Stop ringing, end the consult, BYE to whoever did not hang up."""
        if self._announcer is not None:
            self._announcer.cancel()
        for ringing in list(self._ringing.values()):
            ringing.withdrawn = True
            if ringing.ring is not None:
                with contextlib.suppress(Exception):
                    await ringing.ring.cancel()
        if self.consult is not None:
            await self.consult.end()
        side = self.figures.hangup_side
        if self.dialog is not None and side != "caller":
            with contextlib.suppress(Exception):
                await self.dialog.bye()
        if self.agent_leg is not None and side != "agent":
            with contextlib.suppress(Exception):
                await self.agent_leg.hang_up()
        if not self.incoming.answered:
            with contextlib.suppress(Exception):
                await self.incoming.respond(480 if self.incoming.cancelled.is_set() is False
                                            else 487)

    async def _settle(self) -> None:
        """The durable end: the routing task, the media (and its recording), the record."""
        self.figures.ended_at = _now()
        self.figures.hangup_side = side = self.figures.hangup_side or "system"
        self._count_hold()
        recorded = False
        if self.contact is not None:
            recorded = await self._end_task(side)
        with contextlib.suppress(Exception):
            await self.media.delete()
        if self.media.recording is not None:
            recorded = False  # its file is known once kept
            try:
                self.figures.recording_path = await self.service.keep_recording(
                    self.runtime.tenant_id, self.record_id, self.media.recording)
            except Exception:
                log.exception("voice: the recording of call %s could not be kept", self.call_id)
        if not recorded:
            with contextlib.suppress(Exception):
                await self._write_record()
        self.service.dtmf.unsubscribe(self.call_id)
        for task in self._background:
            task.cancel()
        self.service.forget(self)

    async def _end_task(self, side: str) -> bool:
        """End the call's task, with the record in the same transaction; True when the record
        was saved so. A record that cannot be saved does not keep the task from ending."""
        assert self.contact is not None
        voice = self.runtime.voice
        try:
            await voice.hung_up(self.contact, side=side, record=self._record_in)
            return True
        except Exception:
            log.exception("voice: ending the task of call %s with its record failed",
                          self.call_id)
        try:
            await voice.hung_up(self.contact, side=side)
        except Exception:
            log.exception("voice: ending the task of call %s failed", self.call_id)
        return False

    def _spawn(self, work: Awaitable[Any]) -> None:
        async def guarded() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("voice: call %s background work failed", self.call_id)

        task = asyncio.create_task(guarded())
        self._background.add(task)
        task.add_done_callback(self._background.discard)


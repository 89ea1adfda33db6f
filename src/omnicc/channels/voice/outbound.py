"""Outbound calls, agent first: the agent's phone rings, then the customer is dialled.

Contact centers dial this way so that no customer answers to silence: the agent is on the line
(hearing the carrier's ringback or early media) before the customer's phone rings.

    INVITE (no SDP) -> agent's phone; its 200 carries the agent's offer, our ACK the answer
    -> rtpengine: the agent is the call's first leg (`MediaCall.caller_offer`), on OmniCC's sink
    -> INVITE to the number through the trunk with the SDP of `MediaCall.offer_to("customer")`
    -> 183 with SDP: `answered_by` at once, the agent hears the carrier's ringback
       (the desk shows the progress: OmniCC plays no ringback of its own, because phones drop
       the carrier's stream after a stream rtpengine played, see docs/voice.md)
    -> 200: connected; busy / no answer / failure: the agent is told (spoken), the leg ends
    -> either side hangs up: BYE to the other

Why a late offer to the agent: `MediaCall` keeps its first leg's port for the whole call and
connects every other party behind it, which needs that leg's *offer*. The agent's phone gives
one in its 200 when the INVITE has none (RFC 3261 §13.2.1), so rtpengine never needs a
placeholder. SIP desk phones and baresip answer such INVITEs. The desk's browser softphone
(rung instead while it is on, as for inbound calls) only answers offers: OmniCC's sink offers
to it (WebRTC), and its answer is then re-offered from its side to the customer in plain RTP
(`MediaCall.browser_first_offer`/`browser_first_answer`).

Each call writes a call record (direction "outbound") and, unless the caller of this module
already has one (a callback's task), a voice contact in a new conversation, so the call is in
the customer's history, and an agent-initiated routing task (`TaskRequest.agent_id`): the
agent's from the start, it holds their voice capacity (no chat or call is offered meanwhile)
and completes at hang-up, so wrap-up follows as for any call. Progress goes to the agent's
desk as `call.outbound` notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.app.callbacks import (
    CallbackAttempt,
    CallbackDialler,
    CallbackOffer,
    CallbackPolicy,
    CallbackScheduler,
)
from omnicc.app.voice import VOICE, VoiceContact
from omnicc.bus import Notice
from omnicc.channels.voice.calls import Ringing
from omnicc.channels.voice.consult import is_consulted
from omnicc.channels.voice.devices import (
    AgentLeg,
    BrowserPhone,
    CallInfo,
    SipLeg,
    SipPhone,
    agent_topic,
)
from omnicc.channels.voice.live import LiveCall
from omnicc.channels.voice.media.bridge import MediaCall
from omnicc.channels.voice.media.rtp import PayloadType
from omnicc.channels.voice.sip.dialog import Dialog
from omnicc.channels.voice.sip.message import SipResponse
from omnicc.channels.voice.sip.stack import IncomingRequest, OutgoingInvite
from omnicc.channels.voice.sip.transaction import TransactionError
from omnicc.channels.voice.trunk import InvalidNumber, Trunk
from omnicc.core import events as ev
from omnicc.core.errors import Conflict, NotFound
from omnicc.core.model import TaskPhase, TaskRequest
from omnicc.store.repositories import (
    CallRecords,
    Contacts,
    Conversations,
    VoiceNumbers,
)
from omnicc.store.tables import CallRecord, Contact, Conversation, Customer, Task

if TYPE_CHECKING:
    from omnicc.app.runtime import TenantRuntime
    from omnicc.channels.voice.service import VoiceService

log = logging.getLogger("omnicc.voice.outbound")

SDP = "application/sdp"
AGENT_TAG = "agent"
CUSTOMER_TAG = "customer"
AGENT_RING_TIMEOUT_S = 30.0
NOTICE = "call.outbound"

BUSY = frozenset({486, 600})
NO_ANSWER = frozenset({408, 480, 487})
FAILURE_WORDS = {
    "busy": "The number is busy.",
    "no_answer": "There is no answer.",
    "failed": "The call could not be connected.",
    "invalid_number": "That number cannot be dialled.",
}


def _now() -> datetime:
    return datetime.now(UTC)


def outcome_of(status: int) -> str:
    """A final SIP status of the customer's leg as the call record's outcome."""
    if 200 <= status < 300:
        return "answered"
    if status in BUSY:
        return "busy"
    if status in NO_ANSWER:
        return "no_answer"
    return "failed"


@dataclass(slots=True)
class DialResult:
    """How an outbound call went.

    `outcome`: answered, busy, no_answer, failed, invalid_number (nothing was dialled),
    agent_unavailable (the agent's phone did not answer or cannot take the call), cancelled
    (the agent hung up before the customer answered, or the offer was withdrawn)."""

    outcome: str
    record_id: str
    sip_status: int | None = None
    reason: str = ""
    agent_answered: bool = False
    hangup_side: str | None = None
    talk_s: float = 0.0


@dataclass(slots=True)
class _Figures:
    started_at: datetime = field(default_factory=_now)
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    hold_started: float | None = None
    hold_s: float = 0.0


class OutboundCall(LiveCall[_Figures]):
    """One agent-first call to a number through the trunk; connected, the agent holds,
    resumes and hangs it up from the desk and supervisors listen in as on any call
    (`LiveCall`: the agent's leg is the media's first one, the customer the party).

    `contact`: the voice contact the call belongs to (a callback's, with its routed task); None
    opens one with the agent's own task (`start`).
    `queue_id`: the queue the call is for: its caller ID and its task's queue. None shows the
    default caller ID and puts the task in the queue of the default outbound number, else in
    the first of the agent's queues.
    `label`: what the agent's phone shows while it rings ("Call to <number>" by default).
    `on_agent_answer`: asked once the agent answered, before the customer is dialled; False
    (the offer behind the call is gone) hangs up on the agent.
    `withdrawn`: set by the owner to stop ringing the agent (the offer timed out).
    """

    direction = "outbound"
    agent_id: str

    def __init__(self, service: VoiceService, runtime: TenantRuntime, trunk: Trunk, *,
                 agent_id: str, number: str, queue_id: str | None,
                 contact: VoiceContact | None = None, label: str = "",
                 on_agent_answer: Callable[[], Awaitable[bool]] | None = None,
                 on_customer_answer: Callable[[], Awaitable[None]] | None = None,
                 withdrawn: asyncio.Event | None = None,
                 details: dict[str, Any] | None = None) -> None:
        self.service = service
        self.runtime = runtime
        self.trunk = trunk
        self.agent_id = agent_id
        self.raw_number = number
        self.number = number
        self.queue_id = queue_id
        self.caller_id_queue_id = queue_id
        self.contact = contact
        self.label = label
        self.on_agent_answer = on_agent_answer
        self.on_customer_answer = on_customer_answer
        self.withdrawn = withdrawn or asyncio.Event()
        self.details = dict(details or {})
        self.call_id = f"{uuid.uuid4().hex}@{service.host}"
        self.record_id = uuid.uuid4().hex
        self.media = MediaCall(service.media_client, self.call_id, sink_host=service.host)
        self.agent_dialog: Dialog | None = None
        self.agent_leg: AgentLeg | None = None
        """The agent's side (a SIP dialog or the browser's leg): `terminated` when they hang
        up."""
        self.customer_dialog: Dialog | None = None
        self.customer_invite: OutgoingInvite | None = None
        self.customer_id: str | None = contact.customer_id if contact else None
        self.caller_id = ""
        self.caller, self.caller_name, self.dialled = number, "", ""
        self.consult = None
        self.external: str | None = None
        """The number the call was transferred to, when it left OmniCC's agents."""
        self.number_id: str | None = None
        self.connected = asyncio.Event()
        self.ended = asyncio.Event()
        self.figures = _Figures()
        self.result = DialResult("failed", self.record_id)
        self._agent_answer_sdp = b""
        self._customer_offer_sdp = b""
        self._customer_sdp = ""
        self._leg_changed = asyncio.Event()
        self._ringing: dict[str, Ringing] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._own_contact = contact is None
        self._started = False
        self._keeps_record = contact is None
        """A callback's call has its record once the agent answered: an agent who lets it
        ring is not a call (the next agent gets the offer)."""

    # --- the call's life ------------------------------------------------------------------------

    async def run(self) -> DialResult:
        """Ring the agent, dial the customer, carry the call until one side hangs up."""
        try:
            await self._dial()
        except Exception as error:
            log.exception("voice: outbound call %s failed", self.call_id)
            self._finish("failed", reason=str(error) or type(error).__name__, side="system")
        finally:
            await self._tear_down()
        return self.result

    async def hang_up(self) -> None:
        """The agent ends the call from the desk."""
        self.withdrawn.set()
        self._finish(self.result.outcome if self.connected.is_set() else "cancelled",
                     side="agent")

    async def hang_up_by_agent(self) -> None:
        """The desk's in-call Hang up (the calls API's, by the call's task)."""
        leg = self.agent_leg
        if self.consult is not None and self.consult.active and leg is not None:
            # As when the phone hangs up: with the consulted party on the line the transfer
            # completes, while it still rings the call ends (`Consult.agent_left`).
            await leg.hang_up()
            return
        await self.hang_up()

    def media_lost(self, detail: str) -> None:
        """Its rtpengine went away with the call's media: both legs are hung up."""
        self.withdrawn.set()
        self._finish("media_lost", reason=detail, side="system")

    @property
    def agent_first(self) -> bool:
        """Until a blind transfer makes the customer the media's first leg."""
        return self.media.caller_tag != CUSTOMER_TAG

    @property
    def between_agents(self) -> bool:
        """Transferred, and no agent has it: the old agent's leg is gone (`agent_id` still
        names them on the record until a new agent answers, or for good after a transfer to
        a number), so it is not their call."""
        return ((self.agent_leg is None and self.result.agent_answered)
                or self.external is not None)

    # --- blind transfer ------------------------------------------------------------------------

    async def transfer(self, *, queue_id: str | None = None, agent_id: str | None = None) -> None:
        """Blind transfer to an agent or a queue: the customer hears music and stays on the
        line, the agent's leg ends, and the task - a routed one from now on - is offered as
        the engine decides; this call rings whoever gets the offer (`_on_task_event`). The
        customer becomes the media's first leg (`MediaCall.party_becomes_caller`), as on an
        inbound call."""
        task_id = await self._customer_first()
        self.runtime.voice.watch(task_id, self._on_task_event)
        try:
            await self.runtime.routing.run(
                lambda engine: engine.transfer(task_id, queue_id=queue_id, agent_id=agent_id))
        except BaseException:
            with contextlib.suppress(Exception):
                await self.media.stop_play()
                assert self.media.party_tag is not None
                await self.media.return_to(self.media.party_tag)
            raise
        leg, self.agent_leg = self.agent_leg, None
        self.connected.clear()
        self._leg_changed.set()
        self._log_transfer(agent_id=agent_id, queue_id=queue_id)
        if leg is not None:
            with contextlib.suppress(Exception):
                await leg.hang_up()
        await self._write_record()

    async def _customer_first(self) -> str:
        """Before a transfer: the customer becomes the media's first leg and hears music;
        the call's task id."""
        if (self.contact is None or not self.connected.is_set() or self.ended.is_set()
                or self.external is not None):
            raise Conflict("only a connected call can be transferred")
        if self.media.on_hold:
            await self.resume()
        await self.customer_first()
        await self.media.play(self.service.music, loop=True)
        return self.contact.task_id

    async def customer_first(self) -> None:
        """The customer becomes the media's first leg (`MediaCall.party_becomes_caller`: no
        port moves, nobody renegotiates), before a transfer or a consult; a call on hold
        stays on hold. The call watches its task from now on: a consult's hand-over to an
        agent is the engine's transfer, whose offer comes here (`_on_task_event`)."""
        if self.contact is None or self.external is not None:
            raise Conflict("only a connected call can be transferred or consulted on")
        self.runtime.voice.watch(self.contact.task_id, self._on_task_event)
        if self.media.caller_tag == CUSTOMER_TAG:
            return
        on_hold = self.media.on_hold
        if on_hold:
            await self.resume()
        self.media.party_becomes_caller(CUSTOMER_TAG, self._customer_sdp,
                                        self._customer_offer_sdp.decode())
        if on_hold:
            await self.hold()

    async def adopt_consulted(self, leg: AgentLeg, *, agent_id: str | None,
                              number: str | None) -> None:
        """A consult transfer completed: the consulted party's leg is the agent's side now
        (the customer talks with it already), the consulting agent's leg ends. After a
        number, `agent_id` keeps naming the agent who transferred, as a blind transfer's."""
        old, self.agent_leg = self.agent_leg, leg
        if agent_id is not None:
            self.agent_id = agent_id
        if number is not None:
            self.external = number
        self._leg_changed.set()
        self._log_transfer("consult", agent_id=agent_id, number=number)
        if old is not None:
            with contextlib.suppress(Exception):
                await old.hang_up()
        await self._write_record()

    async def transfer_to_number(self, number: str) -> None:
        """Blind transfer to an external number through the trunk: the customer hears music
        while it rings; answered -> the customer talks with it, the agent's leg ends and
        their task completes (wrap-up follows); not answered -> the customer is back with the
        agent and the Conflict says why. InvalidNumber for a number that cannot be dialled."""
        e164 = self.trunk.dialable(number)
        task_id = await self._customer_first()
        agent_tag = self.media.party_tag
        dialog = await self._ring_number(self.trunk, e164, caller_id=self.caller_id,
                                         agent_tag=agent_tag)
        with contextlib.suppress(Conflict, NotFound):
            await self.runtime.routing.run(lambda engine: engine.complete(task_id))
        leg, self.agent_leg = self.agent_leg, SipLeg(dialog)
        self.external = e164
        self._leg_changed.set()
        self._log_transfer("external", number=e164)
        if leg is not None:
            with contextlib.suppress(Exception):
                await leg.hang_up()
        await self._write_record()

    def _log_transfer(self, kind: str = "blind", **target: str | None) -> None:
        log_ = self.details.setdefault("transfer_log", [])
        log_.append({"kind": kind, **{k: v for k, v in target.items() if v is not None},
                     "at": _now().isoformat()})

    def _on_task_event(self, event: ev.Event) -> None:
        """The transferred task's offers ring their agents; a task the engine gives up on
        ends the call."""
        if isinstance(event, ev.OfferCreated):
            if self.consult is not None and self.consult.claim(event):
                return  # the consulted agent takes the call: they are on the line already
            ringing = Ringing(event.offer_id, event.agent_id, f"agent-{event.offer_id[:12]}")
            self._ringing[event.offer_id] = ringing
            self._spawn(self._ring_transferred(ringing))
        elif isinstance(event, ev.OfferTimedOut | ev.OfferRescinded | ev.OfferRejected):
            withdrawn = self._ringing.get(event.offer_id)
            if withdrawn is not None:
                withdrawn.withdrawn = True
                if withdrawn.ring is not None:
                    self._spawn(withdrawn.ring.cancel())
        elif isinstance(event, ev.TaskEnded) and not self.connected.is_set():
            self._finish("answered", status=self.result.sip_status,
                         reason=f"the transferred task ended: {event.outcome}", side="system")

    async def _ring_transferred(self, ringing: Ringing) -> None:
        """Ring the offered agent's phone; answered -> accepted, and the customer talks with
        them (the old agent's tag is blocked)."""
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
        ring = device.ring(sdp, CallInfo(call_id=self.call_id, caller=self.number,
                                         caller_name=self.caller_name,
                                         task_id=self.contact.task_id if self.contact else ""))
        ringing.ring = ring
        answer = await ring.answered()
        self._ringing.pop(ringing.offer_id, None)
        if answer is None:
            if not ringing.withdrawn:
                await voice.reject(ringing.offer_id, "phone did not answer")
            return
        if (self.ended.is_set() or not await voice.accept(ringing.offer_id)
                or self.ended.is_set()):
            await ring.cancel()
            return
        assert ring.leg is not None
        with contextlib.suppress(Exception):
            await self.media.stop_play()
        await self.media.answered_by(ringing.tag, answer)
        self.agent_leg, self.agent_id = ring.leg, ringing.agent_id
        self.connected.set()
        self._leg_changed.set()
        await self._write_record()

    def _spawn(self, work: Awaitable[Any]) -> None:
        async def guarded() -> None:
            try:
                await work
            except Exception:
                log.exception("voice: outbound call %s: a transfer step failed", self.call_id)

        task = asyncio.create_task(guarded())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def start(self) -> None:
        """Before `run`, for the agent's own call: the customer, the call's conversation and
        contact, its task (assigned to the agent at once) and record. Raises InvalidNumber,
        or Conflict when the engine refuses the agent the call (they are on a call already):
        then nothing was written but maybe the customer."""
        self.number = self.trunk.dialable(self.raw_number)
        await self._prepare()
        self._started = True

    async def _dial(self) -> None:
        if not self._started:
            try:
                self.number = self.trunk.dialable(self.raw_number)
            except InvalidNumber as error:
                self._finish("invalid_number", reason=str(error), side="system")
                await self._write_record()
                return
            await self._prepare()
        if not await self._ring_agent():
            return
        self._tell("dialling")
        await self._call_customer()
        if self.connected.is_set():
            await self._converse()
        elif self.result.outcome != "cancelled":
            await self._tell_agent_why()

    async def _prepare(self) -> None:
        """Caller ID, customer, contact and the call record, before anything rings."""
        async with self.service.database.session() as session:
            shown = await VoiceNumbers(session, self.runtime.tenant_id).caller_id_for(
                self.caller_id_queue_id)
        if shown is not None:
            self.caller_id, self.number_id = shown.number, shown.id
        self.caller, self.dialled = self.number, self.caller_id
        if self.queue_id is None:
            self.queue_id = self._default_queue(shown.outbound_queue_id if shown else None)
        if self.contact is None:
            customer = await self.runtime.voice.identify_caller(self.number)
            self.customer_id = customer.id
            self.contact = await self._open_contact(customer)
        await self._write_record()

    # --- the agent's leg -------------------------------------------------------------------------

    async def _ring_agent(self) -> bool:
        """Ring the agent's phone - the desk's browser softphone when it is on, else their
        registered SIP phone; True when answered and media is up."""
        device = await self.service.agent_device(self.runtime, self.agent_id)
        if isinstance(device, BrowserPhone):
            answered = await self._ring_browser(device)
        elif isinstance(device, SipPhone):
            answered = await self._ring_sip_phone(device)
        else:
            self._finish("agent_unavailable", reason="the agent has no registered SIP phone "
                         "and the desk's Phone is off", side="system")
            return False
        if not answered:
            return False
        self.result.agent_answered = True
        self._keeps_record = True
        if self.on_agent_answer is not None and not await self.on_agent_answer():
            self._finish("cancelled", reason="the offer was withdrawn", side="system")
            return False
        assert self.agent_leg is not None
        if self.agent_leg.terminated.is_set():
            self._finish("cancelled", side="agent")
            return False
        return True

    def _label(self) -> str:
        return self.label or f"Call to {self.number}"

    def _not_answered(self, status: int | None) -> None:
        self.details["agent_sip_status"] = status
        self._finish("cancelled" if self.withdrawn.is_set() else "agent_unavailable",
                     reason=f"the agent's phone answered {status}" if status else
                     "the agent's phone did not answer", side="system")

    async def _ring_sip_phone(self, device: SipPhone) -> bool:
        """An INVITE without SDP: the phone's 200 carries its offer (the call's first leg),
        our ACK the answer."""
        request = device.stack.request(
            "INVITE", device.contact, to=device.peer, from_uri=f"sip:{self.number}@"
            f"{device.stack.host}", from_display=self._label(), to_uri=device.aor,
            call_id=self.call_id, headers={"X-OmniCC-Outbound": self.record_id})
        invite = device.stack.invite(request, device.peer, auto_ack=False)
        final = await self._final_or_stop(invite, AGENT_RING_TIMEOUT_S, self.withdrawn)
        if final is None or not 200 <= final.status < 300 or invite.dialog is None:
            self._not_answered(final.status if final is not None else None)
            return False
        dialog = invite.dialog
        self.agent_dialog = dialog
        self.agent_leg = SipLeg(dialog)
        dialog.on_request = self._from_agent
        if not final.body:
            dialog.send_ack(final.cseq.number)
            self._finish("failed", reason="the agent's phone answered without SDP",
                         side="system")
            return False
        offer = one_codec(final.body.decode(errors="replace"), self.trunk.config.codecs)
        await self.media.caller_offer(offer, final.to.tag or AGENT_TAG)
        answer = await self.media.answer_caller_with_sink()
        self._agent_answer_sdp = answer.encode()
        dialog.send_ack(final.cseq.number, body=self._agent_answer_sdp, content_type=SDP)
        return True

    async def _ring_browser(self, device: BrowserPhone) -> bool:
        """The browser only answers offers: OmniCC's sink offers to it (WebRTC, the trunk's
        first codec), and its answer makes it the call's first leg (`MediaCall
        .browser_first_offer`); the customer is then offered from its side, in plain RTP."""
        codec = self.trunk.config.codecs[0].upper() if self.trunk.config.codecs else "PCMU"
        payload_type = PayloadType.PCMA if codec == "PCMA" else PayloadType.PCMU
        offer = await self.media.browser_first_offer(AGENT_TAG, payload_type)
        ring = device.ring(offer, CallInfo(
            call_id=self.call_id, caller=self.number, caller_name=self._label(),
            task_id=self.contact.task_id if self.contact else "", outbound=True))
        answering = asyncio.ensure_future(ring.answered())
        stopped = asyncio.ensure_future(self.withdrawn.wait())
        try:
            done, _ = await asyncio.wait({answering, stopped}, timeout=AGENT_RING_TIMEOUT_S,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        sdp = answering.result() if answering in done else None
        if sdp is None:
            await ring.cancel()  # the desk stops ringing (or the leg that won the race ends)
            answering.cancel()
            self._not_answered(None)
            return False
        self.agent_leg = ring.leg
        await self.media.browser_first_answer(AGENT_TAG, sdp)
        return True

    async def _from_agent(self, incoming: IncomingRequest) -> None:
        if incoming.method == "INVITE":
            # A session refresh or the phone's own hold: the media path stays as it is.
            await incoming.respond(200, body=self._agent_answer_sdp, content_type=SDP)

    # --- the customer's leg ----------------------------------------------------------------------

    async def _call_customer(self) -> None:
        offer = await self.media.offer_to(CUSTOMER_TAG)
        self._customer_offer_sdp = offer.encode()
        invite = self.trunk.invite(self.number, caller_id=self.caller_id, sdp=offer)
        self.customer_invite = invite
        assert self.agent_leg is not None
        early: bytes | None = None
        stop = asyncio.Event()
        watcher = asyncio.create_task(self._stop_when_agent_leaves(stop))
        try:
            async with asyncio.timeout(self.trunk.config.ring_timeout_s):
                async for response in _responses_until(invite, stop):
                    if response.status < 200:
                        if response.body and early is None and response.status > 100:
                            early = response.body
                            self._customer_sdp = early.decode()
                            await self.media.answered_by(CUSTOMER_TAG, self._customer_sdp)
                            self._tell("early_media")
                        continue
                    await self._customer_answered(invite, response, early)
                    return
        except TimeoutError:
            await invite.cancel()
            self._finish("no_answer", status=408, reason="no answer", side="system")
            return
        except TransactionError as error:
            self._finish("failed", reason=str(error), side="system")
            return
        finally:
            watcher.cancel()
        if self.agent_leg.terminated.is_set():
            await invite.cancel()
            self._finish("cancelled", reason="the agent hung up", side="agent")

    async def _stop_when_agent_leaves(self, stop: asyncio.Event) -> None:
        assert self.agent_leg is not None
        agent_gone = asyncio.ensure_future(self.agent_leg.terminated.wait())
        ended = asyncio.ensure_future(self.ended.wait())
        try:
            await asyncio.wait({agent_gone, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            agent_gone.cancel()
            ended.cancel()
        stop.set()

    async def _customer_answered(self, invite: OutgoingInvite, response: SipResponse,
                                 early: bytes | None) -> None:
        if not 200 <= response.status < 300:
            self._finish(outcome_of(response.status), status=response.status,
                         reason=f"{response.status} {response.reason}", side="system")
            return
        self.customer_dialog = invite.dialog
        if self.customer_dialog is not None:
            self.customer_dialog.on_request = self._from_customer
        if response.body and response.body != early:
            if early is not None:
                await self.media.offer_to(CUSTOMER_TAG)
            self._customer_sdp = response.body.decode()
            await self.media.answered_by(CUSTOMER_TAG, self._customer_sdp)
        elif early is None:
            self._finish("failed", status=response.status,
                         reason="the customer's 200 had no SDP", side="system")
            return
        self.figures.answered_at = _now()
        self.result.sip_status = response.status
        self.result.outcome = "answered"
        self.connected.set()
        self._tell("answered")
        if self.on_customer_answer is not None:
            try:
                await self.on_customer_answer()
            except Exception:  # the call goes on; only a restart would miss it
                log.exception("voice: outbound call %s: keeping the answer failed", self.call_id)
        await self._write_record()

    async def _from_customer(self, incoming: IncomingRequest) -> None:
        if incoming.method == "INVITE":
            await incoming.respond(200, body=self._customer_offer_sdp, content_type=SDP)

    async def _converse(self) -> None:
        """Until one side hangs up; the agent's side is whoever has the call now (a transfer
        changes it: the old leg's end is not the call's)."""
        assert self.customer_dialog is not None
        while not self.ended.is_set():
            leg = self.agent_leg
            self._leg_changed.clear()
            waits = {
                asyncio.ensure_future(self.customer_dialog.terminated.wait()): "caller",
                asyncio.ensure_future(self.ended.wait()): "",
                asyncio.ensure_future(self._leg_changed.wait()): "",
            }
            if leg is not None:
                waits[asyncio.ensure_future(leg.terminated.wait())] = "agent"
            try:
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
            sides = {waits[w] for w in done}
            if ("agent" in sides and "caller" not in sides and leg is not None
                    and self.agent_leg is leg and self.consult is not None
                    and await self.consult.agent_left(leg)):
                continue  # hung up while consulting: the consulted party has the customer
            if "caller" in sides or ("agent" in sides and self.agent_leg is leg):
                self._finish("answered", status=self.result.sip_status,
                             side="caller" if "caller" in sides else "agent")

    async def _tell_agent_why(self) -> None:
        """The customer was not reached: the agent hears why, then the leg ends."""
        self._tell("failed")
        leg = self.agent_leg
        if leg is None or leg.terminated.is_set():
            return
        words = FAILURE_WORDS.get(self.result.outcome, FAILURE_WORDS["failed"])
        with contextlib.suppress(Exception):
            path = await self.service.tts.speak(words)
            duration_ms = await self.media.play(path)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout((duration_ms or 2000) / 1000 + 0.5):
                    await leg.terminated.wait()

    # --- ending --------------------------------------------------------------------------------

    def _finish(self, outcome: str, *, status: int | None = None, reason: str = "",
                side: str | None = None) -> None:
        if self.ended.is_set():
            return
        self.result.outcome = outcome
        if status is not None:
            self.result.sip_status = status
        self.result.reason = reason
        self.result.hangup_side = side
        self.ended.set()

    async def _tear_down(self) -> None:
        self.figures.ended_at = _now()
        self._count_hold()
        if self.figures.answered_at is not None:
            self.result.talk_s = max(0.0, (self.figures.ended_at
                                           - self.figures.answered_at).total_seconds())
        for ringing in list(self._ringing.values()):
            ringing.withdrawn = True
            if ringing.ring is not None:
                with contextlib.suppress(Exception):
                    await ringing.ring.cancel()
        if self.consult is not None:
            await self.consult.end()
        invite = self.customer_invite
        if invite is not None and not invite.done:
            with contextlib.suppress(Exception):
                await invite.cancel()
        # Both legs end (a leg that hung up itself is terminated: no BYE goes to it).
        if self.customer_dialog is not None:
            with contextlib.suppress(Exception):
                await self.customer_dialog.bye()
        if self.agent_leg is not None:
            with contextlib.suppress(Exception):
                await self.agent_leg.hang_up()
        if self.result.outcome != "invalid_number":
            self._tell("ended")
        with contextlib.suppress(Exception):
            await self._write_record()
        if self._own_contact and self.contact is not None:
            with contextlib.suppress(Exception):
                await self._close_contact()
            try:
                await self._end_task()
            except Exception:
                log.exception("voice: ending the task of outbound call %s failed", self.call_id)
        with contextlib.suppress(Exception):
            await self.media.delete()

    # --- rows ----------------------------------------------------------------------------------

    async def _open_contact(self, customer: Customer) -> VoiceContact:
        """The call's conversation and contact, and its task in the same transaction."""
        at = _now()
        conversation_id, contact_id = uuid.uuid4().hex, uuid.uuid4().hex
        task_id = uuid.uuid4().hex
        tenant_id = self.runtime.tenant_id

        async def write(session: AsyncSession, events: list[ev.Event]) -> None:
            await Conversations(session, tenant_id).add(Conversation(
                id=conversation_id, customer_id=customer.id,
                subject=f"Call to {self.number}", created_at=at))
            await Contacts(session, tenant_id).add(Contact(
                id=contact_id, conversation_id=conversation_id, customer_id=customer.id,
                channel=VOICE, direction="outbound", queue_id=self.queue_id,
                agent_id=self.agent_id, started_at=at,
                attributes={"call_id": self.call_id, "number": self.number}))

        assert self.queue_id is not None
        request = TaskRequest(
            channel=VOICE, queue=self.queue_id, id=task_id, conversation_id=conversation_id,
            agent_id=self.agent_id,
            attributes={"customer_name": customer.name, "customer_phone": self.number,
                        "contact_id": contact_id, "call_id": self.call_id,
                        "number": self.number, "call_record_id": self.record_id})
        await self.runtime.routing.create_task(request, alongside=write)
        return VoiceContact(conversation_id=conversation_id, contact_id=contact_id,
                            customer_id=customer.id, task_id=task_id, queue_id=self.queue_id)

    def _default_queue(self, number_queue_id: str | None) -> str:
        engine = self.runtime.routing.engine
        known = {queue.config.id for queue in engine.queues()}
        if number_queue_id in known:
            return str(number_queue_id)
        mine = sorted(engine.agent(self.agent_id).queues) or sorted(known)
        if not mine:
            raise Conflict("there is no queue to place the call in")
        return mine[0]

    async def _end_task(self) -> None:
        """Hung up: the agent's task completes, and wrap-up follows as its queue says; a call
        the agent never answered was no work: its task is cancelled."""
        assert self.contact is not None
        task_id = self.contact.task_id
        routing = self.runtime.routing
        try:
            task = routing.engine.task(task_id)
        except NotFound:
            return
        if task.phase in (TaskPhase.WAITING, TaskPhase.OFFERED):
            # Transferred, and the customer hung up before anyone answered.
            await routing.run(lambda engine: engine.abandon(task_id))
            return
        if task.phase is not TaskPhase.ASSIGNED or task.agent_id != self.agent_id:
            return  # ended by someone else
        if self.result.agent_answered:
            await routing.run(lambda engine: engine.complete(task_id))
        else:
            reason = self.result.reason or self.result.outcome
            await routing.run(lambda engine: engine.cancel(task_id, reason))

    async def _close_contact(self) -> None:
        assert self.contact is not None
        at = _now()
        async with self.service.database.session() as session:
            contacts = Contacts(session, self.runtime.tenant_id)
            row = await contacts.get(self.contact.contact_id)
            if row.ended_at is None:
                row.ended_at = at
                row.attributes = {**row.attributes, "outcome": self.result.outcome,
                                  "hangup_side": self.result.hangup_side or "system"}
                await contacts.save(row)
            conversations = Conversations(session, self.runtime.tenant_id)
            conversation = await conversations.get(self.contact.conversation_id)
            if conversation.status == "open":
                conversation.status, conversation.closed_at = "closed", at
                await conversations.save(conversation)

    async def _write_record(self) -> None:
        if not self._keeps_record:
            return
        figures, result = self.figures, self.result
        async with self.service.database.session() as session:
            records = CallRecords(session, self.runtime.tenant_id)
            try:
                row = await records.get(self.record_id)
            except NotFound:
                row = CallRecord(id=self.record_id, call_id=self.call_id, direction="outbound",
                                 started_at=figures.started_at)
            row.from_number = self.caller_id
            row.to_number = self.number
            row.number_id = self.number_id
            row.contact_id = self.contact.contact_id if self.contact else None
            row.conversation_id = self.contact.conversation_id if self.contact else None
            row.customer_id = self.customer_id
            row.queue_id = self.queue_id
            row.agent_id = self.agent_id
            row.answered_at = figures.answered_at
            row.ended_at = figures.ended_at
            row.talk_s = round(result.talk_s, 3)
            row.hold_s = round(figures.hold_s, 3)
            row.transfers = len(self.details.get("transfer_log", []))
            if self.external is not None:
                self.details["transferred_to"] = self.external
            row.hangup_side = result.hangup_side if figures.ended_at else None
            row.outcome = result.outcome if self.ended.is_set() else (
                "answered" if self.connected.is_set() else "in_progress")
            row.details = {**(row.details or {}), **self.details, "sip_status": result.sip_status,
                           "reason": result.reason}
            await records.add(row)

    def _tell(self, state: str) -> None:
        """Progress for the agent's desk."""
        self.service.center.bus.publish(self.runtime.tenant_id, [agent_topic(self.agent_id)],
                                        Notice(NOTICE, {
                                            "record_id": self.record_id, "state": state,
                                            "number": self.number,
                                            "outcome": self.result.outcome,
                                            "sip_status": self.result.sip_status,
                                            "reason": self.result.reason,
                                        }))

    async def _final_or_stop(self, invite: OutgoingInvite, timeout_s: float,
                             stop: asyncio.Event) -> SipResponse | None:
        """The INVITE's final response; on timeout or `stop` it is cancelled (None, or the
        2xx that won the race - then the stack hangs that leg up)."""
        final = asyncio.ensure_future(invite.final())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            done, _ = await asyncio.wait({final, stopped}, timeout=timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if final in done:
            try:
                return final.result()
            except TransactionError:
                return None
        final.cancel()
        with contextlib.suppress(Exception):
            await invite.cancel()
        return None


async def _responses_until(invite: OutgoingInvite,
                           stop: asyncio.Event) -> AsyncIterator[SipResponse]:
    """The INVITE's responses until its final one, or until `stop` is set."""
    responses = invite.responses()
    while True:
        following = asyncio.ensure_future(anext(responses))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            done, _ = await asyncio.wait({following, stopped},
                                         return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            following.cancel()
            raise
        finally:
            stopped.cancel()
        if following not in done:
            following.cancel()
            return
        try:
            response = following.result()
        except StopAsyncIteration:
            return
        yield response
        if response.status >= 200:
            return


def one_codec(sdp: str, preferred: tuple[str, ...]) -> str:
    """The agent's offer narrowed to the first of `preferred` it has (and telephone-event).

    rtpengine relays the codec the customer's side answers, without transcoding; the agent's
    side is answered first, by OmniCC's sink, so both sides must end up with one codec: the
    one the carrier is offered alone. An offer with none of `preferred` is kept as it is."""
    lines = sdp.replace("\r\n", "\n").split("\n")
    names: dict[str, str] = {}
    for line in lines:
        found = _RTPMAP.match(line)
        if found:
            names[found.group(1)] = found.group(2).upper()
    audio = next((i for i, line in enumerate(lines) if line.startswith("m=audio ")), None)
    if audio is None:
        return sdp
    head = lines[audio].split()
    formats = head[3:]
    for pt in formats:
        names.setdefault(pt, _STATIC.get(pt, ""))
    chosen = next((pt for name in preferred for pt in formats if names[pt] == name.upper()),
                  None)
    if chosen is None:
        return sdp
    keep = [pt for pt in formats if pt == chosen or names[pt] == "TELEPHONE-EVENT"]
    out = [*lines[:audio], " ".join([*head[:3], *keep])]
    for line in lines[audio + 1:]:
        attribute = _FORMAT_ATTRIBUTE.match(line)
        if attribute is None or attribute.group(1) in keep:
            out.append(line)
    return "\r\n".join(out)


_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ([\w.-]+)/")
_FORMAT_ATTRIBUTE = re.compile(r"^a=(?:rtpmap|fmtp|rtcp-fb):(\d+)[ \t]")
_STATIC = {"0": "PCMU", "8": "PCMA", "9": "G722", "18": "G729"}


class OutboundCalls:
    """The server's outbound calls through its trunk: agents' calls and callbacks.

    `start` registers to the trunk (when configured) and starts polling due callbacks;
    `callbacks.submit` puts a request made just now in line."""

    def __init__(self, service: VoiceService, trunk: Trunk, *,
                 callback_policy: CallbackPolicy | None = None,
                 callback_poll_s: float = 15.0) -> None:
        self.service = service
        self.trunk = trunk
        self.callbacks = CallbackScheduler(service.database, service.center, self.dialler,
                                           policy=callback_policy, poll_s=callback_poll_s)
        self._calls: dict[str, OutboundCall] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._since = time.time()

    def start(self) -> None:
        self.trunk.start()
        self.callbacks.start()
        task = asyncio.create_task(self._recover_quietly(), name="outbound-recover")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def recover(self) -> int:
        """After a restart: the agents' own calls died with the old process, but their tasks
        were restored assigned, holding the agents' voice slots (no offers would come). Each
        such task older than this object completes as hung up by the system - the contact
        ends, the agent's wrap-up follows; how many did."""
        async with self.service.database.session() as session:
            rows = await session.execute(select(Task.tenant_id).where(
                Task.phase == TaskPhase.ASSIGNED.value, Task.channel == VOICE).distinct())
            tenant_ids = list(rows.scalars())
        ended = 0
        for tenant_id in tenant_ids:
            runtime = await self.service.center.tenant(tenant_id)
            for task in list(runtime.routing.engine.tasks()):
                if (task.initiated_by is None or task.channel != VOICE
                        or task.phase is not TaskPhase.ASSIGNED or task.created_at >= self._since):
                    continue
                await runtime.voice.hung_up(VoiceContact(
                    conversation_id=task.conversation_id or "",
                    contact_id=str(task.attributes.get("contact_id", "")), customer_id="",
                    task_id=task.id, queue_id=task.queue_id), side="system")
                ended += 1
        return ended

    async def _recover_quietly(self) -> None:
        try:
            if count := await self.recover():
                log.info("voice: %d outbound calls lost in a restart were ended", count)
        except Exception:
            log.exception("voice: ending the outbound calls lost in a restart failed")

    async def dial(self, runtime: TenantRuntime, *, agent_id: str, number: str,
                   queue_id: str | None) -> OutboundCall:
        """An agent's call to `number` (the desk's dial pad): its task is assigned to the agent
        before this returns (Conflict when the agent is on a call), then the call runs in the
        background; its progress reaches the agent's desk as `call.outbound` notices.

        `queue_id` None: the default caller ID, and the task goes to the queue of the default
        outbound number, else to the first of the agent's queues."""
        if self.of_agent(runtime.tenant_id, agent_id) is not None:
            raise Conflict("the agent is already on an outbound call")
        talking = runtime.routing.engine.agent(agent_id).tasks.values()
        if any(t.channel == VOICE and t.phase is TaskPhase.ASSIGNED for t in talking):
            raise Conflict("you are on a call already: hang up first")
        call = OutboundCall(self.service, runtime, self.trunk, agent_id=agent_id,
                            number=number, queue_id=queue_id)
        self._calls[call.call_id] = call  # of_agent sees it while its task is made
        try:
            await call.start()
        except BaseException:
            self._calls.pop(call.call_id, None)
            raise
        self._run(call)
        return call

    @property
    def calls(self) -> list[OutboundCall]:
        """The live outbound calls (the service ends those of a lost media engine)."""
        return list(self._calls.values())

    def of_agent(self, tenant_id: str, agent_id: str) -> OutboundCall | None:
        """The agent's live outbound call (the desk's hang-up button uses it)."""
        return next((call for call in self._calls.values()
                     if call.runtime.tenant_id == tenant_id and call.agent_id == agent_id
                     and not call.between_agents),
                    None)

    def dialler(self, runtime: TenantRuntime) -> CallbackDialler:
        """What dials a tenant's callbacks when their tasks are offered to agents."""
        async def dial(offer: CallbackOffer) -> CallbackAttempt:
            if is_consulted(self.service.live_calls(runtime.tenant_id), runtime.tenant_id,
                            offer.agent_id):
                # Their phone is busy with a consult the engine does not know of: declined
                # without ringing (not an attempt), as an inbound call's offer is.
                return CallbackAttempt("declined", reason="on a consult")
            call = OutboundCall(
                self.service, runtime, self.trunk, agent_id=offer.agent_id,
                number=offer.number, queue_id=offer.queue_id, contact=offer.contact,
                label=f"Callback to {offer.number}", on_agent_answer=offer.accept,
                on_customer_answer=offer.customer_answered, withdrawn=offer.withdrawn,
                details={"callback_request_id": offer.request_id})
            self._calls[call.call_id] = call
            try:
                result = await call.run()
            finally:
                self._calls.pop(call.call_id, None)
            return CallbackAttempt(result.outcome, sip_status=result.sip_status,
                                   record_id=result.record_id, hangup_side=result.hangup_side,
                                   reason=result.reason)

        return dial

    async def stop(self) -> None:
        """Stop polling, end the calls in progress, remove the trunk registration."""
        await self.callbacks.stop()
        for call in list(self._calls.values()):
            await call.hang_up()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.trunk.stop()

    def _run(self, call: OutboundCall) -> None:
        self._calls[call.call_id] = call

        async def run() -> None:
            try:
                await call.run()
            finally:
                self._calls.pop(call.call_id, None)

        task = asyncio.create_task(run(), name=f"outbound-{call.call_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

"""The agent's call controls: the desk's REST for the calls the agent is talking on.

REST (`/api/desk/calls`): the agent's live calls, and hold, resume, hang up, blind transfer
and consult (attended transfer, conference; progress on the desk socket as `call.consult`) of
one of them, named by its routing task; outbound calls through the carrier trunk
(the agent's phone first, then the customer; progress on the desk socket as `call.outbound`).
An agent controls only the calls they are talking on: another agent's call is 404, a call
not in a state for the action 409 (on hold already, not on hold, ended), and every route
answers a 503 problem when the server runs without voice.

The browser softphone's signalling rides on the desk's WebSocket (`omnicc.api.desk_phone`).
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field, model_validator

from omnicc.api.auth import require_permission
from omnicc.api.center import tenant_runtime
from omnicc.api.desk import agent_of
from omnicc.app.permissions import Permission
from omnicc.app.principals import Principal
from omnicc.channels.voice.calls import InboundCall
from omnicc.channels.voice.consult import Consult, start_consult
from omnicc.channels.voice.live import LiveCall
from omnicc.channels.voice.outbound import OutboundCall, OutboundCalls
from omnicc.channels.voice.service import VoiceService
from omnicc.channels.voice.trunk import InvalidNumber
from omnicc.core.errors import Conflict, InvalidConfiguration, NotFound

router = APIRouter(prefix="/api/desk/calls", tags=["agent desktop"])

Handler = Annotated[Principal, Depends(require_permission(Permission.HANDLE_CONTACTS))]

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No live call of yours behind this task."},
    409: {"description": "The call is not in a state for this (on hold, not on hold, ended)."},
    503: {"description": "This server runs without voice."},
}


class CallTransfer(BaseModel, extra="forbid"):
    queue_id: str | None = Field(default=None, min_length=1, max_length=64)
    agent_id: str | None = Field(default=None, min_length=1, max_length=64)
    number: str | None = Field(default=None, min_length=1, max_length=64,
                               description="An external number, through the carrier trunk.")

    @model_validator(mode="after")
    def _one_target(self) -> CallTransfer:
        if sum(target is not None for target in (self.queue_id, self.agent_id,
                                                 self.number)) != 1:
            raise ValueError("give exactly one of queue_id, agent_id or number")
        return self


def voice_service(request: Request) -> VoiceService:
    voice: VoiceService | None = getattr(request.app.state, "voice", None)
    if voice is None:
        raise HTTPException(503, "voice is off on this server (no sip_port set)")
    return voice


def call_view(call: LiveCall[Any]) -> dict[str, Any]:
    """One live call as the desk shows it; `since` is when it was answered (epoch seconds),
    the queue is the task's now (a transfer to a queue moves it). `caller` is the customer's
    number and `dialled` the tenant's, also for an outbound call (`direction`)."""
    answered = call.figures.answered_at
    contact = call.contact
    queue_id = contact.queue_id if contact else None
    if contact is not None:
        with contextlib.suppress(NotFound):
            queue_id = call.runtime.routing.engine.task(contact.task_id).queue_id
    return {"task_id": contact.task_id if contact else None, "direction": call.direction,
            "conversation_id": contact.conversation_id if contact else None,
            "queue_id": queue_id,
            "caller": call.caller, "caller_name": call.caller_name, "dialled": call.dialled,
            "since": answered.timestamp() if answered is not None else None,
            "on_hold": call.media.on_hold,
            "consult": call.consult.view() if call.consult is not None and (
                call.consult.active) else None}


def _is_talking(call: LiveCall[Any], agent_id: str) -> bool:
    return (call.agent_id == agent_id and call.connected.is_set()
            and not call.ended.is_set() and call.contact is not None)


async def _my_call(request: Request, principal: Principal, task_id: str) -> LiveCall[Any]:
    """The live call behind the task, if the logged-in agent is the one talking on it."""
    agent_id = await agent_of(request, principal)
    voice = voice_service(request)
    call = voice.call_of_task(principal.tenant_id, task_id)
    if call is None or call.agent_id != agent_id:
        raise NotFound(f"no call of yours behind task {task_id!r}")
    if call.ended.is_set() or not call.connected.is_set():
        raise Conflict("the call is not connected (the customer's phone still rings) or has "
                       "ended")
    return call


# The outbound routes come first: "/outbound/hangup" would otherwise match "/{task_id}/hangup".

class OutboundDial(BaseModel, extra="forbid"):
    number: str = Field(min_length=1, max_length=64, description="The customer's number; "
                        "E.164 or national (read in the trunk's phone_region).")
    queue_id: str | None = Field(default=None, min_length=1, max_length=64,
                                 description="The queue the call is for: its caller ID.")


OUTBOUND_ERRORS: dict[int | str, dict[str, Any]] = {
    409: {"description": "You are on a call already (outbound or inbound)."},
    422: {"description": "Not a number that can be dialled."},
    503: {"description": "This server has no voice, or no carrier trunk (sip_trunk)."},
}


def _outbound(request: Request) -> OutboundCalls:
    outbound = voice_service(request).outbound
    if outbound is None:
        raise HTTPException(503, "outbound calls are off on this server (no sip_trunk set)")
    return outbound


@router.post("/outbound", responses=OUTBOUND_ERRORS, status_code=202,
             summary="Call a customer: your phone rings first, then the customer is dialled")
async def dial(body: OutboundDial, request: Request, principal: Handler) -> dict[str, Any]:
    agent_id = await agent_of(request, principal)
    outbound = _outbound(request)
    try:
        number = outbound.trunk.dialable(body.number)
    except InvalidNumber as error:
        raise InvalidConfiguration(str(error)) from None
    runtime = await tenant_runtime(request, principal)
    call = await outbound.dial(runtime, agent_id=agent_id, number=number,
                               queue_id=body.queue_id)
    contact = call.contact
    return {"record_id": call.record_id, "number": number, "queue_id": call.queue_id,
            "task_id": contact.task_id if contact else None,
            "conversation_id": contact.conversation_id if contact else None}


@router.post("/outbound/hangup", responses=OUTBOUND_ERRORS, status_code=204,
             summary="Hang up your outbound call (ringing or talking)")
async def hang_up_outbound(request: Request, principal: Handler) -> None:
    agent_id = await agent_of(request, principal)
    call = _outbound(request).of_agent(principal.tenant_id, agent_id)
    if call is None:
        raise NotFound("you have no outbound call")
    await call.hang_up()


@router.get("", summary="The agent's live calls")
async def my_calls(request: Request, principal: Handler) -> list[dict[str, Any]]:
    agent_id = await agent_of(request, principal)
    voice = voice_service(request)
    return [call_view(call) for call in voice.live_calls(principal.tenant_id)
            if _is_talking(call, agent_id)]


@router.post("/{task_id}/hold", responses=ERRORS,
             summary="Put the call on hold (the caller hears music)")
async def hold(task_id: str, request: Request, principal: Handler) -> dict[str, Any]:
    call = await _my_call(request, principal, task_id)
    _not_consulting(call)
    await call.hold()
    return call_view(call)


@router.post("/{task_id}/resume", responses=ERRORS, summary="Take the call off hold")
async def resume(task_id: str, request: Request, principal: Handler) -> dict[str, Any]:
    call = await _my_call(request, principal, task_id)
    _not_consulting(call)
    await call.resume()
    return call_view(call)


@router.post("/{task_id}/hangup", responses=ERRORS, status_code=204,
             summary="Hang up the call (wrap-up follows)")
async def hang_up(task_id: str, request: Request, principal: Handler) -> None:
    call = await _my_call(request, principal, task_id)
    leg = call.agent_leg
    await call.hang_up_by_agent()
    # The call's end hangs up the caller; the agent's own phone is released here, since the
    # call takes the agent's side ending as the agent's phone having hung up.
    if leg is not None and not leg.terminated.is_set():
        with contextlib.suppress(Exception):
            await leg.hang_up()


class CallConsult(BaseModel, extra="forbid"):
    agent_id: str | None = Field(default=None, min_length=1, max_length=64)
    queue_id: str | None = Field(default=None, min_length=1, max_length=64,
                                 description="The queue's member free now and idle longest.")
    number: str | None = Field(default=None, min_length=1, max_length=64,
                               description="An external number, through the carrier trunk.")

    @model_validator(mode="after")
    def _one_target(self) -> CallConsult:
        if sum(target is not None for target in (self.agent_id, self.queue_id,
                                                 self.number)) != 1:
            raise ValueError("give exactly one of agent_id, queue_id or number")
        return self


CONSULT_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No live call of yours behind this task, or an unknown agent or "
                         "queue."},
    409: {"description": "Not now, and why: the call is not connected or is supervised, a "
                         "consult is already going on (or none is), the agent is busy or has "
                         "no phone online, nobody in the queue is free, the target has not "
                         "answered, no carrier trunk."},
    422: {"description": "Not one target, or not a number that can be dialled."},
    503: {"description": "This server runs without voice."},
}


def _not_consulting(call: LiveCall[Any]) -> None:
    if call.consult is not None and call.consult.active:
        raise Conflict("a consult is in progress: complete or cancel it first")


@router.post("/{task_id}/consult", responses=CONSULT_ERRORS, status_code=202,
             summary="Consult an agent, a queue's next free agent or an external number: the "
                     "caller is put on hold and the target rings (progress on the desk "
                     "socket as call.consult)")
async def consult(task_id: str, body: CallConsult, request: Request,
                  principal: Handler) -> dict[str, Any]:
    call = await _my_call(request, principal, task_id)
    try:
        await start_consult(call, agent_id=body.agent_id, queue_id=body.queue_id,
                            number=body.number)
    except InvalidNumber as error:
        raise InvalidConfiguration(str(error)) from None
    return call_view(call)


def _consult_of(call: LiveCall[Any]) -> Consult:
    if call.consult is None or not call.consult.active:
        raise Conflict("no consult in progress on this call")
    return call.consult


@router.post("/{task_id}/consult/complete", responses=CONSULT_ERRORS, status_code=204,
             summary="Complete the attended transfer: the caller talks with the consulted "
                     "party, you leave the call")
async def complete_consult(task_id: str, request: Request, principal: Handler) -> None:
    call = await _my_call(request, principal, task_id)
    await _consult_of(call).complete()


@router.post("/{task_id}/consult/conference", responses=CONSULT_ERRORS,
             summary="Make the consult a three-way conference (the caller leaves hold)")
async def conference(task_id: str, request: Request, principal: Handler) -> dict[str, Any]:
    call = await _my_call(request, principal, task_id)
    await _consult_of(call).conference()
    return call_view(call)


@router.delete("/{task_id}/consult", responses=CONSULT_ERRORS,
               summary="Cancel the consult: the consulted party is hung up, you are back "
                       "with the caller")
async def cancel_consult(task_id: str, request: Request, principal: Handler) -> dict[str, Any]:
    call = await _my_call(request, principal, task_id)
    await _consult_of(call).cancel()
    return call_view(call)


@router.post("/{task_id}/transfer", responses=ERRORS, status_code=204,
             summary="Blind transfer to a queue or an agent (the caller hears music "
                     "meanwhile), or to an external number (answered, or 409 with why not)")
async def transfer(task_id: str, body: CallTransfer, request: Request,
                   principal: Handler) -> None:
    call = await _my_call(request, principal, task_id)
    _not_consulting(call)
    assert isinstance(call, InboundCall | OutboundCall)
    if body.number is not None:
        try:
            await call.transfer_to_number(body.number)
        except InvalidNumber as error:
            raise InvalidConfiguration(str(error)) from None
        return
    await call.transfer(queue_id=body.queue_id, agent_id=body.agent_id)

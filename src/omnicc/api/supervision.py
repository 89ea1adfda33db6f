"""The supervisor's API: the live wallboard, watching, whispering, barging, moving work and
people.

`/api/supervisor/ws` sends a `wallboard` frame every second (queues, agents, live
conversations; figures as defined in METRICS.md) and the engine's events as they happen; a
`{"type": "watch", "conversation_id": ...}` frame adds that conversation's messages, whispers
and notes included (silent monitoring: nobody in the chat is told). The socket also carries
the supervisor's browser softphone (`phone.*` and `call.*` frames, as on the desk: see
`omnicc.api.desk_phone`), which rings when they listen to, whisper in or barge into a call.
"""

from __future__ import annotations

from typing import Annotated, Any
from weakref import WeakKeyDictionary

from fastapi import APIRouter, Depends, Request, Response, WebSocket
from pydantic import BaseModel, Field

from omnicc.api.auth import authenticate, require_permission
from omnicc.api.calls import voice_service
from omnicc.api.center import tenant_runtime
from omnicc.api.database import request_database
from omnicc.api.desk import MessageIn, StatusChange, Transfer, conversation_view
from omnicc.api.desk_phone import DeskPhone
from omnicc.api.live_socket import CLOSE_POLICY, serve_live_socket
from omnicc.app.chats import agent_topic, conversation_topic
from omnicc.app.permissions import Permission, has_permission, require
from omnicc.app.principals import Forbidden, Principal, Unauthenticated
from omnicc.app.runtime import EVENTS_TOPIC, WALLBOARD_TOPIC, TenantRuntime
from omnicc.bus import Notice
from omnicc.channels.voice.devices import Device
from omnicc.channels.voice.service import VoiceService
from omnicc.channels.voice.supervision import Mode, Supervision, Supervisions
from omnicc.core.errors import Conflict, NotFound
from omnicc.core.model import VOICE, AgentConfig, TaskPhase
from omnicc.store.engine_records import agent_config
from omnicc.store.repositories import Agents, Users

router = APIRouter(prefix="/api/supervisor", tags=["supervision"])


Viewer = Annotated[Principal, Depends(require_permission(Permission.VIEW_WALLBOARD))]
Monitor = Annotated[Principal, Depends(require_permission(Permission.MONITOR_CONVERSATIONS))]
Whisperer = Annotated[Principal, Depends(require_permission(Permission.WHISPER))]
Barger = Annotated[Principal, Depends(require_permission(Permission.BARGE))]
Reassigner = Annotated[Principal, Depends(require_permission(Permission.REASSIGN_TASKS))]
StatusChanger = Annotated[Principal,
                          Depends(require_permission(Permission.CHANGE_ANY_AGENT_STATUS))]
SkillChanger = Annotated[Principal, Depends(require_permission(Permission.CHANGE_AGENT_SKILLS))]




async def _user_name(connection: Request | WebSocket, principal: Principal) -> str:
    if not principal.is_session:
        return "Supervisor"
    async with request_database(connection).session() as session:
        user = await Users(session, principal.tenant_id).get(principal.subject_id)
    return user.display_name or user.username


class SkillsChange(BaseModel, extra="forbid"):
    skills: dict[str, int] = Field(description="The agent's skills and levels (0-10), whole.")


@router.get("/wallboard",
            summary="Live figures of every queue and agent, live chats and calls in progress")
async def wallboard(request: Request, principal: Viewer) -> dict[str, Any]:
    runtime = await tenant_runtime(request, principal)
    return with_calls(runtime.wallboard(), runtime)


# --- calls on the wallboard ----------------------------------------------------------------------

LIVE_CALL_PHASES = (TaskPhase.WAITING, TaskPhase.OFFERED, TaskPhase.ASSIGNED)


def with_calls(board: dict[str, Any], runtime: TenantRuntime) -> dict[str, Any]:
    """The wallboard plus the phone: per queue `voice` (calls waiting, the longest wait, the
    expected wait, calls in progress) and `calls`, the calls waiting, ringing or talking
    (direction, caller, queue, agent, state, seconds in that state), the longest first."""
    engine = runtime.routing.engine
    now = runtime.routing.clock.now()
    calls: list[dict[str, Any]] = []
    talking: dict[str, int] = {}
    for task in engine.tasks():
        if task.channel != VOICE or task.phase not in LIVE_CALL_PHASES:
            continue
        agent_id = task.agent_id or next((o.agent_id for o in task.offers.values()), None)
        if task.phase is TaskPhase.ASSIGNED:
            talking[task.queue_id] = talking.get(task.queue_id, 0) + 1
        since = task.accepted_at if task.accepted_at is not None else task.enqueued_at
        outbound = task.attributes.get("direction") == "outbound" or bool(
            task.attributes.get("callback"))  # an agent's own call, or a callback
        calls.append({"task_id": task.id, "conversation_id": task.conversation_id,
                      "direction": "outbound" if outbound else "inbound",
                      "caller": str(task.attributes.get("customer_name") or ""),
                      "phone": str(task.attributes.get("customer_phone") or ""),
                      "queue_id": task.queue_id, "agent_id": agent_id,
                      "state": task.phase.value, "since_s": round(max(0.0, now - since), 1)})
    queues = []
    for row in board["queues"]:
        try:
            figures = engine.queue_figures(row["queue_id"], VOICE)
        except NotFound:
            queues.append(row)
            continue
        queues.append({**row, "voice": {
            "waiting": figures.waiting, "longest_wait_s": round(figures.longest_wait_s, 1),
            "ewt_s": figures.ewt_s, "in_progress": talking.get(row["queue_id"], 0)}})
    calls.sort(key=lambda call: -call["since_s"])
    return {**board, "queues": queues, "calls": calls}


@router.get("/conversations/{conversation_id}",
            summary="Watch a conversation: all its messages, notes and whispers")
async def watch(conversation_id: str, request: Request, principal: Monitor) -> dict[str, Any]:
    runtime = await tenant_runtime(request, principal)
    return await conversation_view(request, runtime, conversation_id, agent_id=None)


@router.post("/conversations/{conversation_id}/whisper", status_code=201,
             summary="Coach the agent: a message only the agent sees")
async def whisper(conversation_id: str, body: MessageIn, request: Request,
                  principal: Whisperer) -> dict[str, Any]:
    runtime = await tenant_runtime(request, principal)
    return await runtime.chats.whisper(principal.subject_id,
                                       await _user_name(request, principal),
                                       conversation_id, body.text)


@router.post("/conversations/{conversation_id}/barge", status_code=204,
             summary="Join the chat, visible to the customer")
async def barge(conversation_id: str, request: Request, principal: Barger) -> None:
    runtime = await tenant_runtime(request, principal)
    await runtime.chats.barge(principal.subject_id, await _user_name(request, principal),
                              conversation_id)


@router.post("/conversations/{conversation_id}/messages", status_code=201,
             summary="Write to the customer after barging in")
async def say(conversation_id: str, body: MessageIn, request: Request,
              principal: Barger) -> dict[str, Any]:
    runtime = await tenant_runtime(request, principal)
    return await runtime.chats.post_supervisor(principal.subject_id,
                                               await _user_name(request, principal),
                                               conversation_id, body.text, body.id)


@router.post("/conversations/{conversation_id}/reassign", status_code=204,
             summary="Move a waiting, offered or assigned chat to a queue or an agent")
async def reassign(conversation_id: str, body: Transfer, request: Request,
                   principal: Reassigner) -> None:
    runtime = await tenant_runtime(request, principal)
    await runtime.chats.transfer(None, conversation_id, queue_id=body.queue_id,
                                 to_agent_id=body.agent_id)


@router.put("/agents/{agent_id}/status", summary="Change an agent's presence")
async def agent_status(agent_id: str, body: StatusChange, request: Request,
                       principal: StatusChanger) -> dict[str, Any]:
    runtime = await tenant_runtime(request, principal)
    await runtime.routing.run(lambda e: e.set_status(agent_id, body.status,
                                                     body.reason or "supervisor"))
    return {"agent_id": agent_id, "status": runtime.routing.engine.agent(agent_id).status.name}


@router.put("/agents/{agent_id}/skills", summary="Change an agent's skills; routing follows")
async def agent_skills(agent_id: str, body: SkillsChange, request: Request,
                       principal: SkillChanger) -> dict[str, Any]:
    runtime = await tenant_runtime(request, principal)
    async with request_database(request).session() as session:
        row = await Agents(session, principal.tenant_id).get(agent_id)
    current = agent_config(row)
    live_status = runtime.routing.engine.agent(agent_id).status.name
    updated = AgentConfig(id=current.id, name=current.name, skills=dict(body.skills),
                          attributes=current.attributes, capacity=current.capacity,
                          status=live_status)

    async def save(session: Any, events: Any) -> None:
        stored = await Agents(session, principal.tenant_id).get(agent_id)
        stored.skills = dict(body.skills)
        await Agents(session, principal.tenant_id).save(stored)

    await runtime.routing.run(lambda e: e.configure_agent(updated), alongside=save)
    return {"agent_id": agent_id, "skills": dict(body.skills)}


# --- supervising calls: listen, whisper, barge ----------------------------------------------------

CALL_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "Your role may not do this mode (whisper and barge are separate), "
                         "or you are an API token (no phone to ring)."},
    404: {"description": "No live call behind this task (or you are not supervising it)."},
    409: {"description": "The call is not connected, someone else supervises it, or you have "
                         "no phone (desk softphone on, or a registered SIP phone)."},
    503: {"description": "This server runs without voice."},
}
MODE_PERMISSION = {Mode.LISTEN: Permission.MONITOR_CONVERSATIONS, Mode.WHISPER: Permission.WHISPER,
                   Mode.BARGE: Permission.BARGE}
_supervisions: WeakKeyDictionary[VoiceService, Supervisions] = WeakKeyDictionary()


class MonitorRequest(BaseModel, extra="forbid"):
    mode: Mode = Field(description="listen (silent), whisper (only the agent hears you) or "
                                   "barge (a three-way call).")


def supervisions_of(voice: VoiceService) -> Supervisions:
    """The server's supervisions in progress (one registry per voice service)."""
    return _supervisions.setdefault(voice, Supervisions())


def supervision_view(task_id: str, supervision: Supervision) -> dict[str, Any]:
    return {"task_id": task_id, "mode": supervision.mode.value,
            "state": supervision.state.value, "supervisor_id": supervision.supervisor_id,
            "end_reason": supervision.end_reason}


async def supervisor_device(request: Request, voice: VoiceService,
                            principal: Principal) -> Device | None:
    """The supervisor's phone: their browser softphone, else - when the user also has an agent
    profile (which holds SIP accounts) - that profile's desk softphone or registered phone."""
    browser = voice.browser_phones.phone(principal.tenant_id, f"user:{principal.subject_id}")
    if browser is not None:
        return browser
    async with request_database(request).session() as session:
        try:
            agent = await Agents(session, principal.tenant_id).by_user(principal.subject_id)
        except NotFound:
            return None
    runtime = await tenant_runtime(request, principal)
    return await voice.agent_device(runtime, agent.id)


@router.post("/calls/{task_id}/monitor",
             responses={202: {"description": "Your phone is ringing (`state: ringing`)."},
                        **CALL_ERRORS},
             summary="Supervise a live call: rings your phone (202), or switches the mode (200)")
async def monitor_call(task_id: str, body: MonitorRequest, request: Request,
                       response: Response, principal: Monitor) -> dict[str, Any]:
    require(principal, MODE_PERMISSION[body.mode])
    _require_user(principal)
    voice = voice_service(request)
    call = voice.call_of_task(principal.tenant_id, task_id)
    if call is None:
        raise NotFound(f"no live call behind task {task_id!r}")
    supervisions = supervisions_of(voice)
    current = supervisions.of_call(call.call_id)
    if current is not None:
        if current.supervisor_id != principal.subject_id:
            raise Conflict("someone else is supervising this call")
        current.switch(body.mode)
        return supervision_view(task_id, current)
    if not call.connected.is_set() or call.ended.is_set():
        raise Conflict("the call is not connected to an agent")
    device = await supervisor_device(request, voice, principal)
    if device is None:
        raise Conflict("you have no phone: switch on your softphone or register a SIP phone")
    supervision = supervisions.start(call, device, voice.media_client,
                                     supervisor_id=principal.subject_id, mode=body.mode,
                                     host=voice.host)
    response.status_code = 202
    return supervision_view(task_id, supervision)


@router.get("/calls/{task_id}/monitor", responses=CALL_ERRORS,
            summary="Your supervision of a call: mode, state (ringing, active, ended) and why "
                    "it ended")
async def monitor_state(task_id: str, request: Request, principal: Monitor) -> dict[str, Any]:
    return supervision_view(task_id, _my_supervision(request, principal, task_id, live=False))


@router.delete("/calls/{task_id}/monitor", responses=CALL_ERRORS, status_code=204,
               summary="Leave the call: your phone hangs up, caller and agent talk directly")
async def leave_call(task_id: str, request: Request, principal: Monitor) -> None:
    await _my_supervision(request, principal, task_id, live=True).stop()


def _require_user(principal: Principal) -> None:
    """A supervision rings a person's phone: API tokens have none."""
    if not principal.is_session:
        raise Forbidden("supervising a call takes a logged-in user (whose phone rings)")


def _my_supervision(request: Request, principal: Principal, task_id: str, *,
                    live: bool) -> Supervision:
    """The principal's supervision of the live call behind the task (in progress, or the
    latest one when not ``live``)."""
    _require_user(principal)
    voice = voice_service(request)
    call = voice.call_of_task(principal.tenant_id, task_id)
    supervision = None
    if call is not None:
        supervisions = supervisions_of(voice)
        supervision = (supervisions.of_call(call.call_id) if live
                       else supervisions.latest(call.call_id))
    if supervision is None or supervision.supervisor_id != principal.subject_id:
        raise NotFound(f"you are not supervising the call behind task {task_id!r}")
    return supervision


@router.websocket("/ws")
async def supervisor_socket(websocket: WebSocket) -> None:
    try:
        principal = require(await authenticate(websocket), Permission.VIEW_WALLBOARD)
    except (Unauthenticated, Forbidden) as error:
        await websocket.close(CLOSE_POLICY, str(error)[:100])
        return
    runtime = await tenant_runtime(websocket, principal)
    await websocket.accept()
    may_monitor = has_permission(principal.role, Permission.MONITOR_CONVERSATIONS)
    subscription = runtime.bus.subscribe(runtime.tenant_id, WALLBOARD_TOPIC, EVENTS_TOPIC)
    # The supervisor's browser softphone rings for the calls they supervise: it is the
    # `BrowserPhones` key `user:<user_id>`, whose `call.*` notices go to `agent:user:<user_id>`.
    phone_key = f"user:{principal.subject_id}"
    phone = DeskPhone(websocket.app.state.voice, runtime.tenant_id, phone_key)
    if may_monitor and principal.is_session:
        subscription.follow(agent_topic(phone_key))
    await websocket.send_json({"type": "wallboard", **with_calls(runtime.wallboard(), runtime)})

    def translate(notice: Notice) -> dict[str, Any] | None:
        if notice.type == "wallboard":
            return {"type": "wallboard", **with_calls(dict(notice.data), runtime)}
        return notice.wire()

    async def on_frame(frame: dict[str, Any]) -> None:
        conversation_id = str(frame.get("conversation_id", ""))
        if frame.get("type") == "watch" and may_monitor and conversation_id:
            subscription.follow(conversation_topic(conversation_id))
        elif frame.get("type") == "unwatch" and conversation_id:
            subscription.unfollow(conversation_topic(conversation_id))
        elif str(frame.get("type", "")).startswith(("phone.", "call.")):
            if may_monitor and principal.is_session:
                answer = phone.frame(frame)
            elif frame.get("type") == "phone.online":
                answer = {"type": "phone.status", "online": False,
                          "detail": "Your role does not supervise calls."}
            else:
                answer = None
            if answer is not None:
                await websocket.send_json(answer)

    try:
        await serve_live_socket(websocket, subscription, on_frame, translate)
    finally:
        phone.close()


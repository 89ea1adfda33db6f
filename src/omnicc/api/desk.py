"""The agent desktop's API: presence, offers, conversations, wrap-up, and the desk's WebSocket.

REST carries every action (so integrations and tests can do what the page does); the WebSocket
`/api/desk/ws` pushes what happens to the agent: offers, their chats' messages and typing,
their presence. The logged-in user acts as their own agent (the agent row linked to the user).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, WebSocket
from pydantic import BaseModel, Field, ValidationError, model_validator
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.api.auth import authenticate, require_permission
from omnicc.api.center import tenant_runtime
from omnicc.api.chat import error_status
from omnicc.api.database import request_database
from omnicc.api.desk_phone import DeskPhone
from omnicc.api.live_socket import CLOSE_POLICY, serve_live_socket
from omnicc.app.chats import agent_topic, attachments_of, conversation_topic, message_view
from omnicc.app.permissions import Permission, has_permission, require
from omnicc.app.principals import Forbidden, Principal, Unauthenticated
from omnicc.app.recordings import recording_url
from omnicc.app.runtime import TenantRuntime
from omnicc.bus import Notice
from omnicc.core.engine import Engine
from omnicc.core.errors import NotFound, OmniccError
from omnicc.store.repositories import (
    Agents,
    Contacts,
    Conversations,
    Customers,
    Messages,
    Queues,
    WrapUpCodes,
)
from omnicc.store.tables import CallRecord, Contact, Identity

router = APIRouter(prefix="/api/desk", tags=["agent desktop"])

Handler = Annotated[Principal, Depends(require_permission(Permission.HANDLE_CONTACTS))]




async def agent_of(request: Request | WebSocket, principal: Principal) -> str:
    """The agent id of the logged-in user; 403 when the user takes no contacts."""
    runtime = await tenant_runtime(request, principal)
    agent_id = runtime.agent_of_user(principal.subject_id)
    if agent_id is not None:
        return agent_id
    async with request_database(request).session() as session:
        try:
            agent_id = (await Agents(session, principal.tenant_id)
                        .by_user(principal.subject_id)).id
        except NotFound:
            raise Forbidden("your user is not an agent; ask an admin to make you one") from None
    runtime.remember_agent_of_user(principal.subject_id, agent_id)
    return agent_id


class StatusChange(BaseModel, extra="forbid"):
    status: str = Field(min_length=1, max_length=32,
                        description="available, break, offline or a custom status")
    reason: str = Field(default="", max_length=200)


class MessageIn(BaseModel, extra="forbid"):
    text: str = Field(min_length=1)
    internal: bool = Field(default=False, description="An internal note: agents only.")
    id: str | None = Field(default=None, max_length=128, description="Idempotency key.")


async def check_conversation_access(request: Request, principal: Principal,
                                    conversation_id: str) -> str | None:
    """The agent id when the user is an agent who has or had the conversation; None for a
    supervisor (who may read any); 404 otherwise, so that its existence is not told."""
    if has_permission(principal.role, Permission.MONITOR_CONVERSATIONS):
        return None
    agent_id = await agent_of(request, principal)
    async with request_database(request).session() as session:
        contacts = await Contacts(session, principal.tenant_id).of_conversation(conversation_id)
    if agent_id not in {c.agent_id for c in contacts}:
        raise NotFound(f"conversation {conversation_id} not found")
    return agent_id


class Transfer(BaseModel, extra="forbid"):
    queue_id: str | None = Field(default=None, max_length=64)
    agent_id: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _one_target(self) -> Transfer:
        if (self.queue_id is None) == (self.agent_id is None):
            raise ValueError("give exactly one of queue_id or agent_id")
        return self


class WrapUp(BaseModel, extra="forbid"):
    code: str | None = Field(default=None, max_length=64)


class Reject(BaseModel, extra="forbid"):
    reason: str = Field(default="", max_length=200)


def _wrap_up_limit(engine: Engine, queue_id: str) -> float | None:
    """The queue's wrap-up time limit, so the desk can count it down; None when wrap-up lasts
    until the agent finishes it (or the queue has none, or is gone)."""
    try:
        limit = engine.queue(queue_id).config.wrap_up_s
    except NotFound:
        return None
    return limit if limit is not None and math.isfinite(limit) else None


def desk_state(runtime: TenantRuntime, agent_id: str) -> dict[str, Any]:
    """The agent's presence, pending offers and tasks, as the page draws them."""
    engine = runtime.routing.engine
    agent = engine.agent(agent_id)
    figures = engine.agent_figures(agent_id)
    offers = []
    for offer_id in figures.offer_ids:
        offer = engine.offer(offer_id)
        task = engine.task(offer.task_id)
        offers.append({"offer_id": offer.id, "task_id": task.id, "queue_id": offer.queue_id,
                       "channel": task.channel, "offered_at": offer.created_at,
                       "expires_at": offer.expires_at,
                       "offer_timeout_s": offer.expires_at - offer.created_at,
                       "conversation_id": task.conversation_id,
                       "customer_name": task.attributes.get("customer_name", ""),
                       "topic": task.attributes.get("topic", "")})
    tasks = []
    for task_id in figures.task_ids:
        task = engine.task(task_id)
        tasks.append({"task_id": task.id, "phase": task.phase.value, "channel": task.channel,
                      "queue_id": task.queue_id, "conversation_id": task.conversation_id,
                      "customer_name": task.attributes.get("customer_name", ""),
                      "accepted_at": task.accepted_at, "completed_at": task.completed_at,
                      "wrap_up_s": _wrap_up_limit(engine, task.queue_id)})
    return {
        "agent": {"id": agent.id, "name": agent.name, "status": agent.status.name,
                  "presence": agent.presence, "presence_since": agent.presence_since,
                  "capacity": dict(agent.capacity)},
        "statuses": [{"name": s.name, "accepts_work": s.accepts_work,
                      "logged_in": s.logged_in} for s in engine.statuses().values()
                     if s.name != "no_answer"],
        "offers": offers,
        "tasks": tasks,
        "now": runtime.routing.clock.now(),
    }


@router.get("/state", summary="The agent's presence, offers and tasks")
async def state(request: Request, principal: Handler) -> dict[str, Any]:
    agent_id = await agent_of(request, principal)
    return desk_state(await tenant_runtime(request, principal), agent_id)


@router.put("/status", summary="Change the agent's own presence (one click)")
async def change_status(body: StatusChange, request: Request,
                        principal: Handler) -> dict[str, Any]:
    require(principal, Permission.CHANGE_OWN_STATUS)
    agent_id = await agent_of(request, principal)
    runtime = await tenant_runtime(request, principal)
    await runtime.routing.run(lambda e: e.set_status(agent_id, body.status, body.reason))
    return desk_state(runtime, agent_id)


@router.post("/offers/{offer_id}/accept", summary="Accept an offer")
async def accept(offer_id: str, request: Request, principal: Handler) -> dict[str, Any]:
    agent_id = await agent_of(request, principal)
    runtime = await tenant_runtime(request, principal)
    await runtime.chats.accept(agent_id, offer_id)
    return desk_state(runtime, agent_id)


@router.post("/offers/{offer_id}/reject", summary="Reject an offer; it goes to someone else")
async def reject(offer_id: str, body: Reject, request: Request,
                 principal: Handler) -> dict[str, Any]:
    agent_id = await agent_of(request, principal)
    runtime = await tenant_runtime(request, principal)
    await runtime.chats.reject(agent_id, offer_id, body.reason)
    return desk_state(runtime, agent_id)


@router.get("/conversations/{conversation_id}",
            summary="A conversation with its messages, the customer and their past contacts")
async def conversation(conversation_id: str, request: Request,
                       principal: Handler) -> dict[str, Any]:
    agent_id = await agent_of(request, principal)
    runtime = await tenant_runtime(request, principal)
    return await conversation_view(request, runtime, conversation_id, agent_id=agent_id)


async def conversation_view(request: Request, runtime: TenantRuntime, conversation_id: str,
                            *, agent_id: str | None) -> dict[str, Any]:
    """Everything the agent's middle and right columns show. An agent sees conversations they
    handle or handled; supervisors (agent_id None) see any."""
    tenant_id = runtime.tenant_id
    async with request_database(request).session() as session:
        conversation = await Conversations(session, tenant_id).get(conversation_id)
        contacts = await Contacts(session, tenant_id).of_conversation(conversation_id)
        open_chat = runtime.chats.find_chat(conversation_id)
        if agent_id is not None and agent_id not in {c.agent_id for c in contacts} and (
                open_chat is None or not runtime.chats.involves(open_chat, agent_id)) and (
                not await takes_call(session, runtime, conversation_id, agent_id)):
            raise NotFound(f"conversation {conversation_id} not found")
        messages = await Messages(session, tenant_id).history(conversation_id)
        files = await attachments_of(session, tenant_id, messages)
        names: dict[str, str] = {}
        views = []
        for message in messages:
            key = f"{message.author_kind}:{message.author_id}"
            if key not in names:
                names[key] = await runtime.chats.author_name(session, message)
            views.append(message_view(message, names[key], files.get(message.id, ())))
        customer = None
        past: list[dict[str, Any]] = []
        if conversation.customer_id is not None:
            row = await Customers(session, tenant_id).get(conversation.customer_id)
            identities = list((await session.execute(
                select(Identity).where(Identity.tenant_id == tenant_id,
                                       Identity.customer_id == row.id))).scalars())
            customer = {"id": row.id, "name": row.name, "attributes": dict(row.attributes),
                        "identities": [{"kind": i.kind, "value": i.value if i.kind !=
                                        "chat_visitor" else "web visitor"}
                                       for i in identities]}
            earlier = (await session.execute(
                select(Contact).where(Contact.tenant_id == tenant_id,
                                      Contact.customer_id == row.id)
                .order_by(Contact.started_at.desc()).limit(50))).scalars()
            codes = {c.id: c.code for c in await WrapUpCodes(session, tenant_id).list_all()}
            queues = {q.id: q.name for q in await Queues(session, tenant_id).list_all()}
            for contact in earlier:
                past.append({
                    "contact_id": contact.id, "conversation_id": contact.conversation_id,
                    "channel": contact.channel, "started_at": contact.started_at.isoformat(),
                    "ended_at": contact.ended_at.isoformat() if contact.ended_at else None,
                    "queue": queues.get(contact.queue_id or "", ""),
                    "agent_id": contact.agent_id,
                    "disposition": codes.get(contact.wrap_up_code_id or ""),
                    "csat_score": contact.csat_score,
                    "topic": contact.attributes.get("topic", ""),
                })
        calls = await call_details(session, tenant_id, conversation_id, contacts, past,
                                   agent_id=agent_id)
    return {
        "conversation": {"id": conversation.id, "status": conversation.status,
                         "subject": conversation.subject,
                         "created_at": conversation.created_at.isoformat()},
        "chat": None if open_chat is None else {
            "task_id": open_chat.task_id, "contact_id": open_chat.contact_id,
            "agent_id": open_chat.agent_id, "queue_id": open_chat.queue_id,
            "is_offline": open_chat.is_offline},
        "messages": views,
        "customer": customer,
        "contacts": past,
        "calls": calls,
    }


# --- calls in the conversation view: the call detail records of voice contacts ----------------

async def takes_call(session: AsyncSession, runtime: TenantRuntime, conversation_id: str,
                     agent_id: str) -> bool:
    """Whether the agent has or had a call of this conversation: its task is theirs now, or
    its call detail record names them (a voice contact does not name its agent)."""
    engine = runtime.routing.engine
    if any(engine.task(task_id).conversation_id == conversation_id
           for task_id in engine.agent_figures(agent_id).task_ids):
        return True
    found = await session.scalar(
        select(CallRecord.id).where(CallRecord.tenant_id == runtime.tenant_id,
                                    CallRecord.conversation_id == conversation_id,
                                    CallRecord.agent_id == agent_id).limit(1))
    return found is not None


def call_view(record: CallRecord, *, queues: Mapping[str, str], agents: Mapping[str, str],
              audible: bool) -> dict[str, Any]:
    """One call as the history shows it; `recording_url` only for those who may hear it."""
    def when(at: datetime | None) -> str | None:
        return at.isoformat() if at is not None else None

    return {"id": record.id, "direction": record.direction, "from": record.from_number,
            "to": record.to_number, "ivr_path": list(record.ivr_path),
            "queue_id": record.queue_id, "queue": queues.get(record.queue_id or "", ""),
            "agent_id": record.agent_id, "agent": agents.get(record.agent_id or "", ""),
            "started_at": when(record.started_at), "answered_at": when(record.answered_at),
            "ended_at": when(record.ended_at), "queue_s": record.queue_s,
            "talk_s": record.talk_s, "hold_s": record.hold_s, "transfers": record.transfers,
            "hangup_side": record.hangup_side, "outcome": record.outcome,
            "recording_url": recording_url(record) if audible else None}


async def call_details(session: AsyncSession, tenant_id: str, conversation_id: str,
                       contacts: Sequence[Contact], past: list[dict[str, Any]], *,
                       agent_id: str | None) -> list[dict[str, Any]]:
    """The conversation's calls, oldest first; each past voice contact gets its `call`. An
    agent is offered the recordings of calls they took part in (supervisors: all)."""
    voice_ids = {c.id for c in contacts if c.channel == "voice"}
    voice_ids |= {p["contact_id"] for p in past if p["channel"] == "voice"}
    if not voice_ids:
        return []
    records = list((await session.execute(
        select(CallRecord).where(CallRecord.tenant_id == tenant_id,
                                 or_(CallRecord.conversation_id == conversation_id,
                                     CallRecord.contact_id.in_(voice_ids)))
        .order_by(CallRecord.started_at, CallRecord.id))).scalars())
    if not records:
        return []
    queues = {q.id: q.name for q in await Queues(session, tenant_id).list_all()}
    agents = {a.id: a.name for a in await Agents(session, tenant_id).list_all()}
    handlers: dict[str | None, set[str | None]] = {}
    for contact in contacts:
        handlers.setdefault(contact.conversation_id, set()).add(contact.agent_id)
    for entry in past:
        handlers.setdefault(entry["conversation_id"], set()).add(entry["agent_id"])

    def view(record: CallRecord) -> dict[str, Any]:
        audible = agent_id is None or agent_id == record.agent_id or agent_id in handlers.get(
            record.conversation_id, set())
        return call_view(record, queues=queues, agents=agents, audible=audible)

    by_contact = {r.contact_id: view(r) for r in records if r.contact_id is not None}
    for entry in past:
        if entry["contact_id"] in by_contact:
            entry["call"] = by_contact[entry["contact_id"]]
            entry["agent_id"] = entry["agent_id"] or entry["call"]["agent_id"]
    return [view(r) for r in records if r.conversation_id == conversation_id]


@router.get("/customers/{customer_id}/messages",
            summary="The customer's earlier messages across all conversations")
async def customer_history(customer_id: str, request: Request,
                           principal: Handler) -> list[dict[str, Any]]:
    runtime = await tenant_runtime(request, principal)
    async with request_database(request).session() as session:
        await Customers(session, runtime.tenant_id).get(customer_id)
    return await runtime.chats.history(customer_id)


@router.post("/conversations/{conversation_id}/messages", status_code=201,
             summary="Reply to the customer, or add an internal note")
async def reply(conversation_id: str, body: MessageIn, request: Request,
                principal: Handler) -> dict[str, Any]:
    agent_id = await agent_of(request, principal)
    runtime = await tenant_runtime(request, principal)
    return await runtime.chats.post_agent(agent_id, conversation_id, body.text, body.id,
                                          internal=body.internal)


@router.post("/conversations/{conversation_id}/end", summary="End the chat (wrap-up follows)")
async def end(conversation_id: str, request: Request, principal: Handler) -> dict[str, Any]:
    agent_id = await agent_of(request, principal)
    runtime = await tenant_runtime(request, principal)
    await runtime.chats.end(agent_id, conversation_id)
    return desk_state(runtime, agent_id)


@router.post("/conversations/{conversation_id}/transfer",
             summary="Transfer the chat to a queue or an agent")
async def transfer(conversation_id: str, body: Transfer, request: Request,
                   principal: Handler) -> dict[str, Any]:
    agent_id = await agent_of(request, principal)
    runtime = await tenant_runtime(request, principal)
    await runtime.chats.transfer(agent_id, conversation_id, queue_id=body.queue_id,
                                 to_agent_id=body.agent_id)
    return desk_state(runtime, agent_id)


@router.post("/tasks/{task_id}/wrap-up", summary="Finish wrap-up with a disposition code")
async def wrap_up(task_id: str, body: WrapUp, request: Request,
                  principal: Handler) -> dict[str, Any]:
    agent_id = await agent_of(request, principal)
    runtime = await tenant_runtime(request, principal)
    await runtime.chats.wrap_up(agent_id, task_id, body.code)
    return desk_state(runtime, agent_id)


@router.get("/wrap-up-codes", summary="The disposition codes an agent may choose")
async def wrap_up_codes(request: Request, principal: Handler) -> list[dict[str, str]]:
    async with request_database(request).session() as session:
        codes = await WrapUpCodes(session, principal.tenant_id).list_all()
    return [{"code": c.code, "label": c.label} for c in sorted(codes, key=lambda c: c.label)
            if c.is_enabled]


# --- the WebSocket ------------------------------------------------------------------------------

class SocketReply(MessageIn):
    """A reply sent over the desk's WebSocket: the REST body plus the conversation."""

    type: str
    conversation_id: str = Field(min_length=1, max_length=64)


async def _socket_reply(runtime: TenantRuntime, agent_id: str,
                        frame: dict[str, Any]) -> dict[str, Any]:
    """Post a reply sent as a frame; the answer is `ack` (committed) or `error`."""
    frame_id = frame.get("id") if isinstance(frame.get("id"), str) else None
    try:
        reply = SocketReply.model_validate(frame)
        view = await runtime.chats.post_agent(agent_id, reply.conversation_id, reply.text,
                                              reply.id, internal=reply.internal)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return {"type": "error", "status": 422, "detail": f"{where}: {first['msg']}",
                "id": frame_id}
    except (OmniccError, Forbidden) as error:
        status = 403 if isinstance(error, Forbidden) else error_status(error)
        return {"type": "error", "status": status, "detail": str(error), "id": frame_id}
    return {"type": "ack", "id": reply.id, "message": view}


@router.websocket("/ws")
async def desk_socket(websocket: WebSocket) -> None:
    """Pushes `offer.*`, `task.*`, `agent.status_changed`, `message.created` (public, internal
    and whispers of the agent's chats) and `typing`; accepts `typing` frames, and `message`
    frames (`conversation_id`, `text`, `internal`, `id`) answered by `ack` or `error`."""
    try:
        principal = require(await authenticate(websocket), Permission.HANDLE_CONTACTS)
        agent_id = await agent_of(websocket, principal)
    except (Unauthenticated, Forbidden) as error:
        await websocket.close(CLOSE_POLICY, str(error)[:100])
        return
    runtime = await tenant_runtime(websocket, principal)
    await websocket.accept()
    subscription = runtime.bus.subscribe(runtime.tenant_id, agent_topic(agent_id))
    for open_chat in runtime.chats.open_chats():
        if open_chat.agent_id == agent_id:
            subscription.follow(conversation_topic(open_chat.conversation_id))
    engine = runtime.routing.engine
    for task_id in engine.agent_figures(agent_id).task_ids:  # an email's, after a reconnect
        task_conversation = engine.task(task_id).conversation_id
        if task_conversation is not None:
            subscription.follow(conversation_topic(task_conversation))
    name = runtime.routing.engine.agent(agent_id).name
    await websocket.send_json({"type": "state", **desk_state(runtime, agent_id)})

    def translate(notice: Notice) -> dict[str, Any] | None:
        if notice.type == "typing" and notice.data.get("author_kind") == "agent":
            return None  # the agent's own typing
        conversation_id = notice.data.get("conversation_id")
        if notice.type == "chat.ended" and conversation_id:
            subscription.unfollow(conversation_topic(conversation_id))
        return notice.wire()

    async def on_frame(frame: dict[str, Any]) -> None:
        if frame.get("type") == "typing":
            conversation_id = str(frame.get("conversation_id", ""))
            chat = runtime.chats.find_chat(conversation_id)
            if chat is not None and chat.agent_id == agent_id:
                runtime.chats.publish_typing(conversation_id, "agent", name,
                                             bool(frame.get("is_typing")))
        elif frame.get("type") == "message":
            await websocket.send_json(await _socket_reply(runtime, agent_id, frame))
        elif str(frame.get("type", "")).startswith(("phone.", "call.")):
            # The browser softphone (omnicc.api.desk_phone); it goes off with the socket.
            answer = phone.frame(frame)
            if answer is not None:
                await websocket.send_json(answer)

    phone = DeskPhone(websocket.app.state.voice, runtime.tenant_id, agent_id)
    try:
        await serve_live_socket(websocket, subscription, on_frame, translate)
    finally:
        phone.close()



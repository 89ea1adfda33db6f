"""The customer's side of web chat: the widget's configuration and its WebSocket.

The widget speaks JSON over `GET /api/chat/ws?tenant=<slug>` (protocol in docs/api.md). The
first frame is `hello` with the visitor token the widget kept (or none); the server answers
`welcome` with the token to keep, the customer's history and the open chat, if any. Every
message the customer sends is committed before its `ack`; a resent frame with the same `id`
is acknowledged again without a second message. Customers only ever receive public messages:
internal notes and whispers never leave the agents' side.

`POST /api/chat/callback` is the widget's "Call me back" form (rules in
`omnicc.app.callback_requests`); `GET /api/chat/callback/slots` the times it offers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request, Response, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, Field, ValidationError

from omnicc.api.live_socket import CLOSE_POLICY, forward_notices
from omnicc.api.problems import problem, problem_type
from omnicc.app.callback_requests import (
    SLOT,
    CallbackThrottled,
    NotPossibleNumber,
    OutsideBusinessHours,
    WidgetCallbacks,
    takes_callbacks,
)
from omnicc.app.chats import ChatDesk, MessageTooLong, conversation_topic
from omnicc.app.routing import WallClock
from omnicc.app.runtime import ContactCenter, TenantRuntime
from omnicc.bus import Notice, Subscription
from omnicc.core.errors import Conflict, InvalidConfiguration, NotFound
from omnicc.store.repositories import Queues, Tenants
from omnicc.store.tables import Customer

log = logging.getLogger("omnicc.api.chat")

router = APIRouter(prefix="/api/chat", tags=["web chat"])

MAX_FRAME_BYTES = 64 * 1024


class WidgetQueue(BaseModel):
    id: str
    name: str
    description: str
    is_open: bool = Field(description="Open and staffed now; else a message is answered later.")
    takes_callbacks: bool = Field(
        default=False, description="Some agent of it takes calls: the widget offers a callback.")


class WidgetConfig(BaseModel):
    tenant: str
    tenant_name: str
    queues: list[WidgetQueue]
    max_message_chars: int


def _center(connection: Request | WebSocket) -> ContactCenter:
    center: ContactCenter = connection.app.state.center
    return center


@router.get("/config", response_model=WidgetConfig,
            summary="What the widget shows before a chat: topics (queues) and whether open")
async def widget_config(request: Request, response: Response,
                        tenant: str = Query(min_length=1, max_length=64)) -> WidgetConfig:
    # Public data the widget fetches from the customer's own website, another origin.
    response.headers["Access-Control-Allow-Origin"] = "*"
    runtime = await _center(request).by_slug(tenant)
    database = request.app.state.database
    async with database.session() as session:
        tenant_row = await Tenants(session).get(runtime.tenant_id)
        queues = await Queues(session, runtime.tenant_id).enabled()
    listed = []
    for queue in sorted(queues, key=lambda q: q.name):
        is_open, _ = await runtime.chats.availability(queue.id)
        listed.append(WidgetQueue(id=queue.id, name=queue.name, description=queue.description,
                                  is_open=is_open,
                                  takes_callbacks=takes_callbacks(runtime, queue.id)))
    return WidgetConfig(tenant=tenant_row.slug, tenant_name=tenant_row.name, queues=listed,
                        max_message_chars=runtime.chats.max_message_chars)


# --- the WebSocket ------------------------------------------------------------------------------

class Hello(BaseModel, extra="forbid"):
    type: str
    visitor: str | None = Field(default=None, max_length=100)
    name: str = Field(default="", max_length=200)
    email: str = Field(default="", max_length=320)


class Start(BaseModel, extra="forbid"):
    type: str
    queue_id: str = Field(min_length=1, max_length=64)
    text: str = Field(min_length=1)
    id: str | None = Field(default=None, max_length=128)
    name: str = Field(default="", max_length=200)
    email: str = Field(default="", max_length=320)
    topic: str = Field(default="", max_length=200)


class Say(BaseModel, extra="forbid"):
    type: str
    text: str = Field(min_length=1)
    id: str | None = Field(default=None, max_length=128)


class Typing(BaseModel, extra="forbid"):
    type: str
    is_typing: bool


class Leave(BaseModel, extra="forbid"):
    type: str


class Rate(BaseModel, extra="forbid"):
    type: str
    contact_id: str = Field(min_length=1, max_length=64)
    score: int = Field(ge=1, le=5)
    comment: str = Field(default="", max_length=2000)


FRAMES: dict[str, type[BaseModel]] = {
    "start": Start, "message": Say, "typing": Typing, "rate": Rate, "leave": Leave,
}


class CustomerSocket:
    """One widget connection: reads the customer's frames, forwards the bus to them."""

    def __init__(self, websocket: WebSocket, runtime: TenantRuntime) -> None:
        self.websocket = websocket
        self.runtime = runtime
        self.chats: ChatDesk = runtime.chats
        self.customer: Customer | None = None
        self.subscription: Subscription | None = None

    async def send(self, data: dict[str, Any]) -> None:
        await self.websocket.send_json(data)

    async def error(self, status: int, detail: str, frame_id: str | None = None) -> None:
        await self.send({"type": "error", "status": status, "detail": detail, "id": frame_id})

    async def welcome(self, hello: Hello) -> None:
        token, customer = await self.chats.identify(hello.visitor, name=hello.name,
                                                    email=hello.email)
        self.customer = customer
        self.subscription = self.runtime.bus.subscribe(self.runtime.tenant_id)
        chat = self.chats.open_chat_of(customer.id)
        if chat is not None:
            self.subscription.follow(conversation_topic(chat.conversation_id))
        await self.send({
            "type": "welcome", "visitor": token,
            "customer": {"name": customer.name,
                         "email": customer.attributes.get("email", "")},
            "history": await self.chats.history(customer.id),
            "chat": None if chat is None else {
                "conversation_id": chat.conversation_id, "contact_id": chat.contact_id,
                "is_offline": chat.is_offline},
        })
        if chat is not None:
            self.runtime.publish_positions(force_conversation=chat.conversation_id)

    async def handle(self, raw: dict[str, Any]) -> None:
        kind = raw.get("type")
        model = FRAMES.get(kind) if isinstance(kind, str) else None
        frame_id = raw.get("id") if isinstance(raw.get("id"), str) else None
        if model is None:
            await self.error(400, f"unknown frame type {kind!r}", frame_id)
            return
        try:
            frame = model.model_validate(raw)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            await self.error(422, f"{where}: {first['msg']}", frame_id)
            return
        assert self.customer is not None and self.subscription is not None
        try:
            await self._dispatch(frame)
        except (InvalidConfiguration, Conflict, NotFound) as error:
            await self.error(error_status(error), str(error), frame_id)

    async def _dispatch(self, frame: BaseModel) -> None:
        assert self.customer is not None and self.subscription is not None
        customer = self.customer
        match frame:
            case Start():
                if frame.name or frame.email:
                    customer = await self.chats.update_customer(customer.id, name=frame.name,
                                                                email=frame.email)
                    self.customer = customer
                chat, view = await self.chats.start(customer, queue_id=frame.queue_id,
                                                    text=frame.text, key=frame.id,
                                                    topic=frame.topic,
                                                    follower=self.subscription)
                self.subscription.follow(conversation_topic(chat.conversation_id))
                await self.send({"type": "chat", "conversation_id": chat.conversation_id,
                                 "contact_id": chat.contact_id, "is_offline": chat.is_offline})
                await self.send({"type": "ack", "id": frame.id, "message": view})
                self.runtime.publish_positions(force_conversation=chat.conversation_id)
            case Say():
                view = await self.chats.post_customer(customer.id, frame.text, frame.id)
                await self.send({"type": "ack", "id": frame.id, "message": view})
            case Typing():
                open_chat = self.chats.open_chat_of(customer.id)
                if open_chat is not None:
                    self.chats.publish_typing(open_chat.conversation_id, "customer",
                                              customer.name or "Customer", frame.is_typing)
            case Leave():
                await self.chats.leave(customer.id)
            case Rate():
                await self.chats.rate(customer.id, frame.contact_id, frame.score,
                                      frame.comment)
                await self.send({"type": "rated", "contact_id": frame.contact_id})

    async def forward(self) -> None:
        """Bus -> customer, public things only."""
        assert self.subscription is not None
        await forward_notices(self.websocket, self.subscription, customer_frame)


def error_status(error: Exception) -> int:
    """The HTTP status a refused chat command maps to (also used in WebSocket error frames)."""
    if isinstance(error, MessageTooLong):
        return 413
    if isinstance(error, Conflict):
        return 409
    if isinstance(error, NotFound):
        return 404
    return 422


def customer_frame(notice: Notice) -> dict[str, Any] | None:
    """What a customer may see of a notice on their conversation's topic."""
    data = notice.data
    match notice.type:
        case "message.created" if data.get("visibility") == "public":
            return {"type": "message", "message": {
                k: data[k] for k in ("id", "author_kind", "author_name", "text", "created_at",
                                     "contact_id", "conversation_id", "attachments")}}
        case "typing" if data.get("author_kind") != "customer":
            return {"type": "typing", "author_name": data["author_name"],
                    "is_typing": data["is_typing"]}
        case "queue.position":
            return {"type": "position", "position": data["position"], "ewt_s": data["ewt_s"],
                    "is_offline": data["is_offline"]}
        case "chat.ended":
            return {"type": "chat_ended", "contact_id": data["contact_id"]}
        case "offer.accepted":
            return {"type": "agent_joined"}
        case _:
            return None


@router.websocket("/ws")
async def customer_socket(websocket: WebSocket,
                          tenant: str = Query(min_length=1, max_length=64)) -> None:
    try:
        runtime = await _center(websocket).by_slug(tenant)
    except NotFound:
        await websocket.close(CLOSE_POLICY, "unknown tenant")
        return
    await websocket.accept()
    socket = CustomerSocket(websocket, runtime)
    forwarding: asyncio.Task[None] | None = None
    try:
        first = await websocket.receive_json()
        try:
            hello = Hello.model_validate(first)
        except ValidationError:
            await websocket.close(CLOSE_POLICY, "the first frame must be hello")
            return
        await socket.welcome(hello)
        forwarding = asyncio.create_task(socket.forward())
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None or len(text) > MAX_FRAME_BYTES:
                await socket.error(413, f"a frame is text of at most {MAX_FRAME_BYTES} bytes")
                continue
            try:
                raw = _json_object(text)
            except ValueError as error:
                await socket.error(400, str(error))
                continue
            await socket.handle(raw)
    except WebSocketDisconnect:
        return
    finally:
        if socket.subscription is not None:
            socket.subscription.close()
        if forwarding is not None:
            forwarding.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await forwarding


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON: {error.msg}") from None
    if not isinstance(value, dict):
        raise ValueError("a frame is a JSON object")
    return value


# --- the "Call me back" button ------------------------------------------------------------------

class CallbackSlotsView(BaseModel):
    queue_id: str
    timezone: str = Field(description="The queue's business hours' time zone.")
    is_open: bool = Field(description="A request for as soon as possible is in line at once.")
    next_open: datetime | None = Field(description="Now, or when the queue opens next.")
    slot_minutes: int
    slots: list[datetime] = Field(description="Slot starts within business hours, 7 days.")


class CallbackAsk(BaseModel, extra="forbid"):
    queue_id: str = Field(min_length=1, max_length=64)
    number: str = Field(min_length=1, max_length=40, description="Best with the country code.")
    name: str = Field(default="", max_length=200)
    when: datetime | None = Field(default=None, description="With its UTC offset; absent: as "
                                  "soon as possible (the next opening when closed).")
    visitor: str | None = Field(default=None, max_length=100,
                                description="The widget's visitor token, to link the chat's "
                                "customer.")
    website: str = Field(default="", max_length=500,
                         description="Must stay empty: a field only bots fill in.")


class CallbackReceiptView(BaseModel):
    id: str
    number: str = Field(description="The number that will be called, E.164.")
    expected_at: datetime
    as_soon_as_possible: bool = Field(description="In line now: called when an agent is free.")


CALLBACK_REFUSALS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such queue in the tenant."},
    409: {"description": "The queue takes no calls."},
    422: {"description": "Not a possible phone number, or a time outside business hours "
                         "(`next_slot` names the next open one)."},
    429: {"description": "Too many requests from this address or for this number; see "
                         "Retry-After."},
}


def _widget_callbacks(request: Request) -> WidgetCallbacks:
    """One per server: the limits count across tenants (abuse is the server's concern)."""
    callbacks: WidgetCallbacks | None = getattr(request.app.state, "widget_callbacks", None)
    if callbacks is None:
        callbacks = WidgetCallbacks(request.app.state.database, WallClock(),
                                    default_region=request.app.state.settings.phone_region
                                    or None)
        request.app.state.widget_callbacks = callbacks
    return callbacks


@router.get("/callback/slots", response_model=CallbackSlotsView, responses=CALLBACK_REFUSALS,
            summary="When a queue can call the visitor back: open now, and the next slots")
async def callback_slots(request: Request, tenant: str = Query(min_length=1, max_length=64),
                         queue_id: str = Query(min_length=1, max_length=64)) -> CallbackSlotsView:
    runtime = await _center(request).by_slug(tenant)
    slots = await _widget_callbacks(request).slots(runtime, queue_id)
    return CallbackSlotsView(queue_id=slots.queue_id, timezone=slots.timezone,
                             is_open=slots.is_open, next_open=slots.next_open,
                             slot_minutes=SLOT.seconds // 60, slots=slots.slots)


@router.post("/callback", status_code=202, response_model=CallbackReceiptView,
             responses=CALLBACK_REFUSALS,
             summary="The visitor asks to be called back (the widget's Call me back form)")
async def request_callback(request: Request, ask: CallbackAsk,
                           tenant: str = Query(min_length=1, max_length=64)) -> Any:
    runtime = await _center(request).by_slug(tenant)
    path = request.url.path
    try:
        receipt = await _widget_callbacks(request).request(
            runtime, queue_id=ask.queue_id, number=ask.number, name=ask.name, when=ask.when,
            visitor=ask.visitor, trap=ask.website,
            client_ip=request.client.host if request.client else "unknown")
    except NotPossibleNumber as error:
        return problem(422, type_=problem_type("invalid-phone-number"),
                       title="Not a phone number", detail=str(error), instance=path,
                       field="number")
    except OutsideBusinessHours as error:
        return problem(422, type_=problem_type("outside-business-hours"),
                       title="Outside business hours", detail=str(error), instance=path,
                       field="when", next_slot=None if error.next_slot is None
                       else error.next_slot.isoformat())
    except CallbackThrottled as error:
        return problem(429, type_=problem_type("too-many-requests"), detail=str(error),
                       instance=path, retry_after_s=error.retry_after_s,
                       headers={"Retry-After": str(error.retry_after_s)})
    return CallbackReceiptView(id=receipt.id, number=receipt.number,
                               expected_at=receipt.expected_at,
                               as_soon_as_possible=receipt.as_soon_as_possible)

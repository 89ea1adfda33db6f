"""Webhook subscriptions (admin) and the WebSocket event stream (integrations).

The secret that signs a subscription's deliveries is made here and shown once, on creation or
rotation; listings never include it. The stream `GET /api/events/stream` sends the event log as
JSON messages from `?after_seq=N` (or from now on), then every new event as it is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response, WebSocket
from pydantic import AnyHttpUrl, BaseModel, Field, field_validator
from starlette.websockets import WebSocketDisconnect

from omnicc.api.auth import authenticate, require_permission
from omnicc.api.database import request_database
from omnicc.api.live_socket import CLOSE_OVERLOAD, CLOSE_POLICY
from omnicc.app.event_feed import EventFeed, FeedOverflow
from omnicc.app.permissions import Permission, require
from omnicc.app.principals import Forbidden, Principal, Unauthenticated
from omnicc.app.routing import WallClock
from omnicc.app.webhooks import new_secret, send_test
from omnicc.bus import Bus
from omnicc.core.errors import NotFound
from omnicc.store.repositories import Tenants
from omnicc.store.repositories.events import Events, WebhookDeliveries, WebhookSubscriptions
from omnicc.store.tables import WebhookDelivery, WebhookSubscription, utc_now

MAX_EVENT_TYPES = 100
EVENT_TYPE = re.compile(r"^(\*|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?)$")

Admin = Annotated[Principal, Depends(require_permission(Permission.MANAGE_WEBHOOKS))]



# --- schemas -----------------------------------------------------------------------------------

class SubscriptionFields(BaseModel):
    url: AnyHttpUrl | None = Field(default=None, description="Where to POST (http or https).")
    event_types: list[str] | None = Field(
        default=None, max_length=MAX_EVENT_TYPES,
        description="Event types (`task.created`), prefixes (`task.*`) or `*`; empty is all.")
    is_enabled: bool | None = Field(
        default=None, description="Disabled pauses deliveries; enabling resumes where it was.")

    @field_validator("event_types")
    @classmethod
    def _known_shape(cls, value: list[str] | None) -> list[str] | None:
        for item in value or []:
            if len(item) > 64 or not EVENT_TYPE.match(item):
                raise ValueError(f"not an event type, prefix (`task.*`) or `*`: {item!r}")
        return value


class SubscriptionCreate(SubscriptionFields):
    url: AnyHttpUrl
    event_types: list[str] = Field(default_factory=lambda: ["*"], max_length=MAX_EVENT_TYPES)
    is_enabled: bool = True


class SubscriptionOut(BaseModel):
    id: str
    url: str
    event_types: list[str]
    is_enabled: bool
    created_at: datetime
    cursor_seq: int = Field(description="The last event seq handed over to deliveries.")

    @classmethod
    def of(cls, row: WebhookSubscription) -> SubscriptionOut:
        return cls(id=row.id, url=row.url, event_types=list(row.event_types),
                   is_enabled=row.is_enabled, created_at=row.created_at,
                   cursor_seq=row.cursor_seq)


class SubscriptionWithSecret(SubscriptionOut):
    secret: str = Field(description="Signs deliveries; shown only now. Keep it safe.")


class DeliveryOut(BaseModel):
    id: str
    event_seq: int
    idempotency_key: str
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def of(cls, row: WebhookDelivery) -> DeliveryOut:
        return cls.model_validate(row, from_attributes=True)


class TestResult(BaseModel):
    delivery_id: str = Field(description="The test's X-OmniCC-Delivery.")
    delivered: bool
    status_code: int | None
    error: str | None


# --- subscriptions -----------------------------------------------------------------------------

router = APIRouter(prefix="/api/webhooks", tags=["webhooks"])


@router.get("", response_model=list[SubscriptionOut], summary="Webhook subscriptions")
async def list_subscriptions(request: Request, principal: Admin) -> list[SubscriptionOut]:
    async with request_database(request).session() as session:
        rows = await WebhookSubscriptions(session, principal.tenant_id).list_all()
    return [SubscriptionOut.of(row) for row in rows]


@router.post("", response_model=SubscriptionWithSecret, status_code=201,
             summary="Subscribe a URL to events; the answer holds the secret, once")
async def create_subscription(body: SubscriptionCreate, request: Request,
                              principal: Admin) -> SubscriptionWithSecret:
    async with request_database(request).session() as session:
        last_seq = await Events(session, principal.tenant_id).last_seq()
        row = await WebhookSubscriptions(session, principal.tenant_id).add(WebhookSubscription(
            url=str(body.url), secret=new_secret(), event_types=list(body.event_types),
            is_enabled=body.is_enabled, cursor_seq=last_seq))
    return SubscriptionWithSecret(**SubscriptionOut.of(row).model_dump(), secret=row.secret)


@router.get("/{subscription_id}", response_model=SubscriptionOut, summary="One subscription")
async def get_subscription(subscription_id: str, request: Request,
                           principal: Admin) -> SubscriptionOut:
    async with request_database(request).session() as session:
        row = await WebhookSubscriptions(session, principal.tenant_id).get(subscription_id)
    return SubscriptionOut.of(row)


@router.patch("/{subscription_id}", response_model=SubscriptionOut,
              summary="Change a subscription's URL, event types or enabled state")
async def update_subscription(subscription_id: str, body: SubscriptionFields, request: Request,
                              principal: Admin) -> SubscriptionOut:
    async with request_database(request).session() as session:
        subscriptions = WebhookSubscriptions(session, principal.tenant_id)
        row = await subscriptions.get(subscription_id)
        if body.url is not None:
            row.url = str(body.url)
        if body.event_types is not None:
            row.event_types = list(body.event_types)
        if body.is_enabled is not None:
            row.is_enabled = body.is_enabled
        await subscriptions.save(row)
    return SubscriptionOut.of(row)


@router.delete("/{subscription_id}", status_code=204,
               summary="Delete a subscription and its deliveries")
async def delete_subscription(subscription_id: str, request: Request,
                              principal: Admin) -> Response:
    async with request_database(request).session() as session:
        await WebhookSubscriptions(session, principal.tenant_id).delete(subscription_id)
    return Response(status_code=204)


@router.post("/{subscription_id}/rotate-secret", response_model=SubscriptionWithSecret,
             summary="Replace the signing secret; the answer holds the new one, once")
async def rotate_secret(subscription_id: str, request: Request,
                        principal: Admin) -> SubscriptionWithSecret:
    async with request_database(request).session() as session:
        subscriptions = WebhookSubscriptions(session, principal.tenant_id)
        row = await subscriptions.get(subscription_id)
        row.secret = new_secret()
        await subscriptions.save(row)
    return SubscriptionWithSecret(**SubscriptionOut.of(row).model_dump(), secret=row.secret)


@router.get("/{subscription_id}/deliveries", response_model=list[DeliveryOut],
            summary="A subscription's recent deliveries, newest first")
async def list_deliveries(
    subscription_id: str, request: Request, principal: Admin,
    state: Annotated[Literal["pending", "delivered", "failed"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[DeliveryOut]:
    async with request_database(request).session() as session:
        await WebhookSubscriptions(session, principal.tenant_id).get(subscription_id)
        deliveries = WebhookDeliveries(session, principal.tenant_id)
        statement = deliveries.select().where(WebhookDelivery.subscription_id == subscription_id)
        if state is not None:
            statement = statement.where(WebhookDelivery.state == state)
        rows = await deliveries.all(
            statement.order_by(WebhookDelivery.event_seq.desc()).limit(limit))
    return [DeliveryOut.of(row) for row in rows]


@router.post("/{subscription_id}/deliveries/{delivery_id}/retry", response_model=DeliveryOut,
             summary="Send a failed delivery again (same idempotency key, attempts from zero)")
async def retry_delivery(subscription_id: str, delivery_id: str, request: Request,
                         principal: Admin) -> DeliveryOut:
    async with request_database(request).session() as session:
        deliveries = WebhookDeliveries(session, principal.tenant_id)
        row = await deliveries.first(deliveries.select().where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.subscription_id == subscription_id))
        if row is None:
            raise NotFound(f"webhook delivery {delivery_id} not found")
        if row.state != "delivered":
            row.state, row.attempts, row.next_attempt_at = "pending", 0, utc_now()
            await deliveries.save(row)
    return DeliveryOut.of(row)


@router.post("/{subscription_id}/test", response_model=TestResult,
             summary="POST a signed `webhook.test` event now and report the answer")
async def test_subscription(subscription_id: str, request: Request,
                            principal: Admin) -> TestResult:
    async with request_database(request).session() as session:
        row = await WebhookSubscriptions(session, principal.tenant_id).get(subscription_id)
        tenant = await Tenants(session).get(principal.tenant_id)
    key, attempt = await send_test(row, tenant.slug, WallClock())
    return TestResult(delivery_id=key, delivered=attempt.is_delivered,
                      status_code=attempt.status_code, error=attempt.error)


# --- the event stream --------------------------------------------------------------------------

stream_router = APIRouter(tags=["events"])


@stream_router.websocket("/api/events/stream")
async def event_stream(websocket: WebSocket,
                       after_seq: Annotated[int | None, Query(ge=0)] = None) -> None:
    """The event log, live. Each message is `{"type", "seq", "at", "data"}`; reconnect with
    `?after_seq=<last seq received>` to resume without a gap or a repeat. Closed with 1008 when
    not allowed and 1013 when the client reads too slowly to keep up."""
    try:
        principal = require(await authenticate(websocket), Permission.USE_API)
    except (Unauthenticated, Forbidden) as error:
        await websocket.accept()
        await websocket.close(CLOSE_POLICY, str(error)[:120])
        return
    await websocket.accept()
    bus: Bus = websocket.app.state.bus
    feed = EventFeed(request_database(websocket), principal.tenant_id, bus)
    sender = asyncio.create_task(_send(websocket, feed, after_seq))
    listener = asyncio.create_task(_until_disconnected(websocket))
    try:
        await asyncio.wait({sender, listener}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, listener):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                await task
    if sender.done() and not sender.cancelled() and sender.exception() is None:
        await _close(websocket, sender.result())


async def _send(websocket: WebSocket, feed: EventFeed,
                after_seq: int | None) -> tuple[int, str]:
    """Send events until the feed ends; the close code and reason to end with."""
    last = await feed.last_seq() if after_seq is None else after_seq
    try:
        async with contextlib.aclosing(feed.follow(last)) as events:
            async for event in events:
                await websocket.send_json(event)
                last = event["seq"]
    except FeedOverflow:
        return CLOSE_OVERLOAD, f"too slow; resume with after_seq={last}"
    return 1001, "going away"


async def _until_disconnected(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends, to notice when it leaves."""
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass


async def _close(websocket: WebSocket, code_and_reason: tuple[int, str]) -> None:
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        await websocket.close(*code_and_reason)


def install_webhooks(app: FastAPI) -> None:
    app.include_router(router)
    app.include_router(stream_router)

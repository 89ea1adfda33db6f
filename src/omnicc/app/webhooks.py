"""Outgoing webhooks: every event of the log, POSTed signed to each subscription that wants it.

Two steps, each durable on its own:
1. Fan-out. For each enabled subscription the dispatcher reads the log after the subscription's
   `cursor_seq`, adds one `pending` delivery per matching event and moves the cursor, in one
   transaction. The delivery's idempotency key is `<subscription id>.<seq>`: derived, not drawn,
   and unique in the table, so no crash or second dispatcher can make a second key for an event.
2. Delivery. Due `pending` rows are POSTed; a 2xx marks them `delivered`, anything else (an error
   status, a redirect, a timeout, a refused connection) schedules the next attempt with
   exponential backoff and jitter, and after the last attempt the row is `failed`.

A crash between a receiver's 2xx and the row's update sends that delivery again under the same
key: delivery is at least once, and receivers drop repeats by `X-OmniCC-Delivery`. Deliveries
run concurrently and retries wait, so a receiver may see a subscription's events out of order;
`seq` orders them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.app.event_feed import EVENTS_TOPIC, conversations_of, wire_event
from omnicc.bus import Bus
from omnicc.core.clock import Clock
from omnicc.store.database import Database
from omnicc.store.repositories.events import Events, WebhookDeliveries, WebhookSubscriptions
from omnicc.store.tables import Event, WebhookDelivery, WebhookSubscription

log = logging.getLogger("omnicc.webhooks")

SIGNATURE_HEADER = "X-OmniCC-Signature"
TIMESTAMP_HEADER = "X-OmniCC-Timestamp"
DELIVERY_HEADER = "X-OmniCC-Delivery"
EVENT_HEADER = "X-OmniCC-Event"
USER_AGENT = "OmniCC-Webhooks/1"
MAX_ERROR_CHARS = 500


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How hard the dispatcher tries. `backoff_s[n]` is the wait after the (n+1)th failed
    attempt (the last value repeats), stretched or shrunk by up to `jitter` so that receivers
    coming back from an outage are not hit by every retry at once."""

    backoff_s: tuple[float, ...] = (10, 30, 120, 600, 3600, 3 * 3600, 6 * 3600, 12 * 3600)
    max_attempts: int = 10
    jitter: float = 0.2
    timeout_s: float = 10.0
    concurrency: int = 8
    batch: int = 100
    poll_s: float = 5.0
    gather_s: float = 0.1
    """After an event, how long the dispatcher lets more arrive before it steps."""

    def retry_in_s(self, attempts: int, rng: random.Random) -> float:
        base = self.backoff_s[min(attempts, len(self.backoff_s)) - 1]
        return base * (1 + self.jitter * (2 * rng.random() - 1))

    def count_attempt(self, row: Any, error: str | None, now_s: float, rng: random.Random, *,
                      done: str) -> bool:
        """One attempt at an outbox row (a webhook delivery, a CRM push, a client email):
        state `done` when it went, `failed` after the last attempt allowed, else the time of
        the next one. Returns whether it went (the caller stamps when)."""
        row.attempts += 1
        row.last_error = error
        if error is None:
            row.state = done
        elif row.attempts >= self.max_attempts:
            row.state = "failed"
        else:
            row.next_attempt_at = datetime.fromtimestamp(
                now_s + self.retry_in_s(row.attempts, rng), UTC)
        return error is None


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def idempotency_key(subscription_id: str, seq: int) -> str:
    return f"{subscription_id}.{seq}"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256 over `<timestamp>.<body>` keyed with the secret."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def matches(event_types: Sequence[Any], event_type: str) -> bool:
    """Whether a subscription's filter (names, `prefix.*`, `*`; empty is all) takes a type."""
    if not event_types:
        return True
    for wanted in event_types:
        if wanted in ("*", event_type):
            return True
        if isinstance(wanted, str) and wanted.endswith(".*") and event_type.startswith(
                wanted[:-1]):
            return True
    return False


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one POST came to: `status_code` when the receiver answered, `error` unless 2xx."""

    status_code: int | None
    error: str | None

    @property
    def is_delivered(self) -> bool:
        return self.error is None


def envelope(key: str, event: Mapping[str, Any], tenant: str) -> bytes:
    """The JSON body: the event's wire form under its idempotency key and tenant slug."""
    body = {"id": key, "type": event["type"], "seq": event["seq"], "at": event["at"],
            "tenant": tenant, "data": event["data"]}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


async def post(client: httpx.AsyncClient, url: str, secret: str, key: str, event_type: str,
               body: bytes, now_s: float) -> Attempt:
    """One signed POST; never raises for what the network or the receiver does."""
    timestamp = str(int(now_s))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: event_type,
        DELIVERY_HEADER: key,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }
    try:
        # Streamed and closed unread: a receiver's answer body is never needed.
        async with client.stream("POST", url, content=body, headers=headers) as response:
            status = response.status_code
    except httpx.HTTPError as error:
        return Attempt(None, f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS])
    if 200 <= status < 300:
        return Attempt(status, None)
    return Attempt(status, f"HTTP {status}")


def new_client(policy: DeliveryPolicy) -> httpx.AsyncClient:
    # Redirects are not followed: a signed event goes only where the subscription says.
    return httpx.AsyncClient(timeout=policy.timeout_s, follow_redirects=False, trust_env=False)


def _datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class WebhookDispatcher:
    """One tenant's webhooks: fans the log out to deliveries and delivers the due ones."""

    def __init__(self, database: Database, tenant_id: str, tenant_slug: str, clock: Clock,
                 bus: Bus | None = None, *, policy: DeliveryPolicy | None = None,
                 rng: random.Random | None = None) -> None:
        self._database = database
        self._tenant_id = tenant_id
        self._slug = tenant_slug
        self._clock = clock
        self._bus = bus
        self.policy = policy or DeliveryPolicy()
        self._rng = rng or random.Random()
        self._subscribed = True
        """Whether the last fan-out saw an enabled subscription (none: nothing can be due)."""

    async def run(self) -> None:
        """Until cancelled: step, then sleep until an event is committed, a retry is due or
        the poll interval passed (the poll also catches events committed by another node)."""
        subscription = None
        async with new_client(self.policy) as client:
            try:
                while True:
                    try:
                        await self.step(client)
                        wait_s = await self._idle_s() if self._subscribed else self.policy.poll_s
                    except Exception:  # a database hiccup must not end webhooks for good
                        log.exception("webhook dispatch failed", extra={"tenant": self._slug})
                        wait_s = self.policy.poll_s
                    if self._bus is not None and (subscription is None or
                                                  subscription.is_closed):
                        subscription = self._bus.subscribe(self._tenant_id, EVENTS_TOPIC)
                    with contextlib.suppress(TimeoutError):
                        if subscription is None:
                            await asyncio.sleep(wait_s)
                        else:
                            # asyncio.timeout, not wait_for: Python 3.11's wait_for can
                            # swallow the cancellation that stops this loop when an event
                            # arrives at the same moment, and stop() then waits forever.
                            async with asyncio.timeout(wait_s):
                                await subscription.get()
                            # The step reads the event log: one step covers the events of
                            # the next moment too (under load a step per commit was a third
                            # of the server's database sessions).
                            await asyncio.sleep(self.policy.gather_s)
                            subscription.drain()
            finally:
                if subscription is not None:
                    subscription.close()

    async def step(self, client: httpx.AsyncClient) -> None:
        """Fan out every new event, then make every due attempt."""
        while await self.fan_out():
            pass
        if not self._subscribed:  # one query per wake-up while no webhook is set up
            return
        while await self.deliver_due(client):
            pass

    async def fan_out(self) -> int:
        """Add the deliveries of one batch of new events; returns how many events were read."""
        async with self._database.session() as session:
            subscriptions = [s for s in await WebhookSubscriptions(
                session, self._tenant_id).list_all() if s.is_enabled]
            self._subscribed = bool(subscriptions)
            if not subscriptions:
                return 0
            after = min(s.cursor_seq for s in subscriptions)
            rows = await Events(session, self._tenant_id).since(after, self.policy.batch)
            if not rows:
                return 0
            now = _datetime(self._clock.now())
            session.add_all([
                WebhookDelivery(tenant_id=self._tenant_id, subscription_id=subscription.id,
                                event_seq=row.seq, next_attempt_at=now,
                                idempotency_key=idempotency_key(subscription.id, row.seq))
                for subscription in subscriptions for row in rows
                if row.seq > subscription.cursor_seq and matches(subscription.event_types,
                                                                 row.type)])
            for subscription in subscriptions:
                subscription.cursor_seq = max(subscription.cursor_seq, rows[-1].seq)
            return len(rows)

    async def deliver_due(self, client: httpx.AsyncClient) -> int:
        """Make the attempts due now (one batch, concurrently); returns how many."""
        async with self._database.session() as session:
            subscriptions = {s.id: s for s in await WebhookSubscriptions(
                session, self._tenant_id).list_all() if s.is_enabled}
            statement = WebhookDeliveries(session, self._tenant_id).select().where(
                WebhookDelivery.state == "pending",
                WebhookDelivery.next_attempt_at <= _datetime(self._clock.now()),
                WebhookDelivery.subscription_id.in_(subscriptions),
            ).order_by(WebhookDelivery.next_attempt_at).limit(self.policy.batch)
            due = list((await session.execute(statement)).scalars())
            if not due:
                return 0
            events = await self._events(session, {d.event_seq for d in due})
            for lost in (d for d in due if d.event_seq not in events):
                lost.state, lost.last_error = "failed", "the event is no longer in the log"
            work = [(d.id, d.idempotency_key, subscriptions[d.subscription_id], events[d.event_seq])
                    for d in due if d.event_seq in events]
        gate = asyncio.Semaphore(self.policy.concurrency)

        async def attempt(delivery_id: str, key: str, subscription: WebhookSubscription,
                          event: dict[str, Any]) -> None:
            async with gate:
                result = await post(client, subscription.url, subscription.secret, key,
                                    event["type"], envelope(key, event, self._slug),
                                    self._clock.now())
            await self._record(delivery_id, result)

        await asyncio.gather(*(attempt(*item) for item in work))
        return len(due)

    async def _events(self, session: AsyncSession, seqs: set[int]) -> dict[int, dict[str, Any]]:
        statement = select(Event).where(Event.tenant_id == self._tenant_id, Event.seq.in_(seqs))
        rows = list((await session.execute(statement)).scalars())
        conversations = await conversations_of(session, self._tenant_id, rows)
        return {row.seq: wire_event(row, conversations) for row in rows}

    async def _record(self, delivery_id: str, result: Attempt) -> None:
        now_s = self._clock.now()
        async with self._database.session() as session:
            delivery = await WebhookDeliveries(session, self._tenant_id).find(delivery_id)
            if delivery is None:  # its subscription was deleted meanwhile
                return
            delivery.last_status_code = result.status_code
            if self.policy.count_attempt(delivery, result.error, now_s, self._rng,
                                         done="delivered"):
                delivery.delivered_at = _datetime(now_s)
        if not result.is_delivered:
            log.info("webhook attempt failed", extra={
                "tenant": self._slug, "delivery": delivery_id, "error": result.error})

    async def _idle_s(self) -> float:
        """Seconds until the next pending attempt is due, at most the poll interval."""
        async with self._database.session() as session:
            statement = select(func.min(WebhookDelivery.next_attempt_at)).join(
                WebhookSubscription,
                WebhookSubscription.id == WebhookDelivery.subscription_id,
            ).where(WebhookDelivery.tenant_id == self._tenant_id,
                    WebhookDelivery.state == "pending", WebhookSubscription.is_enabled)
            next_at: datetime | None = (await session.execute(statement)).scalar_one()
        if next_at is None:
            return self.policy.poll_s
        wait_s = (next_at - _datetime(self._clock.now())) / timedelta(seconds=1)
        return min(self.policy.poll_s, max(wait_s, 0.0))


async def send_test(subscription: WebhookSubscription, tenant_slug: str, clock: Clock,
                    policy: DeliveryPolicy | None = None) -> tuple[str, Attempt]:
    """POST a `webhook.test` event now, signed like any delivery, and say how it went; nothing
    is stored or retried (it checks a receiver's URL and signature check)."""
    key = f"test.{secrets.token_hex(8)}"
    event = {"type": "webhook.test", "seq": 0, "at": _datetime(clock.now()).isoformat(),
             "data": {"subscription_id": subscription.id}}
    policy = policy or DeliveryPolicy()
    async with new_client(policy) as client:
        return key, await post(client, subscription.url, subscription.secret, key,
                               "webhook.test", envelope(key, event, tenant_slug), clock.now())

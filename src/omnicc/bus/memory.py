"""The in-process bus: notices published to topics, delivered to the subscriptions on them.

A topic is a string such as `conversation:<id>`, `agent:<id>`, `events` or `wallboard`, always
within one tenant. A subscription is one connected client (a customer's widget, an agent's
desktop, a wallboard); it follows a set of topics that may change while it is open (an agent
who accepts a chat follows that conversation too). Delivery never blocks the publisher: each
subscription has a bounded queue, and a client too slow to keep up is closed (`overflowed`),
so it reconnects and reloads its state from the store instead of silently missing notices.

Notices carry what is already committed: the store stays the system of record, and the bus is
only how clients learn of it quickly.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Notice:
    """One thing to tell clients: `type` (`message.created`, `offer.created`, ...) and its data,
    JSON-ready."""

    type: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def wire(self) -> dict[str, Any]:
        return {"type": self.type, **self.data}


class Subscription:
    """One client's view of the bus: iterate over `get()` until it returns None (closed)."""

    def __init__(self, bus: Bus, tenant_id: str, max_pending: int) -> None:
        self._bus = bus
        self.tenant_id = tenant_id
        self.topics: set[str] = set()
        self._queue: asyncio.Queue[Notice | None] = asyncio.Queue(max_pending + 1)
        self._max_pending = max_pending
        self.is_closed = False
        self.overflowed = False

    def follow(self, *topics: str) -> None:
        for topic in topics:
            if topic not in self.topics:
                self.topics.add(topic)
                self._bus._attach(self, topic)

    def unfollow(self, *topics: str) -> None:
        for topic in topics:
            if topic in self.topics:
                self.topics.discard(topic)
                self._bus._detach(self, topic)

    async def get(self) -> Notice | None:
        """The next notice; None once the subscription is closed (by `close` or overflow)."""
        if self.is_closed and self._queue.empty():
            return None
        return await self._queue.get()

    def drain(self) -> int:
        """Drop the notices already waiting; returns how many. For a reader that rereads the
        state on any notice: one wake-up covers a burst."""
        dropped = 0
        while not self._queue.empty():
            if self._queue.get_nowait() is None:  # closed: keep the end marker
                self._queue.put_nowait(None)
                break
            dropped += 1
        return dropped

    def close(self) -> None:
        if self.is_closed:
            return
        self.is_closed = True
        self.unfollow(*list(self.topics))
        self._queue.put_nowait(None)

    def _deliver(self, notice: Notice) -> None:
        if self.is_closed:
            return
        if self._queue.qsize() >= self._max_pending:
            self.overflowed = True
            self.close()
            return
        self._queue.put_nowait(notice)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class Bus:
    """Topics per tenant and the subscriptions that follow them."""

    def __init__(self, *, max_pending: int = 1000) -> None:
        self._max_pending = max_pending
        self._topics: dict[tuple[str, str], set[Subscription]] = defaultdict(set)

    def subscribe(self, tenant_id: str, *topics: str) -> Subscription:
        subscription = Subscription(self, tenant_id, self._max_pending)
        subscription.follow(*topics)
        return subscription

    def publish(self, tenant_id: str, topics: Iterable[str], notice: Notice) -> int:
        """Deliver `notice` once to every subscription following any of `topics`; returns how
        many subscriptions received it."""
        receivers: set[Subscription] = set()
        for topic in topics:
            receivers |= self._topics.get((tenant_id, topic), set())
        for subscription in receivers:
            subscription._deliver(notice)
        return len(receivers)

    def extend(self, tenant_id: str, followers_of: str, *topics: str) -> None:
        """Every subscription following `followers_of` follows `topics` too, from this moment:
        an agent's desks follow the chat they just accepted before its next message is
        published, so none can slip past them."""
        for subscription in list(self._topics.get((tenant_id, followers_of), ())):
            subscription.follow(*topics)

    def withdraw(self, tenant_id: str, followers_of: str, *topics: str) -> None:
        """The reverse of `extend`: a transferred chat leaves the agent's desks."""
        for subscription in list(self._topics.get((tenant_id, followers_of), ())):
            subscription.unfollow(*topics)

    def followers(self, tenant_id: str, topic: str) -> int:
        return len(self._topics.get((tenant_id, topic), ()))

    def _attach(self, subscription: Subscription, topic: str) -> None:
        self._topics[(subscription.tenant_id, topic)].add(subscription)

    def _detach(self, subscription: Subscription, topic: str) -> None:
        key = (subscription.tenant_id, topic)
        followers = self._topics.get(key)
        if followers is not None:
            followers.discard(subscription)
            if not followers:
                del self._topics[key]

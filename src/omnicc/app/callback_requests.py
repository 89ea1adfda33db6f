"""The website's "Call me back" button: a visitor's callback request, checked, then kept.

A request names a queue that takes calls (some agent of it has voice capacity), a number that
is a possible phone number (kept in E.164), and a time: as soon as possible, or a moment when
the queue is open (its business hours, in their own time zone). "As soon as possible" while the
queue is closed means its next opening. The request is a `CallbackRequest` row (source
`widget`) for the customer known by that phone number; `omnicc.app.callbacks` turns it into a
call when it is due. The visitor's own customer (the chat widget's token) is linked in the
request's attributes when it is another customer: merging the two is the customer work's job.

The button is public, so it is guarded: a limit per client address (IPv6 by /64) and per
number, and a honeypot field that people never see; a request that fills it is answered like
any other and never kept, so a bot learns nothing.
"""

from __future__ import annotations

import math
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from omnicc.app.callbacks import IN_PROGRESS
from omnicc.app.chats import VISITOR, visitor_digest
from omnicc.app.login_throttle import client_key
from omnicc.app.voice import VOICE, normalize_phone
from omnicc.core.business_hours import is_open
from omnicc.core.clock import Clock
from omnicc.core.errors import Conflict, NotFound, OmniccError
from omnicc.store.database import Database
from omnicc.store.repositories import (
    BusinessHoursRepository,
    CallbackRequests,
    Identities,
    Queues,
)
from omnicc.store.tables import CallbackRequest

if TYPE_CHECKING:
    from omnicc.app.runtime import TenantRuntime

SOURCE = "widget"
SLOT = timedelta(minutes=30)
HORIZON = timedelta(days=7)
"""Slots are offered, and times accepted, up to this far ahead."""
PAST_GRACE = timedelta(minutes=2)
"""A chosen time this little in the past (a slow form) means now."""


class NotPossibleNumber(OmniccError):
    """The text cannot be a phone number anywhere (HTTP 422)."""


class OutsideBusinessHours(OmniccError):
    """The chosen time is not one when the queue takes calls; names the next one (HTTP 422)."""

    def __init__(self, message: str, next_slot: datetime | None) -> None:
        self.next_slot = next_slot
        super().__init__(message)


class CallbackThrottled(OmniccError):
    """Too many requests from one address or for one number (HTTP 429)."""

    def __init__(self, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(f"too many callback requests, try again in {retry_after_s} s")


@dataclass(frozen=True, slots=True)
class Allowance:
    """At most `requests` within any `window_s` seconds."""

    requests: int
    window_s: float


@dataclass(frozen=True, slots=True)
class CallbackLimits:
    per_client: Allowance = Allowance(10, 3600.0)
    per_number: Allowance = Allowance(3, 3600.0)


class RequestCounter:
    """Request times per key within the allowance's window; memory bounded like the login
    throttle's: a key goes once its newest request leaves the window, the oldest beyond
    `max_keys` first."""

    def __init__(self, allowance: Allowance, max_keys: int) -> None:
        self.allowance = allowance
        self.max_keys = max_keys
        self._times: OrderedDict[str, deque[float]] = OrderedDict()

    def take(self, key: str, now_s: float) -> float:
        """Count a request; 0, or the seconds to wait when the allowance is used up."""
        while self._times:
            oldest_key, oldest = next(iter(self._times.items()))
            if oldest[-1] + self.allowance.window_s > now_s and len(self._times) < self.max_keys:
                break
            del self._times[oldest_key]
        times = self._times.get(key)
        if times is None:
            times = self._times[key] = deque(maxlen=self.allowance.requests)
        elif len(times) == self.allowance.requests:
            wait_s = times[0] + self.allowance.window_s - now_s
            if wait_s > 0:
                return wait_s
        times.append(now_s)
        self._times.move_to_end(key)
        return 0.0

    def __len__(self) -> int:
        """How many keys are held (the memory bound's tests)."""
        return len(self._times)


@dataclass(frozen=True, slots=True)
class Hours:
    """A queue's business hours; no weekly table: always open."""

    timezone: str = "UTC"
    weekly: dict[str, Any] = field(default_factory=dict)
    holidays: list[Any] = field(default_factory=list)

    def open_at(self, at: datetime) -> bool:
        return is_open(self.timezone, self.weekly, self.holidays, at)

    def grid_after(self, at: datetime) -> datetime:
        """The first slot boundary (:00 or :30 local time) at or after `at`."""
        local = at.astimezone(ZoneInfo(self.timezone)).replace(second=0, microsecond=0)
        if local < at:
            local += timedelta(minutes=1)
        minutes = SLOT.seconds // 60
        local += timedelta(minutes=-local.minute % minutes)
        return local.astimezone(UTC)

    def slots(self, now: datetime) -> list[datetime]:
        """The slot starts within the horizon when the queue is open."""
        start, end = self.grid_after(now), now + HORIZON
        found = []
        at = start
        while at < end:
            if self.open_at(at):
                found.append(at)
            at += SLOT
        return found

    def next_open(self, after: datetime) -> datetime | None:
        """The first minute from `after` on when the queue is open, within the horizon."""
        after = after.replace(second=0, microsecond=0) + (
            timedelta(minutes=1) if after.second or after.microsecond else timedelta())
        if self.open_at(after):
            return after
        at, end = self.grid_after(after), after + HORIZON
        while at < end:
            if self.open_at(at):
                # It opened at a minute since the previous boundary: find which.
                minute = max(after, at - SLOT + timedelta(minutes=1))
                while not self.open_at(minute):
                    minute += timedelta(minutes=1)
                return minute
            at += SLOT
        return None


@dataclass(frozen=True, slots=True)
class CallbackSlots:
    queue_id: str
    timezone: str
    is_open: bool
    next_open: datetime | None
    slots: list[datetime]


@dataclass(frozen=True, slots=True)
class CallbackReceipt:
    """What the visitor is told: the request and when the call is expected."""

    id: str
    number: str
    expected_at: datetime
    as_soon_as_possible: bool
    """In line now: the call comes as soon as an agent is free."""


def possible_number(raw: str, default_region: str | None = None) -> str:
    """The number in E.164, or `NotPossibleNumber`."""
    value = normalize_phone(raw, default_region)
    if not value.startswith("+"):
        raise NotPossibleNumber(
            f"{raw.strip()[:40]!r} is not a phone number we can call; "
            "give it with the country code, e.g. +44 20 7946 0958")
    return value


def takes_callbacks(runtime: TenantRuntime, queue_id: str) -> bool:
    """Whether some agent of the queue can take calls (voice capacity above zero)."""
    engine = runtime.routing.engine
    try:
        members = engine.queue(queue_id).members
    except NotFound:
        return False
    return any(engine.agent(agent_id).capacity.get(VOICE, 0) > 0 for agent_id in members)


class WidgetCallbacks:
    """The server's callback button: its limits are per server, its requests per tenant."""

    def __init__(self, database: Database, clock: Clock, *,
                 limits: CallbackLimits | None = None, default_region: str | None = None,
                 max_keys: int = 100_000) -> None:
        self._database = database
        self._clock = clock
        self.limits = limits or CallbackLimits()
        self._default_region = default_region
        self._per_client = RequestCounter(self.limits.per_client, max_keys)
        self._per_number = RequestCounter(self.limits.per_number, max_keys)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.now(), UTC)

    def _take(self, counter: RequestCounter, key: str) -> None:
        wait_s = counter.take(key, self._clock.now())
        if wait_s > 0:
            raise CallbackThrottled(max(1, math.ceil(wait_s)))

    async def _queue_hours(self, runtime: TenantRuntime, queue_id: str) -> Hours:
        """The hours of a queue that takes callbacks, or NotFound/Conflict."""
        async with self._database.session() as session:
            queue = await Queues(session, runtime.tenant_id).get(queue_id)
            if not queue.is_enabled or not takes_callbacks(runtime, queue.id):
                raise Conflict(f"the queue {queue.name!r} takes no calls")
            if queue.business_hours_id is None:
                return Hours()
            row = await BusinessHoursRepository(session, runtime.tenant_id).get(
                queue.business_hours_id)
            return Hours(row.timezone, dict(row.weekly), list(row.holidays))

    async def slots(self, runtime: TenantRuntime, queue_id: str) -> CallbackSlots:
        hours = await self._queue_hours(runtime, queue_id)
        now = self._now()
        return CallbackSlots(queue_id=queue_id, timezone=hours.timezone,
                             is_open=hours.open_at(now), next_open=hours.next_open(now),
                             slots=hours.slots(now))

    async def request(self, runtime: TenantRuntime, *, queue_id: str, number: str,
                      client_ip: str, name: str = "", when: datetime | None = None,
                      visitor: str | None = None, trap: str = "") -> CallbackReceipt:
        """Check and keep a visitor's request. `trap` is the honeypot field's value."""
        self._take(self._per_client, client_key(client_ip))
        value = possible_number(number, self._default_region)
        hours = await self._queue_hours(runtime, queue_id)
        now = self._now()
        due_at, expected_at = self._due(hours, now, when)
        self._take(self._per_number, value)
        if trap:
            return CallbackReceipt(id=uuid.uuid4().hex, number=value, expected_at=expected_at,
                                   as_soon_as_possible=due_at is None)
        request = await self._keep(runtime, queue_id=queue_id, number=value, name=name.strip(),
                                   due_at=due_at, visitor=visitor, asap=when is None)
        if request.due_at is not None:
            expected_at = request.due_at.replace(tzinfo=request.due_at.tzinfo or UTC)
        return CallbackReceipt(id=request.id, number=value, expected_at=expected_at,
                               as_soon_as_possible=request.due_at is None)

    def _due(self, hours: Hours, now: datetime,
             when: datetime | None) -> tuple[datetime | None, datetime]:
        """The request's due time (None: now, in line at once) and when the call is expected."""
        if when is None:
            if hours.open_at(now):
                return None, now
            opening = hours.next_open(now)
            if opening is None:
                raise OutsideBusinessHours("the queue takes no calls in the coming days", None)
            return opening, opening
        if when.tzinfo is None:
            raise OutsideBusinessHours("a time needs its UTC offset, e.g. "
                                       "2026-11-24T09:30:00+02:00", hours.next_open(now))
        when = when.astimezone(UTC)
        if when < now - PAST_GRACE:
            raise OutsideBusinessHours("that time has passed", hours.next_open(now))
        when = max(when, now)
        if when > now + HORIZON:
            raise OutsideBusinessHours(
                f"a callback can be booked up to {HORIZON.days} days ahead", None)
        if not hours.open_at(when):
            opening = hours.next_open(when)
            local = when.astimezone(ZoneInfo(hours.timezone)).isoformat(timespec="minutes")
            said = ("; the next open slot is "
                    + opening.astimezone(ZoneInfo(hours.timezone)).isoformat(timespec="minutes")
                    if opening is not None else "")
            raise OutsideBusinessHours(f"we take no calls at {local}{said}", opening)
        return when, when

    async def _keep(self, runtime: TenantRuntime, *, queue_id: str, number: str, name: str,
                    due_at: datetime | None, visitor: str | None,
                    asap: bool) -> CallbackRequest:
        """Store the request; a widget request for the same number and queue that is still
        waiting is moved to the new time instead of doubled."""
        customer = await runtime.voice.identify_caller(number, display_name=name)
        attributes: dict[str, Any] = {"requested": "asap" if asap else "time"}
        if name:
            attributes["name"] = name
        async with self._database.session() as session:
            if visitor:
                identity = await Identities(session, runtime.tenant_id).by_value(
                    VISITOR, visitor_digest(visitor))
                if identity is not None and identity.customer_id != customer.id:
                    attributes["visitor_customer_id"] = identity.customer_id
            requests = CallbackRequests(session, runtime.tenant_id)
            for earlier in await requests.for_customer(customer.id):
                if (earlier.source, earlier.queue_id, earlier.number) != (SOURCE, queue_id,
                                                                          number):
                    continue
                if earlier.state == "pending":
                    earlier.due_at = due_at
                    earlier.attributes = {**earlier.attributes, **attributes}
                    return await requests.save(earlier)
                if earlier.state == IN_PROGRESS:
                    return earlier   # being dialled now
            return await requests.add(CallbackRequest(
                number=number, queue_id=queue_id, customer_id=customer.id, source=SOURCE,
                due_at=due_at, attributes=attributes))

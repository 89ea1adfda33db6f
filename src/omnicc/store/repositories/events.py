"""The event log (append a batch, read from a seq) and webhook subscriptions and deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.store.repositories.base import TenantRepository, take_sequence
from omnicc.store.tables import Event, WebhookDelivery, WebhookSubscription, utc_now


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append; the log gives it its seq."""

    type: str
    payload: dict[str, Any] = field(default_factory=dict)
    at: datetime | None = None


class Events:
    """One tenant's append-only event log.

    `append` runs in the caller's transaction: the events are committed with the state change
    they describe or not at all, and their seqs are gap-free (a rollback returns them).
    """

    def __init__(self, session: AsyncSession, tenant_id: str) -> None:
        self.session = session
        self.tenant_id = tenant_id

    async def append(self, events: Sequence[NewEvent]) -> list[Event]:
        if not events:
            return []
        first = await take_sequence(self.session, self.tenant_id, "event_seq", len(events))
        now = utc_now()
        rows = [
            Event(
                tenant_id=self.tenant_id,
                seq=first + offset,
                type=event.type,
                at=event.at or now,
                payload=dict(event.payload),
            )
            for offset, event in enumerate(events)
        ]
        self.session.add_all(rows)
        await self.session.flush()
        return rows

    async def since(self, after_seq: int = 0, limit: int = 1000) -> list[Event]:
        """Events with seq > `after_seq`, oldest first, at most `limit`."""
        statement = (
            select(Event)
            .where(Event.tenant_id == self.tenant_id, Event.seq > after_seq)
            .order_by(Event.seq)
            .limit(limit)
        )
        return list((await self.session.execute(statement)).scalars())

    async def last_seq(self) -> int:
        statement = select(func.coalesce(func.max(Event.seq), 0)).where(
            Event.tenant_id == self.tenant_id
        )
        last: int = (await self.session.execute(statement)).scalar_one()
        return last


class WebhookSubscriptions(TenantRepository[WebhookSubscription]):
    table = WebhookSubscription
    noun = "webhook subscription"


class WebhookDeliveries(TenantRepository[WebhookDelivery]):
    table = WebhookDelivery
    noun = "webhook delivery"

    async def due(self, now: datetime, limit: int = 100) -> list[WebhookDelivery]:
        statement = self.select().where(
            WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= now
        )
        return await self.all(statement.order_by(WebhookDelivery.next_attempt_at).limit(limit))

"""What an incoming call needs before its first prompt: the tenant and flow of the dialled
number, and the tenant's business hours for the flow's `hours` nodes, in one lookup."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.channels.voice.ivr.flow import Flow, parse_flow
from omnicc.channels.voice.ivr.interpreter import OpeningHours
from omnicc.store.repositories import (
    BusinessHoursRepository,
    IvrFlows,
    Tenants,
    find_number,
)


@dataclass(frozen=True, slots=True)
class InboundRoute:
    """The dialled number's tenant and flow (None: the number has no flow yet)."""

    tenant_id: str
    tenant_slug: str
    timezone: str
    number_id: str
    number: str
    flow_id: str | None
    flow: Flow | None
    business_hours: dict[str, OpeningHours] = field(default_factory=dict)


async def opening_hours(session: AsyncSession, tenant_id: str) -> dict[str, OpeningHours]:
    """The tenant's business hours by id, as the interpreter reads them."""
    return {
        row.id: OpeningHours(row.timezone, dict(row.weekly), tuple(row.holidays))
        for row in await BusinessHoursRepository(session, tenant_id).list_all()
    }


async def inbound_route(session: AsyncSession, dialled: str) -> InboundRoute | None:
    """The route of an enabled number (E.164 or SIP user part), or None: answer 404.

    The stored flow is parsed and checked again (InvalidFlow if it no longer is, e.g. after a
    version of OmniCC that reads flows differently).
    """
    number = await find_number(session, dialled)
    if number is None:
        return None
    tenant = await Tenants(session).get(number.tenant_id)
    flow = None
    if number.flow_id is not None:
        row = await IvrFlows(session, tenant.id).get(number.flow_id)
        flow = parse_flow(row.definition)
    return InboundRoute(
        tenant_id=tenant.id, tenant_slug=tenant.slug, timezone=tenant.timezone,
        number_id=number.id, number=number.number, flow_id=number.flow_id, flow=flow,
        business_hours=await opening_hours(session, tenant.id),
    )

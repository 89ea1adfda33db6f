"""Skills, queues, routing policies, agents, wrap-up codes, canned responses, business hours."""

from __future__ import annotations

from omnicc.core.errors import NotFound
from omnicc.store.repositories.base import TenantRepository
from omnicc.store.tables import (
    Agent,
    BusinessHours,
    CannedResponse,
    Queue,
    RoutingPolicy,
    Skill,
    WrapUpCode,
)


class Skills(TenantRepository[Skill]):
    table = Skill
    noun = "skill"


class Queues(TenantRepository[Queue]):
    table = Queue
    noun = "queue"

    async def by_name(self, name: str) -> Queue:
        queue = await self.first(self.select().where(Queue.name == name))
        if queue is None:
            raise NotFound(f"queue {name} not found")
        return queue

    async def enabled(self) -> list[Queue]:
        return await self.all(self.select().where(Queue.is_enabled).order_by(Queue.name))


class RoutingPolicies(TenantRepository[RoutingPolicy]):
    table = RoutingPolicy
    noun = "routing policy"


class Agents(TenantRepository[Agent]):
    table = Agent
    noun = "agent"

    async def by_user(self, user_id: str) -> Agent:
        agent = await self.first(self.select().where(Agent.user_id == user_id))
        if agent is None:
            raise NotFound(f"agent of user {user_id} not found")
        return agent


class WrapUpCodes(TenantRepository[WrapUpCode]):
    table = WrapUpCode
    noun = "wrap-up code"


class CannedResponses(TenantRepository[CannedResponse]):
    table = CannedResponse
    noun = "canned response"


class BusinessHoursRepository(TenantRepository[BusinessHours]):
    table = BusinessHours
    noun = "business hours"

"""Administration of what routing is built from: skills, business hours, queues, routing policies
and agents. Each change is checked against a throwaway engine, committed, and reloaded by the
tenant's running engine (agents keep their status and their open tasks)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.api.admin.changes import (
    changing,
    ensure_free,
    in_use,
    reading,
    referenced,
)
from omnicc.api.auth import require_permission
from omnicc.app.configuration import (
    AgentSettings,
    Description,
    HoursSettings,
    Name,
    PolicySettings,
    QueueTuning,
    Section,
    check_agent,
    check_hours,
    check_policy,
    check_queue,
    check_skills_known,
    count_tasks,
    holiday_of,
    queue_config_json,
)
from omnicc.app.permissions import Permission
from omnicc.app.principals import Principal
from omnicc.channels.voice.ivr.configuration import flows_using
from omnicc.core.errors import Conflict
from omnicc.core.model import PREFERRED
from omnicc.store.repositories import (
    Agents,
    BusinessHoursRepository,
    Queues,
    RoutingPolicies,
    Skills,
    Tenants,
    Users,
)
from omnicc.store.tables import Agent, BusinessHours, Queue, RoutingPolicy, Skill

router = APIRouter(prefix="/api/admin", tags=["administration"])

SkillAdmin = Annotated[Principal, Depends(require_permission(Permission.MANAGE_SKILLS))]
HoursAdmin = Annotated[Principal, Depends(require_permission(Permission.MANAGE_BUSINESS_HOURS))]
QueueAdmin = Annotated[Principal, Depends(require_permission(Permission.MANAGE_QUEUES))]
PolicyAdmin = Annotated[Principal,
                        Depends(require_permission(Permission.MANAGE_ROUTING_POLICIES))]
AgentAdmin = Annotated[Principal, Depends(require_permission(Permission.MANAGE_AGENTS))]
RowId = Annotated[str, Field(max_length=36)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such row in the tenant."}}
CHANGE_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such row in the tenant."},
    409: {"description": "A duplicate name, or the row is in use."},
    422: {"description": "Invalid input; the problem names the field or rule."},
}


# --- skills ------------------------------------------------------------------------------------

class SkillIn(Section):
    name: Name
    description: Description = ""


class SkillOut(SkillIn):
    id: str


def _skill_out(row: Skill) -> SkillOut:
    return SkillOut(id=row.id, name=row.name, description=row.description)


async def _skill_users(session: AsyncSession, tenant_id: str, name: str) -> list[str]:
    agents = [f"agent {a.name}" for a in await Agents(session, tenant_id).list_all()
              if name in a.skills]
    queues = [f"queue {q.name}" for q in await Queues(session, tenant_id).list_all()
              if name in q.config.get("proficiency_skills", [])]
    return agents + queues


@router.get("/skills", response_model=list[SkillOut], summary="List skills")
async def list_skills(request: Request, principal: SkillAdmin) -> list[SkillOut]:
    async with reading(request) as session:
        skills = Skills(session, principal.tenant_id)
        return [_skill_out(r) for r in await skills.all(skills.select().order_by(Skill.name))]


@router.get("/skills/{skill_id}", response_model=SkillOut, responses=NOT_FOUND,
            summary="Get a skill")
async def get_skill(skill_id: str, request: Request, principal: SkillAdmin) -> SkillOut:
    async with reading(request) as session:
        return _skill_out(await Skills(session, principal.tenant_id).get(skill_id))


@router.post("/skills", status_code=201, response_model=SkillOut, responses=CHANGE_ERRORS,
             summary="Create a skill")
async def create_skill(body: SkillIn, request: Request, principal: SkillAdmin) -> SkillOut:
    async with changing(request, principal, affects_routing=False) as session:
        skills = Skills(session, principal.tenant_id)
        await ensure_free(skills, Skill.name, body.name, "skill")
        return _skill_out(await skills.add(Skill(name=body.name, description=body.description)))


@router.put("/skills/{skill_id}", response_model=SkillOut, responses=CHANGE_ERRORS,
            summary="Change a skill; a skill in use keeps its name")
async def update_skill(skill_id: str, body: SkillIn, request: Request,
                       principal: SkillAdmin) -> SkillOut:
    async with changing(request, principal, affects_routing=False) as session:
        skills = Skills(session, principal.tenant_id)
        row = await skills.get(skill_id)
        if body.name != row.name:
            await ensure_free(skills, Skill.name, body.name, "skill", except_id=row.id)
            # Agents and expressions name skills: renaming one in use would silently break them.
            in_use("skill", row.name, await _skill_users(session, principal.tenant_id, row.name))
        row.name, row.description = body.name, body.description
        return _skill_out(await skills.save(row))


@router.delete("/skills/{skill_id}", status_code=204, responses=CHANGE_ERRORS,
               summary="Delete a skill no agent or queue uses")
async def delete_skill(skill_id: str, request: Request, principal: SkillAdmin) -> Response:
    async with changing(request, principal, affects_routing=False) as session:
        skills = Skills(session, principal.tenant_id)
        row = await skills.get(skill_id)
        in_use("skill", row.name, await _skill_users(session, principal.tenant_id, row.name))
        await skills.delete(row.id)
    return Response(status_code=204)


# --- business hours ----------------------------------------------------------------------------

class HoursIn(HoursSettings):
    name: Name
    timezone: str | None = Field(default=None, max_length=64,
                                 description="zoneinfo name; default: the tenant's zone.")


class HoursOut(HoursIn):
    id: str
    timezone: str


def _hours_out(row: BusinessHours) -> HoursOut:
    return HoursOut(id=row.id, name=row.name, timezone=row.timezone, weekly=dict(row.weekly),
                    holidays=[holiday_of(h) for h in row.holidays])


async def _fill_hours(session: AsyncSession, tenant_id: str, row: BusinessHours,
                      body: HoursIn) -> None:
    zone = body.timezone or (await Tenants(session).get(tenant_id)).timezone
    check_hours(body.name, zone, body)
    row.name, row.timezone = body.name, zone
    row.weekly, row.holidays = body.weekly_json(), body.holidays_json()


@router.get("/business-hours", response_model=list[HoursOut], summary="List business hours")
async def list_business_hours(request: Request, principal: HoursAdmin) -> list[HoursOut]:
    async with reading(request) as session:
        repo = BusinessHoursRepository(session, principal.tenant_id)
        return [_hours_out(r) for r in await repo.all(repo.select()
                                                      .order_by(BusinessHours.name))]


@router.get("/business-hours/{hours_id}", response_model=HoursOut, responses=NOT_FOUND,
            summary="Get business hours")
async def get_business_hours(hours_id: str, request: Request,
                             principal: HoursAdmin) -> HoursOut:
    async with reading(request) as session:
        return _hours_out(await BusinessHoursRepository(session, principal.tenant_id)
                          .get(hours_id))


@router.post("/business-hours", status_code=201, response_model=HoursOut,
             responses=CHANGE_ERRORS, summary="Create business hours (weekly table, holidays)")
async def create_business_hours(body: HoursIn, request: Request,
                                principal: HoursAdmin) -> HoursOut:
    async with changing(request, principal, affects_routing=False) as session:
        repo = BusinessHoursRepository(session, principal.tenant_id)
        await ensure_free(repo, BusinessHours.name, body.name, "business hours")
        row = BusinessHours()
        await _fill_hours(session, principal.tenant_id, row, body)
        return _hours_out(await repo.add(row))


@router.put("/business-hours/{hours_id}", response_model=HoursOut, responses=CHANGE_ERRORS,
            summary="Change business hours")
async def update_business_hours(hours_id: str, body: HoursIn, request: Request,
                                principal: HoursAdmin) -> HoursOut:
    async with changing(request, principal, affects_routing=False) as session:
        repo = BusinessHoursRepository(session, principal.tenant_id)
        row = await repo.get(hours_id)
        await ensure_free(repo, BusinessHours.name, body.name, "business hours",
                          except_id=row.id)
        await _fill_hours(session, principal.tenant_id, row, body)
        return _hours_out(await repo.save(row))


@router.delete("/business-hours/{hours_id}", status_code=204, responses=CHANGE_ERRORS,
               summary="Delete business hours no queue or IVR flow uses")
async def delete_business_hours(hours_id: str, request: Request,
                                principal: HoursAdmin) -> Response:
    async with changing(request, principal, affects_routing=False) as session:
        repo = BusinessHoursRepository(session, principal.tenant_id)
        row = await repo.get(hours_id)
        queues = Queues(session, principal.tenant_id)
        users = await queues.all(queues.select().where(Queue.business_hours_id == row.id))
        in_use("business hours", row.name,
               [*(f"queue {q.name}" for q in users),
                *await flows_using(session, principal.tenant_id, business_hours_id=row.id)])
        await repo.delete(row.id)
    return Response(status_code=204)


# --- queues ------------------------------------------------------------------------------------

class QueueIn(QueueTuning):
    name: Name
    description: Description = ""
    enabled: bool = True
    business_hours_id: RowId | None = None
    policy_id: RowId | None = Field(
        default=None, description="The routing policy new tasks of the queue follow (e.g. "
        "the customer's account manager first, then the team); none: the queue's members.")


class QueueOut(QueueIn):
    id: str


def _queue_out(row: Queue) -> QueueOut:
    tuning = {k: v for k, v in row.config.items() if k in QueueTuning.model_fields}
    return QueueOut(id=row.id, name=row.name, description=row.description,
                    enabled=row.is_enabled, business_hours_id=row.business_hours_id,
                    policy_id=row.policy_id, **tuning)


async def _policies_using(session: AsyncSession, tenant_id: str, *, queue_id: str | None = None,
                          agent_id: str | None = None) -> list[str]:
    return [f"routing policy {p.name}" for p in await RoutingPolicies(session, tenant_id).list_all()
            if any(step.get("queue") == queue_id or agent_id in step.get("agents", ())
                   for step in p.steps)]


async def _fill_queue(session: AsyncSession, tenant_id: str, row: Queue, body: QueueIn) -> None:
    owner = f"queue {body.name}"
    if body.business_hours_id is not None:
        await referenced(BusinessHoursRepository(session, tenant_id), body.business_hours_id,
                         owner)
    if body.policy_id is not None:
        await referenced(RoutingPolicies(session, tenant_id), body.policy_id, owner)
    skills = [s.name for s in await Skills(session, tenant_id).list_all()]
    check_skills_known(owner, body.proficiency_skills, skills)
    for agent_id in body.hunt_order:
        await referenced(Agents(session, tenant_id), agent_id, owner)
    config = queue_config_json(body, hunt_order=body.hunt_order)
    check_queue(row.id or "new", body.name, config)
    if row.id is not None and row.is_enabled and not body.enabled:
        open_tasks = await count_tasks(session, tenant_id, queue_id=row.id, only_open=True)
        if open_tasks:
            raise Conflict(f"queue {row.name} has {open_tasks} open task(s); "
                           "disable it when they are done")
        in_use("queue", row.name, await _policies_using(session, tenant_id, queue_id=row.id))
    row.name, row.description, row.is_enabled = body.name, body.description, body.enabled
    row.business_hours_id, row.config = body.business_hours_id, config
    row.policy_id = body.policy_id


@router.get("/queues", response_model=list[QueueOut], summary="List queues")
async def list_queues(request: Request, principal: QueueAdmin) -> list[QueueOut]:
    async with reading(request) as session:
        queues = Queues(session, principal.tenant_id)
        return [_queue_out(r) for r in await queues.all(queues.select().order_by(Queue.name))]


@router.get("/queues/{queue_id}", response_model=QueueOut, responses=NOT_FOUND,
            summary="Get a queue")
async def get_queue(queue_id: str, request: Request, principal: QueueAdmin) -> QueueOut:
    async with reading(request) as session:
        return _queue_out(await Queues(session, principal.tenant_id).get(queue_id))


@router.post("/queues", status_code=201, response_model=QueueOut, responses=CHANGE_ERRORS,
             summary="Create a queue; the running engine serves it at once")
async def create_queue(body: QueueIn, request: Request, principal: QueueAdmin) -> QueueOut:
    async with changing(request, principal) as session:
        queues = Queues(session, principal.tenant_id)
        await ensure_free(queues, Queue.name, body.name, "queue")
        row = Queue()
        await _fill_queue(session, principal.tenant_id, row, body)
        created = _queue_out(await queues.add(row))
    return created


@router.put("/queues/{queue_id}", response_model=QueueOut, responses=CHANGE_ERRORS,
            summary="Change a queue; waiting tasks keep their place")
async def update_queue(queue_id: str, body: QueueIn, request: Request,
                       principal: QueueAdmin) -> QueueOut:
    async with changing(request, principal) as session:
        queues = Queues(session, principal.tenant_id)
        row = await queues.get(queue_id)
        await ensure_free(queues, Queue.name, body.name, "queue", except_id=row.id)
        await _fill_queue(session, principal.tenant_id, row, body)
        updated = _queue_out(await queues.save(row))
    return updated


@router.delete("/queues/{queue_id}", status_code=204, responses=CHANGE_ERRORS,
               summary="Delete a queue no policy or IVR flow uses and that never had a task")
async def delete_queue(queue_id: str, request: Request, principal: QueueAdmin) -> Response:
    async with changing(request, principal) as session:
        queues = Queues(session, principal.tenant_id)
        row = await queues.get(queue_id)
        in_use("queue", row.name,
               [*await _policies_using(session, principal.tenant_id, queue_id=row.id),
                *await flows_using(session, principal.tenant_id, queue_id=row.id)])
        if await count_tasks(session, principal.tenant_id, queue_id=row.id):
            raise Conflict(f"queue {row.name} has tasks in its history; disable it instead")
        await queues.delete(row.id)
    return Response(status_code=204)


# --- routing policies --------------------------------------------------------------------------

class PolicyIn(PolicySettings):
    name: Name


class PolicyOut(PolicyIn):
    id: str


def _policy_out(row: RoutingPolicy) -> PolicyOut:
    return PolicyOut.model_validate({"id": row.id, "name": row.name, "steps": row.steps,
                                     "final_action": row.final_action,
                                     "final_reason": row.final_reason})


async def _fill_policy(session: AsyncSession, tenant_id: str, row: RoutingPolicy,
                       body: PolicyIn) -> None:
    owner = f"routing policy {body.name}"
    check_policy(body.name, body)
    for step in body.steps:
        await referenced(Queues(session, tenant_id), step.queue, owner)
        for agent_id in step.agents:
            if agent_id != PREFERRED:
                await referenced(Agents(session, tenant_id), agent_id, owner)
    row.name, row.final_action, row.final_reason = body.name, body.final_action, body.final_reason
    row.steps = [step.model_dump(mode="json") for step in body.steps]


@router.get("/routing-policies", response_model=list[PolicyOut], summary="List routing policies")
async def list_policies(request: Request, principal: PolicyAdmin) -> list[PolicyOut]:
    async with reading(request) as session:
        repo = RoutingPolicies(session, principal.tenant_id)
        return [_policy_out(r) for r in await repo.all(repo.select()
                                                       .order_by(RoutingPolicy.name))]


@router.get("/routing-policies/{policy_id}", response_model=PolicyOut, responses=NOT_FOUND,
            summary="Get a routing policy")
async def get_policy(policy_id: str, request: Request, principal: PolicyAdmin) -> PolicyOut:
    async with reading(request) as session:
        return _policy_out(await RoutingPolicies(session, principal.tenant_id).get(policy_id))


@router.post("/routing-policies", status_code=201, response_model=PolicyOut,
             responses=CHANGE_ERRORS, summary="Create a routing policy (ordered steps)")
async def create_policy(body: PolicyIn, request: Request, principal: PolicyAdmin) -> PolicyOut:
    async with changing(request, principal) as session:
        repo = RoutingPolicies(session, principal.tenant_id)
        await ensure_free(repo, RoutingPolicy.name, body.name, "routing policy")
        row = RoutingPolicy()
        await _fill_policy(session, principal.tenant_id, row, body)
        created = _policy_out(await repo.add(row))
    return created


@router.put("/routing-policies/{policy_id}", response_model=PolicyOut, responses=CHANGE_ERRORS,
            summary="Change a routing policy")
async def update_policy(policy_id: str, body: PolicyIn, request: Request,
                        principal: PolicyAdmin) -> PolicyOut:
    async with changing(request, principal) as session:
        repo = RoutingPolicies(session, principal.tenant_id)
        row = await repo.get(policy_id)
        await ensure_free(repo, RoutingPolicy.name, body.name, "routing policy",
                          except_id=row.id)
        await _fill_policy(session, principal.tenant_id, row, body)
        updated = _policy_out(await repo.save(row))
    return updated


@router.delete("/routing-policies/{policy_id}", status_code=204, responses=CHANGE_ERRORS,
               summary="Delete a routing policy that never routed a task")
async def delete_policy(policy_id: str, request: Request, principal: PolicyAdmin) -> Response:
    async with changing(request, principal) as session:
        repo = RoutingPolicies(session, principal.tenant_id)
        row = await repo.get(policy_id)
        if await count_tasks(session, principal.tenant_id, policy_id=row.id):
            raise Conflict(f"routing policy {row.name} has tasks in its history")
        await repo.delete(row.id)
    return Response(status_code=204)


# --- agents ------------------------------------------------------------------------------------

class AgentIn(AgentSettings):
    name: Name
    user_id: RowId | None = Field(default=None, description="The user who logs in as this agent.")


class AgentOut(AgentIn):
    id: str
    status: str = Field(description="The stored presence status (the engine keeps it live).")


def _agent_out(row: Agent) -> AgentOut:
    return AgentOut(id=row.id, name=row.name, user_id=row.user_id, skills=dict(row.skills),
                    attributes=dict(row.attributes), capacity=dict(row.capacity),
                    status=row.status)


async def _fill_agent(session: AsyncSession, tenant_id: str, row: Agent, body: AgentIn) -> None:
    skills = [s.name for s in await Skills(session, tenant_id).list_all()]
    check_agent(body.name, body, skills)
    if body.user_id is not None:
        await referenced(Users(session, tenant_id), body.user_id, f"agent {body.name}")
        agents = Agents(session, tenant_id)
        linked = await agents.first(agents.select().where(Agent.user_id == body.user_id))
        if linked is not None and linked.id != row.id:
            raise Conflict(f"that user is agent {linked.name} already")
    row.name, row.user_id = body.name, body.user_id
    row.skills, row.attributes = dict(body.skills), dict(body.attributes)
    row.capacity = dict(body.capacity)


@router.get("/agents", response_model=list[AgentOut], summary="List agents")
async def list_agents(request: Request, principal: AgentAdmin) -> list[AgentOut]:
    async with reading(request) as session:
        agents = Agents(session, principal.tenant_id)
        return [_agent_out(r) for r in await agents.all(agents.select().order_by(Agent.name))]


@router.get("/agents/{agent_id}", response_model=AgentOut, responses=NOT_FOUND,
            summary="Get an agent")
async def get_agent(agent_id: str, request: Request, principal: AgentAdmin) -> AgentOut:
    async with reading(request) as session:
        return _agent_out(await Agents(session, principal.tenant_id).get(agent_id))


@router.post("/agents", status_code=201, response_model=AgentOut, responses=CHANGE_ERRORS,
             summary="Create an agent (offline until they log in)")
async def create_agent(body: AgentIn, request: Request, principal: AgentAdmin) -> AgentOut:
    async with changing(request, principal) as session:
        agents = Agents(session, principal.tenant_id)
        await ensure_free(agents, Agent.name, body.name, "agent")
        row = Agent()
        await _fill_agent(session, principal.tenant_id, row, body)
        created = _agent_out(await agents.add(row))
    return created


@router.put("/agents/{agent_id}", response_model=AgentOut, responses=CHANGE_ERRORS,
            summary="Change an agent's name, skills, attributes, capacity or user")
async def update_agent(agent_id: str, body: AgentIn, request: Request,
                       principal: AgentAdmin) -> AgentOut:
    async with changing(request, principal) as session:
        agents = Agents(session, principal.tenant_id)
        row = await agents.get(agent_id)
        await ensure_free(agents, Agent.name, body.name, "agent", except_id=row.id)
        await _fill_agent(session, principal.tenant_id, row, body)
        updated = _agent_out(await agents.save(row))
    return updated


@router.delete("/agents/{agent_id}", status_code=204, responses=CHANGE_ERRORS,
               summary="Delete an agent without open tasks")
async def delete_agent(agent_id: str, request: Request, principal: AgentAdmin) -> Response:
    async with changing(request, principal) as session:
        agents = Agents(session, principal.tenant_id)
        row = await agents.get(agent_id)
        open_tasks = await count_tasks(session, principal.tenant_id, agent_id=row.id,
                                       only_open=True)
        if open_tasks:
            raise Conflict(f"agent {row.name} has {open_tasks} open task(s)")
        queues = [f"queue {q.name}" for q in await Queues(session, principal.tenant_id).list_all()
                  if row.id in q.config.get("hunt_order", [])]
        in_use("agent", row.name, queues
               + await _policies_using(session, principal.tenant_id, agent_id=row.id))
        await agents.delete(row.id)
    return Response(status_code=204)

"""Read-only lists for the agent desktop: what an agent may pick (queues to transfer to, wrap-up
codes, canned responses) and who their colleagues are, without the administrative details."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from omnicc.api.admin.changes import center_of, reading
from omnicc.api.auth import require_permission
from omnicc.app.permissions import Permission
from omnicc.app.principals import Principal
from omnicc.core.errors import NotFound
from omnicc.store.repositories import Agents, CannedResponses, Queues, WrapUpCodes
from omnicc.store.tables import Agent, CannedResponse, WrapUpCode

router = APIRouter(prefix="/api/directory", tags=["directory"])

Handler = Annotated[Principal, Depends(require_permission(Permission.HANDLE_CONTACTS))]


class QueueEntry(BaseModel):
    id: str
    name: str
    description: str


class WrapUpCodeEntry(BaseModel):
    id: str
    code: str
    label: str


class CannedResponseEntry(BaseModel):
    id: str
    title: str
    shortcut: str | None
    text: str
    queue_id: str | None


class AgentEntry(BaseModel):
    id: str
    name: str
    status: str
    """The live presence (available, busy, wrap_up, break, offline, ...)."""


@router.get("/queues", response_model=list[QueueEntry], summary="Enabled queues")
async def queues(request: Request, principal: Handler) -> list[QueueEntry]:
    async with reading(request) as session:
        return [QueueEntry(id=q.id, name=q.name, description=q.description)
                for q in await Queues(session, principal.tenant_id).enabled()]


@router.get("/wrap-up-codes", response_model=list[WrapUpCodeEntry],
            summary="Enabled wrap-up codes")
async def wrap_up_codes(request: Request, principal: Handler) -> list[WrapUpCodeEntry]:
    async with reading(request) as session:
        codes = WrapUpCodes(session, principal.tenant_id)
        rows = await codes.all(codes.select().where(WrapUpCode.is_enabled)
                               .order_by(WrapUpCode.code))
        return [WrapUpCodeEntry(id=r.id, code=r.code, label=r.label) for r in rows]


@router.get("/canned-responses", response_model=list[CannedResponseEntry],
            summary="Canned responses (queue_id null: for every queue)")
async def canned_responses(request: Request, principal: Handler) -> list[CannedResponseEntry]:
    async with reading(request) as session:
        responses = CannedResponses(session, principal.tenant_id)
        rows = await responses.all(responses.select().order_by(CannedResponse.title))
        return [CannedResponseEntry(id=r.id, title=r.title, shortcut=r.shortcut, text=r.text,
                                    queue_id=r.queue_id) for r in rows]


@router.get("/agents", response_model=list[AgentEntry],
            summary="Agents with their live presence (for transfers)")
async def agents(request: Request, principal: Handler) -> list[AgentEntry]:
    async with reading(request) as session:
        repo = Agents(session, principal.tenant_id)
        rows = await repo.all(repo.select().order_by(Agent.name))
    engine = (await center_of(request).tenant(principal.tenant_id)).routing.engine
    listed = []
    for row in rows:
        try:
            status = engine.agent(row.id).presence
        except NotFound:
            status = row.status
        listed.append(AgentEntry(id=row.id, name=row.name, status=status))
    return listed

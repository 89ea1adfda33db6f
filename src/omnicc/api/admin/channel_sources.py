"""What the administration of email mailboxes and messaging accounts shares: each is a source
of one channel's conversations, named uniquely in the tenant and routed to one queue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.api.admin.changes import changing, ensure_free, reading, referenced
from omnicc.app.principals import Principal
from omnicc.store.repositories import Queues, TenantRepository
from omnicc.store.tables import Base

RowT = TypeVar("RowT", bound=Base)
BodyT = TypeVar("BodyT", bound="SourceIn")
OutT = TypeVar("OutT")


class SourceIn(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def queue_id(self) -> str: ...


Repository = Callable[[AsyncSession, str], TenantRepository[RowT]]


async def list_sources(request: Request, principal: Principal, repository_type: Repository[RowT],
                       order: Any, out: Callable[[RowT], OutT]) -> list[OutT]:
    async with reading(request) as session:
        repository = repository_type(session, principal.tenant_id)
        return [out(row) for row in await repository.all(repository.select().order_by(order))]


async def get_source(request: Request, principal: Principal, repository_type: Repository[RowT],
                     row_id: str, out: Callable[[RowT], OutT]) -> OutT:
    async with reading(request) as session:
        return out(await repository_type(session, principal.tenant_id).get(row_id))


async def save_source(request: Request, principal: Principal, repository_type: Repository[RowT],
                      body: BodyT, *, row_id: str | None, new: Callable[[], RowT],
                      apply: Callable[[RowT, BodyT], None], out: Callable[[RowT], OutT],
                      name_column: Any, owner: str) -> OutT:
    """Add a source (row_id None) or change one: its queue must exist (422) and its name must
    be free (409); the answer is read before the transaction commits."""
    async with changing(request, principal, affects_routing=False) as session:
        repository = repository_type(session, principal.tenant_id)
        row = None if row_id is None else await repository.get(row_id)
        await referenced(Queues(session, principal.tenant_id), body.queue_id,
                         f"{owner} {body.name}")
        await ensure_free(repository, name_column, body.name, repository.noun, except_id=row_id)
        if row is None:
            row = new()
            apply(row, body)
            await repository.add(row)
        else:
            apply(row, body)
            await repository.save(row)
        return out(row)

"""How an administrative change is made: one transaction, checked against the routing engine,
committed, and then loaded by the tenant's running engine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Request
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.app.configuration import check_routing
from omnicc.app.principals import Principal
from omnicc.app.runtime import ContactCenter
from omnicc.core.errors import Conflict, InvalidConfiguration, NotFound
from omnicc.store.database import Database
from omnicc.store.repositories import TenantRepository


def database_of(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def center_of(request: Request) -> ContactCenter:
    center: ContactCenter = request.app.state.center
    return center


@asynccontextmanager
async def reading(request: Request) -> AsyncIterator[AsyncSession]:
    async with database_of(request).session() as session:
        yield session


@asynccontextmanager
async def changing(request: Request, principal: Principal, *,
                   affects_routing: bool = True) -> AsyncIterator[AsyncSession]:
    """A transaction for one change. When it touches routing, a throwaway engine is built from
    the changed rows before the commit and the live engine reloads them after it, so the
    running center and the store never disagree."""
    try:
        async with database_of(request).session() as session:
            yield session
            if affects_routing:
                await check_routing(session, principal.tenant_id)
    except IntegrityError as error:
        # A uniqueness race (two admins creating the same name) lost at the database.
        raise Conflict("the change conflicts with existing data (a duplicate name, or a row "
                       "still in use)") from error
    voice = getattr(request.app.state, "voice", None)
    if voice is not None:  # numbers, flows, hours and SIP accounts it keeps are read again
        voice.forget_configuration()
    if affects_routing:
        runtime = await center_of(request).tenant(principal.tenant_id)
        await runtime.routing.reload()


async def ensure_free(repository: TenantRepository[Any], column: Any, value: str | None,
                      noun: str, *, except_id: str | None = None) -> None:
    """409 when another row of the tenant already has `value` in a unique column."""
    if value is None:
        return
    found = await repository.first(repository.select().where(column == value))
    if found is not None and found.id != except_id:
        raise Conflict(f"a {noun} named {value!r} exists already")


async def referenced(repository: TenantRepository[Any], row_id: str, owner: str) -> Any:
    """The row a request body points at; an unknown id there is invalid input (422), not 404."""
    try:
        return await repository.get(row_id)
    except NotFound:
        raise InvalidConfiguration(f"{owner}: unknown {repository.noun} {row_id!r}") from None


def in_use(noun: str, name: str, users: Iterable[str]) -> None:
    listed = sorted(users)
    if listed:
        raise Conflict(f"{noun} {name} is in use by {', '.join(listed[:10])}"
                       + (f" and {len(listed) - 10} more" if len(listed) > 10 else ""))

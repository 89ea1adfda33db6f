"""The tenant-scoped repository every table's repository builds on.

A repository is made with a session and a tenant id, and every statement it runs filters by
that tenant: a row of another tenant is `NotFound`, exactly like a row that does not exist, so
an id guessed or leaked across tenants reveals nothing. Rows added through a repository belong
to its tenant, and the rows they reference (a message's conversation, a task's queue, ...) must
belong to it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, func, inspect, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapper

from omnicc.core.errors import NotFound
from omnicc.store.tables import Base, Tenant

RowT = TypeVar("RowT", bound=Base)


def _column(table: type[Base], name: str) -> ColumnElement[Any]:
    column: ColumnElement[Any] = table.__table__.c[name]
    return column


def _is_tenant_owned(table: Any) -> bool:
    return "tenant_id" in table.c


@cache
def _mapper(table: Any) -> Mapper[Any]:
    return next(m for m in Base.registry.mappers if m.local_table is table)


class TenantRepository(Generic[RowT]):
    """Rows of one table, for one tenant."""

    table: ClassVar[type[Base]]
    noun: ClassVar[str]

    def __init__(self, session: AsyncSession, tenant_id: str) -> None:
        self.session = session
        self.tenant_id = tenant_id

    def select(self) -> Select[RowT]:
        """SELECT of this tenant's rows; extend it with more conditions, never fewer."""
        statement: Select[RowT] = select(self.table).where(  # type: ignore[assignment]
            _column(self.table, "tenant_id") == self.tenant_id
        )
        return statement

    async def first(self, statement: Select[RowT]) -> RowT | None:
        return (await self.session.execute(statement.limit(1))).scalars().first()

    async def all(self, statement: Select[RowT]) -> list[RowT]:
        return list((await self.session.execute(statement)).scalars().all())

    async def get(self, row_id: str) -> RowT:
        row = await self.first(self.select().where(_column(self.table, "id") == row_id))
        if row is None:
            raise NotFound(f"{self.noun} {row_id} not found")
        return row

    async def find(self, row_id: str) -> RowT | None:
        return await self.first(self.select().where(_column(self.table, "id") == row_id))

    async def list_all(self) -> list[RowT]:
        return await self.all(self.select().order_by(_column(self.table, "id")))

    async def add(self, row: RowT) -> RowT:
        """Add `row` to this tenant (flushed, so constraint violations raise here)."""
        await self._own(row)
        self.session.add(row)
        await self.session.flush()
        return row

    async def add_all(self, rows: Sequence[RowT]) -> list[RowT]:
        for row in rows:
            await self._own(row)
        self.session.add_all(rows)
        await self.session.flush()
        return list(rows)

    async def save(self, row: RowT) -> RowT:
        """Flush changes to a row of this tenant, checking the rows it now references."""
        await self._own(row)
        await self.session.flush()
        return row

    async def delete(self, row_id: str) -> None:
        await self.session.delete(await self.get(row_id))
        await self.session.flush()

    async def check_references(self, row: Base) -> None:
        """Raise NotFound when `row` points at a row of another tenant (or at none). A stored
        row is checked only for the references changed since it was loaded: the others were
        checked when they were set (a call's record is saved a few times per call)."""
        state = inspect(row)
        for key in row.__table__.foreign_keys:
            parent = key.parent
            referred = key.column.table
            if parent.name == "tenant_id" or not _is_tenant_owned(referred):
                continue
            value = getattr(row, parent.key)
            if value is None:
                continue
            if state.persistent and not state.attrs[parent.key].history.has_changes():
                continue
            if key.column.primary_key:
                # A row this transaction already loaded or added needs no query (a contact's
                # new conversation, a task's new contact).
                known = self.session.identity_map.get(_mapper(referred)
                                                      .identity_key_from_primary_key((value,)))
                if known is not None and getattr(known, "tenant_id", None) == self.tenant_id:
                    continue
            # A reference found once needs no second query in the session (a batch of
            # routing commands refers to the same queue and agents again and again): a row
            # keeps its tenant, and the database's foreign keys still guard its existence.
            found = (referred.name, key.column.name, value, self.tenant_id)
            checked: set[tuple[str, str, Any, str]] = self.session.info.setdefault(
                "checked_references", set())
            if found in checked:
                continue
            statement = (
                select(func.count())
                .select_from(referred)
                .where(key.column == value, referred.c.tenant_id == self.tenant_id)
            )
            if not (await self.session.execute(statement)).scalar_one():
                raise NotFound(f"{referred.name.rstrip('s')} {value} not found")
            checked.add(found)

    async def _own(self, row: Base) -> None:
        current = getattr(row, "tenant_id", None)
        if current is not None and current != self.tenant_id:
            raise ValueError(f"a row of tenant {current} added through tenant {self.tenant_id}")
        row.tenant_id = self.tenant_id  # type: ignore[attr-defined]
        await self.check_references(row)


async def take_sequence(session: AsyncSession, tenant_id: str, counter: str, count: int = 1) -> int:
    """Reserve `count` numbers of a tenant's counter (`event_seq`, `task_seq`); returns the
    first. The counter row stays locked until the transaction ends, and a rollback returns
    the numbers, so the sequence has no gaps and no duplicates."""
    column = _column(Tenant, counter)
    statement = (
        update(Tenant)
        .where(Tenant.id == tenant_id)
        .values({counter: column + count})
        .returning(column)
        .execution_options(synchronize_session=False)
    )
    last = (await session.execute(statement)).scalar_one_or_none()
    if last is None:
        raise NotFound(f"tenant {tenant_id} not found")
    first: int = last - count + 1
    return first

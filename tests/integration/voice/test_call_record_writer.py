"""Call records saved with group commit (`channels/voice/records.py`): every save is committed
when it returns, concurrent saves share transactions, a call's saves in one batch write its
latest figures, and a bad record fails alone."""

from __future__ import annotations

import asyncio

import pytest

from omnicc.channels.voice.records import Before, CallRecordWriter
from omnicc.core.errors import NotFound
from omnicc.store.database import Database
from omnicc.store.repositories import CallRecords, Tenants
from omnicc.store.tables import CallRecord
from tests.integration.voice.harness import on_both_databases

pytestmark = [pytest.mark.anyio, on_both_databases]


class Call:
    """What a call controller hands the writer: how to make its row and fill it."""

    def __init__(self, record_id: str, *, queue_id: str | None = None) -> None:
        self.record_id = record_id
        self.outcome = "in_progress"
        self.queue_id = queue_id

    def new(self) -> CallRecord:
        return CallRecord(id=self.record_id, call_id=f"{self.record_id}@test")

    def fill(self, row: CallRecord) -> None:
        row.outcome = self.outcome
        row.queue_id = self.queue_id


async def stored(database: Database, tenant_id: str) -> dict[str, str]:
    async with database.session() as session:
        return {row.id: row.outcome for row in await CallRecords(session, tenant_id).list_all()}


async def test_concurrent_saves_share_transactions_and_each_is_committed_on_return(
        database: Database) -> None:
    async with database.session() as session:
        tenant = (await Tenants(session).create("acme", "Acme")).id
    writer = CallRecordWriter(database)
    calls = [Call(f"r{n:03d}") for n in range(50)]
    await asyncio.gather(*(writer.save(tenant, c.record_id, c.new, c.fill) for c in calls))
    assert await stored(database, tenant) == {c.record_id: "in_progress" for c in calls}
    assert writer.commits < len(calls)

    # The same calls again, twice each at once: one write each, of the latest figures.
    for c in calls:
        c.outcome = "answered"
    first = [writer.save(tenant, c.record_id, c.new, c.fill) for c in calls]
    second = [writer.save(tenant, c.record_id, c.new, c.fill) for c in calls]
    await asyncio.gather(*first, *second)
    assert await stored(database, tenant) == {c.record_id: "answered" for c in calls}


async def test_a_bad_record_fails_alone(database: Database) -> None:
    async with database.session() as session:
        tenant = (await Tenants(session).create("acme", "Acme")).id
    writer = CallRecordWriter(database)
    good = [Call(f"good{n}") for n in range(5)]
    bad = Call("bad", queue_id="no-such-queue")
    results = await asyncio.gather(
        *(writer.save(tenant, c.record_id, c.new, c.fill) for c in [*good[:2], bad, *good[2:]]),
        return_exceptions=True)
    assert isinstance(results[2], NotFound)
    assert [r for n, r in enumerate(results) if n != 2] == [None] * 5
    assert await stored(database, tenant) == {c.record_id: "in_progress" for c in good}


async def test_work_before_a_record_shares_its_transaction(database: Database) -> None:
    from sqlalchemy.ext.asyncio import AsyncSession

    from omnicc.store.repositories import Customers
    from omnicc.store.tables import Customer

    async with database.session() as session:
        tenant = (await Tenants(session).create("acme", "Acme")).id
    writer = CallRecordWriter(database)
    made: dict[str, str] = {}

    def customer_for(call: Call, *, fails: bool = False) -> Before:
        async def before(session: AsyncSession) -> None:
            customer = await Customers(session, tenant).add(Customer(name=call.record_id))
            made[call.record_id] = customer.id
            if fails:
                raise RuntimeError("the caller could not be identified")
        return before

    calls = [Call(f"c{n}") for n in range(4)]
    results = await asyncio.gather(
        *(writer.save(tenant, c.record_id, c.new, c.fill,
                      before=customer_for(c, fails=c.record_id == "c1"))
          for c in calls), return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["NoneType", "RuntimeError", "NoneType",
                                                  "NoneType"]
    assert set(await stored(database, tenant)) == {"c0", "c2", "c3"}
    async with database.session() as session:
        names = {row.name for row in await Customers(session, tenant).list_all()}
    assert names == {"c0", "c2", "c3"}  # c1's customer went with its failed record

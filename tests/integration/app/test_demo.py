"""The demo center: seeding is complete and idempotent, its people can log in, and the traffic
generator's customers are served end to end by bot agents over the real server."""

from __future__ import annotations

import asyncio
import contextlib
import random
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from omnicc.app.demo import (
    CANNED_RESPONSES,
    DEMO_SLUG,
    LOGINS_FILE,
    QUEUES,
    SKILLS,
    STAFF,
    WRAP_UP_CODES,
    DemoCenter,
    seed_demo,
)
from omnicc.app.traffic import Traffic, TrafficPlan
from omnicc.channels.voice.sip.digest import Algorithm, compute_ha1
from omnicc.store.database import Database
from omnicc.store.repositories import Tenants
from omnicc.store.tables import (
    Agent,
    BusinessHours,
    CannedResponse,
    Contact,
    Message,
    Queue,
    SipAccount,
    Skill,
    User,
    WrapUpCode,
)
from tests.integration.api.live import TEST_PASSWORDS, LiveServer, live_server

pytestmark = pytest.mark.anyio

ROW_TABLES = (Skill, Queue, BusinessHours, WrapUpCode, CannedResponse, User, Agent)
DEADLINE_S = 180.0


async def row_counts(url: str) -> dict[str, int]:
    database = Database(url)
    try:
        async with database.session() as session:
            return {table.__tablename__: (await session.execute(
                select(func.count()).select_from(table))).scalar_one()
                for table in ROW_TABLES}
    finally:
        await database.dispose()


async def test_seeding_is_complete_and_idempotent(migrated_database_url: str,
                                                  tmp_path: Path) -> None:
    first = await seed_demo(migrated_database_url, tmp_path, bot_agents=2,
                            passwords=TEST_PASSWORDS)
    counts = await row_counts(migrated_database_url)
    assert counts == {
        "skills": len(SKILLS), "queues": len(QUEUES), "business_hours": 1,
        "wrap_up_codes": len(WRAP_UP_CODES), "canned_responses": len(CANNED_RESPONSES),
        "users": len(STAFF) + 2, "agents": 5 + 2,
    }
    logins = tmp_path / LOGINS_FILE
    assert stat.S_IMODE(logins.stat().st_mode) == 0o600

    second = await seed_demo(migrated_database_url, tmp_path, bot_agents=2,
                             passwords=TEST_PASSWORDS)
    assert await row_counts(migrated_database_url) == counts
    assert second.logins == first.logins and second.queues == first.queues
    assert {login.role for login in first.logins} == {"agent", "supervisor", "admin"}
    assert [login.username for login in first.bots] == ["bot1", "bot2"]

    database = Database(migrated_database_url)
    try:
        async with database.session() as session:
            tenant = await Tenants(session).by_slug(DEMO_SLUG)
            queues = list((await session.execute(select(Queue))).scalars())
            agents = list((await session.execute(select(Agent))).scalars())
    finally:
        await database.dispose()
    assert tenant.timezone == "Europe/Helsinki" and tenant.id == first.tenant_id
    assert {q.name for q in queues} == {"sales", "support", "billing"}
    assert all(q.business_hours_id is not None and "expression" in q.config for q in queues)
    # People take calls and chats; the bots only chat.
    assert sorted(str(a.capacity) for a in agents) == sorted(
        [str({"chat": 3, "voice": 1})] * 5 + [str({"chat": 3})] * 2)

    # A lost logins.json: new passwords are made, and they are the ones that work.
    logins.unlink()
    third = await seed_demo(migrated_database_url, tmp_path, passwords=TEST_PASSWORDS)
    assert {login.username: login.password for login in third.logins} != {
        login.username: login.password for login in first.logins if not login.is_bot}
    assert await row_counts(migrated_database_url) == counts
    await assert_logins_work(migrated_database_url, tmp_path, third)
    await assert_phones_use_the_login_password(migrated_database_url, third)


async def assert_phones_use_the_login_password(url: str, center: DemoCenter) -> None:
    """Every person with an agent has a SIP account whose digest matches their password."""
    database = Database(url)
    try:
        async with database.session() as session:
            accounts = {a.username: a for a in
                        (await session.execute(select(SipAccount))).scalars()}
    finally:
        await database.dispose()
    people = [login for login in center.logins if login.role == "agent" and not login.is_bot]
    assert people and sorted(accounts) == sorted(login.username for login in people)
    for login in people:
        assert accounts[login.username].ha1_md5 == compute_ha1(
            Algorithm.MD5, login.username, DEMO_SLUG, login.password)


async def assert_logins_work(url: str, data_dir: Path, center: DemoCenter) -> None:
    server = live_server(url, data_dir / "server")
    running = next(server)
    try:
        async with httpx.AsyncClient(base_url=running.url, timeout=10) as http:
            for login in center.logins:
                response = await http.post("/api/auth/login", json={
                    "username": login.username, "password": login.password,
                    "tenant": DEMO_SLUG})
                assert response.status_code == 200, (login.username, response.text)
                assert response.json()["role"] == login.role
            wrong = await http.post("/api/auth/login", json={
                "username": "aino", "password": "not the password", "tenant": DEMO_SLUG})
            assert wrong.status_code == 401
    finally:
        with contextlib.suppress(StopIteration):
            next(server)


@pytest.fixture
def demo_center(migrated_database_url: str, tmp_path: Path) -> DemoCenter:
    return asyncio.run(seed_demo(migrated_database_url, tmp_path / "demo", bot_agents=2,
                                 passwords=TEST_PASSWORDS))


@pytest.fixture
def server(migrated_database_url: str, demo_center: DemoCenter,
           tmp_path: Path) -> Iterator[LiveServer]:
    yield from live_server(migrated_database_url, tmp_path / "data")


FAST = TrafficPlan(customers_per_hour=900.0, patience_s=60.0, customer_think_s=0.2,
                   customer_silence_s=15.0, reply_share=0.8, rating_share=1.0,
                   bot_think_s=0.2, bot_idle_s=2.0)


async def served_contacts(url: str, bot_agents: set[str]) -> list[Contact]:
    """Chats a bot handled to the end: wrapped up and rated."""
    database = Database(url)
    try:
        async with database.session() as session:
            return list((await session.execute(select(Contact).where(
                Contact.agent_id.in_(bot_agents), Contact.csat_score.is_not(None),
                Contact.wrap_up_code_id.is_not(None), Contact.ended_at.is_not(None)))).scalars())
    finally:
        await database.dispose()


async def test_traffic_is_served_end_to_end_by_bot_agents(
        server: LiveServer, demo_center: DemoCenter, migrated_database_url: str) -> None:
    database = Database(migrated_database_url)
    try:
        async with database.session() as session:
            bot_agents = set((await session.execute(
                select(Agent.id).join(User, User.id == Agent.user_id)
                .where(User.username.in_([b.username for b in demo_center.bots])))).scalars())
    finally:
        await database.dispose()
    assert len(bot_agents) == 2

    traffic = Traffic(server.url, DEMO_SLUG, FAST, bots=demo_center.bots,
                      rng=random.Random(7))
    running = asyncio.create_task(traffic.run())
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE_S
        served: list[Contact] = []
        while len(served) < 3:
            assert not running.done(), running.exception()
            assert loop.time() < deadline, f"only {len(served)} chats served by the bots"
            await asyncio.sleep(0.5)
            served = await served_contacts(migrated_database_url, bot_agents)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running

    database = Database(migrated_database_url)
    try:
        async with database.session() as session:
            for contact in served:
                kinds = set((await session.execute(select(Message.author_kind).where(
                    Message.contact_id == contact.id))).scalars())
                assert {"customer", "agent"} <= kinds, kinds
                assert contact.attributes["topic"]
                assert 1 <= (contact.csat_score or 0) <= 5
            codes = set((await session.execute(select(WrapUpCode.id).where(
                WrapUpCode.code.in_(WRAP_UP_CODES)))).scalars())
    finally:
        await database.dispose()
    assert {c.wrap_up_code_id for c in served} <= codes
    assert {c.agent_id for c in served} <= bot_agents


async def test_customers_nobody_answers_give_up(
        server: LiveServer, migrated_database_url: str) -> None:
    impatient = TrafficPlan(customers_per_hour=1800.0, patience_s=0.5)
    running = asyncio.create_task(Traffic(server.url, DEMO_SLUG, impatient,
                                          rng=random.Random(3)).run())
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE_S
        gone: list[Contact] = []
        while len(gone) < 3:
            assert not running.done(), running.exception()
            assert loop.time() < deadline, f"only {len(gone)} customers gave up"
            await asyncio.sleep(0.5)
            database = Database(migrated_database_url)
            try:
                async with database.session() as session:
                    gone = list((await session.execute(select(Contact).where(
                        Contact.ended_at.is_not(None)))).scalars())
            finally:
                await database.dispose()
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert all(c.agent_id is None and c.csat_score is None for c in gone)

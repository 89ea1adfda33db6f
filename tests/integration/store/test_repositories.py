"""Repositories on SQLite and PostgreSQL: tenant isolation, idempotent messages, the event log,
and open tasks in enqueue order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError

from omnicc.core.errors import NotFound
from omnicc.store.database import Database
from omnicc.store.repositories import (
    Agents,
    ApiTokens,
    Conversations,
    Customers,
    Events,
    Identities,
    Messages,
    NewEvent,
    Queues,
    Tasks,
    Tenants,
    Users,
    authenticate_api_token,
)
from omnicc.store.tables import (
    Agent,
    ApiToken,
    Conversation,
    Customer,
    Event,
    Identity,
    Message,
    Queue,
    Task,
    User,
)

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


async def _tenants(database: Database) -> tuple[str, str]:
    async with database.session() as session:
        a = await Tenants(session).create("a", "Tenant A")
        b = await Tenants(session).create("b", "Tenant B", timezone="Europe/Helsinki")
        return a.id, b.id


async def test_a_repository_never_sees_another_tenants_rows(database: Database) -> None:
    a, b = await _tenants(database)
    async with database.session() as session:
        queue_b = await Queues(session, b).add(Queue(name="sales", config={"priority": 1}))
        user_b = await Users(session, b).add(
            User(username="bob", email="Bob@B.example", role="agent")
        )
        agent_b = await Agents(session, b).add(Agent(name="Bob", user_id=user_b.id))
        conversation_b = await Conversations(session, b).add(Conversation())
        await Queues(session, a).add(Queue(name="sales"))
    async with database.session() as session:
        queues_a = Queues(session, a)
        assert [queue.name for queue in await queues_a.list_all()] == ["sales"]
        with pytest.raises(NotFound):
            await queues_a.get(queue_b.id)
        assert await queues_a.find(queue_b.id) is None
        assert (await queues_a.by_name("sales")).tenant_id == a
        with pytest.raises(NotFound):
            await Users(session, a).by_username("bob")
        with pytest.raises(NotFound):
            await Users(session, a).by_email("bob@b.example")
        assert (await Users(session, b).by_email("BOB@b.example")).id == user_b.id
        with pytest.raises(NotFound):
            await Agents(session, a).get(agent_b.id)
        with pytest.raises(NotFound):
            await Agents(session, a).by_user(user_b.id)
        with pytest.raises(NotFound):
            await Queues(session, a).delete(queue_b.id)
    # Rows of tenant A may not point at rows of tenant B.
    async with database.session() as session:
        with pytest.raises(NotFound):
            await Messages(session, a).append(
                Message(conversation_id=conversation_b.id, author_kind="customer", text="hi")
            )
        with pytest.raises(NotFound):
            await Tasks(session, a).add(Task(channel="chat", queue_id=queue_b.id))
        with pytest.raises(ValueError, match="tenant"):
            await Queues(session, a).add(Queue(name="x", tenant_id=b))
    async with database.session() as session:
        task = await Tasks(session, a).add(Task(channel="chat"))
        task.agent_id = agent_b.id
        with pytest.raises(NotFound):
            await Tasks(session, a).save(task)
    async with database.session() as session:
        assert (await Queues(session, b).get(queue_b.id)).config == {"priority": 1}


async def test_a_stored_row_is_checked_again_for_the_references_it_changes(
        database: Database) -> None:
    a, b = await _tenants(database)
    async with database.session() as session:
        queue_a = await Queues(session, a).add(Queue(name="support"))
        queue_b = await Queues(session, b).add(Queue(name="sales"))
        task_id = (await Tasks(session, a).add(Task(channel="chat", queue_id=queue_a.id))).id
    async with database.session() as session:
        task = await Tasks(session, a).get(task_id)
        task.phase = "offered"
        await Tasks(session, a).save(task)  # its queue is unchanged and still checked fine
        task.queue_id = queue_b.id
        with pytest.raises(NotFound):
            await Tasks(session, a).save(task)


async def test_a_row_of_another_tenant_in_the_session_is_still_refused(
        database: Database) -> None:
    a, b = await _tenants(database)
    async with database.session() as session:
        queue_b = await Queues(session, b).add(Queue(name="sales"))
        queue_a = await Queues(session, a).add(Queue(name="support"))
        # Both queues are in this transaction's identity map: a's passes without a query,
        # b's must still be refused.
        assert (await Tasks(session, a).add(Task(channel="chat", queue_id=queue_a.id))).id
        with pytest.raises(NotFound):
            await Tasks(session, a).add(Task(channel="chat", queue_id=queue_b.id))


async def test_a_reference_found_once_is_not_queried_again_in_the_session(
        database: Database) -> None:
    a, b = await _tenants(database)
    async with database.session() as session:
        queue_a = (await Queues(session, a).add(Queue(name="support"))).id
        queue_b = (await Queues(session, b).add(Queue(name="sales"))).id
    async with database.session() as session:
        statements: list[str] = []
        sync_engine = database.engine.sync_engine

        def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
            statements.append(statement)

        event.listen(sync_engine, "before_cursor_execute", count)
        try:
            for _ in range(3):
                await Tasks(session, a).add(Task(channel="chat", queue_id=queue_a))
        finally:
            event.remove(sync_engine, "before_cursor_execute", count)
        assert sum("count(" in s.lower() for s in statements) == 1
        with pytest.raises(NotFound):  # another tenant's queue is still refused
            await Tasks(session, a).add(Task(channel="chat", queue_id=queue_b))


async def test_changes_inside_json_columns_are_saved(database: Database) -> None:
    a, _ = await _tenants(database)
    async with database.session() as session:
        queue = await Queues(session, a).add(Queue(name="sales", config={"priority": 1}))
        agent = await Agents(session, a).add(Agent(name="Ann", skills={"fi": 3}))
    async with database.session() as session:
        loaded_queue = await Queues(session, a).get(queue.id)
        loaded_queue.config["priority"] = 5
        loaded_agent = await Agents(session, a).get(agent.id)
        loaded_agent.skills["sv"] = 2
    async with database.session() as session:
        assert (await Queues(session, a).get(queue.id)).config == {"priority": 5}
        assert (await Agents(session, a).get(agent.id)).skills == {"fi": 3, "sv": 2}


async def test_api_tokens_are_found_by_hash_while_live(database: Database) -> None:
    a, b = await _tenants(database)
    async with database.session() as session:
        await ApiTokens(session, a).add(ApiToken(name="crm", token_hash="h1", role="admin"))
        await ApiTokens(session, a).add(
            ApiToken(name="old", token_hash="h2", role="agent", expires_at=T0)
        )
    async with database.session() as session:
        token = await authenticate_api_token(session, "h1", now=T0)
        assert token.tenant_id == a
        assert token.last_used_at == T0
        # Use is recorded at most once a minute: not a write per request.
        await authenticate_api_token(session, "h1", now=T0 + timedelta(seconds=30))
        assert token.last_used_at == T0
        await authenticate_api_token(session, "h1", now=T0 + timedelta(minutes=1))
        assert token.last_used_at == T0 + timedelta(minutes=1)
        assert (await ApiTokens(session, a).by_hash("h1")).name == "crm"
        with pytest.raises(NotFound):
            await ApiTokens(session, b).by_hash("h1")
        with pytest.raises(NotFound):
            await authenticate_api_token(session, "h2", now=T0 + timedelta(seconds=1))
        await ApiTokens(session, a).revoke(token.id)
        with pytest.raises(NotFound):
            await authenticate_api_token(session, "h1")


async def test_a_resent_message_is_stored_once(database: Database) -> None:
    a, _ = await _tenants(database)
    async with database.session() as session:
        conversation = await Conversations(session, a).add(Conversation())
    async with database.session() as session:
        first, is_new = await Messages(session, a).append(
            Message(
                conversation_id=conversation.id,
                author_kind="customer",
                text="hello",
                idempotency_key="k1",
            )
        )
        assert is_new
    async with database.session() as session:
        again, is_new = await Messages(session, a).append(
            Message(
                conversation_id=conversation.id,
                author_kind="customer",
                text="hello",
                idempotency_key="k1",
            )
        )
        assert not is_new
        assert again.id == first.id
        # The same key in another conversation is another message; no key is never a duplicate.
        other = await Conversations(session, a).add(Conversation())
        _, is_new = await Messages(session, a).append(
            Message(
                conversation_id=other.id, author_kind="customer", text="hello", idempotency_key="k1"
            )
        )
        assert is_new
        for _ in range(2):
            await Messages(session, a).append(
                Message(
                    conversation_id=conversation.id,
                    author_kind="agent",
                    text="hi",
                    visibility="internal",
                )
            )
    async with database.session() as session:
        history = await Messages(session, a).history(conversation.id)
        assert [(m.author_kind, m.text) for m in history] == [
            ("customer", "hello"),
            ("agent", "hi"),
            ("agent", "hi"),
        ]
        assert history[0].created_at.tzinfo == UTC


async def test_a_batch_of_messages_is_stored_once_each_and_within_the_tenant(
        database: Database) -> None:
    a, b = await _tenants(database)
    async with database.session() as session:
        conversation = await Conversations(session, a).add(Conversation())
        foreign = await Conversations(session, b).add(Conversation())
    async with database.session() as session:
        await Messages(session, a).append(Message(
            conversation_id=conversation.id, author_kind="customer", text="one",
            idempotency_key="k1"))

    def message(key: str | None, text: str) -> Message:
        return Message(conversation_id=conversation.id, author_kind="customer", text=text,
                       idempotency_key=key)

    async with database.session() as session:
        stored = await Messages(session, a).append_batch([
            message("k1", "one again"), message("k2", "two"), message("k2", "two again"),
            message(None, "keyless"), message(None, "keyless")])
        assert [(row.text, is_new) for row, is_new in stored] == [
            ("one", False), ("two", True), ("two", False), ("keyless", True),
            ("keyless", True)]
    async with database.session() as session:
        history = await Messages(session, a).history(conversation.id)
        assert sorted(m.text for m in history) == ["keyless", "keyless", "one", "two"]
        with pytest.raises(NotFound):
            await Messages(session, a).append_batch([Message(
                conversation_id=foreign.id, author_kind="customer", text="x")])


async def test_events_are_gap_free_and_commit_with_the_state_change(database: Database) -> None:
    a, b = await _tenants(database)
    async with database.session() as session:
        rows = await Events(session, a).append(
            [NewEvent("task.created", {"n": 1}), NewEvent("task.queued", {"n": 2}, at=T0)]
        )
        assert [row.seq for row in rows] == [1, 2]
        assert [row.seq for row in await Events(session, b).append([NewEvent("x")])] == [1]

    class Refused(Exception):
        pass

    with pytest.raises(Refused):
        async with database.session() as session:
            await Tasks(session, a).add(Task(channel="chat", id="lost"))
            await Events(session, a).append([NewEvent("task.created", {"task": "lost"})])
            raise Refused
    async with database.session() as session:
        assert await Tasks(session, a).find("lost") is None
        assert await Events(session, a).last_seq() == 2
        task = await Tasks(session, a).add(Task(channel="chat", id="kept"))
        assert task.seq == 1  # the rolled-back task's seq was returned too
        await Events(session, a).append([NewEvent("task.created", {"task": "kept"})])
    async with database.session() as session:
        log = await Events(session, a).since(0)
        assert [(event.seq, event.type) for event in log] == [
            (1, "task.created"),
            (2, "task.queued"),
            (3, "task.created"),
        ]
        assert log[1].at == T0
        assert log[2].payload == {"task": "kept"}
        assert [event.seq for event in await Events(session, a).since(2)] == [3]
        assert await Events(session, b).last_seq() == 1


async def test_a_duplicate_event_seq_is_refused(database: Database) -> None:
    a, _ = await _tenants(database)
    async with database.session() as session:
        await Events(session, a).append([NewEvent("x")])
    with pytest.raises(IntegrityError):
        async with database.session() as session:
            session.add(Event(tenant_id=a, seq=1, type="y", at=T0, payload={}))
            await session.flush()


async def test_open_tasks_come_back_in_enqueue_order(database: Database) -> None:
    a, b = await _tenants(database)
    async with database.session() as session:
        queue = await Queues(session, a).add(Queue(name="support"))
        agent = await Agents(session, a).add(Agent(name="Ann"))
    ids = [f"t{n}" for n in range(8)]
    for n, task_id in enumerate(ids):
        async with database.session() as session:
            await Tasks(session, a).add(
                Task(
                    id=task_id,
                    channel="chat",
                    queue_id=queue.id,
                    priority=n % 3,
                    attributes={"language": "fi"},
                    required_skills={"finnish": 2},
                    enqueued_at=T0 + timedelta(seconds=n),
                )
            )
            await Tasks(session, b).add(Task(id=f"b{n}", channel="chat"))
    async with database.session() as session:
        tasks = Tasks(session, a)
        (await tasks.get("t2")).phase = "ended"
        (await tasks.get("t2")).outcome = "completed"
        assigned = await tasks.get("t5")
        assigned.phase, assigned.agent_id, assigned.accepted_at = "assigned", agent.id, T0
    async with database.session() as session:
        open_tasks = await Tasks(session, a).open_in_order()
        assert [task.id for task in open_tasks] == [i for i in ids if i != "t2"]
        assert [task.seq for task in open_tasks] == [1, 2, 4, 5, 6, 7, 8]
        assert open_tasks[0].required_skills == {"finnish": 2}
        assert open_tasks[4].agent_id == agent.id
        assert open_tasks[4].accepted_at == T0
        assert open_tasks[1].enqueued_at == T0 + timedelta(seconds=1)
        assert len(await Tasks(session, b).open_in_order()) == 8


async def test_constraints_hold(database: Database) -> None:
    a, _ = await _tenants(database)
    with pytest.raises(IntegrityError):
        async with database.session() as session:
            await Users(session, a).add(User(username="x", role="emperor"))
    with pytest.raises(IntegrityError):
        async with database.session() as session:
            await Queues(session, a).add(Queue(name="dup"))
            await Queues(session, a).add(Queue(name="dup"))
    async with database.session() as session:
        count = (await session.execute(select(func.count()).select_from(Queue))).scalar_one()
        assert count == 0


async def test_an_identity_is_unique_within_a_tenant_only(database: Database) -> None:
    a, b = await _tenants(database)
    async with database.session() as session:
        for tenant in (a, b):
            customer = await Customers(session, tenant).add(Customer(name="Eve"))
            await Identities(session, tenant).add(
                Identity(customer_id=customer.id, kind="phone", value="+358401234567")
            )
    async with database.session() as session:
        found = await Identities(session, a).by_value("phone", "+358401234567")
        assert found is not None
        assert found.tenant_id == a
        assert await Identities(session, a).by_value("email", "+358401234567") is None
    with pytest.raises(IntegrityError):
        async with database.session() as session:
            customer = await Customers(session, a).add(Customer(name="Other"))
            await Identities(session, a).add(
                Identity(customer_id=customer.id, kind="phone", value="+358401234567")
            )

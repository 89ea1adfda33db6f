"""Group commit of chat messages: concurrent appends share transactions, each is stored once,
and a bad message fails alone."""

from __future__ import annotations

import asyncio

import pytest

from omnicc.app.message_log import MessageLog
from omnicc.core.errors import NotFound
from omnicc.store.database import Database
from omnicc.store.repositories import Conversations, Messages, Tenants
from omnicc.store.tables import Conversation, Message

pytestmark = pytest.mark.anyio

AUTHORS = 50


async def _conversation(database: Database) -> tuple[str, str]:
    async with database.session() as session:
        tenant = (await Tenants(session).create("batch", "Batch")).id
        conversation = (await Conversations(session, tenant).add(Conversation())).id
    return tenant, conversation


def _message(conversation: str, key: str | None, text: str) -> Message:
    return Message(conversation_id=conversation, author_kind="customer", text=text,
                   idempotency_key=key)


async def test_concurrent_appends_are_all_stored_in_fewer_commits(database: Database) -> None:
    tenant, conversation = await _conversation(database)
    log = MessageLog(database, tenant)
    stored = await asyncio.gather(*(log.append(_message(conversation, f"k{n}", f"text {n}"))
                                    for n in range(AUTHORS)))
    assert [m.text for m in stored] == [f"text {n}" for n in range(AUTHORS)]
    assert len({m.id for m in stored}) == AUTHORS
    assert log.commits < AUTHORS
    async with database.session() as session:
        history = await Messages(session, tenant).history(conversation)
    assert sorted(m.id for m in history) == sorted(m.id for m in stored)


async def test_a_resent_key_in_the_same_batch_is_stored_once(database: Database) -> None:
    tenant, conversation = await _conversation(database)
    log = MessageLog(database, tenant)
    first, again = await asyncio.gather(log.append(_message(conversation, "same", "hello")),
                                        log.append(_message(conversation, "same", "hello")))
    assert first.id == again.id
    async with database.session() as session:
        assert len(await Messages(session, tenant).history(conversation)) == 1


async def test_a_bad_message_fails_alone(database: Database) -> None:
    tenant, conversation = await _conversation(database)
    log = MessageLog(database, tenant)
    results = await asyncio.gather(
        log.append(_message(conversation, "a", "before")),
        log.append(_message("no-such-conversation", "b", "lost")),
        log.append(_message(conversation, "c", "after")),
        return_exceptions=True)
    assert isinstance(results[1], NotFound)
    assert [r.text for r in results if isinstance(r, Message)] == ["before", "after"]
    async with database.session() as session:
        history = await Messages(session, tenant).history(conversation)
    assert sorted(m.text for m in history) == ["after", "before"]

"""The in-process bus: topics, changing subscriptions, and closing a client too slow to read."""

from __future__ import annotations

import pytest

from omnicc.bus import Bus, Notice

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_notice_reaches_followers_of_any_of_its_topics_once() -> None:
    bus = Bus()
    agent = bus.subscribe("t1", "agent:a", "conversation:c")
    other_tenant = bus.subscribe("t2", "agent:a")
    assert bus.publish("t1", ["agent:a", "conversation:c"], Notice("x", {"n": 1})) == 1
    assert (await agent.get()) == Notice("x", {"n": 1})
    assert other_tenant._queue.empty()


async def test_follow_and_unfollow_change_what_arrives() -> None:
    bus = Bus()
    subscription = bus.subscribe("t", "agent:a")
    subscription.follow("conversation:c")
    bus.publish("t", ["conversation:c"], Notice("first"))
    subscription.unfollow("conversation:c")
    bus.publish("t", ["conversation:c"], Notice("second"))
    bus.publish("t", ["agent:a"], Notice("third"))
    assert [(await subscription.get()).type for _ in range(2)] == ["first", "third"]
    assert bus.followers("t", "conversation:c") == 0


async def test_a_slow_client_is_closed_not_silently_behind() -> None:
    bus = Bus(max_pending=3)
    slow = bus.subscribe("t", "events")
    for number in range(4):
        bus.publish("t", ["events"], Notice(str(number)))
    assert slow.overflowed and slow.is_closed
    assert [(await slow.get()).type for _ in range(3)] == ["0", "1", "2"]
    assert await slow.get() is None
    assert bus.followers("t", "events") == 0


def test_notice_wire_form() -> None:
    assert Notice("message.created", {"id": "m"}).wire() == {"type": "message.created", "id": "m"}


async def test_extend_makes_followers_of_one_topic_follow_another_at_once() -> None:
    bus = Bus()
    desk, other_desk = bus.subscribe("t", "agent:a"), bus.subscribe("t", "agent:b")
    bus.extend("t", "agent:a", "conversation:c")
    bus.publish("t", ["conversation:c"], Notice("message"))
    assert (await desk.get()).type == "message"
    assert other_desk._queue.empty()
    bus.withdraw("t", "agent:a", "conversation:c")
    assert bus.followers("t", "conversation:c") == 0


async def test_drain_drops_the_waiting_notices_but_not_the_end_of_a_closed_subscription() -> None:
    bus = Bus()
    subscription = bus.subscribe("t", "events")
    for n in range(3):
        bus.publish("t", ["events"], Notice("event", {"n": n}))
    assert subscription.drain() == 3
    bus.publish("t", ["events"], Notice("later"))
    assert (await subscription.get()) == Notice("later")
    bus.publish("t", ["events"], Notice("dropped"))
    subscription.close()
    assert subscription.drain() == 1
    assert await subscription.get() is None

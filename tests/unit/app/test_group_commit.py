"""Group commit: what arrives during a commit shares the next one, each caller learns its own
outcome, a bad item fails alone, and nothing is acknowledged before its commit."""

from __future__ import annotations

import asyncio

import pytest

from omnicc.app.group_commit import GroupCommit

pytestmark = pytest.mark.anyio


class Store:
    """A store whose commits take a moment (so submits pile up behind one), refuse the item
    "bad" (the whole transaction fails) and answer "refused" with an error of its own."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.committed: list[str] = []
        self.crash = False

    async def commit(self, items: list[str]) -> list[str | Exception]:
        self.batches.append(list(items))
        await asyncio.sleep(0.01)
        if self.crash:
            raise OSError("the disk went away before the commit")
        if "bad" in items:
            raise ValueError("a constraint failed")
        kept = [item for item in items if item != "refused"]
        self.committed.extend(kept)
        return [LookupError(item) if item == "refused" else item.upper() for item in items]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_what_arrives_during_a_commit_shares_the_next() -> None:
    store = Store()
    batcher: GroupCommit[str, str] = GroupCommit(store.commit, max_batch=3)
    first = asyncio.ensure_future(batcher.submit("a"))
    await asyncio.sleep(0)  # the first commit is under way: the rest wait for the next
    rest = [asyncio.ensure_future(batcher.submit(item)) for item in "bcdef"]
    assert await asyncio.gather(first, *rest) == ["A", "B", "C", "D", "E", "F"]
    assert store.batches == [["a"], ["b", "c", "d"], ["e", "f"]]  # max_batch bounds them
    assert (batcher.commits, batcher.items) == (3, 6)


async def test_an_item_refused_alone_fails_alone() -> None:
    store = Store()
    batcher: GroupCommit[str, str] = GroupCommit(store.commit, max_batch=10)
    outcomes = await asyncio.gather(*(batcher.submit(item) for item in ("a", "refused", "b")),
                                    return_exceptions=True)
    assert outcomes[0] == "A" and outcomes[2] == "B"
    assert isinstance(outcomes[1], LookupError)
    assert store.committed == ["a", "b"]


async def test_a_failed_transaction_is_tried_again_one_item_at_a_time() -> None:
    store = Store()
    batcher: GroupCommit[str, str] = GroupCommit(store.commit, max_batch=10)
    outcomes = await asyncio.gather(*(batcher.submit(item) for item in ("a", "bad", "b")),
                                    return_exceptions=True)
    assert outcomes[0] == "A" and outcomes[2] == "B"
    assert isinstance(outcomes[1], ValueError)
    assert store.batches == [["a", "bad", "b"], ["a"], ["bad"], ["b"]]
    assert store.committed == ["a", "b"]


async def test_nothing_is_acknowledged_before_its_commit() -> None:
    store = Store()
    store.crash = True
    batcher: GroupCommit[str, str] = GroupCommit(store.commit, max_batch=10)
    submits = [asyncio.ensure_future(batcher.submit(item)) for item in "ab"]
    await asyncio.sleep(0.005)
    assert not any(submit.done() for submit in submits)  # the commit is still under way
    outcomes = await asyncio.gather(*submits, return_exceptions=True)
    assert all(isinstance(outcome, OSError) for outcome in outcomes)
    assert store.committed == []
    store.crash = False  # the provider sends them again
    assert await asyncio.gather(*(batcher.submit(item) for item in "ab")) == ["A", "B"]


async def test_a_caller_that_goes_away_does_not_cancel_the_others() -> None:
    store = Store()
    batcher: GroupCommit[str, str] = GroupCommit(store.commit, max_batch=10)
    gone = asyncio.ensure_future(batcher.submit("a"))
    stays = asyncio.ensure_future(batcher.submit("b"))
    await asyncio.sleep(0)
    gone.cancel()
    assert await stays == "B"
    assert store.committed == ["a", "b"]  # its item was written all the same


async def test_a_stopped_writer_leaves_nobody_waiting() -> None:
    store = Store()
    batcher: GroupCommit[str, str] = GroupCommit(store.commit, max_batch=1)
    submits = [asyncio.ensure_future(batcher.submit(item)) for item in "ab"]
    await asyncio.sleep(0.002)
    writer = batcher._writer
    assert writer is not None
    writer.cancel()  # the process stops
    outcomes = await asyncio.gather(*submits, return_exceptions=True)
    assert all(isinstance(outcome, asyncio.CancelledError) for outcome in outcomes)
    assert store.committed == []

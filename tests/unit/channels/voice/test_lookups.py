"""What calls keep of the store for a moment: valid for its generation and its age only."""

from __future__ import annotations

from omnicc.channels.voice.lookups import Lookups


def test_a_value_is_kept_with_its_generation_until_too_old_or_forgotten() -> None:
    now = [100.0]
    lookups: Lookups[str] = Lookups(max_age_s=2.0, clock=lambda: now[0])
    engine = object()
    assert lookups.get("1000") is None
    lookups.put("1000", "route", engine)
    now[0] += 1.5
    value, generation = lookups.get("1000") or (None, None)
    assert value == "route" and generation is engine
    now[0] += 1.0  # older than 2 s: read again
    assert lookups.get("1000") is None
    lookups.put("1000", "route", engine)
    lookups.put("2000", "other", engine)
    lookups.discard("2000")
    assert lookups.get("2000") is None
    lookups.forget()  # an admin change
    assert lookups.get("1000") is None


def test_callers_asking_while_a_read_runs_share_it() -> None:
    import asyncio

    lookups: Lookups[str] = Lookups()
    reads = []

    async def read() -> str:
        reads.append(1)
        await asyncio.sleep(0.01)
        return "route"

    async def many() -> list[str]:
        return await asyncio.gather(*(lookups.read_once("1000", read) for _ in range(5)))

    assert asyncio.run(many()) == ["route"] * 5
    assert len(reads) == 1

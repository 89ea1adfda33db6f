"""The rtpengine pool's bookkeeping: the setting's addresses, placement by load with ties going
round, health reported once per change (no engine needed: the monitors' figures are set)."""

from __future__ import annotations

import pytest

from omnicc.channels.voice.media.daemon import EngineEvent, EngineEventKind
from omnicc.channels.voice.media.pool import Engine, EnginePool, engine_addresses


def test_the_setting_lists_engines_in_order() -> None:
    assert engine_addresses("10.0.0.5:2223, 10.0.0.6:2224,") == [
        ("10.0.0.5", 2223), ("10.0.0.6", 2224)]
    assert engine_addresses("[::1]:2223") == [("::1", 2223)]
    assert engine_addresses("") == []
    for bad in ("10.0.0.5", "10.0.0.5:", ":2223", "host:0", "host:70000", "host:port"):
        with pytest.raises(ValueError, match="not host:port"):
            engine_addresses(bad)
    with pytest.raises(ValueError, match="twice"):
        engine_addresses("a:1,a:1")


def pool_of(count: int) -> tuple[EnginePool, list[tuple[Engine, EngineEvent]]]:
    heard: list[tuple[Engine, EngineEvent]] = []
    pool = EnginePool(lambda engine, event: heard.append((engine, event)))
    for index in range(count):
        pool.add_external(("127.0.0.1", 40000 + index))
    return pool, heard


def checked(engine: Engine, sessions: int) -> None:
    """As if the engine's health check just answered with `sessions` calls."""
    assert engine.monitor is not None
    engine.monitor.sessions = sessions
    engine.monitor.checks += 1


def test_calls_go_to_the_least_loaded_engine_and_ties_go_round() -> None:
    pool, _ = pool_of(3)
    a, b, c = pool.engines
    picks = [pool.pick() for _ in range(6)]
    assert [picks.count(engine) for engine in (a, b, c)] == [2, 2, 2]
    # A health check replaces the placements counted since the last one by the real figure.
    checked(a, 10)
    checked(b, 0)
    checked(c, 1)
    assert (a.load, b.load, c.load) == (10, 0, 1)
    assert pool.pick() is b and pool.pick() is b  # 0 then 1: b again (ties go round)
    assert b.load == 2 and b.placed == 4


def test_a_lost_engine_takes_no_calls_until_it_comes_back() -> None:
    pool, heard = pool_of(2)
    a, b = pool.engines
    lost = EngineEvent(EngineEventKind.LOST, "not answering")
    pool.report(a, lost)
    pool.report(a, lost)  # reported once
    assert heard == [(a, lost)] and not a.up and a.detail == "not answering"
    assert {pool.pick() for _ in range(3)} == {b}
    pool.report(b, lost)
    assert pool.healthy == [] and pool.pick() is None
    back = EngineEvent(EngineEventKind.RESTARTED, "rtpengine answers again")
    pool.report(a, back)
    assert a.up and pool.pick() is a
    assert [event.kind for _, event in heard] == ["lost", "lost", "restarted"]
    status = pool.status()
    assert [(s["address"], s["up"]) for s in status] == [
        ("127.0.0.1:40000", True), ("127.0.0.1:40001", False)]

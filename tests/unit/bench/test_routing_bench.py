"""Smoke test of the routing benchmark: its JSON, and the engine against the naive router.

No timing is asserted: the point is that the benchmark runs, reports every figure, and that the
engine's indexed decisions are the ones a linear scan of every waiting task makes.
"""

from __future__ import annotations

import json
import random

import pytest
from bench.routing import (
    SCENARIOS,
    Ledger,
    NaiveRouter,
    Options,
    Scenario,
    Workload,
    build_loaded,
    main,
    run_arrival_engine,
    run_arrival_naive,
    run_scenario,
    run_steady,
)

TINY = Scenario("T", agents=20, skills=9, queues=3, waiting=200, languages=2)

FIGURES = {
    "decisions_per_s", "p50_us", "p99_us", "cycle_us", "arrival_path_us", "bytes_per_agent",
    "bytes_per_task", "naive_decisions_per_s", "speedup",
}
GOALS = {
    "l_decisions_per_s_ge_50000", "l_p99_le_1ms", "m_to_l_cost_growth_le_2x", "l_speedup_ge_20x",
}


def test_tiny_scenario_reports_every_figure_and_agrees_with_the_naive_router() -> None:
    options = Options(decisions=50, rounds=2, warmup=20, arrivals=50, arrival_check=50)
    result = run_scenario(TINY, options)
    assert result.keys() >= FIGURES
    for name in FIGURES:
        value = result[name]
        assert isinstance(value, int | float) and value > 0, name
    assert result["waiting"] == TINY.waiting
    for name in ("decisions", "naive_decisions"):
        count = result[name]
        assert isinstance(count, int) and count >= 50, name
    assert result["same_decisions_as_naive"] is True
    assert result["same_arrivals_as_naive"] is True


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_engine_and_naive_router_make_the_same_decisions(seed: int) -> None:
    workload = Workload(TINY, seed)
    loaded = build_loaded(workload, measure_memory=False)
    engine = loaded.router.engine
    assert not any(True for _ in engine.pending_offers())
    naive = NaiveRouter.from_engine(engine, workload.queues, loaded.router.clock.now())
    naive_ledger: Ledger = loaded.ledger.copy()

    engine_run = run_steady(loaded.router, loaded.ledger, random.Random(seed), 400)
    naive_run = run_steady(naive, naive_ledger, random.Random(seed), 400)

    assert engine_run.decisions >= 400
    assert [d for d in engine_run.log if d[0] == "free"][:400] == [
        d for d in naive_run.log if d[0] == "free"][:400]
    assert engine_run.log == naive_run.log
    assert len(loaded.ledger.waiting) == len(naive.waiting) == TINY.waiting


def test_arrivals_to_idle_agents_pick_the_same_agents() -> None:
    options = Options(seed=4, arrivals=300, arrival_check=300)
    times, engine_log = run_arrival_engine(TINY, options)
    naive_log = run_arrival_naive(TINY, options)
    assert len(times) > 200
    assert len(naive_log) > 300
    assert engine_log == naive_log


def test_last_line_is_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--scenarios", "S", "--decisions", "60", "--rounds", "1", "--naive-seconds", "0.5"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    report = json.loads(last)
    assert set(report["scenarios"]) == {"S"}
    assert report["scenarios"]["S"].keys() >= FIGURES
    assert report["goals"].keys() >= GOALS
    assert report["goals"]["l_decisions_per_s_ge_50000"] is None  # L was not run
    assert report["goals"]["same_decisions_as_naive"] is True
    assert SCENARIOS["L"].waiting == 100_000

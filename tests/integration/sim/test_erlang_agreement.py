"""The simulator, driving the real engine, agrees with queueing theory (issue 2, "Proof").

Single queue, A = 200 calls/h x 180 s = 10 Erlang, N = 14. Each theoretical figure must lie in
the simulation's own 99 % confidence interval. 2,000 simulated hours (about 400,000 calls) in 20
batches of 95 h: a batch is thousands of times longer than the queue's relaxation time (a few
mean handle times), so batch means are independent for all practical purposes.
"""

import pytest

from omnicc.sim.scenario import single_queue_scenario
from omnicc.sim.simulation import SimulationResult, simulate
from omnicc.sim.statistics import Estimate
from omnicc.wfm.erlang import erlang_a_figures, erlang_c_figures

ARRIVALS_PER_HOUR = 200
AHT_S = 180
AGENTS = 14
PATIENCE_S = 300
THRESHOLD_S = 20
HOURS = 2000
SEED = 1

pytestmark = pytest.mark.slow


def run(patience_s: float | None) -> SimulationResult:
    return simulate(single_queue_scenario(
        arrivals_per_hour=ARRIVALS_PER_HOUR, aht_s=AHT_S, agents=AGENTS, patience_s=patience_s,
        threshold_s=THRESHOLD_S, hours=HOURS, seed=SEED,
    ))


def assert_inside(name: str, estimate: Estimate, expected: float) -> None:
    assert estimate.batches == 20
    assert estimate.contains(expected), (
        f"{name}: theory {expected:.5f} outside the 99 % CI "
        f"[{estimate.low:.5f}, {estimate.high:.5f}] (mean {estimate.mean:.5f})"
    )


def test_erlang_c_without_abandonment() -> None:
    theory = erlang_c_figures(ARRIVALS_PER_HOUR, AHT_S, AGENTS, THRESHOLD_S)
    # The figures quoted in the issue.
    assert round(theory.p_wait, 4) == 0.1741
    assert round(theory.asa_s, 2) == 7.84
    assert round(theory.service_level, 4) == 0.8884
    assert round(theory.occupancy, 3) == 0.714

    result = run(patience_s=None)
    overall = result.overall
    assert overall.abandoned == 0 and result.unfinished == 0
    assert_inside("P(wait)", overall.p_wait, theory.p_wait)
    assert_inside("ASA", overall.asa_s, theory.asa_s)
    assert_inside("service level", overall.service_level, theory.service_level)
    assert_inside("occupancy", result.occupancy, theory.occupancy)


def test_erlang_a_with_exponential_patience() -> None:
    theory = erlang_a_figures(ARRIVALS_PER_HOUR, AHT_S, AGENTS, PATIENCE_S, THRESHOLD_S)
    assert round(theory.p_wait, 4) == 0.1453
    assert round(theory.p_abandon, 4) == 0.0140

    result = run(patience_s=PATIENCE_S)
    overall = result.overall
    assert overall.abandoned > 0 and result.unfinished == 0
    assert_inside("P(wait)", overall.p_wait, theory.p_wait)
    assert_inside("P(abandon)", overall.p_abandon, theory.p_abandon)
    assert_inside("service level", overall.service_level, theory.service_level)
    assert_inside("ASA", overall.asa_s, theory.asa_s)
    assert_inside("occupancy", result.occupancy, theory.occupancy)

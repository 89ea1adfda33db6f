"""Erlang figures checked against an independent implementation (erlanglib: exact Decimal
arithmetic on the textbook formulas), against OmniCC's simulator, and by properties."""

import decimal
import math
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnicc.sim.scenario import single_queue_scenario
from omnicc.sim.simulation import simulate
from omnicc.wfm.erlang import (
    erlang_a_figures,
    erlang_b,
    erlang_b_lines,
    erlang_c,
    erlang_c_figures,
    required_agents,
    scheduled_agents,
)

# erlanglib raises the process-wide Decimal precision to 1000 digits when imported: keep that
# inside its own tests.
with decimal.localcontext():
    import erlanglib


@pytest.fixture(autouse=True)
def exact_decimals() -> Iterator[None]:
    with decimal.localcontext() as context:
        context.prec = 1000
        yield


# --- erlanglib --------------------------------------------------------------------------------


GRID = [(0.5, 1), (3.7, 6), (10.0, 14), (10.0, 17), (45.0, 50), (80.0, 95), (150.0, 151)]


@pytest.mark.parametrize(("traffic", "servers"), GRID)
def test_erlang_b_and_c_match_erlanglib(traffic: float, servers: int) -> None:
    assert erlang_b(traffic, servers) == pytest.approx(erlanglib.erlang_b(servers, traffic),
                                                       rel=1e-10)
    assert erlang_c(traffic, servers) == pytest.approx(erlanglib.erlang_c(servers, traffic),
                                                       rel=1e-10)


@pytest.mark.parametrize(("traffic", "servers"), GRID)
@pytest.mark.parametrize("threshold_s", [0.0, 20.0, 60.0])
def test_erlang_c_figures_match_erlanglib(traffic: float, servers: int,
                                          threshold_s: float) -> None:
    aht_s = 180.0
    ours = erlang_c_figures(traffic * 3600 / aht_s, aht_s, servers, threshold_s)
    p_wait = erlanglib.erlang_c(servers, traffic)
    assert ours.p_wait == pytest.approx(p_wait, rel=1e-10)
    assert ours.service_level == pytest.approx(
        erlanglib.service_level(servers, traffic, p_wait, threshold_s, aht_s), rel=1e-10)
    assert ours.asa_s == pytest.approx(
        erlanglib.average_speed_of_answer(servers, traffic, p_wait, aht_s), rel=1e-10)
    assert ours.occupancy * 100 == pytest.approx(erlanglib.occupancy(traffic, servers))


def test_staffing_oracle_matches_erlanglib() -> None:
    """The issue's 80/20 example solved with erlanglib's formulas alone."""
    traffic, aht_s = 10.0, 180.0
    agents = math.floor(traffic) + 1
    while True:
        p_wait = erlanglib.erlang_c(agents, traffic)
        level = erlanglib.service_level(agents, traffic, p_wait, 20, aht_s)
        if level >= 0.8 and erlanglib.occupancy(traffic, agents) <= 85:
            break
        agents += 1
    ours = required_agents(200.0, aht_s, target_service_level=0.8, max_occupancy=0.85)
    assert ours == agents == 14
    assert scheduled_agents(ours, 0.3) == erlanglib.required_agents(agents, 30) == 20
    assert erlang_b_lines(10.0, 0.02) == erlanglib.required_channels(10.0, 0.02) == 17


# --- the simulator ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arrivals_per_hour", "agents", "patience_s", "threshold_s", "hours"),
    [(70.0, 5, None, 30.0, 300.0), (400.0, 20, 120.0, 15.0, 60.0)],
    ids=["erlang-c-small-team", "erlang-a-at-full-load"],
)
def test_simulator_agrees_within_its_confidence_intervals(
    arrivals_per_hour: float, agents: int, patience_s: float | None, threshold_s: float,
    hours: float,
) -> None:
    """About 20,000 simulated calls on the real engine: each theoretical figure lies in the
    simulation's 99 % batch-means interval (the long runs are tests/integration/sim)."""
    aht_s = 180.0
    result = simulate(single_queue_scenario(
        arrivals_per_hour=arrivals_per_hour, aht_s=aht_s, agents=agents, patience_s=patience_s,
        threshold_s=threshold_s, hours=hours, seed=5,
    ))
    overall = result.overall
    if patience_s is None:
        c = erlang_c_figures(arrivals_per_hour, aht_s, agents, threshold_s)
        expected = {"service_level": c.service_level, "asa_s": c.asa_s, "p_wait": c.p_wait}
        occupancy = c.occupancy
        assert overall.abandoned == 0
    else:
        a = erlang_a_figures(arrivals_per_hour, aht_s, agents, patience_s, threshold_s)
        expected = {"service_level": a.service_level, "asa_s": a.asa_s, "p_wait": a.p_wait,
                    "p_abandon": a.p_abandon}
        occupancy = a.occupancy
        assert a.p_abandon > 0.05  # a regime where abandonment matters
    assert overall.contacts > 15_000
    for name, value in expected.items():
        estimate = getattr(overall, name)
        assert estimate.contains(value), (name, estimate, value)
    assert result.occupancy.contains(occupancy)
    # Little's law on the agents, from the simulation's own output: busy agents = throughput x
    # mean handle time.
    throughput_per_s = overall.handled / (result.batches * result.batch_hours * 3600)
    assert result.occupancy.mean * agents == pytest.approx(throughput_per_s * aht_s, rel=0.02)


# --- properties -------------------------------------------------------------------------------

loads = st.floats(min_value=0.1, max_value=300.0)
handle_times = st.floats(min_value=10.0, max_value=1200.0)
thresholds = st.floats(min_value=0.0, max_value=120.0)


@settings(max_examples=60, deadline=None)
@given(traffic=loads, aht_s=handle_times, threshold_s=thresholds, spare=st.integers(1, 30))
def test_erlang_a_tends_to_erlang_c_as_patience_grows(
    traffic: float, aht_s: float, threshold_s: float, spare: int
) -> None:
    # At most 97 % load: nearer 1 the limit is reached only as 1 / sqrt(patience) (the
    # heavy-traffic regime), which the first-order check below does not describe.
    agents = math.floor(traffic / 0.97) + spare
    arrivals = traffic * 3600 / aht_s
    c = erlang_c_figures(arrivals, aht_s, agents, threshold_s)
    gaps = []
    for patience_s in (aht_s * 1e2, aht_s * 1e4, aht_s * 1e6):
        a = erlang_a_figures(arrivals, aht_s, agents, patience_s, threshold_s)
        gaps.append(abs(a.service_level - c.service_level) + abs(a.p_wait - c.p_wait))
        assert a.p_wait <= c.p_wait + 1e-12
    # The gap shrinks about as fast as 1 / patience grows (first order in the abandon rate).
    assert gaps[2] <= gaps[0] * 1e-2 + 1e-9
    assert gaps[2] < 1e-3


@settings(max_examples=60, deadline=None)
@given(traffic=loads, aht_s=handle_times, threshold_s=thresholds, spare=st.integers(1, 20),
       patience_s=st.floats(min_value=5.0, max_value=3000.0))
def test_more_agents_never_do_worse(
    traffic: float, aht_s: float, threshold_s: float, spare: int, patience_s: float
) -> None:
    agents = math.floor(traffic) + spare
    arrivals = traffic * 3600 / aht_s
    c0, c1 = (erlang_c_figures(arrivals, aht_s, n, threshold_s) for n in (agents, agents + 1))
    assert c1.p_wait <= c0.p_wait and c1.asa_s <= c0.asa_s
    assert c1.service_level >= c0.service_level and c1.occupancy < c0.occupancy
    a0, a1 = (erlang_a_figures(arrivals, aht_s, n, patience_s, threshold_s)
              for n in (agents, agents + 1))
    assert a1.p_wait <= a0.p_wait + 1e-12 and a1.p_abandon <= a0.p_abandon + 1e-12
    assert a1.service_level >= a0.service_level - 1e-12
    assert erlang_b(traffic, agents + 1) < erlang_b(traffic, agents)


@settings(max_examples=60, deadline=None)
@given(traffic=loads, aht_s=handle_times, agents=st.integers(1, 400),
       patience_s=st.floats(min_value=5.0, max_value=3000.0), threshold_s=thresholds)
def test_more_patience_fewer_abandons_and_longer_threshold_higher_level(
    traffic: float, aht_s: float, agents: int, patience_s: float, threshold_s: float
) -> None:
    arrivals = traffic * 3600 / aht_s
    a = erlang_a_figures(arrivals, aht_s, agents, patience_s, threshold_s)
    more_patient = erlang_a_figures(arrivals, aht_s, agents, patience_s * 2, threshold_s)
    # 1e-9: the chain is cut where its tail holds 1e-12, which moves figures near 1 that much.
    assert more_patient.p_abandon <= a.p_abandon + 1e-9
    later = erlang_a_figures(arrivals, aht_s, agents, patience_s, threshold_s + 10)
    assert later.service_level >= a.service_level - 1e-9
    assert 0.0 <= a.p_abandon <= a.p_wait <= 1.0
    # Flow balance: the agents carry what does not abandon.
    assert a.occupancy * agents == pytest.approx(traffic * (1 - a.p_abandon), rel=1e-6)


@settings(max_examples=60, deadline=None)
@given(traffic=loads, aht_s=handle_times, level=st.floats(min_value=0.05, max_value=0.99),
       threshold_s=thresholds, shrinkage=st.integers(0, 600).map(lambda permille: permille / 1000))
def test_required_agents_is_minimal_and_scheduled_covers_shrinkage(
    traffic: float, aht_s: float, level: float, threshold_s: float, shrinkage: float
) -> None:
    arrivals = traffic * 3600 / aht_s
    required = required_agents(arrivals, aht_s, target_service_level=level,
                               threshold_s=threshold_s)
    assert erlang_c_figures(arrivals, aht_s, required, threshold_s).service_level >= level
    if required > 1:
        below = erlang_c_figures(arrivals, aht_s, required - 1, threshold_s)
        assert below.service_level < level
    scheduled = scheduled_agents(required, shrinkage)
    assert scheduled * (1 - shrinkage) >= required - 1e-9
    assert (scheduled - 1) * (1 - shrinkage) < required


@settings(max_examples=40, deadline=None)
@given(traffic=st.floats(min_value=0.1, max_value=120.0), aht_s=handle_times,
       patience_s=st.floats(min_value=5.0, max_value=3000.0),
       level=st.one_of(st.none(), st.floats(min_value=0.05, max_value=0.99)),
       abandon=st.one_of(st.none(), st.floats(min_value=0.001, max_value=0.5)),
       occupancy=st.one_of(st.none(), st.floats(min_value=0.3, max_value=1.0)))
def test_erlang_a_required_agents_is_minimal(
    traffic: float, aht_s: float, patience_s: float, level: float | None,
    abandon: float | None, occupancy: float | None,
) -> None:
    if (level, abandon, occupancy) == (None, None, None):
        level = 0.8
    arrivals = traffic * 3600 / aht_s
    required = required_agents(arrivals, aht_s, target_service_level=level,
                               target_p_abandon=abandon, patience_s=patience_s,
                               max_occupancy=occupancy)

    def meets(agents: int) -> bool:
        a = erlang_a_figures(arrivals, aht_s, agents, patience_s)
        return ((level is None or a.service_level >= level)
                and (abandon is None or a.p_abandon <= abandon)
                and (occupancy is None or a.occupancy <= occupancy))

    assert meets(required)
    assert required == 1 or not meets(required - 1)

"""Erlang B, C and A: oracles from the issues, textbook values, limits and brute-force checks."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from scipy.linalg import expm

from omnicc.wfm.erlang import (
    ErlangAResult,
    ErlangCResult,
    erlang_a_figures,
    erlang_b,
    erlang_b_lines,
    erlang_c,
    erlang_c_figures,
    required_agents,
    scheduled_agents,
)


def exact_erlang_b(traffic: Fraction, servers: int) -> float:
    terms = [traffic**k / math.factorial(k) for k in range(servers + 1)]
    return float(terms[-1] / sum(terms))


def exact_erlang_c(traffic: Fraction, servers: int) -> float:
    terms = [traffic**k / math.factorial(k) for k in range(servers)]
    waiting = traffic**servers / math.factorial(servers) * servers / (servers - traffic)
    return float(waiting / (sum(terms) + waiting))


# --- Erlang B -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("traffic", "servers", "expected"),
    [
        (1.0, 1, 0.5),
        (2.0, 2, 0.4),
        (10.0, 16, 0.022302),
        (10.0, 17, 0.012949),
        (5.0, 10, 0.018385),
        (20.0, 30, 0.008457),
    ],
)
def test_erlang_b_textbook_values(traffic: float, servers: int, expected: float) -> None:
    assert erlang_b(traffic, servers) == pytest.approx(expected, abs=5e-6)


@pytest.mark.parametrize(("traffic", "servers"), [(Fraction(37, 10), 6), (Fraction(45), 50)])
def test_erlang_b_matches_the_defining_formula(traffic: Fraction, servers: int) -> None:
    assert erlang_b(float(traffic), servers) == pytest.approx(
        exact_erlang_b(traffic, servers), rel=1e-12
    )


def test_erlang_b_edge_cases() -> None:
    assert erlang_b(10.0, 0) == 1.0
    assert erlang_b(0.0, 3) == 0.0


def test_erlang_b_lines_oracle() -> None:
    assert erlang_b_lines(10.0, 0.02) == 17
    assert erlang_b(10.0, 16) > 0.02
    # Erlang B tables: 17 lines carry 9.65 Erlang at a 1 % grade of service.
    assert erlang_b(9.65, 17) == pytest.approx(0.01, abs=1e-4)


def test_erlang_b_lines_with_any_blocking_allowed_needs_no_line() -> None:
    assert erlang_b_lines(10.0, 1.0) == 0


# --- Erlang C -------------------------------------------------------------------------------


def test_erlang_c_figures_oracle() -> None:
    result = erlang_c_figures(200.0, 180.0, 14, threshold_s=20.0)
    assert isinstance(result, ErlangCResult)
    assert result.traffic_erl == pytest.approx(10.0)
    assert result.p_wait == pytest.approx(0.174132, abs=5e-7)
    assert result.service_level == pytest.approx(0.888350, abs=5e-7)
    assert result.asa_s == pytest.approx(7.836, abs=5e-4)
    assert result.occupancy == pytest.approx(0.714286, abs=5e-7)


def test_erlang_c_matches_the_defining_formula() -> None:
    assert erlang_c(7.5, 9) == pytest.approx(exact_erlang_c(Fraction(15, 2), 9), rel=1e-12)


def test_erlang_c_is_certain_wait_when_traffic_reaches_servers() -> None:
    assert erlang_c(14.0, 14) == 1.0
    assert erlang_c(20.0, 14) == 1.0


def test_erlang_c_figures_when_unstable() -> None:
    result = erlang_c_figures(300.0, 180.0, 14)
    assert result == ErlangCResult(15.0, 1.0, 0.0, math.inf, 1.0)


def test_erlang_c_figures_with_no_traffic() -> None:
    result = erlang_c_figures(0.0, 180.0, 3)
    assert (result.p_wait, result.service_level, result.asa_s, result.occupancy) == (
        0.0,
        1.0,
        0.0,
        0.0,
    )


def test_more_agents_lower_p_wait() -> None:
    p_waits = [erlang_c(10.0, n) for n in range(11, 30)]
    assert all(later < earlier for earlier, later in itertools.pairwise(p_waits))
    levels = [erlang_c_figures(200.0, 180.0, n).service_level for n in range(11, 30)]
    assert all(later > earlier for earlier, later in itertools.pairwise(levels))


def test_stable_for_thousands_of_agents() -> None:
    blocking = erlang_b(4900.0, 5000)
    p_wait = erlang_c(4900.0, 5000)
    assert 0.0 < blocking < p_wait < 1.0
    c = erlang_c_figures(4900.0 * 3600.0 / 180.0, 180.0, 5000)
    a = erlang_a_figures(4900.0 * 3600.0 / 180.0, 180.0, 5000, patience_s=300.0)
    for value in (c.p_wait, c.service_level, c.occupancy, a.p_wait, a.p_abandon):
        assert math.isfinite(value)
        assert 0.0 <= value <= 1.0
    assert c.traffic_erl == pytest.approx(4900.0)
    assert c.p_wait == pytest.approx(p_wait)
    assert math.isfinite(c.asa_s) and math.isfinite(a.asa_s)
    assert a.p_wait < c.p_wait


# --- Erlang A -------------------------------------------------------------------------------


def test_erlang_a_oracle() -> None:
    result = erlang_a_figures(200.0, 180.0, 14, patience_s=300.0, threshold_s=20.0)
    assert isinstance(result, ErlangAResult)
    assert result.p_wait == pytest.approx(0.14526, abs=5e-6)
    assert result.p_abandon == pytest.approx(0.013984, abs=5e-7)
    # Regression values, confirmed by an 8-million-call Monte Carlo simulation.
    assert result.service_level == pytest.approx(0.916792, abs=5e-6)
    assert result.asa_s == pytest.approx(3.8785, abs=5e-4)
    assert result.occupancy == pytest.approx(10.0 * (1 - result.p_abandon) / 14)


def brute_force_erlang_a(
    arrival_rate: float, service_rate: float, abandon_rate: float, agents: int, threshold_s: float
) -> tuple[float, float, float]:
    """P(wait), P(abandon) by Little's law, and P(answered within T) by a matrix exponential."""
    states = agents + 120
    weights = [1.0]
    for n in range(1, states + 1):
        death = min(n, agents) * service_rate + max(n - agents, 0) * abandon_rate
        weights.append(weights[-1] * arrival_rate / death)
    pi = np.array(weights) / sum(weights)
    queue = np.arange(states + 1) - agents
    p_wait = float(pi[agents:].sum())
    p_abandon = float(abandon_rate * np.dot(pi, np.maximum(queue, 0)) / arrival_rate)
    # Tagged caller at queue position k: generator over k = 0 (answered), 1..K, plus "abandoned".
    positions = states - agents + 1
    generator = np.zeros((positions + 2, positions + 2))
    for k in range(1, positions + 1):
        ahead = agents * service_rate + (k - 1) * abandon_rate
        generator[k, k - 1] = ahead
        generator[k, positions + 1] = abandon_rate
        generator[k, k] = -(ahead + abandon_rate)
    answered_by_t = expm(generator * threshold_s)[:, 0]
    service_level = float(pi[:agents].sum() + np.dot(pi[agents:], answered_by_t[1 : positions + 1]))
    return p_wait, p_abandon, service_level


@pytest.mark.parametrize(
    ("arrivals_per_hour", "aht_s", "agents", "patience_s", "threshold_s"),
    [(200.0, 180.0, 14, 300.0, 20.0), (400.0, 180.0, 14, 60.0, 20.0), (90.0, 240.0, 5, 45.0, 30.0)],
)
def test_erlang_a_matches_a_brute_force_chain(
    arrivals_per_hour: float, aht_s: float, agents: int, patience_s: float, threshold_s: float
) -> None:
    result = erlang_a_figures(arrivals_per_hour, aht_s, agents, patience_s, threshold_s)
    p_wait, p_abandon, service_level = brute_force_erlang_a(
        arrivals_per_hour / 3600.0, 1.0 / aht_s, 1.0 / patience_s, agents, threshold_s
    )
    assert result.p_wait == pytest.approx(p_wait, rel=1e-9)
    assert result.p_abandon == pytest.approx(p_abandon, rel=1e-9)
    assert result.service_level == pytest.approx(service_level, rel=1e-8)


def test_erlang_a_converges_to_erlang_c_as_patience_grows() -> None:
    c = erlang_c_figures(200.0, 180.0, 14)
    gaps = []
    for patience_s in (1e3, 1e4, 1e5, 1e6):
        a = erlang_a_figures(200.0, 180.0, 14, patience_s)
        gaps.append(abs(a.service_level - c.service_level))
    assert all(later < earlier for earlier, later in itertools.pairwise(gaps))
    a = erlang_a_figures(200.0, 180.0, 14, 1e7)
    assert a.p_wait == pytest.approx(c.p_wait, abs=1e-5)
    assert a.service_level == pytest.approx(c.service_level, abs=1e-5)
    assert a.asa_s == pytest.approx(c.asa_s, abs=1e-3)
    assert a.occupancy == pytest.approx(c.occupancy, abs=1e-5)
    assert a.p_abandon < 1e-6


def test_erlang_a_is_stable_when_traffic_exceeds_agents() -> None:
    result = erlang_a_figures(400.0, 180.0, 14, patience_s=60.0)
    assert 0.0 < result.p_abandon < 1.0
    assert 0.0 < result.service_level < 1.0
    assert math.isfinite(result.asa_s)
    # Heavy overload: the carried load saturates the agents, the rest abandons.
    overloaded = erlang_a_figures(6000.0 * 20, 180.0, 5000, patience_s=300.0)
    assert overloaded.p_abandon == pytest.approx(1 - 5000 / 6000, rel=1e-6)
    assert overloaded.occupancy == pytest.approx(1.0, abs=1e-9)


def test_erlang_a_threshold_limits() -> None:
    at_zero = erlang_a_figures(200.0, 180.0, 14, 300.0, threshold_s=0.0)
    assert at_zero.service_level == pytest.approx(1.0 - at_zero.p_wait, abs=1e-12)
    at_long = erlang_a_figures(200.0, 180.0, 14, 300.0, threshold_s=1e5)
    assert at_long.service_level == pytest.approx(1.0 - at_long.p_abandon, abs=1e-12)


def test_erlang_a_flow_balance() -> None:
    result = erlang_a_figures(330.0, 200.0, 17, 150.0)
    assert result.occupancy * 17 == pytest.approx(result.traffic_erl * (1 - result.p_abandon))


def test_erlang_a_with_no_traffic() -> None:
    assert erlang_a_figures(0.0, 180.0, 2, 60.0) == ErlangAResult(0.0, 0.0, 0.0, 1.0, 0.0, 0.0)


# --- Staffing -------------------------------------------------------------------------------


def test_required_and_scheduled_agents_oracle() -> None:
    required = required_agents(200.0, 180.0, target_service_level=0.8, max_occupancy=0.85)
    assert required == 14
    assert scheduled_agents(required, 0.30) == 20


def test_required_agents_is_the_smallest_meeting_the_target() -> None:
    required = required_agents(200.0, 180.0, target_asa_s=5.0)
    assert erlang_c_figures(200.0, 180.0, required).asa_s <= 5.0
    assert erlang_c_figures(200.0, 180.0, required - 1).asa_s > 5.0


def test_required_agents_for_occupancy_alone() -> None:
    assert required_agents(200.0, 180.0, max_occupancy=0.85) == 12


def test_required_agents_with_erlang_a() -> None:
    required = required_agents(
        400.0, 180.0, target_service_level=0.8, target_p_abandon=0.02, patience_s=120.0
    )

    def meets(agents: int) -> bool:
        result = erlang_a_figures(400.0, 180.0, agents, 120.0)
        return result.service_level >= 0.8 and result.p_abandon <= 0.02

    assert meets(required)
    assert not meets(required - 1)


def test_required_agents_at_scale() -> None:
    required = required_agents(4900.0 * 20, 180.0, target_service_level=0.8)
    assert erlang_c_figures(4900.0 * 20, 180.0, required).service_level >= 0.8
    assert erlang_c_figures(4900.0 * 20, 180.0, required - 1).service_level < 0.8


def test_scheduled_agents() -> None:
    assert scheduled_agents(0, 0.3) == 0
    assert scheduled_agents(10, 0.0) == 10
    assert scheduled_agents(10, 0.35) == 16


# --- Bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda: erlang_b(-1.0, 3),
        lambda: erlang_b(math.nan, 3),
        lambda: erlang_b(math.inf, 3),
        lambda: erlang_b(1.0, -1),
        lambda: erlang_b(1.0, 2.5),  # type: ignore[arg-type]
        lambda: erlang_b(1.0, True),
        lambda: erlang_c(-0.5, 3),
        lambda: erlang_b_lines(10.0, 0.0),
        lambda: erlang_b_lines(10.0, 1.5),
        lambda: erlang_c_figures(-1.0, 180.0, 14),
        lambda: erlang_c_figures(200.0, 0.0, 14),
        lambda: erlang_c_figures(200.0, 180.0, 0),
        lambda: erlang_c_figures(200.0, 180.0, 14, threshold_s=-1.0),
        lambda: erlang_a_figures(200.0, 180.0, 14, patience_s=0.0),
        lambda: erlang_a_figures(200.0, 180.0, 14, patience_s=math.inf),
        lambda: required_agents(200.0, 180.0),
        lambda: required_agents(200.0, 180.0, target_service_level=1.0),
        lambda: required_agents(200.0, 180.0, target_p_abandon=0.05),
        lambda: required_agents(200.0, 180.0, target_asa_s=-3.0),
        lambda: required_agents(200.0, 180.0, max_occupancy=0.0),
        lambda: scheduled_agents(-1, 0.3),
        lambda: scheduled_agents(10, 1.0),
        lambda: scheduled_agents(10, -0.1),
    ],
)
def test_bad_input_is_a_clear_value_error(call: object) -> None:
    assert callable(call)
    with pytest.raises(ValueError, match=r"must|needs"):
        call()

"""Queueing mathematics for staffing: Erlang B, Erlang C and Erlang A (M/M/N+M).

Definitions follow METRICS.md: offered load A = arrival rate x AHT in Erlangs; Erlang C's service
level at T is P(wait <= T) over all arrivals; Erlang A counts abandoners as not served within T.
Everything is computed with the Erlang B recursion or in log space, so agents and offered loads
in the thousands neither overflow nor lose precision.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from numpy.typing import NDArray
from scipy.special import betainc, gammaln

SECONDS_PER_HOUR = 3600.0

# Erlang A: the birth-death chain is cut where the neglected tail holds less than this share.
_TAIL_MASS = 1e-12
# Beyond this many queue states the exact Erlang A computation would not fit in memory.
_MAX_QUEUE_STATES = 20_000_000


@dataclass(frozen=True, slots=True)
class ErlangCResult:
    """Steady-state figures of an M/M/N queue (no abandonment)."""

    traffic_erl: float
    p_wait: float
    service_level: float
    asa_s: float
    occupancy: float


@dataclass(frozen=True, slots=True)
class ErlangAResult:
    """Steady-state figures of an M/M/N+M queue (exponential patience)."""

    traffic_erl: float
    p_wait: float
    p_abandon: float
    service_level: float
    asa_s: float
    occupancy: float


def _check_traffic(traffic_erl: float) -> None:
    if not (math.isfinite(traffic_erl) and traffic_erl >= 0.0):
        raise ValueError(f"traffic_erl must be a finite number >= 0, got {traffic_erl!r}")


def _check_count(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _check_non_negative(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _check_share(name: str, value: float, *, closed_above: bool) -> None:
    upper_ok = value <= 1.0 if closed_above else value < 1.0
    if not (math.isfinite(value) and value > 0.0 and upper_ok):
        interval = "(0, 1]" if closed_above else "(0, 1)"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")


def _erlang_b_sequence(traffic_erl: float) -> Iterator[tuple[int, float]]:
    """Yield (n, B(A, n)) for n = 0, 1, 2, ... by the stable forward recursion."""
    blocking = 1.0
    servers = 0
    while True:
        yield servers, blocking
        servers += 1
        blocking = traffic_erl * blocking / (servers + traffic_erl * blocking)


def erlang_b(traffic_erl: float, servers: int) -> float:
    """Blocking probability of an M/M/N/N loss system (Erlang B)."""
    _check_traffic(traffic_erl)
    _check_count("servers", servers, 0)
    for n, blocking in _erlang_b_sequence(traffic_erl):
        if n == servers:
            return blocking
    raise AssertionError("unreachable")  # pragma: no cover


def _erlang_c_from_b(traffic_erl: float, servers: int, blocking: float) -> float:
    if traffic_erl >= servers:
        return 1.0
    return servers * blocking / (servers - traffic_erl * (1.0 - blocking))


def erlang_c(traffic_erl: float, servers: int) -> float:
    """Probability that an arrival waits in an M/M/N queue; 1.0 when traffic >= servers."""
    _check_traffic(traffic_erl)
    _check_count("servers", servers, 0)
    return _erlang_c_from_b(traffic_erl, servers, erlang_b(traffic_erl, servers))


def erlang_b_lines(traffic_erl: float, max_blocking: float) -> int:
    """Smallest number of lines whose Erlang B blocking is <= max_blocking."""
    _check_traffic(traffic_erl)
    _check_share("max_blocking", max_blocking, closed_above=True)
    for n, blocking in _erlang_b_sequence(traffic_erl):
        if blocking <= max_blocking:
            return n
    raise AssertionError("unreachable")  # pragma: no cover


def _check_workload(arrivals_per_hour: float, aht_s: float, threshold_s: float) -> None:
    _check_non_negative("arrivals_per_hour", arrivals_per_hour)
    _check_positive("aht_s", aht_s)
    _check_non_negative("threshold_s", threshold_s)


def _erlang_c_result(
    traffic_erl: float, agents: int, blocking: float, aht_s: float, threshold_s: float
) -> ErlangCResult:
    if traffic_erl >= agents:
        return ErlangCResult(traffic_erl, 1.0, 0.0, math.inf, 1.0)
    p_wait = _erlang_c_from_b(traffic_erl, agents, blocking)
    # Waiting time of those who wait is exponential with rate (N - A) / AHT.
    spare_erl = agents - traffic_erl
    service_level = 1.0 - p_wait * math.exp(-spare_erl * threshold_s / aht_s)
    asa_s = p_wait * aht_s / spare_erl
    return ErlangCResult(traffic_erl, p_wait, service_level, asa_s, traffic_erl / agents)


def erlang_c_figures(
    arrivals_per_hour: float, aht_s: float, agents: int, threshold_s: float = 20.0
) -> ErlangCResult:
    """Erlang C figures: P(wait), service level P(wait <= T), ASA and occupancy."""
    _check_workload(arrivals_per_hour, aht_s, threshold_s)
    _check_count("agents", agents, 1)
    traffic_erl = arrivals_per_hour * aht_s / SECONDS_PER_HOUR
    blocking = erlang_b(traffic_erl, agents)
    return _erlang_c_result(traffic_erl, agents, blocking, aht_s, threshold_s)


def _log_queue_weights(
    arrival_rate: float, service_capacity: float, abandon_rate: float, queue_states: int
) -> NDArray[np.float64]:
    """log(pi_{N+j} / pi_N) for j = 1..queue_states (birth lambda, death N*mu + j*theta)."""
    j = np.arange(1, queue_states + 1, dtype=np.float64)
    steps = math.log(arrival_rate) - np.log(service_capacity + j * abandon_rate)
    return np.cumsum(steps)


def _log_sum_exp(values: NDArray[np.float64]) -> float:
    """log(sum(exp(values))) without overflow (scipy's logsumexp costs more than the chain)."""
    peak = float(values.max())
    return peak + math.log(float(np.exp(values - peak).sum()))


def _erlang_a_distribution(
    traffic_erl: float, agents: int, arrival_rate: float, service_rate: float, abandon_rate: float
) -> NDArray[np.float64]:
    """Stationary distribution of M/M/N+M over 0..N+J, with the cut tail below _TAIL_MASS."""
    n = np.arange(agents + 1, dtype=np.float64)
    log_head = n * math.log(traffic_erl) - gammaln(n + 1.0)
    service_capacity = agents * service_rate
    # The queue ratio lambda / (N mu + j theta) first drops below one at j = peak.
    peak = max(0, math.ceil((arrival_rate - service_capacity) / abandon_rate))
    queue_states = max(64, 2 * peak + 64)
    while True:
        log_queue = log_head[-1] + _log_queue_weights(
            arrival_rate, service_capacity, abandon_rate, queue_states
        )
        log_pi = np.concatenate((log_head, log_queue))
        log_total = _log_sum_exp(log_pi)
        # Later ratios only shrink, so a geometric series with the next ratio bounds the tail.
        next_ratio = arrival_rate / (service_capacity + (queue_states + 1) * abandon_rate)
        if next_ratio < 1.0:
            log_tail = float(log_pi[-1]) + math.log(next_ratio) - math.log1p(-next_ratio)
            if log_tail - log_total < math.log(_TAIL_MASS):
                return np.asarray(np.exp(log_pi - log_total), dtype=np.float64)
        queue_states *= 2
        if queue_states > _MAX_QUEUE_STATES:
            raise ValueError(
                "Erlang A queue too long to compute exactly; check patience_s and the offered load"
            )


def erlang_a_figures(
    arrivals_per_hour: float,
    aht_s: float,
    agents: int,
    patience_s: float,
    threshold_s: float = 20.0,
) -> ErlangAResult:
    """Erlang A (M/M/N+M) figures with exponential patience of mean patience_s.

    service_level is P(answered within T) over all arrivals (abandoners count against it),
    asa_s is the mean wait of answered contacts, occupancy is carried load / agents.
    """
    _check_workload(arrivals_per_hour, aht_s, threshold_s)
    _check_count("agents", agents, 1)
    _check_positive("patience_s", patience_s)
    traffic_erl = arrivals_per_hour * aht_s / SECONDS_PER_HOUR
    if traffic_erl == 0.0:
        return ErlangAResult(0.0, 0.0, 0.0, 1.0, 0.0, 0.0)
    arrival_rate = arrivals_per_hour / SECONDS_PER_HOUR
    service_rate = 1.0 / aht_s
    abandon_rate = 1.0 / patience_s
    service_capacity = agents * service_rate

    pi = _erlang_a_distribution(traffic_erl, agents, arrival_rate, service_rate, abandon_rate)
    # By PASTA an arrival sees pi; arriving in state N-1+k it takes queue position k >= 1.
    pi_queue = pi[agents:]
    k = np.arange(1, pi_queue.size + 1, dtype=np.float64)
    p_wait = float(pi_queue.sum())

    # From position k the head moves at N mu + (k-1) theta while the caller's own patience
    # runs out at theta, so P(answered | k) telescopes to N mu / (N mu + k theta). Given that,
    # the wait is a sum of exponentials with rates N mu + i theta, i = 1..k, and
    # exp(-theta W) ~ Beta(a + 1, k) with a = N mu / theta, so
    # P(W <= T | answered, k) = I_x(k, a + 1) with x = 1 - exp(-theta T).
    p_answered_given_k = service_capacity / (service_capacity + k * abandon_rate)
    shape = service_capacity / abandon_rate + 1.0
    x = -math.expm1(-abandon_rate * threshold_s)
    p_within_given_k = np.asarray(betainc(k, shape, x), dtype=np.float64)
    mean_wait_given_k = np.cumsum(1.0 / (service_capacity + k * abandon_rate))

    p_answered_waiting = float(np.dot(pi_queue, p_answered_given_k))
    p_abandon = float(np.dot(pi_queue, k * abandon_rate / (service_capacity + k * abandon_rate)))
    p_immediate = 1.0 - p_wait
    service_level = p_immediate + float(np.dot(pi_queue, p_answered_given_k * p_within_given_k))
    wait_of_answered_s = float(np.dot(pi_queue, p_answered_given_k * mean_wait_given_k))
    asa_s = wait_of_answered_s / (p_immediate + p_answered_waiting)
    busy_agents = float(np.dot(pi[:agents], np.arange(agents, dtype=np.float64))) + agents * p_wait
    return ErlangAResult(
        traffic_erl=traffic_erl,
        p_wait=min(1.0, p_wait),
        p_abandon=min(1.0, p_abandon),
        service_level=min(1.0, max(0.0, service_level)),
        asa_s=asa_s,
        occupancy=min(1.0, busy_agents / agents),
    )


def _smallest_agents(meets_targets: Callable[[int], bool], guess: int) -> int:
    """Smallest N >= 1 with meets_targets(N), for a predicate monotone in N: gallop from a
    guess (steps 1, 2, 4, ...) to bracket the answer, then bisect."""
    guess = max(1, guess)
    step = 1
    if meets_targets(guess):
        high, low = guess, guess - 1
        while low >= 1 and meets_targets(low):
            high, step = low, step * 2
            low = high - step
        low = max(low, 0)  # fails (or is 0, which is never a valid staffing)
    else:
        low, high = guess, guess + 1
        while not meets_targets(high):
            low, step = high, step * 2
            high = low + step
    while high - low > 1:
        middle = (low + high) // 2
        if meets_targets(middle):
            high = middle
        else:
            low = middle
    return high


def required_agents(
    arrivals_per_hour: float,
    aht_s: float,
    *,
    target_service_level: float | None = None,
    threshold_s: float = 20.0,
    target_asa_s: float | None = None,
    target_p_abandon: float | None = None,
    patience_s: float | None = None,
    max_occupancy: float | None = None,
) -> int:
    """Smallest number of agents meeting every given target.

    Uses Erlang C when patience_s is None and Erlang A otherwise.
    """
    _check_workload(arrivals_per_hour, aht_s, threshold_s)
    if target_service_level is not None:
        _check_share("target_service_level", target_service_level, closed_above=False)
    if target_asa_s is not None:
        _check_positive("target_asa_s", target_asa_s)
    if target_p_abandon is not None:
        _check_share("target_p_abandon", target_p_abandon, closed_above=False)
        if patience_s is None:
            raise ValueError("target_p_abandon needs patience_s (Erlang A)")
    if max_occupancy is not None:
        _check_share("max_occupancy", max_occupancy, closed_above=True)
    if patience_s is not None:
        _check_positive("patience_s", patience_s)
    if (target_service_level, target_asa_s, target_p_abandon, max_occupancy) == (None,) * 4:
        raise ValueError("required_agents needs at least one target")

    def meets(service_level: float, asa_s: float, p_abandon: float, occupancy: float) -> bool:
        return (
            (target_service_level is None or service_level >= target_service_level)
            and (target_asa_s is None or asa_s <= target_asa_s)
            and (target_p_abandon is None or p_abandon <= target_p_abandon)
            and (max_occupancy is None or occupancy <= max_occupancy)
        )

    if patience_s is None:
        traffic_erl = arrivals_per_hour * aht_s / SECONDS_PER_HOUR
        # One pass of the Erlang B recursion serves every candidate N: O(answer) work.
        for agents, blocking in _erlang_b_sequence(traffic_erl):
            if agents == 0 or traffic_erl >= agents:
                continue
            c = _erlang_c_result(traffic_erl, agents, blocking, aht_s, threshold_s)
            if meets(c.service_level, c.asa_s, 0.0, c.occupancy):
                return agents
        raise AssertionError("unreachable")  # pragma: no cover

    patience = patience_s

    def erlang_a_meets(agents: int) -> bool:
        a = erlang_a_figures(arrivals_per_hour, aht_s, agents, patience, threshold_s)
        return meets(a.service_level, a.asa_s, a.p_abandon, a.occupancy)

    # Erlang A figures improve monotonically with N, so a search finds the smallest N. Erlang C
    # staffing for the same service-level, ASA and occupancy targets is a close guess (a little
    # above when customers abandon); the offered load is one for an abandonment target alone.
    guess = math.ceil(arrivals_per_hour * aht_s / SECONDS_PER_HOUR)
    if (target_service_level, target_asa_s, max_occupancy) != (None, None, None):
        guess = required_agents(arrivals_per_hour, aht_s, target_service_level=target_service_level,
                                threshold_s=threshold_s, target_asa_s=target_asa_s,
                                max_occupancy=max_occupancy)
    return _smallest_agents(erlang_a_meets, guess)


def scheduled_agents(required: int, shrinkage: float) -> int:
    """Agents to schedule so that required remain after shrinkage: ceil(required / (1 - s))."""
    _check_count("required", required, 0)
    if not (math.isfinite(shrinkage) and 0.0 <= shrinkage < 1.0):
        raise ValueError(f"shrinkage must lie in [0, 1), got {shrinkage!r}")
    # Exact decimal arithmetic: 14 / (1 - 0.3) is 20.000000000000004 in floats, not 20.
    return math.ceil(Fraction(required) / (1 - Fraction(str(shrinkage))))

"""Short simulation runs: reproducible, counted consistently, and each feature has its effect."""

import dataclasses
import math
import random
import statistics
from pathlib import Path
from typing import Any

import pytest

from omnicc.sim.scenario import HandleTimeSpec, Scenario, load_scenario, parse_scenario
from omnicc.sim.simulation import Simulation, SimulationResult, _handle_sampler, simulate
from omnicc.sim.theory import theory_for
from omnicc.wfm.erlang import erlang_a_figures, erlang_c_figures

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def scenario(**changes: Any) -> Scenario:
    data: dict[str, Any] = {
        "hours": 20,
        "batches": 5,
        "queues": [{"id": "q"}],
        "traffic": [{"id": "calls", "queue": "q", "arrivals_per_hour": 200,
                     "handle": {"mean_s": 180}}],
        "agents": [{"group": "a", "count": 14, "capacity": {"voice": 1}}],
    }
    data.update(changes)
    return parse_scenario(data)


def without_wall_time(result: SimulationResult) -> SimulationResult:
    return dataclasses.replace(result, wall_s=0.0)


def test_a_run_is_reproducible_from_its_seed() -> None:
    first = simulate(scenario(seed=5))
    again = simulate(scenario(seed=5))
    other = simulate(scenario(seed=6))
    assert without_wall_time(first) == without_wall_time(again)
    assert first.arrivals != other.arrivals


def test_counts_add_up() -> None:
    result = simulate(scenario(traffic=[
        {"id": "a", "queue": "q", "arrivals_per_hour": 150, "handle": {"mean_s": 180},
         "patience_s": 60},
        {"id": "b", "queue": "q", "arrivals_per_hour": 60, "handle": {"mean_s": 180},
         "patience_s": 60},
    ]))
    total = result.overall
    assert total.contacts == sum(q.contacts for q in result.queues)
    assert total.contacts == total.handled + total.abandoned + total.timed_out
    assert total.abandoned > 0
    assert result.unfinished == 0
    # Warm-up arrivals are simulated but not counted.
    assert total.contacts < result.arrivals
    # Poisson arrivals: 210 per hour over 20 hours, i.e. 4200 with a standard deviation of 65.
    assert 3900 <= result.arrivals <= 4500
    assert result.simulated_hours == 20
    assert [q.id for q in result.queues] == ["a", "b"]


def test_plenty_of_agents_means_nobody_waits() -> None:
    result = simulate(scenario(agents=[{"group": "a", "count": 60, "capacity": {"voice": 1}}],
                               traffic=[{"id": "calls", "queue": "q", "arrivals_per_hour": 200,
                                         "handle": {"mean_s": 180}, "patience_s": 30}]))
    overall = result.overall
    assert overall.service_level.mean == 1.0
    assert overall.p_wait.mean == 0.0
    assert overall.asa_s.mean == 0.0
    assert overall.p_abandon.mean == 0.0
    assert math.isnan(overall.ewt_mae_s.mean)  # no contact waited, so no estimate to check
    assert result.occupancy.mean == pytest.approx(10 / 60, rel=0.1)


def test_without_eligible_agents_everybody_abandons() -> None:
    result = simulate(scenario(
        queues=[{"id": "q", "expression": "skills.klingon >= 1"}],
        traffic=[{"id": "calls", "queue": "q", "arrivals_per_hour": 100,
                  "handle": {"mean_s": 180}, "patience_s": 30}],
    ))
    overall = result.overall
    assert overall.handled == 0 and overall.abandoned == overall.contacts > 0
    assert overall.service_level.mean == 0.0
    assert overall.p_abandon.mean == 1.0
    assert overall.p_wait.mean == 1.0
    assert math.isnan(overall.asa_s.mean)
    assert math.isnan(result.occupancy.mean) or result.occupancy.mean == 0.0


def test_a_policy_that_runs_out_of_steps_times_tasks_out() -> None:
    result = simulate(scenario(
        queues=[{"id": "q", "expression": "skills.klingon >= 1"}],
        policies=[{"id": "p", "steps": [{"queue": "q", "timeout_s": 30}]}],
        traffic=[{"id": "calls", "policy": "p", "arrivals_per_hour": 100,
                  "handle": {"mean_s": 180}}],
    ))
    assert result.overall.timed_out == result.overall.contacts > 0
    assert result.overall.service_level.mean == 0.0


def test_overflow_to_a_second_queue_after_the_step_timeout() -> None:
    # Nobody serves "first", so every call waits exactly 15 s, then overflows to "second".
    result = simulate(scenario(
        queues=[{"id": "first", "expression": "skills.rare >= 1"}, {"id": "second"}],
        policies=[{"id": "p", "steps": [{"queue": "first", "timeout_s": 15},
                                        {"queue": "second"}]}],
        traffic=[{"id": "calls", "policy": "p", "arrivals_per_hour": 60,
                  "handle": {"mean_s": 60}}],
        agents=[{"group": "a", "count": 10, "capacity": {"voice": 1}}],
    ))
    overall = result.overall
    assert overall.handled == overall.contacts > 0
    assert overall.asa_s.mean == pytest.approx(15.0)
    assert overall.service_level.mean == 1.0
    assert overall.p_wait.mean == 1.0


def test_answer_delay_is_waiting_time_but_not_a_queue_wait() -> None:
    result = simulate(scenario(agents=[{"group": "a", "count": 60, "capacity": {"voice": 1},
                                        "answer_delay_s": 4}]))
    assert result.overall.asa_s.mean == pytest.approx(4.0)
    assert result.overall.p_wait.mean == 0.0


def test_wrap_up_keeps_agents_occupied() -> None:
    plain = simulate(scenario(agents=[{"group": "a", "count": 50, "capacity": {"voice": 1}}]))
    wrapped = simulate(scenario(queues=[{"id": "q", "wrap_up_s": 180}],
                                agents=[{"group": "a", "count": 50, "capacity": {"voice": 1}}]))
    # 10 Erlang of talk plus 10 of wrap-up on 50 agents.
    assert plain.occupancy.mean == pytest.approx(0.2, rel=0.1)
    assert wrapped.occupancy.mean == pytest.approx(0.4, rel=0.1)


def test_chat_capacity_lets_one_agent_hold_several_contacts() -> None:
    def run(slots: int) -> SimulationResult:
        return simulate(scenario(
            traffic=[{"id": "chat", "queue": "q", "channel": "chat", "arrivals_per_hour": 30,
                      "handle": {"mean_s": 300}, "patience_s": 600}],
            agents=[{"group": "a", "count": 2, "capacity": {"chat": slots}}],
        ))

    one, three = run(1), run(3)
    assert three.overall.p_wait.mean < one.overall.p_wait.mean / 3
    assert three.overall.handled > one.overall.handled


def test_shifts_log_agents_in_and_out() -> None:
    # Agents work the first hour of every two; callers in the other hour give up after 60 s.
    result = simulate(scenario(
        hours=42, batches=20,
        traffic=[{"id": "calls", "queue": "q", "arrivals_per_hour": 100,
                  "handle": {"mean_s": 30}, "patience_s": 60}],
        agents=[{"group": "a", "count": 10, "capacity": {"voice": 1},
                 "shifts": [{"login_h": 0, "logout_h": 1}], "shift_cycle_h": 2}],
    ))
    assert result.warmup_hours == 2 and result.batch_hours == 2
    assert result.overall.p_abandon.mean == pytest.approx(0.5 * (1 - 60 / 3600), abs=0.05)
    # Occupancy counts logged-in time only: in the on-hour, 100 calls x 30 s over 10 agents.
    assert result.occupancy.mean == pytest.approx(100 * 30 / 3600 / 10, rel=0.15)


def test_a_daily_profile_shapes_arrivals() -> None:
    profile = [0.0] * 12 + [2.0] * 12
    result = simulate(scenario(
        hours=24 * 3, batches=2,
        traffic=[{"id": "calls", "queue": "q", "arrivals_per_hour": 100, "profile": profile,
                  "handle": {"mean_s": 60}}],
    ))
    # 12 hours at 200 calls per hour each day, for 3 days.
    assert result.arrivals == pytest.approx(3 * 12 * 200, rel=0.05)


def test_ring_all_offers_race_and_one_agent_wins() -> None:
    result = simulate(scenario(queues=[{"id": "q", "strategy": "ring_all"}]))
    assert result.overall.handled == result.overall.contacts > 0


def test_lognormal_handle_times_have_the_requested_mean_and_cv() -> None:
    draw = _handle_sampler(HandleTimeSpec(distribution="lognormal", mean_s=240, cv=0.8),
                           random.Random(1))
    samples = [draw() for _ in range(200_000)]
    mean = statistics.fmean(samples)
    assert mean == pytest.approx(240, rel=0.01)
    assert statistics.pstdev(samples) / mean == pytest.approx(0.8, rel=0.03)


def test_progress_is_reported_up_to_one() -> None:
    shares: list[float] = []
    simulate(scenario(), shares.append)
    assert shares == sorted(shares)
    assert shares[-1] == 1.0 and len(shares) > 10


def test_a_simulation_runs_once() -> None:
    simulation = Simulation(scenario(hours=2, batches=2))
    simulation.run()
    with pytest.raises(RuntimeError):
        simulation.run()


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_run(path: Path) -> None:
    example = load_scenario(path)
    cycle_h = example.cycle_hours() or 1
    short = parse_scenario({**example.model_dump(exclude_unset=True, mode="json"),
                            "hours": 3 * cycle_h, "batches": 2})
    result = simulate(short)
    assert result.overall.contacts > 0
    assert len(result.queues) == len(example.traffic)


def test_theory_applies_to_the_textbook_case_only() -> None:
    erlang_c = theory_for(scenario())
    assert erlang_c is not None and erlang_c.model == "Erlang C"
    assert erlang_c.p_wait == erlang_c_figures(200, 180, 14).p_wait
    with_patience = theory_for(scenario(traffic=[
        {"id": "calls", "queue": "q", "arrivals_per_hour": 200, "handle": {"mean_s": 180},
         "patience_s": 300}]))
    assert with_patience is not None and with_patience.model == "Erlang A"
    assert with_patience.p_abandon == erlang_a_figures(200, 180, 14, 300).p_abandon
    assert theory_for(scenario(traffic=[
        {"id": "calls", "queue": "q", "arrivals_per_hour": 200,
         "handle": {"distribution": "lognormal", "mean_s": 180, "cv": 0.5}}])) is None
    assert theory_for(scenario(queues=[{"id": "q", "wrap_up_s": 10}])) is None
    assert theory_for(scenario(agents=[{"group": "a", "count": 5,
                                        "capacity": {"voice": 2}}])) is None
    assert theory_for(load_scenario(EXAMPLES / "nordic_specialists.yaml")) is None
    # Only the eligible agents count.
    mixed = theory_for(scenario(
        queues=[{"id": "q", "expression": "skills.english >= 1"}],
        agents=[{"group": "en", "count": 14, "skills": {"english": 3}},
                {"group": "fi", "count": 5, "skills": {"finnish": 3}}],
    ))
    assert mixed is not None and mixed.agents == 14

"""What-if: simulated service level per interval against Erlang C, and the schedule's agents on
duty as the simulation's staffing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from omnicc.sim.scenario import single_queue_scenario
from omnicc.wfm.erlang import erlang_c_figures
from omnicc.wfm.schedule import Break, Shift
from omnicc.wfm.series import IntervalSeries
from omnicc.wfm.staffing import GroupRequirement, QueueDemand, Requirement
from omnicc.wfm.whatif import duty_by_skills, what_if

MONDAY = datetime(2026, 1, 5, tzinfo=UTC)
SUPPORT = frozenset({"support"})


def demand(*volumes: float) -> QueueDemand:
    series = IntervalSeries(MONDAY, 1800, volumes, (180.0,) * len(volumes))
    return QueueDemand("support", "support", series)


def test_each_interval_is_close_to_erlang_c_and_empty_ones_are_none() -> None:
    result = what_if([demand(100, 0, 50)], {SUPPORT: [14, 3, 0]})
    busy, empty, unstaffed = result.intervals
    expected = erlang_c_figures(200, 180, 14)
    assert busy.agents == 14 and busy.offered_per_hour == 200
    assert busy.service_level is not None
    assert abs(busy.service_level - expected.service_level) < 0.04
    assert busy.occupancy is not None and abs(busy.occupancy - expected.occupancy) < 0.03
    assert empty.service_level is None and empty.agents == 3
    assert (unstaffed.service_level, unstaffed.p_abandon) == (0.0, 1.0)
    assert result.simulations == 1
    assert result.service_level() == busy.service_level * 200 / 300


def test_a_base_scenario_brings_its_routing_and_the_forecast_its_rates() -> None:
    base = single_queue_scenario(arrivals_per_hour=1, aht_s=60, agents=1, patience_s=60)
    result = what_if([demand(100)], {SUPPORT: [12]}, base)
    (only,) = result.intervals
    # 12 agents for 10 Erlang with one-minute patience: some abandon, as the base says.
    assert only.p_abandon is not None and only.p_abandon > 0.01
    assert only.queues.keys() == {"support"}


def test_agents_on_duty_per_skill_set_leave_breaks_out() -> None:
    requirement = Requirement(MONDAY, 3600, (
        GroupRequirement("support", ("support",), "erlang_c", (0,) * 4, (0,) * 4),))
    hour = timedelta(hours=1)
    shifts = [Shift("a", MONDAY.date(), MONDAY, MONDAY + 3 * hour,
                    (Break(MONDAY + hour, MONDAY + 2 * hour),)),
              Shift("b", MONDAY.date(), MONDAY + hour, MONDAY + 4 * hour)]
    skills = {"a": SUPPORT, "b": frozenset({"support", "billing"})}
    assert duty_by_skills(requirement, shifts, skills) == {
        SUPPORT: [1, 0, 1, 0], frozenset({"support", "billing"}): [0, 1, 1, 1]}

"""Staffing per interval and skill group: Erlang for single-skill queues (the issue's oracle),
the simulator between the pooled and the split Erlang figures for multi-skill groups."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from omnicc.wfm.series import IntervalSeries
from omnicc.wfm.staffing import (
    QueueDemand,
    ServiceTarget,
    skill_groups,
    staffing_requirement,
)

MONDAY = datetime(2026, 1, 5, tzinfo=UTC)


def series(*volumes: float, aht_s: float = 180.0) -> IntervalSeries:
    return IntervalSeries(MONDAY, 1800, tuple(volumes), (aht_s,) * len(volumes))


def test_single_skill_queue_meets_the_issue_oracle() -> None:
    # 100 contacts in 30 min = 200/h at 180 s: 10 Erlang; 80/20 at 85 % occupancy needs 14,
    # and 20 to schedule with 30 % shrinkage.
    target = ServiceTarget(service_level=0.8, threshold_s=20, max_occupancy=0.85, shrinkage=0.3)
    need = staffing_requirement([QueueDemand("support", "support", series(100, 0), target)])
    (group,) = need.groups
    assert (group.id, group.method) == ("support", "erlang_c")
    assert group.required == (14, 0)
    assert group.scheduled == (20, 0)
    assert need.start == MONDAY and need.interval_s == 1800 and len(need) == 2


def test_patience_switches_to_erlang_a() -> None:
    target = ServiceTarget(patience_s=300)
    need = staffing_requirement([QueueDemand("support", "support", series(100), target)])
    assert need.groups[0].method == "erlang_a"
    assert need.groups[0].required[0] <= 14  # abandoners relieve the queue


def test_skill_groups_follow_the_agents_who_link_skills() -> None:
    assert skill_groups(["a", "b", "c"], []) == [["a"], ["b"], ["c"]]
    roster = [frozenset({"a"}), frozenset({"b", "c"}), frozenset({"c", "x"})]
    assert skill_groups(["c", "b", "a"], roster) == [["a"], ["b", "c"]]


def test_multi_skill_group_is_simulated_between_its_erlang_bounds() -> None:
    support = QueueDemand("support", "support", series(100, 50))
    billing = QueueDemand("billing", "billing", series(60, 30, aht_s=240))
    split = staffing_requirement([support, billing])
    split_total = [sum(g.required[i] for g in split.groups) for i in range(2)]
    roster = [frozenset({"support", "billing"})] * 10
    pooled = staffing_requirement([support, billing], roster)
    (group,) = pooled.groups
    assert (group.id, group.method, group.skills) == ("billing+support", "simulation",
                                                       ("billing", "support"))
    for index in range(2):
        # Fully cross-trained agents pool the traffic: fewer than the split figure needs.
        assert group.required[index] < split_total[index]
        assert group.required[index] >= 1
    # Every agent holds both skills: each floor is the whole pool.
    assert group.floors == (("billing", group.scheduled), ("support", group.scheduled))


def test_forecasts_must_cover_the_same_intervals() -> None:
    with pytest.raises(ValueError, match="other intervals"):
        staffing_requirement([QueueDemand("a", "a", series(1, 2)),
                              QueueDemand("b", "b", series(1))])

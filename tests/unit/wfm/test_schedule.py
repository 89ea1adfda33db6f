"""Shift scheduling: small programs whose optimum is known by hand, and a property test that
every shift of any generated schedule respects its rules."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnicc.wfm.schedule import (
    UNDER_STAFFING_WEIGHT,
    AgentPlan,
    Break,
    BreakRule,
    Schedule,
    ScheduleError,
    ScheduleRules,
    Shift,
    ShiftRule,
    build_schedule,
    on_duty,
)
from omnicc.wfm.staffing import GroupRequirement, Requirement, coverage_rows

MONDAY = datetime(2026, 1, 5, tzinfo=UTC)
HOUR = 3600


def requirement(**needs: list[int]) -> Requirement:
    return Requirement(MONDAY, HOUR, tuple(
        GroupRequirement(name, (name,), "erlang_c", tuple(need), tuple(need))
        for name, need in needs.items()
    ))


def day(*hours: tuple[int, int]) -> list[int]:
    """24 hourly needs, zero except the given (hour, agents)."""
    needs = [0] * 24
    for hour, agents in hours:
        needs[hour] = agents
    return needs


def agents(count: int, skills: str = "support", **fields: object) -> list[AgentPlan]:
    return [AgentPlan(f"{skills}-{n}", skills=frozenset(skills.split("+")), **fields)  # type: ignore[arg-type]
            for n in range(1, count + 1)]


def at(hour: float, days: int = 0) -> datetime:
    return MONDAY + timedelta(days=days, hours=hour)


def four_hours(**fields: object) -> ScheduleRules:
    return ScheduleRules(shifts=(ShiftRule(240),), earliest_start_min=8 * 60,
                         latest_start_min=12 * 60, start_step_min=60, **fields)  # type: ignore[arg-type]


def test_two_shifts_cover_a_peak_exactly() -> None:
    # Needs 1,1,2,2,1,1 from 08:00: starts at 08:00 and 10:00 cover it with 8 paid hours, and
    # no cheaper plan exists (8 agent-hours are needed).
    need = requirement(support=day((8, 1), (9, 1), (10, 2), (11, 2), (12, 1), (13, 1)))
    schedule = build_schedule(need, agents(3), four_hours())
    assert schedule.status == "optimal"
    assert sorted(s.start for s in schedule.shifts) == [at(8), at(10)]
    assert schedule.objective == 8
    assert schedule.under_staffed() == 0
    assert schedule.over_staffed() == 0
    assert schedule.coverage["support"][8:14] == (1, 1, 2, 2, 1, 1)


def test_too_few_agents_leave_the_peak_short_and_say_so() -> None:
    need = requirement(support=day((8, 1), (9, 1), (10, 2), (11, 2), (12, 1), (13, 1)))
    schedule = build_schedule(need, agents(1), four_hours())
    # One 4-hour shift covers at most 1+2+2+1 = 6 of the 8 agent-hours... but only one agent
    # at a time: 4 of them, so 4 are missing.
    assert schedule.under_staffed() == 4
    assert schedule.objective == 4 * UNDER_STAFFING_WEIGHT + 4
    assert len(schedule.shifts) == 1


def test_breaks_are_staggered_to_keep_the_line_covered() -> None:
    rules = ScheduleRules(shifts=(ShiftRule(240, (BreakRule(60, 60, 120),)),),
                          earliest_start_min=8 * 60, latest_start_min=8 * 60, start_step_min=60)
    need = requirement(support=day((8, 1), (9, 1), (10, 1), (11, 1)))
    schedule = build_schedule(need, agents(2), rules)
    assert schedule.under_staffed() == 0
    assert sorted(s.breaks[0].start for s in schedule.shifts) == [at(9), at(10)]
    assert schedule.coverage["support"][8:12] == (2, 1, 1, 2)
    assert all(s.paid_minutes == 180 for s in schedule.shifts)


def test_min_rest_keeps_a_late_shift_and_an_early_one_apart() -> None:
    rules = ScheduleRules(shifts=(ShiftRule(240),), earliest_start_min=6 * 60,
                          latest_start_min=18 * 60, start_step_min=60, min_rest_min=11 * 60)
    need = requirement(support=day((20, 1), (21, 1)) + day((6, 1), (7, 1)))
    alone = build_schedule(need, agents(1), rules)
    assert alone.under_staffed() == 2  # 22:00 -> 06:00 is 8 h of rest, not 11
    pair = build_schedule(need, agents(2), rules)
    assert pair.under_staffed() == 0
    assert len({s.agent_id for s in pair.shifts}) == 2


def test_days_off_and_max_days() -> None:
    needs = day((9, 1)) * 3
    rules = ScheduleRules(shifts=(ShiftRule(60),), earliest_start_min=9 * 60,
                          latest_start_min=9 * 60, start_step_min=60, max_days=2)
    schedule = build_schedule(requirement(support=needs), agents(1), rules)
    assert len(schedule.shifts) == 2
    off = agents(1, unavailable=frozenset({date(2026, 1, 6)}), max_days=3)
    schedule = build_schedule(requirement(support=needs), off, rules)
    assert [s.day for s in schedule.shifts] == [date(2026, 1, 5), date(2026, 1, 7)]


def test_a_multi_skilled_agent_serves_the_group_that_needs_them() -> None:
    need = requirement(billing=day((9, 2)), support=day((9, 1)))
    staff = agents(1, "support") + agents(2, "billing+support")
    rules = ScheduleRules(shifts=(ShiftRule(60),), earliest_start_min=9 * 60,
                          latest_start_min=9 * 60, start_step_min=60)
    schedule = build_schedule(need, staff, rules)
    assert schedule.under_staffed() == 0
    assert schedule.coverage["billing"][9] == 2
    assert schedule.coverage["support"][9] == 1


def test_floors_keep_each_skill_of_a_multi_skill_group_on_duty() -> None:
    # One agent would meet the group's total; its floors ask for a holder of each skill.
    needs = tuple(day((9, 1)))
    group = GroupRequirement("billing+support", ("billing", "support"), "simulation", needs,
                             needs, (("billing", needs), ("support", needs)))
    staff = agents(3, "support") + agents(1, "billing")
    rules = ScheduleRules(shifts=(ShiftRule(60),), earliest_start_min=9 * 60,
                          latest_start_min=9 * 60, start_step_min=60)
    schedule = build_schedule(Requirement(MONDAY, HOUR, (group,)), staff, rules)
    assert sorted(s.agent_id for s in schedule.shifts)[0] == "billing-1"
    assert len(schedule.shifts) == 2 and schedule.objective == 2


def test_contract_minimum_is_worked_even_without_need() -> None:
    rules = ScheduleRules(shifts=(ShiftRule(240),), earliest_start_min=8 * 60,
                          latest_start_min=8 * 60, start_step_min=60)
    schedule = build_schedule(requirement(support=day((8, 1)) + day() + day()),
                              agents(1, min_minutes=480), rules)
    assert sum(s.paid_minutes for s in schedule.shifts) == 480


def test_impossible_rules_are_refused_with_a_reason() -> None:
    need = requirement(support=day((9, 1)))
    with pytest.raises(ScheduleError, match="multiple of the interval"):
        build_schedule(need, agents(1), ScheduleRules(shifts=(ShiftRule(90),), start_step_min=60))
    with pytest.raises(ScheduleError, match="no shift fits"):
        build_schedule(need, agents(1, window=(0, 120), min_minutes=60), four_hours())
    with pytest.raises(ScheduleError, match="does not fit"):
        build_schedule(need, agents(1), ScheduleRules(
            shifts=(ShiftRule(240, (BreakRule(60, 200, 220),)),), start_step_min=60))


def test_on_duty_and_coverage_rows_leave_breaks_out() -> None:
    need = requirement(support=day((8, 1), (9, 1), (10, 1)))
    shift = Shift("a", MONDAY.date(), at(8), at(11), (Break(at(9), at(10)),))
    assert on_duty(need, [shift])["a"][7:12] == [0, 1, 0, 1, 0]
    rows = coverage_rows(need, {"support": [0.0] * 8 + [1.0, 0.0, 1.0] + [0.0] * 13})
    assert [(r.start.hour, r.difference) for r in rows[8:11]] == [(8, 0), (9, -1), (10, 0)]


# --- property: every shift of any schedule respects its rules -------------------------------


@st.composite
def instances(draw: st.DrawFn) -> tuple[Requirement, list[AgentPlan], ScheduleRules]:
    lengths = draw(st.lists(st.sampled_from([120, 180, 240, 300]), min_size=1, max_size=2,
                            unique=True))
    shifts = []
    for minutes in lengths:
        with_break = draw(st.booleans()) and minutes >= 180
        shifts.append(ShiftRule(minutes, (BreakRule(60, 60, minutes - 120),) if with_break
                                else ()))
    rules = ScheduleRules(
        shifts=tuple(shifts),
        earliest_start_min=draw(st.integers(4, 10)) * 60,
        latest_start_min=draw(st.integers(10, 20)) * 60,
        start_step_min=60,
        max_days=draw(st.integers(1, 3)),
        min_rest_min=draw(st.sampled_from([0, 8 * 60, 12 * 60])),
        time_limit_s=10,
    )
    needs = draw(st.lists(st.integers(0, 3), min_size=72, max_size=72))
    staff = []
    for n in range(draw(st.integers(1, 4))):
        start = draw(st.integers(0, 12)) * 60
        staff.append(AgentPlan(
            f"a{n}",
            skills=frozenset({"support"}),
            unavailable=frozenset(draw(st.sets(st.sampled_from(
                [date(2026, 1, 5), date(2026, 1, 6), date(2026, 1, 7)]), max_size=1))),
            window=(start, start + draw(st.integers(4, 14)) * 60),
            max_minutes=draw(st.integers(2, 12)) * 60,
            max_days=draw(st.none() | st.integers(1, 3)),
        ))
    return requirement(support=needs), staff, rules


def check_rules(schedule: Schedule, staff: list[AgentPlan], rules: ScheduleRules) -> None:
    plans = {agent.id: agent for agent in staff}
    by_agent: dict[str, list[Shift]] = defaultdict(list)
    for shift in schedule.shifts:
        by_agent[shift.agent_id].append(shift)
        plan = plans[shift.agent_id]
        midnight = datetime.combine(shift.day, datetime.min.time(), UTC)
        start_min = (shift.start - midnight).total_seconds() / 60
        rule = next(r for r in rules.shifts
                    if r.minutes == (shift.end - shift.start).total_seconds() / 60)
        assert rules.earliest_start_min <= start_min <= rules.latest_start_min
        assert (start_min - rules.earliest_start_min) % rules.start_step_min == 0
        assert plan.window[0] <= start_min and start_min + rule.minutes <= plan.window[1]
        assert shift.day not in plan.unavailable
        assert len(shift.breaks) == len(rule.breaks)
        for brk, brk_rule in zip(shift.breaks, rule.breaks, strict=True):
            offset = (brk.start - shift.start).total_seconds() / 60
            assert brk_rule.earliest_min <= offset <= brk_rule.latest_min
            assert (brk.end - brk.start).total_seconds() / 60 == brk_rule.minutes
    for agent_id, mine in by_agent.items():
        plan = plans[agent_id]
        days = [s.day for s in mine]
        assert len(days) == len(set(days)), "two shifts on one day"
        assert len(days) <= (rules.max_days if plan.max_days is None else plan.max_days)
        assert sum(s.paid_minutes for s in mine) <= plan.max_minutes
        ordered = sorted(mine, key=lambda s: s.start)
        for earlier, later in itertools.pairwise(ordered):
            assert (later.start - earlier.end).total_seconds() / 60 >= rules.min_rest_min


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_every_shift_respects_its_rules(
        instance: tuple[Requirement, list[AgentPlan], ScheduleRules]) -> None:
    need, staff, rules = instance
    try:
        schedule = build_schedule(need, staff, rules)
    except ScheduleError as error:
        assert "no shift fits" in str(error)
        return
    check_rules(schedule, staff, rules)
    # The coverage reported is the agents on duty, counted again from the shifts.
    duty = on_duty(need, schedule.shifts)
    counted = [sum(row[t] for row in duty.values()) for t in range(len(need))]
    assert list(schedule.coverage["support"]) == counted

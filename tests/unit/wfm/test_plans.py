"""The schedule document: what `omnicc wfm schedule --out` writes reads back to the same rules,
requirement and shifts (what `omnicc wfm simulate` and the API rely on)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from omnicc.wfm.plans import (
    agent_from_dict,
    agent_to_dict,
    coverage_table,
    requirement_from_list,
    rules_from_dict,
    rules_to_dict,
    schedule_document,
    shift_from_dict,
)
from omnicc.wfm.schedule import AgentPlan, BreakRule, ScheduleRules, ShiftRule, build_schedule
from omnicc.wfm.staffing import GroupRequirement, Requirement

MONDAY = datetime(2026, 1, 5, tzinfo=UTC)


def test_a_schedule_document_reads_back() -> None:
    needs = (0,) * 8 + (2,) * 8 + (0,) * 8
    requirement = Requirement(MONDAY, 3600, (
        GroupRequirement("support", ("support",), "erlang_c", needs, needs),))
    rules = ScheduleRules(shifts=(ShiftRule(480, (BreakRule(60, 180, 240),)),),
                          earliest_start_min=480, latest_start_min=480, start_step_min=60)
    agents = [AgentPlan("a", "Ann", frozenset({"support"}), frozenset({date(2026, 1, 6)}),
                        (0, 1440), 60, 600, 3),
              AgentPlan("b", skills=frozenset({"support"}))]
    schedule = build_schedule(requirement, agents, rules)
    document = schedule_document(schedule, rules)

    assert rules_from_dict(document["rules"]) == rules
    assert rules_from_dict(rules_to_dict(rules)) == rules
    assert [agent_from_dict(a) for a in document["agents"]] == agents
    assert agent_from_dict(agent_to_dict(agents[0])) == agents[0]
    back = requirement_from_list(MONDAY, 3600, document["requirement"])
    assert back == requirement
    assert tuple(shift_from_dict(s) for s in document["shifts"]) == schedule.shifts
    assert document["summary"]["shifts"] == 2 and document["summary"]["under_staffed"] == 2
    rows = coverage_table(requirement, schedule.coverage)
    assert rows[8] == {"start": "2026-01-05T08:00:00Z", "group": "support", "required": 2,
                       "covered": 2.0, "difference": 0.0}
    assert sum(1 for row in rows if row["difference"] < 0) == 2  # the staggered breaks

"""Forecast + staffing + schedule for 100 agents and a week (issue 6, "Speed": < 60 s).

    .venv/bin/python bench/wfm_plan.py [--csv PATH] [--share 0.333] [--aht-s 180]

What is measured, end to end and by step:

- **Forecast**: the bank's 5-minute call history (`/work/shared/data/bank_calls_2003_5min.csv`)
  read at 15-minute intervals and forecast 7 days ahead with `omnicc.wfm.forecast` (its default
  model, hw-profile). The data has no handle times: AHT is
  `--aht-s`. The bank's whole volume needs about three times 100 agents, so the site planned
  here takes a `--share` of it (a third: one of three sites).
- **Staffing**: `omnicc.wfm.staffing` per 15-minute interval, 80/20, max occupancy 0.85 (Erlang C).
- **Schedule**: `omnicc.wfm.schedule` (HiGHS) for 100 agents: 70 full-time (32-40 paid hours,
  5 days at most) and 30 part-time (at most 24 hours and 4 days, between 10:00 and 22:00);
  shifts of 8 h (30-minute break 3-5 h in), 6 h (15 minutes 2-4 h in) or 4 h, starting every
  30 minutes from 06:00 to 17:00; 11 hours' rest between shifts.

The last printed line is one JSON object with the figures and the goal.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from omnicc.wfm.forecast import DEFAULT_MODEL, forecast
from omnicc.wfm.forecast_history import load_history_csv
from omnicc.wfm.schedule import AgentPlan, BreakRule, ScheduleRules, ShiftRule, build_schedule
from omnicc.wfm.series import IntervalSeries
from omnicc.wfm.staffing import QueueDemand, ServiceTarget, staffing_requirement

BANK_CSV = Path("/work/shared/data/bank_calls_2003_5min.csv")
GOAL_S = 60.0
DAYS = 7
INTERVAL_S = 900


def _agents() -> list[AgentPlan]:
    full = [AgentPlan(f"ft-{n:03d}", skills=frozenset({"support"}), min_minutes=32 * 60,
                      max_minutes=40 * 60) for n in range(1, 71)]
    part = [AgentPlan(f"pt-{n:03d}", skills=frozenset({"support"}), window=(600, 1320),
                      max_minutes=24 * 60, max_days=4) for n in range(1, 31)]
    return full + part


RULES = ScheduleRules(
    shifts=(ShiftRule(480, (BreakRule(30, 180, 300),)), ShiftRule(360, (BreakRule(15, 120, 240),)),
            ShiftRule(240)),
    earliest_start_min=6 * 60, latest_start_min=17 * 60, start_step_min=30, max_days=5,
    min_rest_min=11 * 60, time_limit_s=50.0,
)


def measure(csv: Path = BANK_CSV, share: float = 1 / 3, aht_s: float = 180.0) -> dict[str, Any]:
    """Run the plan once; figures in seconds and agent-hours."""
    started = time.perf_counter()
    history = load_history_csv(csv, INTERVAL_S, aht_s)
    series = forecast(history, DAYS)
    series = IntervalSeries(series.start, series.interval_s,
                            tuple(v * share for v in series.volume),
                            tuple(a or aht_s for a in series.aht_s))
    forecast_s = time.perf_counter() - started

    mark = time.perf_counter()
    agents = _agents()
    requirement = staffing_requirement(
        [QueueDemand("support", "support", series,
                     ServiceTarget(service_level=0.8, threshold_s=20, max_occupancy=0.85))],
        [a.skills for a in agents])
    staffing_s = time.perf_counter() - mark

    mark = time.perf_counter()
    schedule = build_schedule(requirement, agents, RULES)
    schedule_s = time.perf_counter() - mark
    total_s = time.perf_counter() - started

    hours = INTERVAL_S / 3600
    (group,) = requirement.groups
    needed = sum(group.scheduled) * hours
    return {
        "agents": len(agents),
        "days": DAYS,
        "interval_s": INTERVAL_S,
        "forecast_model": DEFAULT_MODEL,
        "forecast_contacts": round(sum(series.volume)),
        "forecast_s": round(forecast_s, 3),
        "staffing_s": round(staffing_s, 3),
        "schedule_s": round(schedule_s, 3),
        "total_s": round(total_s, 3),
        "solver_status": schedule.status,
        "variables": schedule.variables,
        "shifts": len(schedule.shifts),
        "needed_agent_h": round(needed, 1),
        "scheduled_agent_h": round(sum(schedule.coverage[group.id]) * hours, 1),
        "under_agent_h": round(schedule.under_staffed() * hours, 1),
        "over_agent_h": round(schedule.over_staffed() * hours, 1),
        "paid_h": round(sum(s.paid_minutes for s in schedule.shifts) / 60, 1),
        "goal_s": GOAL_S,
        "meets_goal": total_s < GOAL_S,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=BANK_CSV)
    parser.add_argument("--share", type=float, default=1 / 3)
    parser.add_argument("--aht-s", type=float, default=180.0)
    args = parser.parse_args()
    figures = measure(args.csv, args.share, args.aht_s)
    print(f"forecast {figures['forecast_s']} s ({figures['forecast_contacts']:,} contacts), "
          f"staffing {figures['staffing_s']} s, schedule {figures['schedule_s']} s "
          f"({figures['solver_status']}, {figures['variables']} variables, "
          f"{figures['shifts']} shifts): total {figures['total_s']} s (goal < {GOAL_S:g} s)")
    print(f"needed {figures['needed_agent_h']} agent-h, on duty "
          f"{figures['scheduled_agent_h']}, under {figures['under_agent_h']}, over "
          f"{figures['over_agent_h']}")
    print(json.dumps(figures, separators=(",", ":")))


if __name__ == "__main__":
    main()

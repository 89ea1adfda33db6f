"""Scenario files: the examples load, and every kind of mistake names its field."""

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from omnicc.core.model import Strategy
from omnicc.sim.scenario import (
    Scenario,
    ScenarioError,
    load_scenario,
    parse_scenario,
    single_queue_scenario,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def minimal(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "hours": 10,
        "queues": [{"id": "q"}],
        "traffic": [{"id": "calls", "queue": "q", "arrivals_per_hour": 60,
                     "handle": {"mean_s": 120}}],
        "agents": [{"group": "a", "count": 2}],
    }
    data.update(changes)
    return data


def error_of(data: object) -> str:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(data, "test.yaml")
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_is_valid(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name
    assert scenario.batch_hours() > 0


def test_examples_include_the_demo_pair_with_equal_head_count() -> None:
    specialists = load_scenario(EXAMPLES / "nordic_specialists.yaml")
    cross_trained = load_scenario(EXAMPLES / "nordic_cross_trained.yaml")
    assert sum(g.count for g in specialists.agents) == sum(g.count for g in cross_trained.agents)
    assert specialists.traffic == cross_trained.traffic
    assert specialists.seed == cross_trained.seed


def test_defaults() -> None:
    scenario = parse_scenario(minimal())
    assert scenario.seed == 1 and scenario.batches == 20 and scenario.threshold_s == 20
    assert scenario.queues[0].strategy is Strategy.LONGEST_IDLE
    assert scenario.traffic[0].handle.distribution == "exponential"
    assert scenario.warmup_hours_used() == 1.0  # 5 % of 10 h, but at least one hour
    assert scenario.batch_hours() == pytest.approx(9 / 20)


def test_queue_settings_reach_the_engine_config() -> None:
    scenario = parse_scenario(minimal(queues=[{"id": "q", "wrap_up_s": 30, "strategy":
                                               "most_proficient"}]))
    config = scenario.queues[0].to_config(default_threshold_s=15)
    assert config.wrap_up_s == 30
    assert config.strategy is Strategy.MOST_PROFICIENT
    assert config.sl_threshold_s == 15


def test_agent_groups_become_numbered_agents_with_their_group_attribute() -> None:
    scenario = parse_scenario(minimal(agents=[
        {"group": "fi", "count": 2, "skills": {"finnish": 4}, "capacity": {"voice": 1},
         "attributes": {"site": "Oulu"}},
    ]))
    configs = scenario.agents[0].to_configs()
    assert [c.id for c in configs] == ["fi-1", "fi-2"]
    assert configs[0].attributes == {"group": "fi", "site": "Oulu"}
    assert configs[0].status == "available"
    assert dict(configs[0].capacity) == {"voice": 1}


def test_agents_with_shifts_start_offline() -> None:
    scenario = parse_scenario(minimal(agents=[
        {"group": "a", "count": 1, "shifts": [{"login_h": 1, "logout_h": 2}]},
    ]))
    assert scenario.agents[0].to_configs()[0].status == "offline"


def test_repeating_patterns_make_whole_cycle_batches() -> None:
    scenario = parse_scenario(minimal(
        hours=24 * 11, batches=10,
        traffic=[{"id": "calls", "queue": "q", "arrivals_per_hour": 60,
                  "handle": {"mean_s": 120}, "profile": [1.0] * 24}],
        agents=[{"group": "a", "count": 2, "shifts": [{"login_h": 0, "logout_h": 8}],
                 "shift_cycle_h": 12}],
    ))
    assert scenario.cycle_hours() == 24
    assert scenario.warmup_hours_used() == 24
    assert scenario.batch_hours() == 24


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (minimal(traffic=[{"id": "c", "queue": "nope", "arrivals_per_hour": 1,
                           "handle": {"mean_s": 1}}]),
         "traffic[0].queue: unknown queue 'nope'"),
        (minimal(traffic=[{"id": "c", "policy": "nope", "arrivals_per_hour": 1,
                           "handle": {"mean_s": 1}}]),
         "traffic[0].policy: unknown policy 'nope'"),
        (minimal(traffic=[{"id": "c", "queue": "q", "policy": "p", "arrivals_per_hour": 1,
                           "handle": {"mean_s": 1}}]),
         "traffic[0]: give exactly one of queue or policy"),
        (minimal(traffic=[{"id": "c", "queue": "q", "arrivals_per_hour": 1,
                           "handle": {"mean_s": -5}}]),
         "traffic[0].handle.mean_s: Input should be greater than 0"),
        (minimal(traffic=[{"id": "c", "queue": "q", "arrivals_per_hour": 1,
                           "handle": {"mean_s": 5, "cv": 2}}]),
         "traffic[0].handle: an exponential distribution has cv 1"),
        (minimal(queues=[{"id": "q", "expresion": "true"}]),
         "queues[0].expresion: Extra inputs are not permitted"),
        (minimal(queues=[{"id": "q", "expression": "skills.finnish >="}]),
         "queues[0].expression: "),
        (minimal(queues=[{"id": "q", "expression": "task.vip == true"}]),
         "queues[0].expression: a queue expression selects agents and cannot read task.vip"),
        (minimal(queues=[{"id": "q", "strategy": "fastest"}]),
         "queues[0].strategy: Input should be"),
        (minimal(queues=[{"id": "q"}, {"id": "q"}]), "queues[1]: duplicate id 'q'"),
        (minimal(agents=[{"group": "a", "count": 1, "skills": {"finnish": 6}}]),
         "agents[0].skills.finnish: Input should be less than or equal to 5"),
        (minimal(agents=[{"group": "a", "count": 0}]),
         "agents[0].count: Input should be greater than or equal to 1"),
        (minimal(agents=[{"group": "a", "count": 1, "shifts": [
            {"login_h": 0, "logout_h": 8}, {"login_h": 6, "logout_h": 10}]}]),
         "agents[0]: shifts[1] starts before shifts[0] ends"),
        (minimal(agents=[{"group": "a", "count": 1, "shifts": [{"login_h": 8, "logout_h": 4}]}]),
         "agents[0].shifts[0]: logout_h must be later than login_h"),
        (minimal(policies=[{"id": "p", "steps": [{"queue": "x"}]}]),
         "policies[0].steps[0].queue: unknown queue 'x'"),
        (minimal(policies=[{"id": "p", "steps": []}]),
         "policies[0].steps: Tuple should have at least 1 item"),
        (minimal(hours=10, warmup_hours=10), "hours (10) must exceed the warm-up (10 h)"),
        (minimal(hours=100, traffic=[{"id": "c", "queue": "q", "arrivals_per_hour": 1,
                                      "handle": {"mean_s": 1}, "profile": [1] * 24}]),
         "hours: 20 batches of whole 24-hour cycles after a 24-hour warm-up need at least "
         "504 hours"),
        ({"queues": []}, "queues: Tuple should have at least 1 item"),
    ],
)
def test_mistakes_name_their_field(data: dict[str, Any], expected: str) -> None:
    message = error_of(data)
    assert message.startswith("test.yaml: ")
    assert expected in message


def test_several_problems_are_counted() -> None:
    assert "(and 3 more problems)" in error_of({"hours": -1})


def test_a_scenario_must_be_a_mapping() -> None:
    assert error_of([1, 2]) == "test.yaml: a scenario must be a mapping of fields"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="scenario file not found"):
        load_scenario(tmp_path / "absent.yaml")


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("queues:\n  - id: q\n  bad: [\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"invalid YAML: .* at line \d+, column \d+"):
        load_scenario(path)


def test_single_queue_scenario_is_the_textbook_case() -> None:
    scenario = single_queue_scenario(arrivals_per_hour=200, aht_s=180, agents=14,
                                     patience_s=300, hours=50, seed=9)
    assert isinstance(scenario, Scenario)
    (stream,) = scenario.traffic
    assert (stream.arrivals_per_hour, stream.handle.mean_s, stream.patience_s) == (200, 180, 300)
    assert scenario.agents[0].count == 14 and scenario.seed == 9 and scenario.hours == 50


def test_scenarios_are_immutable() -> None:
    scenario = parse_scenario(minimal())
    with pytest.raises(ValidationError):
        scenario.hours = 5

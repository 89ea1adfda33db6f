"""`omnicc simulate` and `omnicc demo-sim` through typer's test runner."""

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from omnicc.cli import app

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
KPIS = ("service_level", "asa_s", "p_wait", "p_abandon", "occupancy")

runner = CliRunner()


def last_json_line(stdout: str) -> dict[str, Any]:
    payload = json.loads(stdout.strip().splitlines()[-1])
    assert isinstance(payload, dict)
    return payload


def assert_kpi_shape(payload: dict[str, Any]) -> None:
    for key in KPIS:
        figure = payload[key]
        assert isinstance(figure, dict) and set(figure) == {"mean", "ci99"}
        low, high = figure["ci99"]
        assert low <= figure["mean"] <= high


def test_single_queue_json() -> None:
    result = runner.invoke(app, ["simulate", "--arrivals-per-hour", "200", "--aht-s", "180",
                                 "--agents", "14", "--hours", "30", "--seed", "3", "--json"])
    assert result.exit_code == 0, result.output
    payload = last_json_line(result.stdout)
    assert_kpi_shape(payload)
    assert payload["theory"]["model"] == "Erlang C"
    assert payload["theory"]["p_wait"] == pytest.approx(0.1741, abs=1e-4)
    assert payload["p_abandon"] == {"mean": 0.0, "ci99": [0.0, 0.0]}
    assert payload["seed"] == 3 and payload["hours"] == 30


def test_single_queue_with_patience_compares_with_erlang_a() -> None:
    result = runner.invoke(app, ["simulate", "--arrivals-per-hour", "200", "--aht-s", "180",
                                 "--agents", "14", "--patience-s", "300", "--threshold-s", "30",
                                 "--hours", "20", "--json"])
    assert result.exit_code == 0, result.output
    payload = last_json_line(result.stdout)
    assert_kpi_shape(payload)
    assert payload["theory"]["model"] == "Erlang A"
    assert payload["threshold_s"] == 30
    assert payload["p_abandon"]["mean"] > 0


def test_single_queue_table_shows_theory_beside_the_simulation() -> None:
    result = runner.invoke(app, ["simulate", "--arrivals-per-hour", "200", "--aht-s", "180",
                                 "--agents", "14", "--hours", "20"])
    assert result.exit_code == 0, result.output
    assert "Erlang C" in result.stdout and "in CI" in result.stdout and "P(wait)" in result.stdout


def test_scenario_file_json_has_queues_and_groups() -> None:
    result = runner.invoke(app, ["simulate", str(EXAMPLES / "nordic_cross_trained.yaml"),
                                 "--hours", "12", "--batches", "4", "--json"])
    assert result.exit_code == 0, result.output
    payload = last_json_line(result.stdout)
    assert_kpi_shape(payload)
    assert set(payload["queues"]) == {"finnish", "swedish", "english"}
    assert "finnish_swedish" in payload["groups"]
    assert payload["theory"] is None and payload["batches"] == 4


def assert_usage_error(args: list[str], expected: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("omnicc: error: ")
    assert expected in lines[0]
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_missing_scenario_file(tmp_path: Path) -> None:
    assert_usage_error(["simulate", str(tmp_path / "nope.yaml")], "scenario file not found")


def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("queues: [\n", encoding="utf-8")
    assert_usage_error(["simulate", str(path)], "invalid YAML")


def test_schema_error_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    text = (EXAMPLES / "single_queue.yaml").read_text(encoding="utf-8")
    path.write_text(text.replace("mean_s: 180", "mean_s: -180"), encoding="utf-8")
    assert_usage_error(["simulate", str(path), "--json"],
                       "traffic[0].handle.mean_s: Input should be greater than 0")


def test_override_that_breaks_the_scenario_is_reported() -> None:
    assert_usage_error(["simulate", str(EXAMPLES / "mixed_channels.yaml"), "--hours", "48"],
                       "need at least 504 hours")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["simulate"], "give a SCENARIO file, or --arrivals-per-hour, --aht-s and --agents"),
        (["simulate", "--arrivals-per-hour", "200", "--aht-s", "180"], "--agents"),
        (["simulate", "--arrivals-per-hour", "200", "--aht-s", "0", "--agents", "14"],
         "--aht-s must be > 0"),
        (["simulate", "--arrivals-per-hour", "200", "--aht-s", "180", "--agents", "0"],
         "--agents must be >= 1"),
        (["simulate", str(EXAMPLES / "single_queue.yaml"), "--agents", "3"],
         "not both"),
    ],
)
def test_bad_options(args: list[str], expected: str) -> None:
    assert_usage_error(args, expected)


def test_demo_sim_runs_both_nordic_scenarios_and_explains() -> None:
    result = runner.invoke(app, ["demo-sim", "--hours", "10"])
    assert result.exit_code == 0, result.output
    assert "Nordic specialists" in result.stdout and "Nordic cross-trained" in result.stdout
    assert "What cross-training buys" in result.stdout
    assert "What you just saw" in result.stdout

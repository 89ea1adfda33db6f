"""`omnicc wfm erlang` and `omnicc wfm staff` through typer's test runner: the issue's oracles."""

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from omnicc.cli import app

runner = CliRunner()
WORKLOAD = ["--arrivals-per-hour", "200", "--aht-s", "180"]


def run_json(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["wfm", *args, "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert isinstance(payload, dict)
    return payload


def test_erlang_c_oracle() -> None:
    payload = run_json("erlang", "--model", "c", *WORKLOAD, "--agents", "14",
                       "--threshold-s", "20")
    assert payload["model"] == "c"
    assert payload["traffic_erl"] == pytest.approx(10.0)
    assert payload["p_wait"] == pytest.approx(0.174132, abs=5e-7)
    assert payload["service_level"] == pytest.approx(0.888350, abs=5e-7)
    assert payload["asa_s"] == pytest.approx(7.836, abs=5e-4)
    assert payload["occupancy"] == pytest.approx(0.714286, abs=5e-7)
    assert "p_abandon" not in payload and "p_block" not in payload


def test_erlang_a_oracle() -> None:
    payload = run_json("erlang", "--model", "a", *WORKLOAD, "--agents", "14",
                       "--threshold-s", "20", "--patience-s", "300")
    assert payload["p_wait"] == pytest.approx(0.14526, abs=5e-6)
    assert payload["p_abandon"] == pytest.approx(0.013984, abs=5e-7)
    assert payload["service_level"] == pytest.approx(0.916792, abs=5e-6)
    assert payload["asa_s"] == pytest.approx(3.8785, abs=5e-4)


def test_erlang_b_blocking() -> None:
    payload = run_json("erlang", "--model", "b", *WORKLOAD, "--agents", "17")
    assert payload["p_block"] == pytest.approx(0.012949, abs=5e-7)
    assert payload["occupancy"] == pytest.approx(10.0 * (1 - payload["p_block"]) / 17)
    assert set(payload) == {"model", "traffic_erl", "lines", "p_block", "occupancy"}


def test_erlang_c_unstable_prints_null_asa() -> None:
    payload = run_json("erlang", "--arrivals-per-hour", "300", "--aht-s", "180",
                       "--agents", "14")
    assert payload["p_wait"] == 1.0 and payload["service_level"] == 0.0
    assert payload["asa_s"] is None


def test_staff_oracle() -> None:
    payload = run_json("staff", *WORKLOAD, "--service-level", "0.8", "--threshold-s", "20",
                       "--max-occupancy", "0.85", "--shrinkage", "0.3")
    assert payload["required_agents"] == 14
    assert payload["scheduled_agents"] == 20
    assert payload["service_level"] == pytest.approx(0.888350, abs=5e-7)


def test_staff_for_asa_and_for_abandonment() -> None:
    by_asa = run_json("staff", *WORKLOAD, "--asa-s", "5")
    assert by_asa["model"] == "c" and by_asa["asa_s"] <= 5
    assert by_asa["required_agents"] == by_asa["scheduled_agents"] == 15
    by_abandon = run_json("staff", *WORKLOAD, "--max-abandon", "0.01", "--patience-s", "300")
    assert by_abandon["model"] == "a" and by_abandon["p_abandon"] <= 0.01


def test_staff_erlang_b_lines_oracle() -> None:
    payload = run_json("staff", *WORKLOAD, "--max-block", "0.02")
    assert payload["required_lines"] == 17
    assert payload["p_block"] <= 0.02


def test_tables_without_json() -> None:
    result = runner.invoke(app, ["wfm", "staff", *WORKLOAD, "--service-level", "0.8",
                                 "--max-occupancy", "0.85", "--shrinkage", "0.3"])
    assert result.exit_code == 0, result.output
    assert "Required agents" in result.stdout and "20" in result.stdout
    result = runner.invoke(app, ["wfm", "erlang", *WORKLOAD, "--agents", "14"])
    assert result.exit_code == 0, result.output
    assert "0.174132" in result.stdout and "Erlang C" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["erlang", "--arrivals-per-hour", "-1", "--aht-s", "180", "--agents", "14"],
         "--arrivals-per-hour must be a number >= 0"),
        (["erlang", *WORKLOAD, "--agents", "0"], "--agents must be >= 1"),
        (["erlang", "--arrivals-per-hour", "200", "--aht-s", "0", "--agents", "3"],
         "--aht-s must be a number > 0"),
        (["erlang", "--model", "a", *WORKLOAD, "--agents", "14"], "needs --patience-s"),
        (["erlang", "--model", "c", *WORKLOAD, "--agents", "14", "--patience-s", "60"],
         "applies to --model a"),
        (["erlang", *WORKLOAD, "--agents", "14", "--threshold-s", "nan"],
         "--threshold-s must be"),
        (["staff", *WORKLOAD], "give a target"),
        (["staff", *WORKLOAD, "--service-level", "1.2"], "--service-level must lie in (0, 1)"),
        (["staff", *WORKLOAD, "--service-level", "0.8", "--shrinkage", "1"],
         "--shrinkage must lie in [0, 1)"),
        (["staff", *WORKLOAD, "--max-abandon", "0.05"], "needs --patience-s"),
        (["staff", *WORKLOAD, "--max-block", "0.02", "--service-level", "0.8"],
         "cannot be combined"),
    ],
)
def test_bad_input_exits_2_with_a_reason(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["wfm", *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_unknown_model_is_a_usage_error() -> None:
    result = runner.invoke(app, ["wfm", "erlang", "--model", "x", *WORKLOAD, "--agents", "3"])
    assert result.exit_code == 2

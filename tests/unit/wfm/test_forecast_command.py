"""`omnicc wfm forecast` through typer's test runner."""

import json
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from omnicc.cli import app
from omnicc.wfm.forecast_history import load_history_csv

from .test_forecast import HOURLY_SHAPE, synthetic_rows

runner = CliRunner()


@pytest.fixture
def history_csv(tmp_path: Path) -> Path:
    path = tmp_path / "history.csv"
    lines = ["start,volume,aht_s"]
    for start, volume, aht in synthetic_rows(date(2024, 1, 8), 42, noise=0.05):
        lines.append(f"{start.isoformat()},{volume:g},{aht:g}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_forecast_json(history_csv: Path) -> None:
    result = runner.invoke(app, ["wfm", "forecast", "--csv", str(history_csv), "--horizon", "1w",
                                 "--interval", "1h", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["model"] == "hw-profile"
    assert payload["start"] == "2024-02-17T00:00:00Z"  # the Saturday after the last Friday
    assert payload["interval_s"] == 3600 and payload["intervals"] == 7 * 24
    assert len(payload["volume"]) == len(payload["aht_s"]) == 7 * 24
    weekday_total = sum(HOURLY_SHAPE) * 10
    assert payload["total_volume"] == pytest.approx(weekday_total * sum(
        (1.3, 1.0, 1.0, 0.95, 0.9)), rel=0.1)


def test_forecast_table_and_csv_out(history_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "forecast.csv"
    result = runner.invoke(app, ["wfm", "forecast", "--csv", str(history_csv), "--horizon", "2d",
                                 "--interval", "2h", "--model", "seasonal-naive",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Sat 2024-02-17" in result.stdout and "seasonal-naive" in result.stdout
    written = load_history_csv(out)
    assert written.interval_s == 7200 and len(written) == 2 * 12
    assert sum(written.volume) == 0  # a weekend


def test_backtest_json(history_csv: Path) -> None:
    result = runner.invoke(app, ["wfm", "forecast", "--csv", str(history_csv), "--interval", "1h",
                                 "--horizon", "1w", "--holdout", "2w", "--backtest", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["holdout_days"] == 14 and payload["interval_s"] == 3600
    assert payload["source"] == str(history_csv)
    pairs = [(r["model"], r["horizon_days"]) for r in payload["results"]]
    assert pairs == [("seasonal-naive", 1), ("seasonal-naive", 7), ("hw-profile", 1),
                     ("hw-profile", 7)]
    assert all(0 <= r["mape"] < 0.3 and r["mase"] > 0 for r in payload["results"])


def test_backtest_table(history_csv: Path) -> None:
    result = runner.invoke(app, ["wfm", "forecast", "--csv", str(history_csv), "--interval", "1h",
                                 "--holdout", "2w", "--backtest", "--model", "seasonal-naive"])
    assert result.exit_code == 0, result.output
    assert "MAPE" in result.stdout and "hw-profile" not in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--horizon", "0d"], "--horizon must be a positive whole number of days or weeks"),
        (["--horizon", "3h"], "--horizon must be"),
        (["--interval", "45"], "--interval must be"),
        (["--interval", "7m"], "--interval must divide a day"),
        (["--interval", "10m"], "multiple of"),  # the file has hourly rows
        (["--model", "prophet"], "--model must be one of"),
        (["--interval", "1h", "--backtest", "--out", "x.csv"], "does not go with --backtest"),
        (["--interval", "1h", "--backtest", "--holdout", "5w"], "at least 14"),
        (["--interval", "1h", "--country", "XX"], "no holiday calendar"),
        (["--aht-s", "-5"], "--aht-s must be >= 0"),
    ],
)
def test_bad_input_exits_2(history_csv: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["wfm", "forecast", "--csv", str(history_csv), *args])
    assert result.exit_code == 2
    assert message in result.stderr


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["wfm", "forecast", "--csv", str(tmp_path / "none.csv")])
    assert result.exit_code == 2
    assert "not found" in result.stderr

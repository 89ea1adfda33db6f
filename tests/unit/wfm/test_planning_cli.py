"""`omnicc wfm schedule` and `omnicc wfm simulate` end to end on a small forecast file."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from omnicc.cli import app
from omnicc.wfm.commands.planning import parse_shift
from omnicc.wfm.schedule import BreakRule, ShiftRule


def forecast_csv(folder: Path) -> Path:
    """One day of 30-minute intervals: 40 calls (about 4.4 Erlang) from 08:00 to 16:00."""
    lines = ["start,volume,aht_s"]
    for index in range(48):
        busy = 16 <= index < 32
        lines.append(f"2026-01-05T{index // 2:02d}:{30 * (index % 2):02d}:00Z,"
                     f"{40 if busy else 0},200")
    path = folder / "support.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_schedule_then_simulate(tmp_path: Path) -> None:
    runner = CliRunner()
    forecast = forecast_csv(tmp_path)
    out = tmp_path / "schedule.json"
    result = runner.invoke(app, [
        "wfm", "schedule", "--forecast", str(forecast), "--agents", "12",
        "--shift", "8h:30m@3h-5h", "--earliest", "08:00", "--latest", "08:00", "--json",
        "--out", str(out)])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output.strip().splitlines()[-1])
    (group,) = document["requirement"]
    assert group["id"] == "support" and group["method"] == "erlang_c"
    busy = group["required"][16]
    assert busy == max(group["required"]) and busy > 4
    # 8-hour shifts from 08:00 with staggered breaks: the peak is covered but for the breaks.
    assert all(s["start"] == "2026-01-05T08:00:00Z" for s in document["shifts"])
    assert document["summary"]["under_staffed"] <= len(document["shifts"])
    assert json.loads(out.read_text()) == document

    result = runner.invoke(app, [
        "wfm", "simulate", "--forecast", f"support={forecast}", "--schedule", str(out),
        "--json"])
    assert result.exit_code == 0, result.output
    whatif = json.loads(result.output.strip().splitlines()[-1])
    assert whatif["day"] == "2026-01-05"
    assert len(whatif["intervals"]) == 48
    assert whatif["intervals"][0]["service_level"] is None
    assert 0.5 < whatif["service_level"] <= 1.0


def test_table_output_and_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    forecast = forecast_csv(tmp_path)
    result = runner.invoke(app, ["wfm", "schedule", "--forecast", str(forecast), "--agents",
                                 "8", "--earliest", "08:00", "--latest", "09:00"])
    assert result.exit_code == 0, result.output
    assert "Coverage" in result.output and "agent-001" in result.output
    result = runner.invoke(app, ["wfm", "schedule", "--forecast", str(forecast)])
    assert result.exit_code == 2 and "--agents" in result.output
    result = runner.invoke(app, ["wfm", "schedule", "--forecast", str(forecast), "--agents", "2",
                                 "--shift", "8h:30m"])
    assert result.exit_code == 2 and "LENGTH@EARLIEST-LATEST" in result.output


def test_shift_option_syntax() -> None:
    assert parse_shift("6h") == ShiftRule(360)
    assert parse_shift("8h:15m@1h-2h,30m@3h-5h") == ShiftRule(
        480, (BreakRule(15, 60, 120), BreakRule(30, 180, 300)))

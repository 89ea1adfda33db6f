"""`omnicc wfm forecast`: forecast volume and AHT per interval from a history, or backtest the
models on its last weeks."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from omnicc.wfm.commands import wfm_app
from omnicc.wfm.commands.queueing import fail
from omnicc.wfm.forecast import DEFAULT_MODEL, MODELS, DayBook, forecast_days
from omnicc.wfm.forecast_backtest import BacktestScore, backtest
from omnicc.wfm.forecast_history import (
    HistoryError,
    load_history_csv,
    resample,
    write_series_csv,
)
from omnicc.wfm.series import IntervalSeries

_UNITS_S = {"m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


def parse_duration_s(option: str, text: str, units: str) -> int:
    """'30m', '1h', '1d', '4w' -> seconds; only the given units are accepted."""
    match = re.fullmatch(r"\s*(\d+)\s*([a-z])\s*", text)
    if match is None or match.group(2) not in units or int(match.group(1)) == 0:
        examples = ", ".join(f"'1{unit}'" for unit in units)
        fail(f"{option} must be a positive whole number of {_unit_names(units)} "
             f"(e.g. {examples}), got {text!r}")
    return int(match.group(1)) * _UNITS_S[match.group(2)]


def _unit_names(units: str) -> str:
    names = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    return " or ".join(names[unit] for unit in units)


def forecast_json(series: IntervalSeries, model: str) -> dict[str, object]:
    """The `--json` object of a forecast."""
    return {
        "model": model,
        "start": series.start.isoformat().replace("+00:00", "Z"),
        "interval_s": series.interval_s,
        "intervals": len(series),
        "total_volume": round(sum(series.volume), 3),
        "volume": [round(v, 3) for v in series.volume],
        "aht_s": [round(a, 1) for a in series.aht_s],
    }


def backtest_json(source: str, book: DayBook, holdout_days: int,
                  scores: list[BacktestScore]) -> dict[str, object]:
    """The `--backtest --json` object."""
    return {
        "source": source,
        "interval_s": book.history.interval_s,
        "history_days": book.days,
        "holdout_days": holdout_days,
        "results": [
            {"model": s.model, "horizon_days": s.horizon_days, "origins": s.origins,
             "mape": round(s.mape, 5), "mase": round(s.mase, 5), "wall_s": round(s.wall_s, 3)}
            for s in scores
        ],
    }


def _print_forecast(series: IntervalSeries, model: str) -> None:
    per_day = 86_400 // series.interval_s
    volume = np.asarray(series.volume).reshape(-1, per_day)
    aht = np.asarray(series.aht_s).reshape(-1, per_day)
    table = Table(title=f"Forecast ({model}, {series.interval_s // 60}-minute intervals)")
    for column in ("day", "contacts", "peak interval", "peak contacts", "AHT (s)"):
        table.add_column(column, justify="left" if column == "day" else "right")
    for day in range(volume.shape[0]):
        start = series.interval_start(day * per_day)
        total = float(volume[day].sum())
        peak = int(volume[day].argmax())
        mean_aht = float((volume[day] * aht[day]).sum() / total) if total else 0.0
        table.add_row(
            start.strftime("%a %Y-%m-%d"),
            f"{total:,.0f}",
            series.interval_start(day * per_day + peak).strftime("%H:%M") if total else "-",
            f"{volume[day, peak]:,.1f}",
            f"{mean_aht:,.0f}" if mean_aht else "-",
        )
    Console(highlight=False).print(table)


def _print_backtest(scores: list[BacktestScore], holdout_days: int) -> None:
    table = Table(title=f"Backtest: rolling origins over the last {holdout_days} days")
    for column in ("model", "horizon", "origins", "MAPE", "MASE", "time (s)"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for s in scores:
        table.add_row(s.model, f"{s.horizon_days} d", str(s.origins), f"{s.mape:.2%}",
                      f"{s.mase:.3f}", f"{s.wall_s:.1f}")
    Console(highlight=False).print(table)


@wfm_app.command("forecast")
def forecast_command(
    csv_path: Annotated[Path | None, typer.Option(
        "--csv", help="History file: start,volume[,aht_s] or the bank format DateTime,Calls.",
        show_default=False)] = None,
    queue: Annotated[str | None, typer.Option(
        "--queue", help="History of this queue (id or name) from OmniCC's report tables.",
        show_default=False)] = None,
    tenant: Annotated[str | None, typer.Option(
        "--tenant", help="Tenant slug for --queue (default: the only tenant).",
        show_default=False)] = None,
    history_length: Annotated[str, typer.Option(
        "--history", help="With --queue: how far back to read, up to last midnight (UTC).")
    ] = "8w",
    horizon: Annotated[str, typer.Option(
        "--horizon", help="Days to forecast after the history: '1d', '1w', '2w'...")] = "1w",
    interval: Annotated[str, typer.Option(
        "--interval", help="Interval length: '15m', '30m', '1h'...")] = "30m",
    model: Annotated[str | None, typer.Option(
        "--model", help=f"{' or '.join(MODELS)} (default: {DEFAULT_MODEL}; "
        "a backtest compares all).", show_default=False)] = None,
    run_backtest: Annotated[bool, typer.Option(
        "--backtest", help="Score the models on the last --holdout weeks (MAPE, MASE) at "
        "1 day and --horizon ahead, instead of forecasting.")] = False,
    holdout: Annotated[str, typer.Option(
        "--holdout", help="Held-out tail for --backtest.")] = "4w",
    country: Annotated[str, typer.Option(
        "--country", help="Holiday calendar (ISO 3166 code).")] = "US",
    aht_s: Annotated[float, typer.Option(
        "--aht-s", help="AHT for histories without handle times (0: unknown).")] = 0.0,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object (the last line).")] = False,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write the forecast as CSV (start,volume,aht_s).", show_default=False)
    ] = None,
) -> None:
    """Forecast contact volume and AHT per interval, or backtest the forecasting models."""
    horizon_days = parse_duration_s("--horizon", horizon, "dw") // 86_400
    interval_s = parse_duration_s("--interval", interval, "mh")
    if 86_400 % interval_s:
        fail(f"--interval must divide a day, got {interval!r}")
    if model is not None and model not in MODELS:
        fail(f"--model must be one of {', '.join(MODELS)}, got {model!r}")
    if not aht_s >= 0:
        fail(f"--aht-s must be >= 0, got {aht_s:g}")
    if (csv_path is None) == (queue is None):
        fail("give the history as --csv FILE or as --queue QUEUE (one of them)")
    try:
        if csv_path is not None:
            history = load_history_csv(csv_path, interval_s, aht_s)
        else:
            assert queue is not None
            history_days = parse_duration_s("--history", history_length, "dw") // 86_400
            history = resample(_queue_history(queue, tenant, history_days), interval_s)
        book = DayBook(history, country)
        if run_backtest:
            if out is not None:
                fail("--out writes a forecast; it does not go with --backtest")
            holdout_days = parse_duration_s("--holdout", holdout, "dw") // 86_400
            scores = _backtest_with_progress(
                history, model, sorted({1, horizon_days}), holdout_days, country)
            if json_output:
                source = str(csv_path) if csv_path is not None else f"queue {queue}"
                typer.echo(json.dumps(backtest_json(source, book, holdout_days, scores)))
            else:
                _print_backtest(scores, holdout_days)
            return
        chosen = model or DEFAULT_MODEL
        series = forecast_days(book, horizon_days, chosen)
    except (HistoryError, ValueError) as error:
        fail(str(error))
    if out is not None:
        write_series_csv(series, out)
    if json_output:
        typer.echo(json.dumps(forecast_json(series, chosen)))
    else:
        _print_forecast(series, chosen)


def _queue_history(queue: str, tenant: str | None, days: int) -> IntervalSeries:
    """The queue's history from the configured database (migrated first, like every command
    that opens it)."""
    from omnicc.config import SettingsError, load_settings
    from omnicc.core.errors import OmniccError
    from omnicc.store.database import migrate
    from omnicc.wfm.forecast_store import load_queue_history

    try:
        settings = load_settings()
    except SettingsError as error:
        fail(str(error))
    migrate(settings.database_url)
    try:
        return load_queue_history(settings.database_url, queue, tenant=tenant, days=days)
    except OmniccError as error:
        fail(str(error))


def _backtest_with_progress(history: IntervalSeries, model: str | None, horizons: list[int],
                            holdout_days: int, country: str) -> list[BacktestScore]:
    progress = Progress(TextColumn("backtest"), BarColumn(), TaskProgressColumn(),
                        TimeElapsedColumn(), console=Console(stderr=True), transient=True)
    with progress:
        task = progress.add_task("backtest", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        return backtest(history, models=list(MODELS) if model is None else [model],
                        horizons_days=horizons, holdout_days=holdout_days, country=country,
                        progress=advance)

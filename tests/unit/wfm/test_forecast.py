"""Forecasting: reading histories, the calendar of day kinds, the two models and backtests."""

import os
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from omnicc.wfm.forecast import MODELS, DayBook, forecast, load_history_csv
from omnicc.wfm.forecast_backtest import backtest
from omnicc.wfm.forecast_history import (
    HistoryError,
    resample,
    series_from_rows,
    write_series_csv,
)
from omnicc.wfm.series import IntervalSeries

# The shared data folder: beside the repository in the workplace (../shared/data), or where
# OMNICC_SHARED_DATA says; a clean clone elsewhere on the same machine finds /work/shared/data.
BANK_CSV = next((folder / "bank_calls_2003_5min.csv" for folder in (
    Path(os.environ.get("OMNICC_SHARED_DATA", "/nonexistent")),
    Path(__file__).resolve().parents[4] / "shared" / "data",
    Path("/work/shared/data"),
) if (folder / "bank_calls_2003_5min.csv").exists()), Path("bank_calls_2003_5min.csv"))

# Open 08:00-18:00 on weekdays, busier on Mondays; handle times longer later in the week.
HOURLY_SHAPE = [0.0] * 8 + [3, 6, 9, 10, 8, 9, 10, 8, 6, 4] + [0.0] * 6
DAY_LEVEL = {0: 1.3, 1: 1.0, 2: 1.0, 3: 0.95, 4: 0.9}


def synthetic_rows(
    first: date, days: int, closed: frozenset[date] = frozenset(), noise: float = 0.0,
) -> list[tuple[datetime, float, float | None]]:
    rng = np.random.default_rng(7)
    rows: list[tuple[datetime, float, float | None]] = []
    for k in range(days):
        day = first + timedelta(days=k)
        if day.weekday() >= 5 or day in closed:
            continue
        for hour, shape in enumerate(HOURLY_SHAPE):
            if shape:
                volume = 10 * shape * DAY_LEVEL[day.weekday()] * (1 + noise * rng.normal())
                start = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
                rows.append((start, round(max(volume, 1.0)), 200.0 + 10 * day.weekday()))
    return rows


def periodic_history(days: int = 70) -> IntervalSeries:
    return series_from_rows(synthetic_rows(date(2024, 1, 8), days), 3600)


# --- history ----------------------------------------------------------------------------------


def test_generic_csv_is_padded_to_whole_days_and_resampled(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    path.write_text(
        "start,volume,aht_s\n"
        "2024-03-04T09:00:00Z,10,100\n"
        "2024-03-04T09:15:00+00:00,30,200\n"
        "2024-03-04T11:00:00,5,\n"  # no offset: UTC; no AHT: the default
        "2024-03-05T10:15:00+01:00,4,50\n",
        encoding="utf-8",
    )
    series = load_history_csv(path, 1800, default_aht_s=300.0)
    assert series.start == datetime(2024, 3, 4, tzinfo=UTC)
    assert series.interval_s == 1800 and len(series) == 2 * 48
    assert series.volume[18] == 40 and series.aht_s[18] == pytest.approx(175.0)
    assert series.volume[22] == 5 and series.aht_s[22] == 300.0
    assert series.volume[48 + 18] == 4  # 10:15+01:00 is 09:15 UTC
    assert sum(series.volume) == 49
    assert series.aht_s[0] == 0.0


def test_bank_csv_format(tmp_path: Path) -> None:
    path = tmp_path / "bank.csv"
    path.write_text('rownames,DateTime,Calls\n1,2003-03-03T07:00:00Z,111\n'
                    '2,2003-03-03T07:05:00Z,113\n3,2003-03-03T07:15:00Z,82\n', encoding="utf-8")
    native = load_history_csv(path)
    assert native.interval_s == 300 and len(native) == 288
    assert native.volume[84:88] == (111.0, 113.0, 0.0, 82.0)
    assert set(native.aht_s) == {0.0}
    assert load_history_csv(path, 900).volume[28:30] == (224.0, 82.0)


@pytest.mark.parametrize(
    ("text", "interval_s", "message"),
    [
        ("a,b\n1,2\n", None, "unknown CSV header"),
        ("start,volume\n", None, "no rows"),
        ("start,volume\nyesterday,3\n", None, "not an ISO 8601 time"),
        ("start,volume\n2024-01-01T00:00Z,-3\n", None, "must be a finite number >= 0"),
        ("start,volume\n2024-01-01T00:00Z,x\n", None, "is not a number"),
        ("start,volume\n2024-01-01T00:00Z,1\n2024-01-01T00:00Z,2\n", None, "same time"),
        ("start,volume\n2024-01-01T00:00Z,1\n2024-01-01T00:30Z,2\n", 900, "multiple of"),
        ("start,volume\n2024-01-01T00:00Z,1\n2024-01-01T00:30Z,2\n", 7 * 3600, "divide a day"),
        ("start,volume\n2024-01-01T00:10Z,1\n2024-01-01T00:40Z,2\n", None, "off the"),
    ],
)
def test_bad_history_files(tmp_path: Path, text: str, interval_s: int | None,
                           message: str) -> None:
    path = tmp_path / "history.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(HistoryError, match=message):
        load_history_csv(path, interval_s)


def test_missing_file_is_a_history_error(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="not found"):
        load_history_csv(tmp_path / "nope.csv")


def test_written_forecast_reads_back(tmp_path: Path) -> None:
    series = forecast(periodic_history(), 3)
    path = tmp_path / "forecast.csv"
    write_series_csv(series, path)
    again = load_history_csv(path)
    assert again.start == series.start and again.interval_s == series.interval_s
    assert np.allclose(again.volume, series.volume, atol=1e-3)


# --- day kinds --------------------------------------------------------------------------------


def test_day_kinds_open_weekdays_gaps_and_holidays() -> None:
    memorial_day = date(2024, 5, 27)
    gap = date(2024, 5, 15)
    rows = synthetic_rows(date(2024, 4, 1), 70, closed=frozenset({memorial_day, gap}))
    book = DayBook(series_from_rows(rows, 3600))
    assert book.kinds.open_weekdays == frozenset(range(5))
    gaps = [book.date_of(d) for d in range(book.days) if book.kinds.gap[d]]
    assert gaps == [gap]
    assert book.holiday_factors == {"Memorial Day": 0.0}
    assert book.factor_on(date(2024, 6, 1)) == 0.0  # a Saturday: closed
    assert book.factor_on(date(2024, 7, 4)) == 1.0  # Independence Day not seen yet
    # Profiles are shares of the day and do not count the closed holiday.
    for profile in book.profiles.values():
        assert profile.sum() == pytest.approx(1.0)


def test_history_must_be_whole_days() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    with pytest.raises(HistoryError, match="whole UTC days"):
        DayBook(IntervalSeries(start, 3600, (1.0,) * 30, (0.0,) * 30))
    with pytest.raises(HistoryError, match="midnight"):
        DayBook(IntervalSeries(start + timedelta(hours=1), 3600, (1.0,) * 24, (0.0,) * 24))
    with pytest.raises(HistoryError, match="holiday calendar"):
        DayBook(periodic_history(), country="XX")


# --- models -----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", list(MODELS))
def test_models_reproduce_a_periodic_history(model: str) -> None:
    history = periodic_history()
    result = forecast(history, 14, model=model)
    # The history ends with the last day that has a row: Friday 2024-03-15.
    assert result.start == datetime(2024, 3, 16, tzinfo=UTC)
    assert result.start == history.start + timedelta(hours=len(history))
    assert result.interval_s == 3600 and len(result) == 14 * 24
    expected = np.asarray(history.volume[-14 * 24:])
    assert np.allclose(result.volume, expected, rtol=0.02, atol=0.5)
    # AHT by weekday, zero where no contacts are expected.
    monday = [i for i in range(24) if HOURLY_SHAPE[i]]
    days = [result.interval_start(d * 24).weekday() for d in range(14)]
    for d, weekday in enumerate(days):
        ahts = [result.aht_s[d * 24 + i] for i in range(24)]
        if weekday < 5:
            assert all(ahts[i] == pytest.approx(200 + 10 * weekday) for i in monday)
        assert all(a == 0.0 for a, v in zip(ahts, HOURLY_SHAPE, strict=True) if not v)


def test_forecast_skips_gaps_and_plans_learnt_holidays() -> None:
    # A year and a bit: Labor Day 2023 closed, then forecast the week of Labor Day 2024.
    closed = frozenset({date(2023, 9, 4), date(2024, 8, 28)})  # Labor Day, then a gap
    rows = synthetic_rows(date(2023, 8, 7), 390, closed=closed)  # up to Fri 2024-08-30
    history = series_from_rows(rows, 3600)
    assert history.interval_start(len(history) - 1).date() == date(2024, 8, 30)
    for model in MODELS:
        result = forecast(history, 7, model=model)
        totals = np.asarray(result.volume).reshape(7, 24).sum(axis=1)
        # Sat, Sun closed; Monday is Labor Day: closed as last year; Tuesday a normal Tuesday;
        # Wednesday as a normal Wednesday, not as last Wednesday's gap.
        assert totals[0] == totals[1] == totals[2] == 0.0
        assert totals[3] == pytest.approx(sum(HOURLY_SHAPE) * 10, rel=0.03)
        assert totals[4] == pytest.approx(sum(HOURLY_SHAPE) * 10, rel=0.03)


def test_unknown_model_and_bad_days() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        forecast(periodic_history(), 7, model="prophet")
    with pytest.raises(ValueError, match="days must be >= 1"):
        forecast(periodic_history(), 0)


def test_short_history_falls_back_to_seasonal_naive() -> None:
    history = periodic_history(days=9)
    assert forecast(history, 5, model="hw-profile") == forecast(history, 5,
                                                                 model="seasonal-naive")


# --- backtests --------------------------------------------------------------------------------


def test_backtest_scores_every_origin_and_horizon() -> None:
    history = series_from_rows(synthetic_rows(date(2024, 1, 8), 70, noise=0.05), 3600)
    steps: list[tuple[int, int]] = []
    scores = backtest(history, holdout_days=14, horizons_days=(1, 7),
                      progress=lambda done, total: steps.append((done, total)))
    assert [(s.model, s.horizon_days) for s in scores] == [
        ("seasonal-naive", 1), ("seasonal-naive", 7), ("hw-profile", 1), ("hw-profile", 7)]
    assert [s.origins for s in scores] == [14, 8, 14, 8]
    assert steps[-1] == (28, 28)
    for score in scores:
        assert 0 < score.mape < 0.2 and 0 < score.mase < 2


def test_backtest_needs_enough_history() -> None:
    with pytest.raises(HistoryError, match="at least 14"):
        backtest(periodic_history(days=30), holdout_days=28)
    with pytest.raises(HistoryError, match="horizons"):
        backtest(periodic_history(), holdout_days=7, horizons_days=(14,))


@pytest.mark.skipif(not BANK_CSV.exists(), reason="shared/data is not beside the repository")
def test_hw_profile_beats_seasonal_naive_on_the_bank_calls() -> None:
    """Issue 6: hold out the last 4 weeks, forecast 1 day and 1 week ahead from each midnight."""
    history = load_history_csv(BANK_CSV, 1800)
    scores = {(s.model, s.horizon_days): s for s in backtest(history, holdout_days=28)}
    for horizon in (1, 7):
        naive, strong = scores["seasonal-naive", horizon], scores["hw-profile", horizon]
        assert strong.mape < naive.mape
        assert strong.mase < naive.mase
    assert scores["hw-profile", 1].mape < 0.08


def test_a_start_in_another_time_zone_is_read_as_utc() -> None:
    history = periodic_history(days=21)
    helsinki = timezone(timedelta(hours=2))
    shifted = IntervalSeries(history.start.astimezone(helsinki), history.interval_s,
                             history.volume, history.aht_s)
    assert forecast(shifted, 7, model="seasonal-naive").volume == forecast(
        history, 7, model="seasonal-naive").volume
    assert resample(shifted, 7200) == resample(history, 7200)
    with pytest.raises(HistoryError, match="multiple"):
        resample(history, 1800)

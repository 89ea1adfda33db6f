"""Rolling-origin backtests of the forecasting models: MAPE and MASE on a held-out tail.

The last `holdout_days` of the history are held out. From each midnight of the holdout (the
origin) a model sees only the days before it and forecasts the next `horizon` days; the errors of
every origin's horizon are pooled:

- MAPE: mean of |actual - forecast| / actual over intervals with contacts;
- MASE: mean absolute error over the intervals of open days (closed days count only where a
  model puts contacts), divided by the mean absolute error of the in-sample seasonal-naive
  forecast (same interval one week before) over pairs of normal days before the holdout.

Gaps (days without data, see `omnicc.wfm.forecast`) are not scored. A model is fitted once per
origin for the longest horizon; shorter horizons are the first days of that forecast.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from omnicc.wfm.forecast import MODELS, DayBook, forecast_days
from omnicc.wfm.forecast_history import HistoryError, day_slice
from omnicc.wfm.series import IntervalSeries

ProgressCallback = Callable[[int, int], None]
"""Called with (origins done, origins in all) as a backtest runs."""


@dataclass(frozen=True, slots=True)
class BacktestScore:
    model: str
    horizon_days: int
    origins: int
    mape: float
    mase: float
    wall_s: float


def _naive_scale(book: DayBook, days: int) -> float:
    """In-sample MAE of the one-week seasonal naive over the first `days` days, on pairs of
    normal days (a holiday or a gap says nothing about the usual week-to-week change)."""
    errors = [np.abs(book.volume[day] - book.volume[day - 7]) for day in range(7, days)
              if book.is_normal(day) and book.is_normal(day - 7)]
    if not errors:
        raise HistoryError("the history before the holdout is too short to scale MASE")
    return float(np.mean(np.concatenate(errors)))


def backtest(
    history: IntervalSeries,
    *,
    models: Sequence[str] = tuple(MODELS),
    horizons_days: Sequence[int] = (1, 7),
    holdout_days: int = 28,
    country: str = "US",
    progress: ProgressCallback | None = None,
) -> list[BacktestScore]:
    """Scores of each model at each horizon, origins at every midnight of the holdout."""
    full = DayBook(history, country)
    longest = max(horizons_days)
    if min(horizons_days) < 1 or longest > holdout_days:
        raise HistoryError(f"horizons must lie in 1..{holdout_days} days")
    cut = full.days - holdout_days
    if cut < 14:
        raise HistoryError(
            f"{full.days} days of history leave {cut} before a {holdout_days}-day holdout; "
            "at least 14 are needed"
        )
    scale = _naive_scale(full, cut)
    origins = list(range(cut, full.days - min(horizons_days) + 1))
    books = [DayBook(day_slice(history, 0, origin), country) for origin in origins]
    scores = []
    done, total = 0, len(origins) * len(models)
    for model in models:
        started = time.perf_counter()
        absolute: dict[int, list[float]] = {h: [] for h in horizons_days}
        relative: dict[int, list[float]] = {h: [] for h in horizons_days}
        for origin, book in zip(origins, books, strict=True):
            days = min(longest, full.days - origin)
            predicted = np.asarray(forecast_days(book, days, model).volume).reshape(days, -1)
            for offset in range(days):
                day = origin + offset
                if full.kinds.gap[day]:
                    continue
                actual = full.volume[day]
                error = np.abs(actual - predicted[offset])
                if not full.is_open(day):
                    error = error[(actual > 0) | (predicted[offset] > 0)]
                with_contacts = actual > 0
                relative_error = np.abs(actual - predicted[offset])[with_contacts] / actual[
                    with_contacts]
                for horizon in horizons_days:
                    if offset < horizon and origin + horizon <= full.days:
                        absolute[horizon].extend(error.tolist())
                        relative[horizon].extend(relative_error.tolist())
            done += 1
            if progress is not None:
                progress(done, total)
        wall_s = time.perf_counter() - started
        for horizon in horizons_days:
            scores.append(BacktestScore(
                model=model,
                horizon_days=horizon,
                origins=sum(origin + horizon <= full.days for origin in origins),
                mape=float(np.mean(relative[horizon])),
                mase=float(np.mean(absolute[horizon])) / scale,
                wall_s=wall_s,
            ))
    return scores

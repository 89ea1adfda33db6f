"""Forecasts of contact volume and AHT per interval, with weekly and intraday seasonality and
holidays.

The history is read as whole UTC days and each day is given a kind from a holiday calendar
(the `holidays` package) and from the data itself:

- a weekday is *open* when most of its recent non-holiday days had contacts; other weekdays
  are closed and forecast at zero;
- a *holiday* has a factor learnt from the history: its volume over what a normal day of that
  weekday would have had (a bank closed on Labor Day learns 0). A holiday the history has not
  seen yet gets 1: plan for a normal day rather than guess a closure;
- a *gap* is a day without a single contact on an open weekday that is no holiday: a hole in the
  export or an unplanned closure, neither learnt from nor forecast;
- every other day on an open weekday is *normal*.

Two models:

- `seasonal-naive`: each interval as on the latest normal day of the same weekday, times the
  holiday factor. The baseline every forecast must beat.
- `hw-profile`: the daily total by Holt-Winters (statsmodels, damped additive trend and
  multiplicative weekly seasonality over the open days, holidays and gaps replaced by their
  expected value) split over the day by the weekday's intraday profile (mean shares over the
  last normal weeks), times the holiday factor.

AHT, where the history has it, is the volume-weighted mean of the interval over the same recent
normal weeks, for both models.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, timedelta
from functools import cached_property, lru_cache

import holidays
import numpy as np
from numpy.typing import NDArray

from omnicc.wfm.forecast_history import (
    SECONDS_PER_DAY,
    HistoryError,
    load_history_csv,
    write_series_csv,
)
from omnicc.wfm.series import IntervalSeries

__all__ = ["MODELS", "DayBook", "forecast", "load_history_csv", "write_series_csv"]

# Recent occurrences of a weekday that shape its profile, AHT and "open" status.
PROFILE_WEEKS = 6
# Normal days of the same weekday averaged for the expected volume of a holiday or a gap.
EXPECTATION_WEEKS = 4

Matrix = NDArray[np.float64]


@lru_cache(maxsize=64)
def _calendar(country: str, year: int) -> holidays.HolidayBase:
    """One year of a country's holidays (building one takes about a millisecond)."""
    try:
        return holidays.country_holidays(country, years=year)
    except NotImplementedError:
        raise HistoryError(f"no holiday calendar for country {country!r}") from None


@dataclass(frozen=True, slots=True)
class DayKinds:
    open_weekdays: frozenset[int]
    holiday: tuple[str | None, ...]
    gap: tuple[bool, ...]


class DayBook:
    """A history as a (day, interval) matrix, with each day's kind and the figures the models
    share: holiday factors, intraday profiles, AHT."""

    def __init__(self, history: IntervalSeries, country: str = "US") -> None:
        if history.start.timestamp() % SECONDS_PER_DAY:
            raise HistoryError("the history must start at midnight UTC")
        self.per_day = SECONDS_PER_DAY // history.interval_s
        if len(history) == 0 or len(history) % self.per_day:
            raise HistoryError("the history must cover whole UTC days")
        self.history = history
        self.country = country
        self.first_day = history.start.astimezone(UTC).date()
        self.volume: Matrix = np.asarray(history.volume, dtype=np.float64).reshape(
            -1, self.per_day)
        self.aht: Matrix = np.asarray(history.aht_s, dtype=np.float64).reshape(-1, self.per_day)
        self.days = self.volume.shape[0]
        self.totals: Matrix = self.volume.sum(axis=1)
        self.kinds = self._kinds()

    def date_of(self, day: int) -> date:
        return self.first_day + timedelta(days=day)

    def holiday_name(self, when: date) -> str | None:
        return _calendar(self.country, when.year).get(when)

    def _kinds(self) -> DayKinds:
        holiday = tuple(self.holiday_name(self.date_of(d)) for d in range(self.days))
        open_weekdays = set()
        for weekday in range(7):
            recent = [d for d in range(self.days)
                      if self.date_of(d).weekday() == weekday and holiday[d] is None]
            recent = recent[-PROFILE_WEEKS:]
            if recent and 2 * sum(self.totals[d] > 0 for d in recent) > len(recent):
                open_weekdays.add(weekday)
        gap = tuple(
            holiday[d] is None and self.totals[d] == 0
            and self.date_of(d).weekday() in open_weekdays
            for d in range(self.days)
        )
        return DayKinds(frozenset(open_weekdays), holiday, gap)

    def is_open(self, day: int) -> bool:
        return self.date_of(day).weekday() in self.kinds.open_weekdays

    def is_normal(self, day: int) -> bool:
        return (self.is_open(day) and self.kinds.holiday[day] is None
                and not self.kinds.gap[day])

    def normal_days_like(self, weekday: int, before: int, count: int) -> list[int]:
        """The latest `count` normal days of `weekday` before day index `before`."""
        found: list[int] = []
        day = before - 1
        while day >= 0 and len(found) < count:
            if self.date_of(day).weekday() == weekday and self.is_normal(day):
                found.append(day)
            day -= 1
        return found

    def expected_total(self, day: int) -> float | None:
        """What a normal day would have had: the mean of nearby normal days of its weekday,
        before it when there are some, else after it."""
        weekday = self.date_of(day).weekday()
        near = self.normal_days_like(weekday, day, EXPECTATION_WEEKS)
        if not near:
            near = [d for d in range(day + 1, self.days)
                    if self.date_of(d).weekday() == weekday and self.is_normal(d)]
            near = near[:EXPECTATION_WEEKS]
        return float(np.mean(self.totals[near])) if near else None

    @cached_property
    def holiday_factors(self) -> dict[str, float]:
        """Holiday name -> mean of volume / expected volume over its occurrences on open days."""
        ratios: dict[str, list[float]] = {}
        for day, name in enumerate(self.kinds.holiday):
            if name is None or not self.is_open(day):
                continue
            expected = self.expected_total(day)
            if expected:
                ratios.setdefault(name, []).append(float(self.totals[day]) / expected)
        return {name: float(np.mean(values)) for name, values in ratios.items()}

    def factor_on(self, when: date) -> float:
        """0 on a closed weekday; a holiday's learnt factor (1 when not seen yet); else 1."""
        if when.weekday() not in self.kinds.open_weekdays:
            return 0.0
        name = self.holiday_name(when)
        if name is None:
            return 1.0
        return self.holiday_factors.get(name, 1.0)

    @cached_property
    def profiles(self) -> dict[int, Matrix]:
        """Open weekday -> mean share of the day's volume in each interval (sums to 1)."""
        result = {}
        for weekday in self.kinds.open_weekdays:
            days = self.normal_days_like(weekday, self.days, PROFILE_WEEKS)
            if not days:
                continue
            shares = self.volume[days] / self.totals[days, None]
            result[weekday] = shares.mean(axis=0)
        return result

    @cached_property
    def aht_profiles(self) -> dict[int, Matrix]:
        """Weekday -> volume-weighted AHT per interval over its recent normal days; intervals
        without contacts take the weekday's mean, then the history's."""
        handled = self.volume * self.aht
        overall = float(handled.sum() / self.volume.sum()) if self.volume.sum() else 0.0
        result = {}
        for weekday in range(7):
            days = self.normal_days_like(weekday, self.days, PROFILE_WEEKS)
            volume = self.volume[days].sum(axis=0)
            seconds = handled[days].sum(axis=0)
            fallback = float(seconds.sum() / volume.sum()) if volume.sum() else overall
            result[weekday] = np.where(volume > 0, seconds / np.maximum(volume, 1e-12),
                                       fallback)
        return result

    def latest_normal_day(self, weekday: int) -> int | None:
        found = self.normal_days_like(weekday, self.days, 1)
        return found[0] if found else None

    def cleaned_totals(self) -> Matrix:
        """Daily totals of the open days, holidays and gaps replaced by their expected value."""
        values = []
        for day in range(self.days):
            if not self.is_open(day):
                continue
            if self.is_normal(day):
                values.append(float(self.totals[day]))
            else:
                expected = self.expected_total(day)
                values.append(float(self.totals[day]) if expected is None else expected)
        return np.asarray(values, dtype=np.float64)


def _future_dates(book: DayBook, days: int) -> list[date]:
    return [book.date_of(book.days + k) for k in range(days)]


def _seasonal_naive_days(book: DayBook, dates: list[date]) -> Matrix:
    result = np.zeros((len(dates), book.per_day))
    for k, when in enumerate(dates):
        source = book.latest_normal_day(when.weekday())
        if source is not None:
            result[k] = book.volume[source] * book.factor_on(when)
    return result


def _daily_totals_holt_winters(book: DayBook, steps: int) -> Matrix | None:
    """Holt-Winters forecast of the totals of the next `steps` open days; None when the history
    is too short (two seasons and a bit) or too sparse for a seasonal fit."""
    from statsmodels.tools.sm_exceptions import ConvergenceWarning
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    totals = book.cleaned_totals()
    season = len(book.kinds.open_weekdays)
    if season < 2 or totals.size < 2 * season + 2 or not (totals > 0).all():
        return None
    model = ExponentialSmoothing(
        totals,
        trend="add",
        damped_trend=True,
        seasonal="mul",
        seasonal_periods=season,
        initialization_method="estimated",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        fitted = model.fit()
    return np.maximum(np.asarray(fitted.forecast(steps), dtype=np.float64), 0.0)


def _hw_profile_days(book: DayBook, dates: list[date]) -> Matrix:
    open_positions = [k for k, when in enumerate(dates)
                      if when.weekday() in book.kinds.open_weekdays]
    totals = _daily_totals_holt_winters(book, len(open_positions)) if open_positions else None
    if totals is None:
        return _seasonal_naive_days(book, dates)
    result = np.zeros((len(dates), book.per_day))
    for k, total in zip(open_positions, totals, strict=True):
        when = dates[k]
        profile = book.profiles.get(when.weekday())
        if profile is not None:
            result[k] = total * book.factor_on(when) * profile
    return result


Model = Callable[[DayBook, list[date]], Matrix]
MODELS: dict[str, Model] = {
    "seasonal-naive": _seasonal_naive_days,
    "hw-profile": _hw_profile_days,
}
DEFAULT_MODEL = "hw-profile"


def forecast_days(book: DayBook, days: int, model: str = DEFAULT_MODEL) -> IntervalSeries:
    """The next `days` days after a DayBook's history."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    dates = _future_dates(book, days)
    volume = MODELS[model](book, dates)
    aht = np.stack([book.aht_profiles[when.weekday()] for when in dates])
    aht = np.where(volume > 0, aht, 0.0)
    return IntervalSeries(
        start=book.history.start + timedelta(days=book.days),
        interval_s=book.history.interval_s,
        volume=tuple(float(v) for v in volume.ravel()),
        aht_s=tuple(float(a) for a in aht.ravel()),
    )


def forecast(
    history: IntervalSeries, days: int, *, model: str = DEFAULT_MODEL, country: str = "US"
) -> IntervalSeries:
    """Volume and AHT per interval for the `days` days after the history.

    The history must cover whole UTC days (`load_history_csv` pads to them); the forecast starts
    at the midnight after it, at the history's interval length. `country` names the holiday
    calendar (ISO 3166 code, as the `holidays` package knows them).
    """
    return forecast_days(DayBook(history, country), days, model)

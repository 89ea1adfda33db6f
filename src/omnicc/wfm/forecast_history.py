"""History for forecasting: contact volume and AHT per interval, read from a CSV file.

Two CSV formats are read, told apart by their header:

- generic: `start,volume[,aht_s]` - `start` an ISO 8601 time (UTC when it has no offset),
  `volume` the contacts that entered the queue in the interval, `aht_s` their average handle
  time (METRICS.md's AHT). Rows may be left out for intervals without contacts; the interval
  length is the smallest gap between two starts.
- the bank call-center file of /work/shared/data: `rownames,DateTime,Calls` (calls per 5 minutes,
  no handle times).

The result is an IntervalSeries padded with empty intervals to whole UTC days, as the forecasting
models work day by day.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from omnicc.wfm.series import IntervalSeries

SECONDS_PER_DAY = 86_400


class HistoryError(ValueError):
    """A history file or series that cannot be used, with a one-line reason."""


def _parse_start(text: str, where: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise HistoryError(f"{where}: not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _parse_number(text: str, where: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise HistoryError(f"{where}: {name} is not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise HistoryError(f"{where}: {name} must be a finite number >= 0, got {text!r}")
    return value


def read_history_rows(path: Path) -> list[tuple[datetime, float, float | None]]:
    """(start, volume, aht_s or None) for each row of a history CSV file."""
    try:
        handle = path.open(encoding="utf-8", newline="")
    except FileNotFoundError:
        raise HistoryError(f"history file not found: {path}") from None
    except OSError as error:
        raise HistoryError(f"cannot read history file {path}: {error}") from None
    with handle:
        reader = csv.DictReader(handle)
        fields = set(reader.fieldnames or ())
        if {"DateTime", "Calls"} <= fields:
            start_field, volume_field, aht_field = "DateTime", "Calls", None
        elif {"start", "volume"} <= fields:
            start_field, volume_field = "start", "volume"
            aht_field = "aht_s" if "aht_s" in fields else None
        else:
            raise HistoryError(
                f"{path}: unknown CSV header {sorted(fields)}; expected start,volume[,aht_s] "
                "or rownames,DateTime,Calls"
            )
        rows = []
        try:
            for line, row in enumerate(reader, start=2):
                where = f"{path}:{line}"
                start = _parse_start(row[start_field] or "", where)
                volume = _parse_number(row[volume_field] or "", where, volume_field)
                aht = None
                if aht_field is not None and (row[aht_field] or "").strip():
                    aht = _parse_number(row[aht_field] or "", where, aht_field)
                rows.append((start, volume, aht))
        except UnicodeDecodeError as error:
            raise HistoryError(f"{path}: not UTF-8 text: {error}") from None
    if not rows:
        raise HistoryError(f"{path}: no rows")
    return rows


def series_from_rows(
    rows: Iterable[tuple[datetime, float, float | None]],
    interval_s: int | None = None,
    default_aht_s: float = 0.0,
) -> IntervalSeries:
    """Whole UTC days of `interval_s` intervals (default: the rows' own spacing).

    Volumes add up; AHT is the volume-weighted mean. Rows without AHT take `default_aht_s`.
    """
    ordered = sorted(((start.astimezone(UTC), volume, aht) for start, volume, aht in rows),
                     key=lambda row: row[0])
    starts = [row[0] for row in ordered]
    gaps = {int((b - a).total_seconds()) for a, b in itertools.pairwise(starts)}
    if 0 in gaps:
        raise HistoryError(f"two rows start at the same time: {_duplicate(starts)}")
    source_s = min(gaps) if gaps else interval_s or SECONDS_PER_DAY
    if interval_s is None:
        interval_s = source_s
    if interval_s <= 0 or SECONDS_PER_DAY % interval_s:
        raise HistoryError(f"the interval must divide a day, got {interval_s} s")
    if interval_s % source_s or any(gap % source_s for gap in gaps):
        raise HistoryError(
            f"the rows are {source_s} s apart; the interval must be a multiple of that, "
            f"got {interval_s} s"
        )
    first_day = datetime.combine(starts[0].date(), datetime.min.time(), UTC)
    days = (starts[-1].date() - starts[0].date()).days + 1
    slots = days * SECONDS_PER_DAY // interval_s
    volume = [0.0] * slots
    handled_s = [0.0] * slots
    for start, count, aht in ordered:
        offset_s = (start - first_day).total_seconds()
        if offset_s % source_s:
            raise HistoryError(f"row at {start.isoformat()} is off the {source_s} s grid")
        index = int(offset_s // interval_s)
        volume[index] += count
        handled_s[index] += count * (default_aht_s if aht is None else aht)
    aht_s = [handled_s[i] / volume[i] if volume[i] else 0.0 for i in range(slots)]
    return IntervalSeries(first_day, interval_s, tuple(volume), tuple(aht_s))


def _duplicate(starts: list[datetime]) -> str:
    for a, b in itertools.pairwise(starts):
        if a == b:
            return a.isoformat()
    raise AssertionError("unreachable")  # pragma: no cover


def load_history_csv(
    path: Path, interval_s: int | None = None, default_aht_s: float = 0.0
) -> IntervalSeries:
    """Read a history CSV file (either format) into whole UTC days of intervals."""
    return series_from_rows(read_history_rows(path), interval_s, default_aht_s)


def write_series_csv(series: IntervalSeries, path: Path) -> None:
    """Write a series in the generic format, so that it can be read back."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["start", "volume", "aht_s"])
        for index in range(len(series)):
            writer.writerow([
                series.interval_start(index).isoformat().replace("+00:00", "Z"),
                f"{series.volume[index]:.3f}",
                f"{series.aht_s[index]:.1f}",
            ])


def day_slice(series: IntervalSeries, first_day: int, days: int) -> IntervalSeries:
    """Days [first_day, first_day + days) of a series that starts at midnight."""
    per_day = SECONDS_PER_DAY // series.interval_s
    low, high = first_day * per_day, (first_day + days) * per_day
    return IntervalSeries(series.start + timedelta(days=first_day), series.interval_s,
                          series.volume[low:high], series.aht_s[low:high])


def resample(series: IntervalSeries, interval_s: int) -> IntervalSeries:
    """The same history in longer intervals: volumes add up, AHT is the volume-weighted mean."""
    if interval_s <= 0 or SECONDS_PER_DAY % interval_s or interval_s % series.interval_s:
        raise HistoryError(
            f"the history has {series.interval_s} s intervals; the interval must be a multiple "
            f"of that and divide a day, got {interval_s} s"
        )
    rows = [(series.interval_start(i), series.volume[i], series.aht_s[i])
            for i in range(len(series))]
    return series_from_rows(rows, interval_s) if rows else series

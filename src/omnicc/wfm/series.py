"""The unit of workforce planning: contact volume and handle time per interval.

Forecasts produce it, staffing and schedules consume it, and reports' interval tables can be read
into it; keeping one shape lets each step be tested and replaced on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class IntervalSeries:
    """`volume[i]` contacts arrive and take `aht_s[i]` seconds on average (METRICS.md's AHT) in
    the interval that starts at `start + i * interval_s` (UTC)."""

    start: datetime
    interval_s: int
    volume: tuple[float, ...]
    aht_s: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise ValueError("start must be timezone-aware (UTC)")
        if self.interval_s <= 0 or 86_400 % self.interval_s:
            raise ValueError(f"interval_s must divide a day, got {self.interval_s}")
        if len(self.volume) != len(self.aht_s):
            raise ValueError(f"volume has {len(self.volume)} intervals, aht_s {len(self.aht_s)}")
        if any(v < 0 for v in self.volume) or any(a < 0 for a in self.aht_s):
            raise ValueError("volume and aht_s must not be negative")

    def __len__(self) -> int:
        return len(self.volume)

    def interval_start(self, index: int) -> datetime:
        return self.start + timedelta(seconds=index * self.interval_s)

    def arrivals_per_hour(self, index: int) -> float:
        return self.volume[index] * 3600.0 / self.interval_s

"""Time for the core. The engine never reads the wall clock; it asks the clock it was given.

Times are POSIX seconds (UTC) as floats, so that the simulator's virtual clock and production's
wall clock are interchangeable and arithmetic on the hot path stays cheap.
"""

from __future__ import annotations

from typing import Protocol


class Clock(Protocol):
    """Anything that tells the current time in POSIX seconds."""

    def now(self) -> float: ...


class ManualClock:
    """A clock that moves only when told to: for tests and the simulator."""

    def __init__(self, start_s: float = 0.0) -> None:
        self._now = start_s

    def now(self) -> float:
        return self._now

    def set(self, now_s: float) -> None:
        if now_s < self._now:
            raise ValueError(f"time cannot go back: {now_s} < {self._now}")
        self._now = now_s

    def advance(self, seconds: float) -> None:
        self.set(self._now + seconds)

"""Deadlines counted in business time: "8 business hours after Friday 16:00" is Monday 15:00
for a queue open 09:00-17:00 on weekdays. Same hours format as `omnicc.core.business_hours`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from omnicc.core.business_hours import WEEKDAYS

MAX_DAYS: Final = 366


def _minutes(text: str) -> int:
    hours, _, minutes = text.partition(":")
    return int(hours) * 60 + int(minutes)


def _day_ranges(weekly: Mapping[str, Any], holidays: Sequence[Mapping[str, Any]],
                day: datetime) -> list[tuple[int, int]]:
    day_text = day.date().isoformat()
    for holiday in holidays:
        if holiday.get("date") == day_text:
            return [(_minutes(a), _minutes(b)) for a, b in holiday.get("hours") or []]
    return [(_minutes(a), _minutes(b)) for a, b in weekly.get(WEEKDAYS[day.weekday()], [])]


def add_business_seconds(start: datetime, seconds: float, timezone: str,
                         weekly: Mapping[str, Any],
                         holidays: Sequence[Mapping[str, Any]] = ()) -> datetime:
    """The moment `seconds` of open time after `start` (aware). Without weekly hours every
    second counts; hours that never open give the deadline a year on (never met)."""
    if not weekly:
        return start + timedelta(seconds=seconds)
    zone = ZoneInfo(timezone)
    local = start.astimezone(zone)
    left = seconds
    day = datetime.combine(local.date(), time(), tzinfo=zone)
    for _ in range(MAX_DAYS):
        for begin, end in sorted(_day_ranges(weekly, holidays, day)):
            opens = day + timedelta(minutes=begin)
            closes = day + timedelta(minutes=end)
            if closes <= local:
                continue
            opens = max(opens, local)
            available = (closes - opens).total_seconds()
            if left <= available:
                return (opens + timedelta(seconds=left)).astimezone(start.tzinfo)
            left -= available
        day = datetime.combine(day.date() + timedelta(days=1), time(), tzinfo=zone)
    return start + timedelta(days=MAX_DAYS)

"""Opening hours: is a queue open at a moment, in its own time zone, holidays included.

`weekly` maps a weekday (`mon`..`sun`) to ranges like `["09:00", "17:00"]` (an end of `24:00`
means midnight); a weekday that is missing is closed. A holiday (`{"date": "2026-12-24",
"name": ..., "hours": [["09:00", "12:00"]]}`) replaces that day's hours; without hours the day
is closed. No weekly table at all means always open.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from omnicc.core.errors import InvalidConfiguration

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _minutes(text: object, where: str) -> int:
    if not isinstance(text, str):
        raise InvalidConfiguration(f"{where}: a time is written HH:MM, got {text!r}")
    hours, _, minutes = text.partition(":")
    try:
        value = int(hours) * 60 + int(minutes)
    except ValueError:
        raise InvalidConfiguration(f"{where}: a time is written HH:MM, got {text!r}") from None
    if not 0 <= value <= 24 * 60 or not 0 <= int(minutes) < 60:
        raise InvalidConfiguration(f"{where}: {text!r} is not a time of day")
    return value


def _ranges(value: object, where: str) -> list[tuple[int, int]]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise InvalidConfiguration(f"{where}: expected a list of [start, end] ranges")
    ranges = []
    for item in value:
        if not isinstance(item, Sequence) or isinstance(item, str) or len(item) != 2:
            raise InvalidConfiguration(f"{where}: each range is [\"HH:MM\", \"HH:MM\"]")
        start, end = _minutes(item[0], where), _minutes(item[1], where)
        if start >= end:
            raise InvalidConfiguration(f"{where}: range {item[0]}-{item[1]} ends before it starts")
        ranges.append((start, end))
    return ranges


def check_business_hours(timezone: str, weekly: Mapping[str, Any],
                         holidays: Sequence[Mapping[str, Any]]) -> None:
    """Raise InvalidConfiguration naming the first mistake."""
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidConfiguration(f"unknown time zone {timezone!r}") from None
    for day, ranges in weekly.items():
        if day not in WEEKDAYS:
            raise InvalidConfiguration(f"unknown weekday {day!r} (use {', '.join(WEEKDAYS)})")
        _ranges(ranges, day)
    for holiday in holidays:
        date_text = holiday.get("date") if isinstance(holiday, Mapping) else None
        try:
            datetime.strptime(str(date_text), "%Y-%m-%d")
        except ValueError:
            raise InvalidConfiguration(f"holiday date {date_text!r} is not YYYY-MM-DD") from None
        _ranges(holiday.get("hours") or [], f"holiday {date_text}")


def is_open(timezone: str, weekly: Mapping[str, Any], holidays: Sequence[Mapping[str, Any]],
            at: datetime) -> bool:
    """Whether the hours include the aware datetime `at`."""
    if not weekly:
        return True
    local = at.astimezone(ZoneInfo(timezone))
    minute = local.hour * 60 + local.minute
    day_text = local.date().isoformat()
    for holiday in holidays:
        if holiday.get("date") == day_text:
            ranges = _ranges(holiday.get("hours") or [], f"holiday {day_text}")
            break
    else:
        ranges = _ranges(weekly.get(WEEKDAYS[local.weekday()], []), WEEKDAYS[local.weekday()])
    return any(start <= minute < end for start, end in ranges)


"""Opening hours in the queue's own zone, with holidays."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from omnicc.core.business_hours import check_business_hours, is_open
from omnicc.core.errors import InvalidConfiguration

WEEKDAYS_9_TO_17 = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
HOLIDAYS = [{"date": "2026-12-24", "name": "Christmas Eve", "hours": [["09:00", "12:00"]]},
            {"date": "2026-12-25", "name": "Christmas Day"}]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(("moment", "expected"), [
    ("2026-11-23T06:59", False),  # Monday 08:59 in Helsinki (UTC+2)
    ("2026-11-23T07:00", True),   # 09:00
    ("2026-11-23T14:59", True),   # 16:59
    ("2026-11-23T15:00", False),  # 17:00: the end is not included
    ("2026-11-22T10:00", False),  # Sunday
    ("2026-12-24T09:00", True),   # Christmas Eve 11:00: short day
    ("2026-12-24T10:00", False),  # 12:00
    ("2026-12-25T10:00", False),  # Christmas Day: closed
    ("2026-06-01T06:30", True),   # summer time (UTC+3): 09:30
])
def test_open_in_the_queue_zone(moment: str, expected: bool) -> None:
    assert is_open("Europe/Helsinki", WEEKDAYS_9_TO_17, HOLIDAYS, at(moment)) is expected


def test_no_weekly_table_means_always_open() -> None:
    assert is_open("UTC", {}, [], at("2026-11-22T03:00"))


def test_a_range_may_end_at_midnight() -> None:
    assert is_open("UTC", {"sun": [["20:00", "24:00"]]}, [], at("2026-11-22T23:59"))


@pytest.mark.parametrize(("timezone", "weekly", "holidays", "message"), [
    ("Mars/Olympus", {}, [], "unknown time zone"),
    ("UTC", {"funday": []}, [], "unknown weekday"),
    ("UTC", {"mon": [["9", "17:00"]]}, [], "HH:MM"),
    ("UTC", {"mon": [["17:00", "09:00"]]}, [], "ends before it starts"),
    ("UTC", {"mon": [["09:00", "25:00"]]}, [], "not a time of day"),
    ("UTC", {}, [{"date": "24.12.2026"}], "YYYY-MM-DD"),
])
def test_mistakes_are_named(timezone: str, weekly: dict, holidays: list, message: str) -> None:
    with pytest.raises(InvalidConfiguration, match=message):
        check_business_hours(timezone, weekly, holidays)

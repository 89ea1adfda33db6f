"""Deadlines in business time."""

from __future__ import annotations

from datetime import UTC, datetime

from omnicc.app.business_time import add_business_seconds

WEEKDAYS_9_TO_17 = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}


def test_eight_business_hours_from_friday_afternoon_is_monday() -> None:
    friday_16 = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)  # Friday 16:00 in Paris
    due = add_business_seconds(friday_16, 8 * 3600, "Europe/Paris", WEEKDAYS_9_TO_17)
    assert due == datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # 1 h Friday, 7 h Monday: 16:00


def test_before_opening_starts_at_opening() -> None:
    early = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)  # Monday 06:00 Paris
    due = add_business_seconds(early, 3600, "Europe/Paris", WEEKDAYS_9_TO_17)
    assert due == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def test_holiday_is_skipped_and_no_hours_means_always_open() -> None:
    start = datetime(2026, 12, 24, 8, 0, tzinfo=UTC)  # Thursday 09:00 Paris
    holidays = [{"date": "2026-12-24"}, {"date": "2026-12-25", "hours": [["10:00", "12:00"]]}]
    due = add_business_seconds(start, 3 * 3600, "Europe/Paris", WEEKDAYS_9_TO_17, holidays)
    assert due == datetime(2026, 12, 28, 9, 0, tzinfo=UTC)  # 2 h on the 25th, 1 h Monday
    assert add_business_seconds(start, 60, "UTC", {}) == datetime(2026, 12, 24, 8, 1,
                                                                  tzinfo=UTC)

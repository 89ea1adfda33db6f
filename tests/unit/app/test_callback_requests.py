"""The callback button's rules without a server: slots and openings in a queue's own time zone
(daylight saving, openings between slot boundaries, holidays) and the request limits."""

from __future__ import annotations

from datetime import UTC, datetime

from omnicc.app.callback_requests import Allowance, Hours, RequestCounter

HELSINKI = "Europe/Helsinki"
WEEKDAYS_8_45 = {day: [["08:45", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}


def test_slots_are_the_open_half_hours_in_the_queues_zone() -> None:
    hours = Hours(HELSINKI, WEEKDAYS_8_45)
    friday_evening = datetime(2026, 11, 27, 16, 10, tzinfo=UTC)   # 18:10 in Helsinki
    slots = hours.slots(friday_evening)
    monday = [s for s in slots if s.date() == datetime(2026, 11, 30).date()]
    # 09:00 .. 16:30 local (UTC+2): 08:45 is not a slot start, the opening is.
    assert monday[0] == datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
    assert monday[-1] == datetime(2026, 11, 30, 14, 30, tzinfo=UTC)
    assert len(monday) == 16
    assert all(s.weekday() < 5 for s in slots)
    assert hours.next_open(friday_evening) == datetime(2026, 11, 30, 6, 45, tzinfo=UTC)


def test_slots_follow_daylight_saving_time() -> None:
    hours = Hours(HELSINKI, {"sun": [["10:00", "11:00"]], "mon": [["10:00", "11:00"]]})
    # Summer time ends on Sunday 25 October 2026: 10:00 local is 07:00 UTC, then 08:00 UTC.
    slots = hours.slots(datetime(2026, 10, 24, 12, 0, tzinfo=UTC))
    assert slots[:4] == [datetime(2026, 10, 25, 8, 0, tzinfo=UTC),
                         datetime(2026, 10, 25, 8, 30, tzinfo=UTC),
                         datetime(2026, 10, 26, 8, 0, tzinfo=UTC),
                         datetime(2026, 10, 26, 8, 30, tzinfo=UTC)]


def test_an_open_queue_is_open_now_and_a_holiday_is_skipped() -> None:
    hours = Hours("UTC", {"thu": [["09:00", "17:00"]], "fri": [["09:00", "17:00"]]},
                  [{"date": "2026-12-24", "name": "Christmas Eve"}])
    thursday_noon = datetime(2026, 12, 17, 12, 0, 30, tzinfo=UTC)
    assert hours.next_open(thursday_noon) == datetime(2026, 12, 17, 12, 1, tzinfo=UTC)
    wednesday = datetime(2026, 12, 23, 12, 0, tzinfo=UTC)
    assert hours.next_open(wednesday) == datetime(2026, 12, 25, 9, 0, tzinfo=UTC)
    never = Hours("UTC", {"mon": [["09:00", "10:00"]]},
                  [{"date": f"2026-12-{day}", "name": "closed"} for day in (21, 28)])
    assert never.next_open(datetime(2026, 12, 20, 12, 0, tzinfo=UTC)) is None


def test_no_hours_means_every_slot() -> None:
    now = datetime(2026, 11, 23, 10, 5, tzinfo=UTC)
    slots = Hours().slots(now)
    assert slots[0] == datetime(2026, 11, 23, 10, 30, tzinfo=UTC)
    assert slots[-1] == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)   # within 7 days
    assert len(slots) == 7 * 48 and Hours().next_open(now) == now


def test_a_counter_allows_so_many_per_window_then_says_how_long_to_wait() -> None:
    counter = RequestCounter(Allowance(2, 60.0), max_keys=10)
    assert counter.take("a", 0.0) == 0 and counter.take("a", 10.0) == 0
    assert counter.take("a", 20.0) == 40.0      # the first leaves the window at 60
    assert counter.take("b", 20.0) == 0         # another key has its own allowance
    assert counter.take("a", 60.0) == 0         # refused requests were not counted
    assert counter.take("a", 65.0) == 5.0


def test_a_counter_forgets_old_keys_and_holds_at_most_max_keys() -> None:
    counter = RequestCounter(Allowance(1, 60.0), max_keys=3)
    for n in range(10):
        counter.take(f"k{n}", float(n))
    assert len(counter) == 3
    assert counter.take("k0", 10.0) == 0        # pushed out: a fresh start
    counter.take("late", 200.0)
    assert len(counter) == 1                    # the window has passed for the others

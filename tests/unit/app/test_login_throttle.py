"""Login throttling: sliding windows per user and client and per client, on a manual clock."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omnicc.app.login_throttle import LoginThrottle, LoginThrottled, ThrottleRule, client_key
from omnicc.core.clock import ManualClock
from omnicc.core.errors import OmniccError

IP = "203.0.113.7"
START_S = 1_700_000_000.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START_S)


@pytest.fixture
def throttle(clock: ManualClock) -> LoginThrottle:
    return LoginThrottle(clock)


def fail(throttle: LoginThrottle, times: int, username: str = "ann", ip: str = IP) -> None:
    for _ in range(times):
        throttle.check(username, ip)
        throttle.record_failure(username, ip)


def retry_after_s(throttle: LoginThrottle, username: str = "ann", ip: str = IP) -> int:
    with pytest.raises(LoginThrottled) as throttled:
        throttle.check(username, ip)
    return throttled.value.retry_after_s


def test_five_failures_lock_the_user_on_that_client(throttle: LoginThrottle) -> None:
    fail(throttle, 4)
    throttle.check("ann", IP)
    throttle.record_failure("ann", IP)
    assert retry_after_s(throttle) == 15 * 60


def test_throttled_error_says_when_to_retry(throttle: LoginThrottle) -> None:
    fail(throttle, 5)
    with pytest.raises(LoginThrottled, match="try again in 900 s") as throttled:
        throttle.check("ann", IP)
    assert isinstance(throttled.value, OmniccError)


def test_window_slides_one_failure_at_a_time(clock: ManualClock, throttle: LoginThrottle) -> None:
    for _ in range(5):
        throttle.record_failure("ann", IP)
        clock.advance(60)
    # Failures at 0, 60, ..., 240 s; now 300 s. The first leaves the window at 900 s.
    assert retry_after_s(throttle) == 600
    clock.set(START_S + 899.5)
    assert retry_after_s(throttle) == 1  # rounded up, never 0
    clock.set(START_S + 900)
    throttle.check("ann", IP)
    throttle.record_failure("ann", IP)
    # The next oldest (60 s) now governs.
    assert retry_after_s(throttle) == 60


def test_attempts_while_locked_do_not_extend_the_lock(
    clock: ManualClock, throttle: LoginThrottle
) -> None:
    fail(throttle, 5)
    for _ in range(20):
        clock.advance(30)
        with pytest.raises(LoginThrottled):
            throttle.check("ann", IP)
    clock.set(START_S + 900)
    throttle.check("ann", IP)


def test_lock_is_per_user_and_client(throttle: LoginThrottle) -> None:
    fail(throttle, 5)
    throttle.check("bob", IP)
    throttle.check("ann", "198.51.100.1")


def test_usernames_are_compared_case_and_space_insensitively(throttle: LoginThrottle) -> None:
    fail(throttle, 5, username=" Ann ")
    assert retry_after_s(throttle, username="ANN") == 900


def test_success_resets_the_user_and_client_window(throttle: LoginThrottle) -> None:
    fail(throttle, 4)
    throttle.record_success("ann", IP)
    fail(throttle, 4)
    throttle.check("ann", IP)


def test_fifty_failures_from_one_client_lock_the_client(
    clock: ManualClock, throttle: LoginThrottle
) -> None:
    for n in range(50):
        fail(throttle, 1, username=f"user{n}")
    assert retry_after_s(throttle, username="someone-new") == 900
    throttle.check("someone-new", "198.51.100.1")


def test_success_does_not_clear_the_client_window(throttle: LoginThrottle) -> None:
    for n in range(50):
        fail(throttle, 1, username=f"user{n}")
    throttle.record_success("user0", IP)
    with pytest.raises(LoginThrottled):
        throttle.check("user0", IP)


def test_retry_after_is_the_longer_of_both_windows(clock: ManualClock) -> None:
    throttle = LoginThrottle(
        clock,
        per_user_and_client=ThrottleRule(2, 100.0),
        per_client=ThrottleRule(3, 1000.0),
    )
    fail(throttle, 2, username="a")
    assert retry_after_s(throttle, username="a") == 100
    fail(throttle, 1, username="b")
    assert retry_after_s(throttle, username="a") == 1000


def test_ipv6_clients_are_counted_by_their_slash_64(throttle: LoginThrottle) -> None:
    for n in range(5):
        fail(throttle, 1, ip=f"2001:db8:1:2::{n + 1:x}")
    assert retry_after_s(throttle, ip="2001:db8:1:2:ffff::9") == 900
    throttle.check("ann", "2001:db8:1:3::1")


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        (" 203.0.113.7 ", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("2001:DB8::1", "2001:db8::/64"),
        ("not an address", "not an address"),
    ],
)
def test_client_keys(address: str, key: str) -> None:
    assert client_key(address) == key


def test_idle_keys_are_forgotten_after_the_window(
    clock: ManualClock, throttle: LoginThrottle
) -> None:
    for n in range(100):
        throttle.record_failure(f"user{n}", f"198.51.100.{n}")
    assert throttle.tracked_keys == 200
    clock.advance(901)
    throttle.record_failure("ann", IP)
    assert throttle.tracked_keys == 2


def test_keys_are_capped_by_evicting_the_least_recent(clock: ManualClock) -> None:
    throttle = LoginThrottle(clock, max_keys=10)
    for n in range(1000):
        throttle.record_failure(f"user{n}", f"198.51.100.{n % 250}")
        clock.advance(0.001)
        assert throttle.tracked_keys <= 20
    # The most recent key survived eviction.
    for _ in range(4):
        throttle.record_failure("user999", "198.51.100.249")
    with pytest.raises(LoginThrottled):
        throttle.check("user999", "198.51.100.249")


@pytest.mark.parametrize(("max_failures", "window_s"), [(0, 60.0), (5, 0.0), (5, -1.0)])
def test_rules_must_be_positive(max_failures: int, window_s: float) -> None:
    with pytest.raises(ValueError, match="max_failures >= 1"):
        ThrottleRule(max_failures, window_s)


@given(
    gaps_s=st.lists(st.floats(min_value=0, max_value=400, allow_nan=False), max_size=40),
)
def test_never_more_than_the_limit_in_any_window(gaps_s: list[float]) -> None:
    """Against a naive count: an attempt is let through iff fewer than 5 failures in 15 min."""
    clock = ManualClock(START_S)
    throttle = LoginThrottle(clock)
    recorded: list[float] = []
    for gap_s in gaps_s:
        clock.advance(gap_s)
        now_s = clock.now()
        recent = [t for t in recorded if t > now_s - 900]
        try:
            throttle.check("ann", IP)
        except LoginThrottled as throttled:
            assert len(recent) >= 5
            oldest_s = sorted(recent)[-5]
            assert oldest_s + 900 - now_s <= throttled.retry_after_s
            assert throttled.retry_after_s <= max(1, math.ceil(oldest_s + 900 - now_s))
            continue
        assert len(recent) < 5
        throttle.record_failure("ann", IP)
        recorded.append(now_s)

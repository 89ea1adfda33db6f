"""Login rate limiting: sliding windows of failed attempts per (username, client) and per client.

The per-user-and-client window stops guessing one account's password; the per-client window
stops one address from spraying many accounts. Success clears the user-and-client window only:
one good password must not wipe out a spraying address's record. Locking by username alone is
deliberately absent, so that anyone cannot lock any user out by failing on purpose.

IPv6 clients are keyed by their /64, the block one host usually gets, so hopping addresses
inside it does not reset the count. Memory is bounded: a key is forgotten once its newest
failure leaves the window, and beyond ``max_keys`` per window the least recently failing keys
go first.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict, deque
from dataclasses import dataclass

from omnicc.core.clock import Clock
from omnicc.core.errors import OmniccError


class LoginThrottled(OmniccError):
    """Too many failed logins; try again after ``retry_after_s`` seconds. HTTP 429."""

    def __init__(self, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(f"too many failed login attempts, try again in {retry_after_s} s")


@dataclass(frozen=True, slots=True)
class ThrottleRule:
    """At most ``max_failures`` failures within any ``window_s`` seconds."""

    max_failures: int
    window_s: float

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.window_s <= 0:
            raise ValueError("a throttle rule needs max_failures >= 1 and window_s > 0")


class _Window:
    """Failure times under one key, oldest first, keeping only what the rule can still use."""

    def __init__(self, rule: ThrottleRule) -> None:
        self.rule = rule
        self._failures: OrderedDict[tuple[str, ...], deque[float]] = OrderedDict()

    def retry_after_s(self, key: tuple[str, ...], now_s: float) -> float:
        failures = self._failures.get(key)
        if failures is None or len(failures) < self.rule.max_failures:
            return 0.0
        # Locked until the oldest of the last max_failures failures leaves the window.
        return max(0.0, failures[0] + self.rule.window_s - now_s)

    def record(self, key: tuple[str, ...], now_s: float) -> None:
        failures = self._failures.get(key)
        if failures is None:
            failures = self._failures[key] = deque(maxlen=self.rule.max_failures)
        failures.append(now_s)
        self._failures.move_to_end(key)

    def clear(self, key: tuple[str, ...]) -> None:
        self._failures.pop(key, None)

    def forget(self, now_s: float, max_keys: int) -> None:
        # Keys are ordered by last failure, so stale ones are all at the front.
        while self._failures:
            key, failures = next(iter(self._failures.items()))
            if failures[-1] + self.rule.window_s > now_s and len(self._failures) < max_keys:
                break
            del self._failures[key]

    def __len__(self) -> int:
        return len(self._failures)


class LoginThrottle:
    """Check before verifying a password; record the outcome after."""

    def __init__(
        self,
        clock: Clock,
        *,
        per_user_and_client: ThrottleRule | None = None,
        per_client: ThrottleRule | None = None,
        max_keys: int = 100_000,
    ) -> None:
        """Defaults: 5 failures per 15 minutes per user and client, 50 per client."""
        self._clock = clock
        self._user_and_client = _Window(per_user_and_client or ThrottleRule(5, 15 * 60.0))
        self._client = _Window(per_client or ThrottleRule(50, 15 * 60.0))
        self.max_keys = max_keys

    def check(self, username: str, client_ip: str) -> None:
        """Raise ``LoginThrottled`` with the seconds to wait if either window is full."""
        now_s = self._clock.now()
        wait_s = max(
            self._user_and_client.retry_after_s(_user_key(username, client_ip), now_s),
            self._client.retry_after_s(_client_key(client_ip), now_s),
        )
        if wait_s > 0:
            raise LoginThrottled(max(1, math.ceil(wait_s)))

    def record_failure(self, username: str, client_ip: str) -> None:
        now_s = self._clock.now()
        for window in (self._user_and_client, self._client):
            window.forget(now_s, self.max_keys)
        self._user_and_client.record(_user_key(username, client_ip), now_s)
        self._client.record(_client_key(client_ip), now_s)

    def record_success(self, username: str, client_ip: str) -> None:
        self._user_and_client.clear(_user_key(username, client_ip))

    @property
    def tracked_keys(self) -> int:
        """How many keys are held now (for metrics and the memory-bound tests)."""
        return len(self._user_and_client) + len(self._client)


def client_key(client_ip: str) -> str:
    """The address a client is counted under: IPv4 as is, IPv6 by its /64."""
    try:
        address = ipaddress.ip_address(client_ip.strip())
    except ValueError:
        return client_ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _client_key(client_ip: str) -> tuple[str, ...]:
    return (client_key(client_ip),)


def _user_key(username: str, client_ip: str) -> tuple[str, ...]:
    return (username.strip().casefold(), client_key(client_ip))

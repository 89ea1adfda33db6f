"""The password step of logging in, over real (cheap) argon2 and a throttle on a manual clock."""

from __future__ import annotations

import asyncio
import threading

import pytest

from omnicc.app.login_throttle import LoginThrottle, LoginThrottled
from omnicc.app.logins import Logins, VerifiedPassword
from omnicc.app.passwords import HashParameters, Passwords
from omnicc.app.principals import Unauthenticated
from omnicc.core.clock import ManualClock

CHEAP = HashParameters(time_cost=1, memory_kib=8, parallelism=1)
IP = "203.0.113.7"
PASSWORD = "correct horse battery"


class Desk:
    def __init__(self, passwords: Passwords | None = None, **options: int) -> None:
        self.clock = ManualClock(1_700_000_000.0)
        self.passwords = passwords or Passwords(CHEAP)
        self.throttle = LoginThrottle(self.clock)
        self.logins = Logins(self.passwords, self.throttle, **options)
        self.stored = self.passwords.hash(PASSWORD)

    def attempt(
        self, password: str = PASSWORD, stored: str | None = "", username: str = "ann"
    ) -> VerifiedPassword:
        return asyncio.run(
            self.logins.verify_password(
                username=username,
                client_ip=IP,
                stored_hash=self.stored if stored == "" else stored,
                password=password,
            )
        )


def test_right_password_passes_without_rehash() -> None:
    assert Desk().attempt() == VerifiedPassword(new_hash=None)


def test_wrong_password_and_unknown_user_get_the_same_refusal() -> None:
    desk = Desk()
    messages = []
    for stored in ("", None):
        with pytest.raises(Unauthenticated) as refused:
            desk.attempt("wrong password!", stored=stored)
        messages.append(str(refused.value))
    with pytest.raises(Unauthenticated) as refused:
        desk.attempt(PASSWORD, stored=None)
    messages.append(str(refused.value))
    assert messages == ["wrong username or password"] * 3


def test_five_failures_throttle_even_the_right_password() -> None:
    desk = Desk()
    for _ in range(5):
        with pytest.raises(Unauthenticated):
            desk.attempt("wrong password!")
    with pytest.raises(LoginThrottled) as throttled:
        desk.attempt()
    assert throttled.value.retry_after_s == 900
    desk.clock.advance(900)
    desk.attempt()


def test_unknown_users_count_as_failures() -> None:
    desk = Desk()
    for _ in range(5):
        with pytest.raises(Unauthenticated):
            desk.attempt(stored=None, username="nobody")
    with pytest.raises(LoginThrottled):
        desk.attempt(stored=None, username="nobody")


def test_success_clears_earlier_failures() -> None:
    desk = Desk()
    for _ in range(4):
        with pytest.raises(Unauthenticated):
            desk.attempt("wrong password!")
    desk.attempt()
    for _ in range(4):
        with pytest.raises(Unauthenticated):
            desk.attempt("wrong password!")
    desk.attempt()


def test_old_parameters_give_a_new_hash_to_store() -> None:
    desk = Desk(Passwords(HashParameters(time_cost=2, memory_kib=16, parallelism=1)))
    desk.stored = Passwords(CHEAP).hash(PASSWORD)
    new_hash = desk.attempt().new_hash
    assert new_hash is not None and new_hash.startswith("$argon2id$v=19$m=16,t=2,p=1$")
    assert desk.passwords.verify(new_hash, PASSWORD)


def test_hashing_runs_off_the_event_loop_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    desk = Desk()
    threads: list[int] = []
    real_verify = Passwords.verify

    def spy(self: Passwords, stored_hash: str | None, password: str) -> bool:
        threads.append(threading.get_ident())
        return real_verify(self, stored_hash, password)

    monkeypatch.setattr(Passwords, "verify", spy)
    desk.attempt()
    assert threads and threads[0] != threading.get_ident()


def test_concurrent_hashes_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    desk = Desk(max_concurrent_hashes=2)
    running = 0
    peak = 0
    changed = threading.Condition()
    real_verify = Passwords.verify

    def slow(self: Passwords, stored_hash: str | None, password: str) -> bool:
        nonlocal running, peak
        with changed:
            running += 1
            peak = max(peak, running)
            changed.notify_all()
            # Hold the slot until a second check runs alongside (or a third would, if the
            # bound were broken), however slowly the threads are scheduled.
            changed.wait_for(lambda: peak >= 2, timeout=5)
            changed.wait(timeout=0.02)
            running -= 1
        return real_verify(self, stored_hash, password)

    monkeypatch.setattr(Passwords, "verify", slow)

    async def many() -> None:
        await asyncio.gather(
            *(
                desk.logins.verify_password(
                    username=f"user{n}", client_ip=IP, stored_hash=desk.stored, password=PASSWORD
                )
                for n in range(6)
            )
        )

    asyncio.run(many())
    assert peak == 2


def test_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Desk(max_concurrent_hashes=0)

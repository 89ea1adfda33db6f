"""The password step of logging in: throttle, verify without revealing accounts, record, rehash.

Callers look the user up first and pass its stored hash, or ``None`` when there is no such user
or the account is disabled; both paths do the same argon2 work and end in the same refusal, so
neither the answer nor its timing tells whether an account exists.

argon2 is deliberately slow and memory-hungry (about 0.1 s and 64 MiB per check), so it runs
in a worker thread, never on the event loop, and at most ``max_concurrent_hashes`` at a time so
that a burst of logins cannot exhaust the server's memory.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from omnicc.app.login_throttle import LoginThrottle
from omnicc.app.passwords import Passwords
from omnicc.app.principals import Unauthenticated


@dataclass(frozen=True, slots=True)
class VerifiedPassword:
    """A password that matched. ``new_hash``, when set, replaces the stored hash: it was made
    with parameters older than those in force."""

    new_hash: str | None = None


class Logins:
    """Checks passwords for the login endpoint; one instance per process, like the throttle."""

    def __init__(
        self, passwords: Passwords, throttle: LoginThrottle, *, max_concurrent_hashes: int = 4
    ) -> None:
        if max_concurrent_hashes < 1:
            raise ValueError("max_concurrent_hashes must be at least 1")
        self._passwords = passwords
        self._throttle = throttle
        self._hashing = asyncio.Semaphore(max_concurrent_hashes)

    async def verify_password(
        self, *, username: str, client_ip: str, stored_hash: str | None, password: str
    ) -> VerifiedPassword:
        """Raise ``LoginThrottled`` (429) before any work when the client must wait, and
        ``Unauthenticated`` (401) with one message for every wrong username or password."""
        self._throttle.check(username, client_ip)
        async with self._hashing:
            matches = await asyncio.to_thread(self._passwords.verify, stored_hash, password)
        if not matches or stored_hash is None:
            self._throttle.record_failure(username, client_ip)
            raise Unauthenticated("wrong username or password")
        self._throttle.record_success(username, client_ip)
        if not self._passwords.needs_rehash(stored_hash):
            return VerifiedPassword()
        async with self._hashing:
            new_hash = await asyncio.to_thread(self._passwords.hash, password)
        return VerifiedPassword(new_hash=new_hash)

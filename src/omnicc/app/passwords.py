"""Password hashing with argon2id, and the minimum policy a new password must meet.

Parameters are written out rather than taken from argon2-cffi's defaults so that a library
upgrade never silently changes them; ``needs_rehash`` then tells, at the next successful login,
which stored hashes are behind the parameters in force.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from omnicc.core.errors import OmniccError

MIN_PASSWORD_LENGTH = 10
# Long enough for any passphrase or manager-generated secret, short enough that a megabyte of
# "password" cannot be posted to make the server hash it.
MAX_PASSWORD_LENGTH = 1024


class WeakPassword(OmniccError):
    """A new password does not meet the policy; ``reasons`` lists every rule it breaks."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__(" ".join(reasons))


@dataclass(frozen=True, slots=True)
class HashParameters:
    """argon2id cost. The default is RFC 9106's second recommended option (64 MiB, t=3, p=4):
    about 0.1 s per hash on a server core, affordable at login rates, costly for a cracker."""

    time_cost: int = 3
    memory_kib: int = 64 * 1024
    parallelism: int = 4
    hash_len: int = 32
    salt_len: int = 16


def normalize_password(password: str) -> str:
    """NFKC, as NIST SP 800-63B advises, so the same passphrase typed on two keyboards matches."""
    return unicodedata.normalize("NFKC", password)


def check_password_policy(password: str, *, username: str) -> None:
    """Raise ``WeakPassword`` with a readable reason for each rule the password breaks."""
    candidate = normalize_password(password)
    reasons: list[str] = []
    if len(candidate) < MIN_PASSWORD_LENGTH:
        reasons.append(
            f"Password must be at least {MIN_PASSWORD_LENGTH} characters long "
            f"(it has {len(candidate)})."
        )
    if len(candidate) > MAX_PASSWORD_LENGTH:
        reasons.append(f"Password must be at most {MAX_PASSWORD_LENGTH} characters long.")
    if candidate.strip().casefold() == normalize_password(username).strip().casefold():
        reasons.append("Password must not be the same as the username.")
    if reasons:
        raise WeakPassword(reasons)


class Passwords:
    """Hash and verify passwords; verification of an unknown user costs the same as a known one."""

    def __init__(self, parameters: HashParameters | None = None) -> None:
        self.parameters = parameters or HashParameters()
        self._hasher = PasswordHasher(
            time_cost=self.parameters.time_cost,
            memory_cost=self.parameters.memory_kib,
            parallelism=self.parameters.parallelism,
            hash_len=self.parameters.hash_len,
            salt_len=self.parameters.salt_len,
            type=Type.ID,
        )
        # Hashed once with the live parameters so that checking a password for a user who does
        # not exist does the same work as for one who does: timing must not reveal accounts.
        self._dummy_hash = self._hasher.hash("omnicc dummy password for unknown users")

    def hash(self, password: str) -> str:
        """The encoded argon2id hash (salt and parameters included) to store for the user."""
        return self._hasher.hash(normalize_password(password))

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches; ``stored_hash=None`` means "no such user" and is False
        after the same amount of work. A corrupt stored hash is also False, never an error."""
        if len(password) > MAX_PASSWORD_LENGTH * 4:
            # Far past any password the policy admits: refuse before hashing megabytes.
            return False
        candidate = normalize_password(password)
        if stored_hash is None:
            self._verify_quietly(self._dummy_hash, candidate)
            return False
        return self._verify_quietly(stored_hash, candidate)

    def needs_rehash(self, stored_hash: str) -> bool:
        """Whether the hash was made with other parameters and should be replaced after login."""
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except (InvalidHashError, ValueError):
            return True

    def _verify_quietly(self, stored_hash: str, candidate: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, candidate)
        except (VerificationError, InvalidHashError):
            return False

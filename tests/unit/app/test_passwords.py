"""Passwords: argon2id hashing, verification, rehash detection and the minimum policy."""

from __future__ import annotations

import argon2
import pytest

from omnicc.app.passwords import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    HashParameters,
    Passwords,
    WeakPassword,
    check_password_policy,
)
from omnicc.core.errors import OmniccError

# Cheap parameters keep the suite fast; one test below exercises the production defaults.
CHEAP = HashParameters(time_cost=1, memory_kib=8, parallelism=1)


@pytest.fixture(scope="module")
def passwords() -> Passwords:
    return Passwords(CHEAP)


def test_hash_is_argon2id_with_the_configured_parameters(passwords: Passwords) -> None:
    encoded = passwords.hash("correct horse battery")
    assert encoded.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert "correct horse" not in encoded


def test_same_password_hashes_differently_each_time(passwords: Passwords) -> None:
    assert passwords.hash("correct horse battery") != passwords.hash("correct horse battery")


def test_verify_accepts_the_password_and_refuses_others(passwords: Passwords) -> None:
    encoded = passwords.hash("correct horse battery")
    assert passwords.verify(encoded, "correct horse battery")
    assert not passwords.verify(encoded, "correct horse batterY")
    assert not passwords.verify(encoded, "")


def test_verify_matches_unicode_normalised_forms(passwords: Passwords) -> None:
    composed, decomposed = "caf\u00e9 au lait!!", "cafe\u0301 au lait!!"
    assert passwords.verify(passwords.hash(composed), decomposed)


def test_corrupt_stored_hash_is_a_mismatch_not_an_error(passwords: Passwords) -> None:
    assert not passwords.verify("not a hash", "correct horse battery")
    assert not passwords.verify("$argon2id$v=19$m=8,t=1,p=1$garbage", "correct horse battery")


def test_absurdly_long_password_is_refused_without_hashing(passwords: Passwords) -> None:
    encoded = passwords.hash("correct horse battery")
    assert not passwords.verify(encoded, "x" * (MAX_PASSWORD_LENGTH * 4 + 1))


def test_unknown_user_costs_one_verification_like_a_known_one(
    passwords: Passwords, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoded = passwords.hash("correct horse battery")
    verified: list[str] = []
    real_verify = argon2.PasswordHasher.verify

    def spy(self: argon2.PasswordHasher, stored: str | bytes, password: str | bytes) -> bool:
        verified.append(str(stored))
        return real_verify(self, stored, password)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", spy)
    assert not passwords.verify(None, "correct horse battery")
    assert not passwords.verify(encoded, "wrong password here")
    assert len(verified) == 2
    unknown_hash, known_hash = verified
    # Same algorithm and cost, so the work (and the time) is the same.
    assert unknown_hash.split("$")[1:4] == known_hash.split("$")[1:4]


def test_needs_rehash_when_parameters_change(passwords: Passwords) -> None:
    stronger = Passwords(HashParameters(time_cost=2, memory_kib=16, parallelism=1))
    old = passwords.hash("correct horse battery")
    assert not passwords.needs_rehash(old)
    assert stronger.needs_rehash(old)
    assert not stronger.needs_rehash(stronger.hash("correct horse battery"))
    assert passwords.needs_rehash("not a hash")


def test_production_defaults_follow_rfc_9106() -> None:
    defaults = Passwords()
    encoded = defaults.hash("correct horse battery")
    assert encoded.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert defaults.verify(encoded, "correct horse battery")
    assert not defaults.needs_rehash(encoded)


def test_policy_accepts_a_long_enough_password() -> None:
    check_password_policy("a" * MIN_PASSWORD_LENGTH, username="alice")


@pytest.mark.parametrize("password", ["", "short", "123456789"])
def test_policy_refuses_short_passwords_and_says_why(password: str) -> None:
    with pytest.raises(WeakPassword) as refused:
        check_password_policy(password, username="alice")
    assert refused.value.reasons == [
        f"Password must be at least 10 characters long (it has {len(password)})."
    ]
    assert str(refused.value) == refused.value.reasons[0]
    assert isinstance(refused.value, OmniccError)


@pytest.mark.parametrize("password", ["alice.smith", "Alice.Smith", " ALICE.SMITH "])
def test_policy_refuses_the_username_in_any_case(password: str) -> None:
    with pytest.raises(WeakPassword) as refused:
        check_password_policy(password, username="alice.smith")
    assert refused.value.reasons == ["Password must not be the same as the username."]


def test_policy_lists_every_broken_rule() -> None:
    with pytest.raises(WeakPassword) as refused:
        check_password_policy("bob", username="bob")
    assert refused.value.reasons == [
        "Password must be at least 10 characters long (it has 3).",
        "Password must not be the same as the username.",
    ]


def test_policy_refuses_overlong_passwords() -> None:
    with pytest.raises(WeakPassword, match="at most 1024 characters"):
        check_password_policy("x" * (MAX_PASSWORD_LENGTH + 1), username="alice")


def test_policy_counts_characters_after_normalisation() -> None:
    # Nine composed characters are nine, even if typed as ten code points.
    with pytest.raises(WeakPassword, match="it has 9"):
        check_password_policy("cafe\u0301cafe!", username="alice")

"""API tokens: shape, digest-only storage, verification, expiry and revocation."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omnicc.app.principals import Credential, Forbidden, Role, Unauthenticated
from omnicc.app.tokens import (
    API_TOKEN_PREFIX,
    ApiTokenRecord,
    IssuedApiToken,
    authenticate_api_token,
    digest_api_token,
    generate_api_token,
    is_api_token_shaped,
    issue_api_token,
)

NOW_S = 1_700_000_000.0


def issue(**overrides: object) -> IssuedApiToken:
    options: dict[str, object] = {
        "tenant_id": "acme",
        "role": Role.SUPERVISOR,
        "name": "crm sync",
        "now_s": NOW_S,
    }
    options.update(overrides)
    return issue_api_token(**options)  # type: ignore[arg-type]


ISSUED = issue()


def test_token_has_prefix_and_32_random_bytes() -> None:
    token = generate_api_token()
    assert token.startswith(API_TOKEN_PREFIX)
    assert len(token) == len(API_TOKEN_PREFIX) + 43
    assert is_api_token_shaped(token)
    assert generate_api_token() != token


def test_record_keeps_only_the_sha256_digest() -> None:
    record = ISSUED.record
    assert record.digest == hashlib.sha256(ISSUED.secret.encode()).hexdigest()
    assert ISSUED.secret not in repr(record)
    assert record.tenant_id == "acme" and record.role is Role.SUPERVISOR
    assert record.created_at_s == NOW_S and record.expires_at_s is None


def test_valid_token_gives_its_principal() -> None:
    principal = authenticate_api_token(ISSUED.secret, ISSUED.record, now_s=NOW_S + 10)
    assert principal.subject_id == ISSUED.record.token_id
    assert principal.tenant_id == "acme"
    assert principal.role is Role.SUPERVISOR
    assert principal.credential is Credential.API_TOKEN
    assert principal.session_id is None


def test_unknown_token_is_unauthenticated() -> None:
    with pytest.raises(Unauthenticated):
        authenticate_api_token(generate_api_token(), None, now_s=NOW_S)


@pytest.mark.parametrize("junk", ["", "occ_", "Bearer x", "occ_" + "a" * 42, "xyz_" + "a" * 43])
def test_malformed_tokens_are_refused_before_lookup(junk: str) -> None:
    assert not is_api_token_shaped(junk)
    with pytest.raises(Unauthenticated):
        authenticate_api_token(junk, ISSUED.record, now_s=NOW_S)


def test_record_of_another_token_is_refused() -> None:
    # A store that matched loosely must not let the wrong secret in.
    with pytest.raises(Unauthenticated):
        authenticate_api_token(generate_api_token(), ISSUED.record, now_s=NOW_S)


def test_non_ascii_stored_digest_is_refused_not_crashed() -> None:
    broken = dataclasses.replace(ISSUED.record, digest="é" * 64)
    with pytest.raises(Unauthenticated):
        authenticate_api_token(ISSUED.secret, broken, now_s=NOW_S)


@given(position=st.integers(min_value=0, max_value=46), replacement=st.characters())
def test_any_changed_character_is_refused(position: int, replacement: str) -> None:
    secret = ISSUED.secret
    changed = secret[:position] + replacement + secret[position + 1 :]
    if changed == secret:
        return
    with pytest.raises(Unauthenticated):
        authenticate_api_token(changed, ISSUED.record, now_s=NOW_S)


def test_expiry_is_exclusive_of_the_expiry_instant() -> None:
    issued = issue(expires_at_s=NOW_S + 3600)
    authenticate_api_token(issued.secret, issued.record, now_s=NOW_S + 3599.9)
    for late_s in (NOW_S + 3600, NOW_S + 86_400):
        with pytest.raises(Unauthenticated, match="invalid or expired"):
            authenticate_api_token(issued.secret, issued.record, now_s=late_s)


def test_expiry_in_the_past_cannot_be_issued() -> None:
    with pytest.raises(ValueError, match="future"):
        issue(expires_at_s=NOW_S)


def test_revoked_token_is_refused() -> None:
    revoked = dataclasses.replace(ISSUED.record, revoked=True)
    with pytest.raises(Unauthenticated):
        authenticate_api_token(ISSUED.secret, revoked, now_s=NOW_S)


def test_agent_role_cannot_be_given_to_a_token() -> None:
    with pytest.raises(Forbidden, match="cannot use the API"):
        issue(role=Role.AGENT)


def test_stored_token_whose_role_lost_api_access_is_forbidden() -> None:
    demoted = dataclasses.replace(ISSUED.record, role=Role.AGENT)
    with pytest.raises(Forbidden):
        authenticate_api_token(ISSUED.secret, demoted, now_s=NOW_S)


def test_each_issue_gets_a_new_id_and_secret() -> None:
    other = issue()
    assert other.record.token_id != ISSUED.record.token_id
    assert other.secret != ISSUED.secret
    assert isinstance(other.record, ApiTokenRecord)
    assert digest_api_token(other.secret) == other.record.digest

"""API tokens for integrations: a random secret shown once, of which only a SHA-256 digest is kept.

A token reads ``occ_`` followed by 32 random bytes in URL-safe base64 (43 characters), so leaked
tokens are recognisable by secret scanners. SHA-256 rather than argon2 is enough here: the secret
has 256 bits of entropy, so there is nothing to brute-force, and a fast digest lets the store
look the token up by an index on ``digest``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass

from omnicc.app.permissions import Permission, has_permission
from omnicc.app.principals import Credential, Forbidden, Principal, Role, Unauthenticated

API_TOKEN_PREFIX = "occ_"
API_TOKEN_BYTES = 32
_API_TOKEN_SHAPE = re.compile(r"occ_[A-Za-z0-9_-]{43}")


@dataclass(frozen=True, slots=True)
class ApiTokenRecord:
    """What the store keeps about a token: never the secret itself."""

    token_id: str
    tenant_id: str
    role: Role
    name: str
    digest: str
    created_at_s: float
    expires_at_s: float | None = None
    revoked: bool = False

    def is_expired(self, now_s: float) -> bool:
        return self.expires_at_s is not None and now_s >= self.expires_at_s


@dataclass(frozen=True, slots=True)
class IssuedApiToken:
    """A new token: ``secret`` goes to the user once, ``record`` to the store."""

    secret: str
    record: ApiTokenRecord


def generate_api_token() -> str:
    return API_TOKEN_PREFIX + secrets.token_urlsafe(API_TOKEN_BYTES)


def digest_api_token(token: str) -> str:
    """The hex SHA-256 the store keeps and looks tokens up by."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def is_api_token_shaped(token: str) -> bool:
    """Whether the text could be one of our tokens; cheap, so junk never reaches the store."""
    return _API_TOKEN_SHAPE.fullmatch(token) is not None


def issue_api_token(
    *,
    tenant_id: str,
    role: Role,
    name: str,
    now_s: float,
    expires_at_s: float | None = None,
) -> IssuedApiToken:
    """Make a token for an integration. Callers check ``require_may_grant`` for ``role`` first.

    Only roles that hold ``USE_API`` can be given to a token (agents work through the desktop).
    """
    if not has_permission(role, Permission.USE_API):
        raise Forbidden(f"role {role.value} cannot use the API")
    if expires_at_s is not None and expires_at_s <= now_s:
        raise ValueError("an API token must expire in the future")
    secret = generate_api_token()
    record = ApiTokenRecord(
        token_id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        role=role,
        name=name,
        digest=digest_api_token(secret),
        created_at_s=now_s,
        expires_at_s=expires_at_s,
    )
    return IssuedApiToken(secret=secret, record=record)


def authenticate_api_token(
    presented: str, record: ApiTokenRecord | None, *, now_s: float
) -> Principal:
    """The principal of a presented token, or ``Unauthenticated``.

    ``record`` is what the store found for ``digest_api_token(presented)`` (None if nothing).
    The digest is compared again in constant time so that a store which matched loosely (a
    prefix, a case-insensitive collation) cannot let a wrong token through. Every refusal has
    the same message: a caller learns nothing about which tokens exist.
    """
    refusal = Unauthenticated("invalid or expired API token")
    if not is_api_token_shaped(presented) or record is None:
        raise refusal
    if not hmac.compare_digest(digest_api_token(presented).encode(), record.digest.encode()):
        raise refusal
    if record.revoked or record.is_expired(now_s):
        raise refusal
    if not has_permission(record.role, Permission.USE_API):
        # The role table may have changed since the token was issued.
        raise Forbidden(f"role {record.role.value} cannot use the API")
    return Principal(
        subject_id=record.token_id,
        tenant_id=record.tenant_id,
        role=record.role,
        credential=Credential.API_TOKEN,
    )

"""Who is asking: the principal behind a request, its role, and the two refusals of security.

A principal is what a session cookie or an API token proves. It always carries its tenant, so
every check downstream can refuse to cross tenants. ``Unauthenticated`` (HTTP 401) means "we do
not know who you are"; ``Forbidden`` (HTTP 403) means "we know, and the answer is no".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from omnicc.core.errors import OmniccError


class Unauthenticated(OmniccError):
    """No valid credential: missing, malformed, tampered, expired or revoked. HTTP 401."""


class Forbidden(OmniccError):
    """The principal is known but may not do this (role, tenant or CSRF check failed). HTTP 403."""


class CrossTenantAccess(Forbidden):
    """The principal reached for something that belongs to another tenant.

    A subclass so that the API may choose to answer 404 instead, hiding that the thing exists.
    """


class Role(StrEnum):
    """What a user or an API token may do, broadest first."""

    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    AGENT = "agent"


class Credential(StrEnum):
    """How the principal proved itself; CSRF protection depends on it."""

    SESSION = "session"
    API_TOKEN = "api_token"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated user (by session) or integration (by API token) within one tenant."""

    subject_id: str
    tenant_id: str
    role: Role
    credential: Credential
    session_id: str | None = None

    @property
    def is_session(self) -> bool:
        return self.credential is Credential.SESSION


def require_same_tenant(principal: Principal, tenant_id: str) -> None:
    """Refuse access to a resource of another tenant.

    The repository layer already filters by tenant; this is the second line of defence for
    identifiers that come from the request (a path, a body) rather than from the principal.
    """
    if principal.tenant_id != tenant_id:
        raise CrossTenantAccess("this resource belongs to another tenant")

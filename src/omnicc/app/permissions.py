"""Role-based access control: what each role may do, and the check every endpoint makes."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from omnicc.app.principals import Forbidden, Principal, Role, Unauthenticated


class Permission(StrEnum):
    """One action an endpoint guards. Values are stable strings for logs, the API and tokens."""

    CONFIGURE_TENANT = "tenant:configure"
    MANAGE_USERS = "users:manage"
    MANAGE_QUEUES = "queues:manage"
    MANAGE_SKILLS = "skills:manage"
    MANAGE_AGENTS = "agents:manage"
    MANAGE_ROUTING_POLICIES = "routing_policies:manage"
    MANAGE_BUSINESS_HOURS = "business_hours:manage"
    MANAGE_WRAP_UP_CODES = "wrap_up_codes:manage"
    MANAGE_CANNED_RESPONSES = "canned_responses:manage"
    MANAGE_API_TOKENS = "api_tokens:manage"
    MANAGE_WEBHOOKS = "webhooks:manage"
    MANAGE_VOICE = "voice:manage"
    """IVR flows, numbers and prompts: where calls go and what callers hear."""
    EXPORT_CONFIG = "config:export"
    IMPORT_CONFIG = "config:import"
    VIEW_WALLBOARD = "wallboard:view"
    MONITOR_CONVERSATIONS = "conversations:monitor"
    WHISPER = "conversations:whisper"
    BARGE = "conversations:barge"
    REASSIGN_TASKS = "tasks:reassign"
    CHANGE_ANY_AGENT_STATUS = "presence:change_any"
    CHANGE_AGENT_SKILLS = "agents:change_skills"
    HANDLE_CONTACTS = "contacts:handle"
    MERGE_CUSTOMERS = "customers:merge"
    """Merge two customer records into one, or split one apart (audited)."""
    CHANGE_OWN_STATUS = "presence:change_own"
    USE_API = "api:use"


_AGENT = frozenset({Permission.HANDLE_CONTACTS, Permission.CHANGE_OWN_STATUS,
                    Permission.MERGE_CUSTOMERS})

# Supervisors run the floor (watch, coach, move work and people) but do not reconfigure the
# tenant: configuration, users and tokens stay with admins.
_SUPERVISOR = _AGENT | {
    Permission.VIEW_WALLBOARD,
    Permission.MONITOR_CONVERSATIONS,
    Permission.WHISPER,
    Permission.BARGE,
    Permission.REASSIGN_TASKS,
    Permission.CHANGE_ANY_AGENT_STATUS,
    Permission.CHANGE_AGENT_SKILLS,
    Permission.USE_API,
}

ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.SUPERVISOR: frozenset(_SUPERVISOR),
    Role.AGENT: _AGENT,
}


def has_permission(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]


def require(principal: Principal | None, permission: Permission) -> Principal:
    """Return the principal if it may do ``permission``.

    Raises ``Unauthenticated`` when there is no principal (401) and ``Forbidden`` when its role
    lacks the permission (403); the message names the permission, never the role table.
    """
    if principal is None:
        raise Unauthenticated("authentication required")
    if not has_permission(principal.role, permission):
        raise Forbidden(f"not allowed: {permission.value}")
    return principal


def require_may_grant(principal: Principal, role: Role) -> None:
    """Refuse to give a user or token a role with a permission the granter does not hold.

    Stops privilege escalation through user management or token issuing.
    """
    if not ROLE_PERMISSIONS[role] <= ROLE_PERMISSIONS[principal.role]:
        raise Forbidden(f"cannot grant role {role.value}: it exceeds your own")

"""RBAC: the role table, ``require`` (401 versus 403), grants and tenant isolation."""

from __future__ import annotations

import pytest

from omnicc.app.permissions import (
    ROLE_PERMISSIONS,
    Permission,
    has_permission,
    require,
    require_may_grant,
)
from omnicc.app.principals import (
    Credential,
    CrossTenantAccess,
    Forbidden,
    Principal,
    Role,
    Unauthenticated,
    require_same_tenant,
)
from omnicc.core.errors import OmniccError


def principal(role: Role, tenant_id: str = "acme") -> Principal:
    return Principal(subject_id="u1", tenant_id=tenant_id, role=role, credential=Credential.SESSION)


def test_errors_are_domain_errors_and_distinct() -> None:
    assert issubclass(Unauthenticated, OmniccError)
    assert issubclass(Forbidden, OmniccError)
    assert not issubclass(Forbidden, Unauthenticated)
    assert not issubclass(Unauthenticated, Forbidden)
    assert issubclass(CrossTenantAccess, Forbidden)


def test_every_role_has_an_entry_and_admin_holds_everything() -> None:
    assert set(ROLE_PERMISSIONS) == set(Role)
    assert ROLE_PERMISSIONS[Role.ADMIN] == frozenset(Permission)


def test_roles_nest_agent_within_supervisor_within_admin() -> None:
    assert ROLE_PERMISSIONS[Role.AGENT] < ROLE_PERMISSIONS[Role.SUPERVISOR]
    assert ROLE_PERMISSIONS[Role.SUPERVISOR] < ROLE_PERMISSIONS[Role.ADMIN]


def test_agent_handles_contacts_and_own_status_only() -> None:
    assert ROLE_PERMISSIONS[Role.AGENT] == {
        Permission.HANDLE_CONTACTS,
        Permission.CHANGE_OWN_STATUS,
        Permission.MERGE_CUSTOMERS,
    }


@pytest.mark.parametrize(
    "permission",
    [
        Permission.VIEW_WALLBOARD,
        Permission.MONITOR_CONVERSATIONS,
        Permission.WHISPER,
        Permission.BARGE,
        Permission.REASSIGN_TASKS,
        Permission.CHANGE_ANY_AGENT_STATUS,
        Permission.CHANGE_AGENT_SKILLS,
        Permission.USE_API,
    ],
)
def test_supervisor_runs_the_floor(permission: Permission) -> None:
    assert has_permission(Role.SUPERVISOR, permission)
    assert not has_permission(Role.AGENT, permission)


@pytest.mark.parametrize(
    "permission",
    [
        Permission.CONFIGURE_TENANT,
        Permission.MANAGE_USERS,
        Permission.MANAGE_QUEUES,
        Permission.MANAGE_SKILLS,
        Permission.MANAGE_AGENTS,
        Permission.MANAGE_ROUTING_POLICIES,
        Permission.MANAGE_BUSINESS_HOURS,
        Permission.MANAGE_WRAP_UP_CODES,
        Permission.MANAGE_CANNED_RESPONSES,
        Permission.MANAGE_API_TOKENS,
        Permission.MANAGE_VOICE,
        Permission.EXPORT_CONFIG,
        Permission.IMPORT_CONFIG,
    ],
)
def test_configuration_is_for_admins_only(permission: Permission) -> None:
    assert has_permission(Role.ADMIN, permission)
    assert not has_permission(Role.SUPERVISOR, permission)
    assert not has_permission(Role.AGENT, permission)


def test_permission_values_are_unique_stable_strings() -> None:
    values = [p.value for p in Permission]
    assert len(values) == len(set(values))
    assert Permission.USE_API.value == "api:use"


def test_require_returns_the_principal_when_allowed() -> None:
    supervisor = principal(Role.SUPERVISOR)
    assert require(supervisor, Permission.WHISPER) is supervisor


def test_require_without_principal_is_unauthenticated() -> None:
    with pytest.raises(Unauthenticated):
        require(None, Permission.HANDLE_CONTACTS)


def test_require_with_a_weaker_role_is_forbidden_and_names_the_permission() -> None:
    with pytest.raises(Forbidden, match="not allowed: wallboard:view"):
        require(principal(Role.AGENT), Permission.VIEW_WALLBOARD)


@pytest.mark.parametrize("granter", list(Role))
@pytest.mark.parametrize("role", list(Role))
def test_nobody_grants_more_than_they_hold(granter: Role, role: Role) -> None:
    if ROLE_PERMISSIONS[role] <= ROLE_PERMISSIONS[granter]:
        require_may_grant(principal(granter), role)
    else:
        with pytest.raises(Forbidden, match=f"cannot grant role {role.value}"):
            require_may_grant(principal(granter), role)


def test_same_tenant_passes() -> None:
    require_same_tenant(principal(Role.ADMIN, "acme"), "acme")


def test_other_tenant_is_refused_even_for_admins() -> None:
    with pytest.raises(CrossTenantAccess):
        require_same_tenant(principal(Role.ADMIN, "acme"), "globex")


def test_principal_knows_how_it_was_authenticated() -> None:
    assert principal(Role.AGENT).is_session
    token = Principal("t1", "acme", Role.ADMIN, Credential.API_TOKEN)
    assert not token.is_session

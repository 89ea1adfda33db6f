"""Authentication on the wire: login, logout, who am I, and the dependency every endpoint uses.

A browser proves itself with the session cookie (`omnicc_session`) and, on unsafe methods, the
CSRF token in the `X-CSRF-Token` header; an integration sends `Authorization: Bearer <token>`.
`require_permission(P)` is the one dependency an endpoint declares: it answers 401 without a
valid credential and 403 when the role lacks `P` (RBAC), and returns the `Principal`, whose
tenant every repository call then uses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request, Response, WebSocket
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection

from omnicc.api.database import request_database
from omnicc.api.problems import problem, problem_type
from omnicc.app.login_throttle import LoginThrottle, LoginThrottled
from omnicc.app.logins import Logins
from omnicc.app.passwords import Passwords, WeakPassword
from omnicc.app.permissions import Permission, require
from omnicc.app.principals import (
    CrossTenantAccess,
    Forbidden,
    Principal,
    Role,
    Unauthenticated,
)
from omnicc.app.sessions import (
    MemorySessionRevocations,
    Sessions,
    requires_csrf,
    verify_origin,
)
from omnicc.app.tokens import ApiTokenRecord, authenticate_api_token, digest_api_token
from omnicc.core.clock import Clock
from omnicc.core.errors import NotFound
from omnicc.store.repositories import Agents, Tenants, Users
from omnicc.store.repositories import authenticate_api_token as find_api_token

SESSION_COOKIE = "omnicc_session"
CSRF_HEADER = "X-CSRF-Token"


@dataclass
class Security:
    """The process's security services, kept on `app.state.security`."""

    sessions: Sessions
    logins: Logins
    passwords: Passwords
    allowed_origins: frozenset[str]
    secure_cookies: bool

    @classmethod
    def create(cls, secret_key: str, clock: Clock, public_base_url: str,
               passwords: Passwords | None = None) -> Security:
        passwords = passwords or Passwords()
        return cls(
            sessions=Sessions(secret_key, clock=clock,
                              revocations=MemorySessionRevocations(clock)),
            logins=Logins(passwords, LoginThrottle(clock)),
            passwords=passwords,
            allowed_origins=frozenset({public_base_url}),
            secure_cookies=public_base_url.startswith("https://"),
        )


def _security(request: HTTPConnection) -> Security:
    security: Security = request.app.state.security
    return security



async def _bearer_principal(request: HTTPConnection, token: str) -> Principal:
    digest = digest_api_token(token)
    async with request_database(request).session() as session:
        try:
            row = await find_api_token(session, digest)
        except NotFound:
            row = None
        record = None if row is None else ApiTokenRecord(
            token_id=row.id, tenant_id=row.tenant_id, role=Role(row.role), name=row.name,
            digest=row.token_hash, created_at_s=row.created_at.timestamp(),
        )
    return authenticate_api_token(token, record, now_s=datetime.now(UTC).timestamp())


async def authenticate(request: HTTPConnection) -> Principal:
    """The principal behind a request or WebSocket handshake, or `Unauthenticated`."""
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token:
        return await _bearer_principal(request, token.strip())
    security = _security(request)
    session = await security.sessions.authenticate(request.cookies.get(SESSION_COOKIE))
    if isinstance(request, WebSocket):
        # A handshake carries cookies but no custom header: its Origin is what we can check.
        verify_origin(request.headers.get("origin"), security.allowed_origins
                      | {_own_origin(request)})
    elif isinstance(request, Request) and requires_csrf(request.method,
                                                        session.principal.credential):
        security.sessions.verify_csrf(session, request.headers.get(CSRF_HEADER))
    return session.principal


def _own_origin(request: HTTPConnection) -> str:
    scheme = "https" if request.url.scheme in ("https", "wss") else "http"
    return f"{scheme}://{request.headers.get('host', '')}"


def require_permission(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    """Dependency: the request's principal if its role holds `permission` (else 401/403)."""

    async def dependency(request: Request) -> Principal:
        return require(await authenticate(request), permission)

    dependency.__name__ = f"require_{permission.name.lower()}"
    return dependency


async def optional_principal(request: Request) -> Principal | None:
    try:
        return await authenticate(request)
    except Unauthenticated:
        return None


# --- routes ------------------------------------------------------------------------------------

router = APIRouter(prefix="/api/auth", tags=["auth"])


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1024)
    tenant: str | None = Field(default=None, max_length=64,
                               description="Tenant slug; may be left out when there is one.")


class Me(BaseModel):
    user_id: str
    username: str
    display_name: str
    role: Role
    tenant_id: str
    tenant_slug: str
    tenant_name: str
    agent_id: str | None = Field(description="The user's agent, when they take contacts.")
    csrf_token: str | None = Field(description="Send in X-CSRF-Token on unsafe requests.")


async def _me(request: Request, principal: Principal, csrf: str | None) -> Me:
    async with request_database(request).session() as session:
        user = await Users(session, principal.tenant_id).get(principal.subject_id)
        tenant = await Tenants(session).get(principal.tenant_id)
        try:
            agent_id: str | None = (await Agents(session, tenant.id).by_user(user.id)).id
        except NotFound:
            agent_id = None
    return Me(user_id=user.id, username=user.username, display_name=user.display_name or
              user.username, role=Role(user.role), tenant_id=tenant.id, tenant_slug=tenant.slug,
              tenant_name=tenant.name, agent_id=agent_id, csrf_token=csrf)


@router.post("/login", response_model=Me, summary="Log in; sets the session cookie")
async def login(body: LoginRequest, request: Request, response: Response) -> Me:
    security = _security(request)
    async with request_database(request).session() as session:
        tenants = await Tenants(session).list_all()
        if body.tenant is not None:
            tenant = next((t for t in tenants if t.slug == body.tenant), None)
        else:
            tenant = tenants[0] if len(tenants) == 1 else None
        user = None
        if tenant is not None:
            try:
                user = await Users(session, tenant.id).by_username(body.username)
            except NotFound:
                user = None
        stored = None if user is None or user.is_disabled else user.password_hash
        client_ip = request.client.host if request.client else "unknown"
        verified = await security.logins.verify_password(
            username=body.username, client_ip=client_ip, stored_hash=stored,
            password=body.password)
        assert user is not None and tenant is not None
        if verified.new_hash is not None:
            user.password_hash = verified.new_hash
        user.last_login_at = datetime.now(UTC)
        await Users(session, tenant.id).save(user)
    opened, cookie = security.sessions.open(user_id=user.id, tenant_id=tenant.id,
                                            role=Role(user.role))
    _set_cookie(response, security, cookie)
    return await _me(request, opened.principal, security.sessions.csrf_token(opened))


@router.post("/logout", status_code=204, summary="End the session")
async def logout(request: Request, response: Response) -> Response:
    security = _security(request)
    try:
        session = await security.sessions.authenticate(request.cookies.get(SESSION_COOKIE))
    except Unauthenticated:
        session = None
    if session is not None:
        security.sessions.verify_csrf(session, request.headers.get(CSRF_HEADER))
        await security.sessions.close(session)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/me", response_model=Me, summary="The logged-in user, with the CSRF token")
async def me(request: Request,
             principal: Annotated[Principal, Depends(authenticate)]) -> Me:
    if not principal.is_session:
        raise Forbidden("an API token has no user; use it on the API, not the web pages")
    sessions = _security(request).sessions
    session = await sessions.authenticate(request.cookies.get(SESSION_COOKIE))
    return await _me(request, principal, sessions.csrf_token(session))


def _set_cookie(response: Response, security: Security, cookie: str) -> None:
    response.set_cookie(
        SESSION_COOKIE, cookie, httponly=True, samesite="lax", path="/",
        secure=security.secure_cookies, max_age=int(security.sessions.max_age_s),
    )


# --- errors ------------------------------------------------------------------------------------

async def _unauthenticated(request: Request, error: Exception) -> Response:
    return problem(401, type_=problem_type("unauthenticated"), detail=str(error),
                   instance=request.url.path, headers={"WWW-Authenticate": "Bearer"})


async def _forbidden(request: Request, error: Exception) -> Response:
    if isinstance(error, CrossTenantAccess):
        return problem(404, detail="not found", instance=request.url.path)
    return problem(403, type_=problem_type("forbidden"), detail=str(error),
                   instance=request.url.path)


async def _throttled(request: Request, error: Exception) -> Response:
    assert isinstance(error, LoginThrottled)
    return problem(429, type_=problem_type("login-throttled"), detail=str(error),
                   instance=request.url.path,
                   headers={"Retry-After": str(error.retry_after_s)})


async def _weak_password(request: Request, error: Exception) -> Response:
    assert isinstance(error, WeakPassword)
    return problem(422, type_=problem_type("weak-password"), title="Weak password",
                   detail=str(error), instance=request.url.path, reasons=error.reasons)


def install_auth(app: FastAPI) -> None:
    app.add_exception_handler(WeakPassword, _weak_password)
    app.add_exception_handler(Unauthenticated, _unauthenticated)
    app.add_exception_handler(Forbidden, _forbidden)
    app.add_exception_handler(LoginThrottled, _throttled)
    app.include_router(router)

"""Administration of users (admin, supervisor, agent) and API tokens.

Nobody can grant a role above their own (`require_may_grant`), lock themselves out, or leave
the tenant without an enabled admin. A token's secret is returned once, at creation; the store
keeps only its digest.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.api.admin.changes import changing, ensure_free, reading
from omnicc.api.admin.routing import CHANGE_ERRORS, NOT_FOUND
from omnicc.api.auth import require_permission
from omnicc.app.configuration import Name, RoleName, Section
from omnicc.app.passwords import check_password_policy
from omnicc.app.permissions import Permission, require_may_grant
from omnicc.app.principals import Principal, Role
from omnicc.app.tokens import issue_api_token
from omnicc.core.errors import Conflict, InvalidConfiguration
from omnicc.store.repositories import ApiTokens, Users
from omnicc.store.tables import ApiToken, User

router = APIRouter(prefix="/api/admin", tags=["administration"])

UserAdmin = Annotated[Principal, Depends(require_permission(Permission.MANAGE_USERS))]
TokenAdmin = Annotated[Principal, Depends(require_permission(Permission.MANAGE_API_TOKENS))]
WEAK_PASSWORD: dict[int | str, dict[str, object]] = {
    **CHANGE_ERRORS, 422: {"description": "Invalid input or a password the policy refuses."}}


# --- users -------------------------------------------------------------------------------------

class UserIn(Section):
    username: Name
    email: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    display_name: str = Field(default="", max_length=200)
    role: RoleName
    disabled: bool = False
    password: str | None = Field(default=None, min_length=1, max_length=1024, description=(
        "Sets the password (argon2id); left out on a change, the password stays. "
        "A user without a password cannot log in."))


class UserOut(Section):
    id: str
    username: str
    email: str | None
    display_name: str
    role: RoleName
    disabled: bool
    has_password: bool
    created_at: datetime
    last_login_at: datetime | None


def _user_out(row: User) -> UserOut:
    return UserOut(id=row.id, username=row.username, email=row.email,
                   display_name=row.display_name, role=row.role,  # type: ignore[arg-type]
                   disabled=row.is_disabled, has_password=row.password_hash is not None,
                   created_at=row.created_at, last_login_at=row.last_login_at)


async def _enabled_admins(session: AsyncSession, tenant_id: str) -> int:
    statement = select(func.count()).select_from(User).where(
        User.tenant_id == tenant_id, User.role == Role.ADMIN.value, User.is_disabled.is_(False))
    count: int = (await session.execute(statement)).scalar_one()
    return count


async def _fill_user(request: Request, session: AsyncSession, principal: Principal, row: User,
                     body: UserIn) -> None:
    require_may_grant(principal, Role(body.role))
    users = Users(session, principal.tenant_id)
    await ensure_free(users, User.username, body.username, "user", except_id=row.id)
    email = body.email.lower() if body.email else None
    if email is not None:
        taken = await users.first(users.select().where(User.email == email))
        if taken is not None and taken.id != row.id:
            raise Conflict(f"another user has the email {email}")
    if row.id == principal.subject_id and (body.disabled or body.role != row.role):
        raise Conflict("you cannot disable yourself or change your own role")
    row.username, row.email, row.display_name = body.username, email, body.display_name
    row.role, row.is_disabled = body.role, body.disabled
    if body.password is not None:
        row.password_hash = request.app.state.security.passwords.hash(body.password)


@router.get("/users", response_model=list[UserOut], summary="List users (never passwords)")
async def list_users(request: Request, principal: UserAdmin) -> list[UserOut]:
    async with reading(request) as session:
        users = Users(session, principal.tenant_id)
        return [_user_out(r) for r in await users.all(users.select().order_by(User.username))]


@router.get("/users/{user_id}", response_model=UserOut, responses=NOT_FOUND,
            summary="Get a user")
async def get_user(user_id: str, request: Request, principal: UserAdmin) -> UserOut:
    async with reading(request) as session:
        return _user_out(await Users(session, principal.tenant_id).get(user_id))


@router.post("/users", status_code=201, response_model=UserOut, responses=WEAK_PASSWORD,
             summary="Create a user (with a password, or without one to set later)")
async def create_user(body: UserIn, request: Request,
                      principal: UserAdmin) -> UserOut:
    if body.password is not None:
        check_password_policy(body.password, username=body.username)  # 422 when weak
    async with changing(request, principal, affects_routing=False) as session:
        row = User()
        await _fill_user(request, session, principal, row, body)
        return _user_out(await Users(session, principal.tenant_id).add(row))


@router.put("/users/{user_id}", response_model=UserOut, responses=WEAK_PASSWORD,
            summary="Change a user; a password given replaces the old one")
async def update_user(user_id: str, body: UserIn, request: Request,
                      principal: UserAdmin) -> UserOut:
    if body.password is not None:
        check_password_policy(body.password, username=body.username)  # 422 when weak
    async with changing(request, principal, affects_routing=False) as session:
        users = Users(session, principal.tenant_id)
        row = await users.get(user_id)
        require_may_grant(principal, Role(row.role))
        await _fill_user(request, session, principal, row, body)
        saved = await users.save(row)
        if not await _enabled_admins(session, principal.tenant_id):
            raise Conflict("the tenant needs at least one enabled admin")
        return _user_out(saved)


@router.delete("/users/{user_id}", status_code=204, responses=CHANGE_ERRORS,
               summary="Delete a user (their agent stays, without a login)")
async def delete_user(user_id: str, request: Request, principal: UserAdmin) -> Response:
    async with changing(request, principal, affects_routing=False) as session:
        users = Users(session, principal.tenant_id)
        row = await users.get(user_id)
        if row.id == principal.subject_id:
            raise Conflict("you cannot delete yourself")
        require_may_grant(principal, Role(row.role))
        await users.delete(row.id)
        if not await _enabled_admins(session, principal.tenant_id):
            raise Conflict("the tenant needs at least one enabled admin")
    return Response(status_code=204)


# --- API tokens --------------------------------------------------------------------------------

class TokenIn(Section):
    name: Name
    role: RoleName = Field(default="supervisor", description="Only roles that may use the API.")
    expires_at: datetime | None = Field(default=None, description="UTC; none: until revoked.")


class TokenOut(Section):
    id: str
    name: str
    role: RoleName
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class IssuedTokenOut(TokenOut):
    token: str = Field(description="The secret: shown this once, never again.")


def _token_out(row: ApiToken) -> TokenOut:
    return TokenOut(id=row.id, name=row.name, role=row.role,  # type: ignore[arg-type]
                    created_at=row.created_at, expires_at=row.expires_at,
                    last_used_at=row.last_used_at, revoked_at=row.revoked_at)


@router.get("/api-tokens", response_model=list[TokenOut], summary="List API tokens (no secrets)")
async def list_tokens(request: Request, principal: TokenAdmin) -> list[TokenOut]:
    async with reading(request) as session:
        tokens = ApiTokens(session, principal.tenant_id)
        return [_token_out(r) for r in await tokens.all(tokens.select()
                                                        .order_by(ApiToken.name))]


@router.post("/api-tokens", status_code=201, response_model=IssuedTokenOut,
             responses=CHANGE_ERRORS, summary="Issue an API token; its secret is shown once")
async def create_token(body: TokenIn, request: Request, principal: TokenAdmin) -> IssuedTokenOut:
    role = Role(body.role)
    require_may_grant(principal, role)
    now = datetime.now(UTC)
    expires_at = None if body.expires_at is None else body.expires_at.astimezone(UTC)
    try:
        issued = issue_api_token(
            tenant_id=principal.tenant_id, role=role, name=body.name, now_s=now.timestamp(),
            expires_at_s=None if expires_at is None else expires_at.timestamp())
    except ValueError as error:
        raise InvalidConfiguration(str(error)) from None
    async with changing(request, principal, affects_routing=False) as session:
        tokens = ApiTokens(session, principal.tenant_id)
        await ensure_free(tokens, ApiToken.name, body.name, "API token")
        row = await tokens.add(ApiToken(
            id=issued.record.token_id, name=body.name, role=role.value,
            token_hash=issued.record.digest, created_at=now, expires_at=expires_at,
            user_id=principal.subject_id if principal.is_session else None))
        return IssuedTokenOut(**_token_out(row).model_dump(), token=issued.secret)


@router.delete("/api-tokens/{token_id}", status_code=204, responses=NOT_FOUND,
               summary="Revoke an API token (it stops working at once)")
async def revoke_token(token_id: str, request: Request, principal: TokenAdmin) -> Response:
    async with changing(request, principal, affects_routing=False) as session:
        await ApiTokens(session, principal.tenant_id).revoke(token_id)
    return Response(status_code=204)

"""Tenants, users and API tokens."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from omnicc.core.errors import NotFound
from omnicc.store.repositories.base import TenantRepository
from omnicc.store.tables import ApiToken, Tenant, User, utc_now


class Tenants:
    """All tenants: the one repository not scoped to a tenant (it is how one is found)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(self, slug: str, name: str, timezone: str = "UTC") -> Tenant:
        tenant = Tenant(slug=slug, name=name, timezone=timezone)
        self.session.add(tenant)
        await self.session.flush()
        return tenant

    async def get(self, tenant_id: str) -> Tenant:
        tenant = await self.session.get(Tenant, tenant_id)
        if tenant is None:
            raise NotFound(f"tenant {tenant_id} not found")
        return tenant

    async def by_slug(self, slug: str) -> Tenant:
        statement = select(Tenant).where(Tenant.slug == slug)
        tenant = (await self.session.execute(statement)).scalar_one_or_none()
        if tenant is None:
            raise NotFound(f"tenant {slug} not found")
        return tenant

    async def list_all(self) -> list[Tenant]:
        return list((await self.session.execute(select(Tenant).order_by(Tenant.slug))).scalars())


class Users(TenantRepository[User]):
    table = User
    noun = "user"

    async def add(self, row: User) -> User:
        if row.email is not None:
            row.email = row.email.lower()
        return await super().add(row)

    async def by_username(self, username: str) -> User:
        user = await self.first(self.select().where(User.username == username))
        if user is None:
            raise NotFound(f"user {username} not found")
        return user

    async def by_email(self, email: str) -> User:
        user = await self.first(self.select().where(User.email == email.lower()))
        if user is None:
            raise NotFound(f"user {email} not found")
        return user


TOKEN_USE_RESOLUTION = timedelta(minutes=1)
"""`last_used_at` is written at most this often, so using a token is not a write per request."""


def _use(token: ApiToken | None, now: datetime) -> ApiToken:
    if token is None or token.revoked_at is not None:
        raise NotFound("API token not found")
    if token.expires_at is not None and token.expires_at <= now:
        raise NotFound("API token expired")
    if token.last_used_at is None or now - token.last_used_at >= TOKEN_USE_RESOLUTION:
        token.last_used_at = now
    return token


class ApiTokens(TenantRepository[ApiToken]):
    table = ApiToken
    noun = "API token"

    async def by_hash(self, token_hash: str, now: datetime | None = None) -> ApiToken:
        """The live (not revoked, not expired) token with this hash; records its use."""
        token = await self.first(self.select().where(ApiToken.token_hash == token_hash))
        return _use(token, now or utc_now())

    async def revoke(self, token_id: str, now: datetime | None = None) -> None:
        (await self.get(token_id)).revoked_at = now or utc_now()


async def authenticate_api_token(
    session: AsyncSession, token_hash: str, now: datetime | None = None
) -> ApiToken:
    """The live token with this hash, whatever its tenant: how a request's tenant is found.

    The caller then works through repositories of `token.tenant_id` only.
    """
    statement = select(ApiToken).where(ApiToken.token_hash == token_hash)
    return _use((await session.execute(statement)).scalar_one_or_none(), now or utc_now())


async def count_users(session: AsyncSession, tenant_id: str) -> int:
    statement = select(func.count()).select_from(User).where(User.tenant_id == tenant_id)
    count: int = (await session.execute(statement)).scalar_one()
    return count

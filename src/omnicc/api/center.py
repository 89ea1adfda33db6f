"""The API's view of the running contact center: the tenant runtime a request works on."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from omnicc.app.principals import Principal
from omnicc.app.runtime import ContactCenter, TenantRuntime


async def tenant_runtime(connection: HTTPConnection, principal: Principal) -> TenantRuntime:
    """The runtime of the principal's tenant (started on first use)."""
    center: ContactCenter = connection.app.state.center
    return await center.tenant(principal.tenant_id)

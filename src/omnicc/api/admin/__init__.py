"""The administration API (`/api/admin/...`), the desktop's read-only directory
(`/api/directory/...`) and the admin page (`/admin`), as one router to include."""

from fastapi import APIRouter

from omnicc.api.admin import (
    accounts,
    configuration,
    content,
    crm,
    directory,
    page,
    routing,
    voice,
)

router = APIRouter()
for part in (routing, content, accounts, configuration, directory, page, voice, crm):
    router.include_router(part.router)

__all__ = ["router"]

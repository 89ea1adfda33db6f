"""The admin page: a thin shell like the desk and the wallboard (shared top bar, login
redirect); `static/admin.js` does everything through `/api/admin`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from omnicc.api.pages import page_for
from omnicc.app.permissions import Permission

router = APIRouter(include_in_schema=False)


@router.get("/admin", response_class=HTMLResponse)
async def admin_page(request: Request) -> Response:
    return await page_for(request, "admin.html", Permission.CONFIGURE_TENANT)

"""The admin page: one HTML page and its ES module, served without a build step."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

from omnicc.core.errors import NotFound

WEB: Final = Path(__file__).resolve().parents[2] / "web"
ASSETS: Final = {"admin.js": "text/javascript", "admin.css": "text/css"}

router = APIRouter(include_in_schema=False)


@router.get("/admin", response_class=HTMLResponse)
async def admin_page() -> HTMLResponse:
    # The page logs in by itself (it has its own form), so it is served to anyone; every
    # action it takes goes through the API's permission checks.
    html = (WEB / "templates" / "admin.html").read_text(encoding="utf-8")
    return HTMLResponse(html, headers={"Cache-Control": "no-cache"})


@router.get("/admin/assets/{name}")
async def admin_asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise NotFound(f"no asset {name}")
    return FileResponse(WEB / "static" / name, media_type=ASSETS[name],
                        headers={"Cache-Control": "no-cache"})

"""The HTML pages: login, agent desktop, supervisor wallboard, admin, and the demo customer
page; plus `/static` (CSS, ES modules, the chat widget).

Pages are thin shells: each loads its ES module, which talks to the REST and WebSocket API
like any integration would. A page that needs a login sends the browser to `/login?next=...`
when there is no valid session.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from omnicc import __version__
from omnicc.api.auth import optional_principal
from omnicc.app.permissions import Permission, has_permission
from omnicc.web import STATIC_DIR, TEMPLATES_DIR

templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
router = APIRouter(include_in_schema=False)

# Which permission opens which page; the first one the user may open is their home.
PAGES: tuple[tuple[str, str, Permission], ...] = (
    ("/desk", "Agent desktop", Permission.HANDLE_CONTACTS),
    ("/wallboard", "Wallboard", Permission.VIEW_WALLBOARD),
    ("/reports", "Reports", Permission.VIEW_WALLBOARD),
    ("/wfm", "Workforce", Permission.VIEW_WALLBOARD),
    ("/admin", "Administration", Permission.CONFIGURE_TENANT),
)


def render(request: Request, template: str, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, template, {"version": __version__, **context})


async def page_for(request: Request, template: str, permission: Permission,
                   **context: Any) -> Response:
    """The page, or the login page's address when the visitor may not see it."""
    principal = await optional_principal(request)
    if principal is None or not has_permission(principal.role, permission):
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
    links = [(path, title) for path, title, needed in PAGES
             if has_permission(principal.role, needed)]
    return render(request, template, links=links, role=principal.role.value, **context)


@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> Response:
    principal = await optional_principal(request)
    if principal is None:
        return RedirectResponse("/login", status_code=303)
    for path, _, needed in PAGES:
        if has_permission(principal.role, needed):
            return RedirectResponse(path, status_code=303)
    return RedirectResponse("/login", status_code=303)


@router.get("/wallboard", response_class=HTMLResponse)
async def wallboard_page(request: Request) -> Response:
    return await page_for(request, "wallboard.html", Permission.VIEW_WALLBOARD)


@router.get("/reports", response_class=HTMLResponse)
async def reports_page(request: Request) -> Response:
    return await page_for(request, "reports.html", Permission.VIEW_WALLBOARD)


@router.get("/wfm", response_class=HTMLResponse)
async def wfm_page(request: Request) -> Response:
    return await page_for(request, "wfm.html", Permission.VIEW_WALLBOARD)


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str = "/") -> Response:
    safe_next = next if next.startswith("/") and not next.startswith("//") else "/"
    return render(request, "login.html", next=safe_next)


@router.get("/demo", response_class=HTMLResponse)
async def demo_page(request: Request, tenant: str = "") -> Response:
    """A made-up company's customer-service page that embeds the chat widget (public)."""
    from omnicc.store.repositories import Tenants  # only this page looks tenants up

    async with request.app.state.database.session() as session:
        slugs = [row.slug for row in await Tenants(session).list_all()]
    chosen = tenant if tenant in slugs else (slugs[0] if slugs else "")
    return render(request, "demo.html", tenant=chosen)


@router.get("/desk", response_class=HTMLResponse)
async def desk_page(request: Request) -> Response:
    return await page_for(request, "desk.html", Permission.HANDLE_CONTACTS)


def install_pages(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")

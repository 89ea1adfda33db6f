"""RBAC on every endpoint: without credentials, every route answers 401, except the few that
are public on purpose (listed here, so adding one is a visible decision)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from omnicc.store.database import migrate, sqlite_url
from tests.integration.api.live import LiveServer, seed, start_live_server

PUBLIC = {
    ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"),
    ("POST", "/api/auth/login"), ("POST", "/api/auth/logout"),
    ("GET", "/api/chat/config"),  # the widget, before any chat
    ("POST", "/api/chat/attachments"),  # the widget: proves itself with the visitor token
    ("GET", "/api/chat/attachments/rules"),  # the widget: size limit and file kinds
    ("POST", "/api/chat/callback"),  # the widget's Call me back: rate limited, honeypot
    ("GET", "/api/chat/callback/slots"),  # the widget: when a queue can call back
    ("POST", "/api/forms/contact"),  # the website's contact form: rate limited, honeypot
    ("GET", "/api/attachments/{attachment_id}"),  # visitor token or staff session
    # Providers' webhooks: the provider's signature (or Meta's verify token) is the credential.
    ("GET", "/api/messaging/{account_id}/webhook"), ("POST", "/api/messaging/{account_id}/webhook"),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder: Path = tmp_path_factory.mktemp("guard")
    url = sqlite_url(folder / "omnicc.db")
    migrate(url)
    asyncio.run(seed(url))
    running = start_live_server(url, folder / "data")
    yield running
    running.stop()


def test_every_route_needs_credentials(server: LiveServer) -> None:
    schema = httpx.get(f"{server.url}/openapi.json").json()
    checked = 0
    for path, methods in schema["paths"].items():
        for method in methods:
            if (method.upper(), path) in PUBLIC:
                continue
            concrete = re.sub(r"\{[^}]+\}", "x", path)
            response = httpx.request(method.upper(), f"{server.url}{concrete}",
                                     params={"tenant": "acme"}, json={})
            assert response.status_code == 401, (
                f"{method.upper()} {path} answered {response.status_code} without credentials")
            checked += 1
    assert checked >= 20

"""An application on a fake database, driven in-process through httpx's ASGI transport."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from omnicc.api.app import create_app
from omnicc.config import Settings, load_settings
from omnicc.store.database import Database, sqlite_url


class FakeDatabase(Database):
    """The store's Database on the test's SQLite file that records calls and can be told to
    fail its ping."""

    def __init__(self, url: str, backing_url: str) -> None:
        super().__init__(backing_url)
        self.url = url
        self.is_reachable = True
        self.migrated = False
        self.disposed = False

    async def ping(self) -> None:
        if not self.is_reachable:
            raise ConnectionRefusedError("database down")
        await super().ping()

    async def ensure_schema(self, revision: str = "head") -> None:
        await super().ensure_schema(revision)
        self.migrated = True

    async def dispose(self) -> None:
        await super().dispose()
        self.disposed = True


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in ("OMNICC_CONFIG", "OMNICC_DATABASE_URL", "OMNICC_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    return load_settings(data_dir=tmp_path / "data", max_request_bytes=1000,
                         max_upload_bytes=5000)


@pytest.fixture
def databases() -> list[FakeDatabase]:
    return []


@pytest.fixture
def make_app(
    settings: Settings, databases: list[FakeDatabase]
) -> Callable[..., FastAPI]:
    def make(**overrides: Any) -> FastAPI:
        def factory(url: str) -> Any:
            databases.append(FakeDatabase(url, sqlite_url(settings.data_dir / "fake.sqlite3")))
            return databases[-1]

        chosen = settings.model_copy(update=overrides) if overrides else settings
        return create_app(chosen, database_factory=factory)

    return make


@pytest.fixture
def app(make_app: Callable[..., FastAPI]) -> FastAPI:
    return make_app()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    # ASGITransport does not run the lifespan; the application's own context does.
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://omnicc.test") as c:
            yield c

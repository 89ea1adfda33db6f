"""Probes, metrics and the database's lifecycle."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import Depends, FastAPI

from omnicc.api.database import request_database
from omnicc.api.problems import MEDIA_TYPE
from omnicc.config import Settings
from omnicc.store.database import migrate, sqlite_url
from tests.unit.api.conftest import FakeDatabase

pytestmark = pytest.mark.anyio


async def test_healthz_answers_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_pings_the_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "routing": "ok"}}


async def test_readyz_is_503_problem_when_database_is_down(
    client: httpx.AsyncClient, databases: list[FakeDatabase]
) -> None:
    databases[0].is_reachable = False
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == MEDIA_TYPE
    body = response.json()
    assert body["type"] == "urn:omnicc:problem:not-ready"
    assert body["checks"] == {"database": "failing"}
    assert "ConnectionRefusedError" in body["detail"]
    assert (await client.get("/healthz")).status_code == 200


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    await client.get("/no/such/page/1")
    await client.get("/no/such/page/2")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'omnicc_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
    assert 'omnicc_http_requests_total{method="GET",route="unmatched",status="404"} 2.0' in text
    assert 'omnicc_http_request_duration_seconds_count{method="GET",route="/healthz"}' in text
    assert "/no/such/page" not in text  # raw paths would make unbounded series


async def test_metrics_use_path_templates(app: FastAPI, client: httpx.AsyncClient) -> None:
    @app.get("/queues/{queue_id}")
    async def queue(queue_id: str) -> dict[str, str]:
        return {"id": queue_id}

    await client.get("/queues/sales")
    await client.get("/queues/support")
    text = (await client.get("/metrics")).text
    assert 'route="/queues/{queue_id}",status="200"} 2.0' in text


async def test_embedded_database_is_migrated_and_closed(
    app: FastAPI, databases: list[FakeDatabase]
) -> None:
    async with app.router.lifespan_context(app):
        assert len(databases) == 1
        assert databases[0].migrated
        assert app.state.database is databases[0]
    assert databases[0].disposed


async def test_external_database_is_not_migrated_at_start(
    make_app: object, databases: list[FakeDatabase], settings: Settings
) -> None:
    assert callable(make_app)
    app = make_app(database_url="postgresql+asyncpg://omnicc@db.example/omnicc")
    # Stands for the external database, migrated by `omnicc migrate` beforehand.
    await asyncio.to_thread(migrate, sqlite_url(settings.data_dir / "fake.sqlite3"))
    async with app.router.lifespan_context(app):
        assert databases[0].url == "postgresql+asyncpg://omnicc@db.example/omnicc"
        assert not databases[0].migrated
    assert databases[0].disposed


async def test_openapi_documents_the_probes(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert {"/healthz", "/readyz", "/metrics"} <= set(paths)


async def test_handlers_get_the_open_database(app: FastAPI, client: httpx.AsyncClient) -> None:
    @app.get("/backend")
    async def backend(database: object = Depends(request_database)) -> dict[str, str]:
        return {"backend": str(getattr(database, "backend", ""))}

    assert (await client.get("/backend")).json() == {"backend": "sqlite"}

"""Every error answers RFC 9457 problem details with the request's id."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from omnicc.api.problems import MEDIA_TYPE
from omnicc.core.errors import Conflict, ExpressionError, InvalidConfiguration, NotFound

pytestmark = pytest.mark.anyio


class NewQueue(BaseModel):
    id: str
    priority: int


@pytest.fixture
def app(app: FastAPI) -> FastAPI:
    @app.get("/agents/{agent_id}")
    async def missing_agent(agent_id: str) -> None:
        raise NotFound(f"agent {agent_id} does not exist")

    @app.post("/offers/{offer_id}/accept")
    async def stale_offer(offer_id: str) -> None:
        raise Conflict(f"offer {offer_id} was rescinded")

    @app.post("/queues")
    async def create_queue(queue: NewQueue) -> NewQueue:
        return queue

    @app.post("/queues/{queue_id}/expression")
    async def bad_expression(queue_id: str) -> None:
        raise ExpressionError("expected a value", "skills.finnish >= ", 18)

    @app.post("/queues/{queue_id}/capacity")
    async def bad_capacity(queue_id: str) -> None:
        raise InvalidConfiguration("capacity must be >= 1")

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("password=hunter2 in a stack frame")

    return app


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"] == MEDIA_TYPE
    body = response.json()
    assert body["status"] == status
    assert isinstance(body["type"], str) and body["type"]
    assert isinstance(body["title"], str) and body["title"]
    assert body["request_id"] == response.headers["x-request-id"]
    return dict(body)


async def test_domain_not_found_is_404(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/agents/aino"), 404)
    assert body["type"] == "urn:omnicc:problem:not-found"
    assert body["detail"] == "agent aino does not exist"
    assert body["instance"] == "/agents/aino"


async def test_unknown_route_is_404_about_blank(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/no/such/page"), 404)
    assert body["type"] == "about:blank"
    assert body["title"] == "Not Found"


async def test_wrong_method_is_405(client: httpx.AsyncClient) -> None:
    assert_problem(await client.delete("/healthz"), 405)


async def test_conflict_is_409(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.post("/offers/o1/accept"), 409)
    assert body["type"] == "urn:omnicc:problem:conflict"
    assert "rescinded" in str(body["detail"])


async def test_request_validation_is_422_with_field_paths(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.post("/queues", json={"priority": "high"}), 422)
    assert body["type"] == "urn:omnicc:problem:validation-error"
    errors = body["errors"]
    assert isinstance(errors, list)
    fields = {error["field"]: error for error in errors}
    assert set(fields) == {"body.id", "body.priority"}
    assert fields["body.id"]["type"] == "missing"


async def test_malformed_json_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/queues", content=b"{not json",
                                 headers={"content-type": "application/json"})
    assert_problem(response, 422)


async def test_expression_error_is_422_with_position(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.post("/queues/sales/expression"), 422)
    assert body["type"] == "urn:omnicc:problem:invalid-expression"
    assert body["position"] == 18
    assert body["expression"] == "skills.finnish >= "
    assert "position 18" in str(body["detail"])


async def test_invalid_configuration_is_422(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.post("/queues/sales/capacity"), 422)
    assert body["type"] == "urn:omnicc:problem:invalid-configuration"
    assert body["detail"] == "capacity must be >= 1"


async def test_unexpected_error_is_500_without_leaking(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await client.get("/crash", headers={"X-Request-ID": "req-500"})
    body = assert_problem(response, 500)
    assert body["correlation_id"] == "req-500"
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    logged = [r for r in caplog.records if r.name == "omnicc.api" and r.exc_info]
    assert logged, "the traceback belongs in the log"


async def test_declared_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post("/queues", content=b"x" * 1001,
                                 headers={"content-type": "application/json"})
    body = assert_problem(response, 413)
    assert body["type"] == "urn:omnicc:problem:body-too-large"
    assert body["limit_bytes"] == 1000


async def test_streamed_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b'{"id": "q", "priority": 1}'.ljust(100)

    response = await client.post("/queues", content=chunks(),
                                 headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    assert_problem(response, 413)


async def test_upload_has_its_own_larger_limit(client: httpx.AsyncClient) -> None:
    files = {"file": ("a.txt", b"x" * 3000, "text/plain")}
    small = await client.post("/queues", files=files)
    assert small.status_code != 413  # over the request limit, under the upload limit
    files = {"file": ("a.txt", b"x" * 6000, "text/plain")}
    assert_problem(await client.post("/queues", files=files), 413)


async def test_body_within_limit_passes(client: httpx.AsyncClient) -> None:
    response = await client.post("/queues", json={"id": "sales", "priority": 2})
    assert response.status_code == 200
    assert response.json() == {"id": "sales", "priority": 2}

"""The request id: generated or kept, returned in a header, written on every log line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest

from omnicc.observability import JsonFormatter

pytestmark = pytest.mark.anyio


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("omnicc")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


async def test_request_id_is_generated_when_absent(client: httpx.AsyncClient) -> None:
    first = (await client.get("/healthz")).headers["x-request-id"]
    second = (await client.get("/healthz")).headers["x-request-id"]
    assert len(first) == 32 and first != second


async def test_client_request_id_is_kept(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "lb-7f3a.42"})
    assert response.headers["x-request-id"] == "lb-7f3a.42"


@pytest.mark.parametrize("unsafe", ["has space", "a" * 129, "line\tbreak", "ä"])
async def test_unsafe_client_request_id_is_replaced(
    client: httpx.AsyncClient, unsafe: str
) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": unsafe.encode("utf-8")})
    assert response.headers["x-request-id"] != unsafe
    assert len(response.headers["x-request-id"]) == 32


async def test_problem_and_access_log_carry_the_request_id(
    client: httpx.AsyncClient, log_lines: io.StringIO
) -> None:
    response = await client.get("/missing", headers={"X-Request-ID": "trace-1"})
    assert response.json()["request_id"] == "trace-1"
    events = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    access = [e for e in events if e["logger"] == "omnicc.access"]
    assert access == [{
        "time": access[0]["time"], "level": "info", "logger": "omnicc.access",
        "message": "GET /missing 404", "request_id": "trace-1", "method": "GET",
        "path": "/missing", "status": 404, "duration_ms": access[0]["duration_ms"],
    }]

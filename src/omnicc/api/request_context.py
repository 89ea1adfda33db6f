"""What every HTTP request gets: an id, an access log line, metrics, and a 500 problem on a bug.

Pure ASGI middleware (no `BaseHTTPMiddleware`), so streaming responses and WebSockets pass
through untouched; WebSocket connections only get the request id.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Final

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from omnicc.api.problems import internal_error
from omnicc.observability import HttpMetrics, request_id

HEADER: Final = "X-Request-ID"
_HEADER_KEY: Final = HEADER.lower().encode("latin-1")
# A client's id is kept when it is short and plain, so it cannot forge log lines or headers.
_ACCEPTED_ID: Final = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
UNMATCHED_ROUTE: Final = "unmatched"

access_log = logging.getLogger("omnicc.access")
error_log = logging.getLogger("omnicc.api")


def incoming_request_id(scope: Scope) -> str:
    """The client's `X-Request-ID` when acceptable, else a new random id."""
    for key, value in scope.get("headers", ()):
        if key == _HEADER_KEY:
            candidate: str = value.decode("latin-1")
            if _ACCEPTED_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


def route_template(scope: Scope) -> str:
    """`/queues/{queue_id}` rather than `/queues/sales`: one metrics series per route."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if isinstance(route, BaseRoute) and isinstance(path, str):
        return str(scope.get("root_path", "")) + path
    return UNMATCHED_ROUTE


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = incoming_request_id(scope)
        token = request_id.set(rid)
        try:
            if scope["type"] == "http":
                await self._serve_http(scope, receive, send, rid)
            else:
                await self.app(scope, receive, send)
        finally:
            request_id.reset(token)

    async def _serve_http(self, scope: Scope, receive: Receive, send: Send, rid: str) -> None:
        started_at = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", ()) if k != _HEADER_KEY]
                headers.append((_HEADER_KEY, rid.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        self.metrics.in_progress.inc()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            error_log.exception("unhandled error", extra={"path": scope.get("path")})
            if response_started:
                raise  # too late for a problem; the server closes the connection
            await internal_error(scope.get("path"))(scope, receive, send_with_id)
        finally:
            self.metrics.in_progress.dec()
            duration_s = time.perf_counter() - started_at
            method = scope.get("method", "")
            self.metrics.observe(method, route_template(scope), status, duration_s)
            access_log.info(
                "%s %s %d", method, scope.get("path", ""), status,
                extra={"method": method, "path": scope.get("path", ""), "status": status,
                       "duration_ms": round(duration_s * 1000, 3)},
            )

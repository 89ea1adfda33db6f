"""Refuse request bodies over the configured size with a 413 problem, before they fill memory.

A declared `Content-Length` over the limit is refused before anything is read; a chunked body
is counted as it arrives and refused when it crosses the limit. Uploads (`multipart/form-data`)
have their own, larger limit.
"""

from __future__ import annotations

from typing import Final

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from omnicc.api.problems import ProblemResponse, problem, problem_type

MULTIPART: Final = b"multipart/form-data"


def _detail(limit_bytes: int) -> str:
    return f"The request body exceeds the limit of {limit_bytes} bytes."


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a body crosses the limit while the application reads it."""

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(413, detail=_detail(limit_bytes))
        self.limit_bytes = limit_bytes


def too_large(limit_bytes: int, instance: str | None) -> ProblemResponse:
    return problem(413, type_=problem_type("body-too-large"), detail=_detail(limit_bytes),
                   instance=instance, limit_bytes=limit_bytes)


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_request_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_request_bytes = max_request_bytes
        self.max_upload_bytes = max_upload_bytes

    def limit_bytes(self, scope: Scope) -> int:
        for key, value in scope.get("headers", ()):
            if key == b"content-type" and value.lower().startswith(MULTIPART):
                return self.max_upload_bytes
        return self.max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_bytes(scope)
        if _declared_length(scope) > limit:
            await too_large(limit, scope.get("path"))(scope, receive, send)
            return
        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            # Reached only when the application did not turn it into a problem itself.
            if response_started:
                raise
            await too_large(limit, scope.get("path"))(scope, receive, send)


def _declared_length(scope: Scope) -> int:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0  # the server refuses a malformed length before we see it
    return 0

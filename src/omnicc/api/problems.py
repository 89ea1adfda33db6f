"""RFC 9457 problem details: every error the API answers is `application/problem+json`.

Domain exceptions from `omnicc.core.errors` keep their meaning on the wire: NotFound is 404,
Conflict 409, InvalidConfiguration and ExpressionError 422 (the latter with the position).
Problem types are URNs: stable identifiers clients can switch on, not pages to fetch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from omnicc.core.errors import Conflict, ExpressionError, InvalidConfiguration, NotFound
from omnicc.observability import request_id

MEDIA_TYPE: Final = "application/problem+json"
TYPE_PREFIX: Final = "urn:omnicc:problem:"
BLANK: Final = "about:blank"


def problem_type(slug: str) -> str:
    return TYPE_PREFIX + slug


class ProblemResponse(JSONResponse):
    media_type = MEDIA_TYPE


def problem(
    status: int,
    *,
    type_: str = BLANK,
    title: str | None = None,
    detail: str | None = None,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> ProblemResponse:
    """A problem details response; `title` defaults to the status phrase, as for about:blank."""
    body: dict[str, Any] = {
        "type": type_,
        "title": title if title is not None else _phrase(status),
        "status": status,
    }
    if detail is not None:
        body["detail"] = detail
    if instance is not None:
        body["instance"] = instance
    body["request_id"] = request_id.get()
    body.update(extensions)
    return ProblemResponse(body, status_code=status, headers=dict(headers or {}))


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def internal_error(instance: str | None = None) -> ProblemResponse:
    """The 500 answer: no exception text, only the id that finds the traceback in the logs."""
    correlation_id = request_id.get()
    return problem(
        500,
        type_=problem_type("internal-error"),
        detail="The server failed to handle this request; "
        "quote the correlation id when reporting it.",
        instance=instance,
        correlation_id=correlation_id,
    )


def field_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Pydantic errors as `{"field": "body.agents.0.id", "message": ..., "type": ...}`."""
    return [
        {
            "field": ".".join(str(part) for part in error.get("loc", ())),
            "message": error.get("msg", ""),
            "type": error.get("type", ""),
        }
        for error in errors
    ]


async def _not_found(request: Request, error: Exception) -> ProblemResponse:
    return problem(404, type_=problem_type("not-found"), detail=str(error),
                   instance=request.url.path)


async def _conflict(request: Request, error: Exception) -> ProblemResponse:
    return problem(409, type_=problem_type("conflict"), detail=str(error),
                   instance=request.url.path)


async def _invalid_configuration(request: Request, error: Exception) -> ProblemResponse:
    return problem(422, type_=problem_type("invalid-configuration"), title="Invalid configuration",
                   detail=str(error), instance=request.url.path)


async def _expression_error(request: Request, error: Exception) -> ProblemResponse:
    assert isinstance(error, ExpressionError)
    return problem(
        422,
        type_=problem_type("invalid-expression"),
        title="Invalid expression",
        detail=f"{error.reason} at position {error.position}",
        instance=request.url.path,
        expression=error.source,
        position=error.position,
    )


async def _request_validation(request: Request, error: Exception) -> ProblemResponse:
    assert isinstance(error, RequestValidationError)
    errors = field_errors(error.errors())
    fields = ", ".join(e["field"] for e in errors[:5])
    return problem(
        422,
        type_=problem_type("validation-error"),
        title="Invalid request",
        detail=f"{len(errors)} invalid field(s): {fields}" if errors else "Invalid request.",
        instance=request.url.path,
        errors=errors,
    )


async def _http_error(request: Request, error: Exception) -> ProblemResponse:
    assert isinstance(error, HTTPException)
    # Starlette's default detail is the status phrase, which the title already says.
    detail = None if error.detail == _phrase(error.status_code) else str(error.detail)
    return problem(error.status_code, detail=detail, instance=request.url.path,
                   headers=error.headers)


def install_problem_handlers(app: FastAPI) -> None:
    """Map domain, validation and HTTP errors to problems; the most specific class wins."""
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(Conflict, _conflict)
    app.add_exception_handler(InvalidConfiguration, _invalid_configuration)
    app.add_exception_handler(ExpressionError, _expression_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(HTTPException, _http_error)

"""Structured logs (one event per line) and Prometheus metrics for the server.

Logs carry the request id of the request being served (`request_id` context variable), so every
line a request causes can be found from the id a client sees in `X-Request-ID` or a problem.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from omnicc.config import LogFormat, LogLevel

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
"""The id of the request this task is serving, if any."""

UVICORN_LOGGERS: Final = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
# Libraries that report routine set-up at info level, which would drown the server's own events.
QUIET_LOGGERS: Final = ("alembic.runtime.plugins",)

# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged.
_RECORD_ATTRIBUTES: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__
) | {"message", "asctime", "color_message", "taskName"}


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRIBUTES}


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, then extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id.get(),
        }
        for key, value in _extra_fields(record).items():
            event.setdefault(key, value)
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return json.dumps(event, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """One readable line: `time level logger [request id] message key=value ...`."""

    def format(self, record: logging.LogRecord) -> str:
        rid = request_id.get()
        parts = [_timestamp(record), f"{record.levelname.lower():<8}", record.name]
        if rid is not None:
            parts.append(f"[{rid}]")
        parts.append(record.getMessage())
        parts.extend(f"{key}={value!r}" for key, value in _extra_fields(record).items())
        line = " ".join(parts)
        if record.exc_info:
            # Indented so that a log shipper splitting on newlines keeps the event together.
            trace = self.formatException(record.exc_info).replace("\n", "\n    ")
            line += "\n    " + trace
        return line


def configure_logging(
    level: LogLevel = "info", log_format: LogFormat = "json", stream: TextIO | None = None
) -> None:
    """Send every logger (uvicorn's too) through one handler with the chosen format."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


class HttpMetrics:
    """Request count and latency by route template, in a registry of their own.

    A registry per application keeps several apps in one process (tests) apart.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.requests = Counter(
            "omnicc_http_requests", "HTTP requests served.",
            ("method", "route", "status"), registry=self.registry,
        )
        self.duration_s = Histogram(
            "omnicc_http_request_duration_seconds", "Time to serve an HTTP request.",
            ("method", "route"), registry=self.registry,
        )
        self.in_progress = Gauge(
            "omnicc_http_requests_in_progress", "HTTP requests being served.",
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, duration_s: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.duration_s.labels(method, route).observe(duration_s)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

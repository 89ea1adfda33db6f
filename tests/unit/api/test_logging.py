"""One event per line, JSON or text, with uvicorn's loggers routed through the same handler."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from omnicc.observability import configure_logging, request_id


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    uvicorn_saved = {name: (list(logging.getLogger(name).handlers),
                            logging.getLogger(name).propagate)
                     for name in ("uvicorn", "uvicorn.error", "uvicorn.access")}
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name, (handlers, propagate) in uvicorn_saved.items():
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).propagate = propagate


def test_json_lines_have_the_fields_and_extras(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    token = request_id.set("r-1")
    try:
        logging.getLogger("omnicc.test").info("offer %s sent", "o1", extra={"agent": "aino"})
    finally:
        request_id.reset(token)
    logging.getLogger("omnicc.test").debug("below the level")
    (line,) = stream.getvalue().splitlines()
    event = json.loads(line)
    assert event["level"] == "info"
    assert event["logger"] == "omnicc.test"
    assert event["message"] == "offer o1 sent"
    assert event["request_id"] == "r-1"
    assert event["agent"] == "aino"
    assert event["time"].endswith("+00:00")


def test_exception_stays_on_one_line(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        logging.getLogger("omnicc.test").exception("failed")
    (line,) = stream.getvalue().splitlines()
    assert "ValueError" in json.loads(line)["exception"]


def test_text_format_is_readable(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("warning", "text", stream)
    logging.getLogger("omnicc.test").info("hidden")
    logging.getLogger("omnicc.test").warning("queue %s is full", "sales", extra={"waiting": 3})
    (line,) = stream.getvalue().splitlines()
    assert "warning" in line and "omnicc.test" in line
    assert line.endswith("queue sales is full waiting=3")


def test_uvicorn_loggers_go_through_the_handler(restore_logging: None) -> None:
    logging.getLogger("uvicorn.error").addHandler(logging.StreamHandler(io.StringIO()))
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    logging.getLogger("uvicorn.error").info("Application startup complete.")
    assert not logging.getLogger("uvicorn.error").handlers
    assert json.loads(stream.getvalue())["logger"] == "uvicorn.error"

"""The API's view of the store: opening the database and handing it to request handlers."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from omnicc.store.database import Database


def open_database(url: str) -> Database:
    """The one place the API builds a store `Database`; tests substitute a fake for it."""
    return Database(url)


def request_database(request: HTTPConnection) -> Database:
    """The database the application opened at start-up (a dependency, or called with a
    request or WebSocket)."""
    database: Database = request.app.state.database
    return database

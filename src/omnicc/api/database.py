"""The API's view of the store: opening the database and handing it to request handlers."""

from __future__ import annotations

from fastapi import Request

from omnicc.store.database import Database


def open_database(url: str) -> Database:
    """The one place the API builds a store `Database`; tests substitute a fake for it."""
    return Database(url)


def request_database(request: Request) -> Database:
    """Dependency: the database the application opened at start-up."""
    database: Database = request.app.state.database
    return database

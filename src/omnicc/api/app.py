"""`create_app(settings)`: the FastAPI application with its lifespan, errors, probes and metrics."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response

from omnicc import __version__
from omnicc.api import health
from omnicc.api.body_limit import BodySizeLimitMiddleware, BodyTooLarge, too_large
from omnicc.api.database import open_database
from omnicc.api.problems import install_problem_handlers
from omnicc.api.request_context import RequestContextMiddleware
from omnicc.config import Settings
from omnicc.observability import HttpMetrics
from omnicc.store.database import Database

log = logging.getLogger("omnicc.api")

DatabaseFactory = Callable[[str], Database]


def create_app(settings: Settings, *, database_factory: DatabaseFactory = open_database) -> FastAPI:
    """The application; the database is opened at start-up and closed at shutdown.

    The embedded SQLite default is migrated at start-up, so `omnicc serve` works on an empty
    data directory; an external database is migrated by `omnicc migrate`, once per release.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database: Database | None = None
        try:
            database = database_factory(settings.database_url)
            if settings.is_embedded_database:
                await database.ensure_schema()
            app.state.database = database
        except Exception as error:
            # Kept for `omnicc serve`, which prints it as the reason the server did not start.
            app.state.startup_error = error
            if database is not None:
                await database.dispose()
            raise
        log.info("started", extra={"database": database.backend,
                                   "public_base_url": settings.public_base_url})
        try:
            yield
        finally:
            await database.dispose()
            log.info("stopped")

    app = FastAPI(
        title="OmniCC",
        version=__version__,
        summary="An open-source omnichannel contact center.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = HttpMetrics()
    app.state.startup_error = None
    install_problem_handlers(app)

    async def body_too_large(request: Request, error: Exception) -> Response:
        assert isinstance(error, BodyTooLarge)
        return too_large(error.limit_bytes, request.url.path)

    app.add_exception_handler(BodyTooLarge, body_too_large)
    app.include_router(health.router)
    # The last added middleware runs first: the request id must exist before any limit answers.
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_request_bytes=settings.max_request_bytes,
        max_upload_bytes=settings.max_upload_bytes,
    )
    app.add_middleware(RequestContextMiddleware, metrics=app.state.metrics)
    return app

"""`create_app(settings)`: the FastAPI application with its lifespan, errors, probes and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response

from omnicc import __version__
from omnicc.api import (
    calls,
    chat,
    contact_forms,
    customers,
    desk,
    emails,
    health,
    messaging,
    recordings,
    reports,
    supervision,
    wfm,
)
from omnicc.api.auth import Security, install_auth
from omnicc.api.body_limit import BodySizeLimitMiddleware, BodyTooLarge, too_large
from omnicc.api.database import open_database
from omnicc.api.pages import install_pages
from omnicc.api.problems import install_problem_handlers
from omnicc.api.request_context import RequestContextMiddleware
from omnicc.api.webhooks import install_webhooks
from omnicc.app.crm import CrmDirectory, CrmService
from omnicc.app.recordings import recording_retention, recordings_dir
from omnicc.app.routing import WallClock
from omnicc.app.runtime import ContactCenter, RuntimeLimits
from omnicc.bus import Bus
from omnicc.channels.email.service import EmailService
from omnicc.channels.messaging.service import MessagingService, reply_senders
from omnicc.channels.voice.service import VoiceService, voice_settings
from omnicc.config import Settings
from omnicc.observability import HttpMetrics
from omnicc.reports.service import report_keeping
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
        center: ContactCenter | None = None
        starting: asyncio.Task[None] | None = None
        voice: VoiceService | None = None
        email: EmailService | None = None
        crm: CrmService | None = None
        app.state.voice = None
        try:
            database = database_factory(settings.database_url)
            app.state.database = database
            center = ContactCenter(database, WallClock(), app.state.bus,
                                   RuntimeLimits(max_message_chars=settings.max_message_bytes))
            app.state.center = center
            email = EmailService(database, center, app.state.attachment_store)
            app.state.email = email
            app.state.messaging = MessagingService(database, center,
                                                   public_base_url=settings.public_base_url,
                                                   files=app.state.attachment_store)
            app.state.reply_senders = reply_senders(app.state.messaging, database)
            app.state.crm_directory = CrmDirectory(database)
            crm = CrmService(database, WallClock(), app.state.bus,
                             base_url=settings.public_base_url)
            if settings.sip_port is not None:
                voice = VoiceService(database, center, settings.data_dir,
                                     voice_settings(settings))
                app.state.voice = voice
            if settings.is_embedded_database:
                await database.ensure_schema()
                await center.start()
                if voice is not None:
                    await voice.start()
                await email.start()
                await app.state.messaging.start()
                await crm.start()
            else:

                async def start_channels() -> None:
                    if voice is not None:
                        await voice.start()
                    assert email is not None and crm is not None
                    await email.start()
                    await app.state.messaging.start()
                    await crm.start()

                # An external database may come up after us: /readyz says so meanwhile.
                starting = asyncio.create_task(center.start_when_reachable(
                    then=start_channels))
        except Exception as error:
            # Kept for `omnicc serve`, which prints it as the reason the server did not start.
            app.state.startup_error = error
            if voice is not None:
                await voice.stop()
            if email is not None:
                await email.stop()
            if crm is not None:
                await crm.stop()
            if center is not None:
                await center.stop()
            if database is not None:
                await database.dispose()
            raise
        log.info("started", extra={"database": database.backend,
                                   "public_base_url": settings.public_base_url})
        try:
            async with (
                recording_retention(database, recordings_dir(settings.data_dir),
                                    settings.recording_retention_days),
                report_keeping(database) as keeper,
            ):
                app.state.reports = keeper
                yield
        finally:
            if starting is not None:
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
            if voice is not None:
                await voice.stop()
            if email is not None:
                await email.stop()
            if crm is not None:
                await crm.stop()
            await app.state.crm_directory.close()
            await app.state.messaging.stop()
            await center.stop()
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
    app.state.bus = Bus()
    app.state.security = Security.create(settings.secret_key.get_secret_value(), WallClock(),
                                         settings.public_base_url)
    install_problem_handlers(app)
    install_auth(app)
    from omnicc.api import admin

    app.include_router(messaging.webhooks)  # first: providers post many, matched at once
    app.include_router(admin.router)
    install_webhooks(app)
    app.include_router(chat.router)
    app.include_router(desk.router)
    app.include_router(calls.router)
    app.include_router(supervision.router)
    app.include_router(reports.router)
    app.include_router(recordings.router)
    app.include_router(emails.router)
    app.include_router(messaging.router)
    app.include_router(customers.router)
    app.include_router(contact_forms.router)
    app.include_router(wfm.router)
    from omnicc.api.attachments import install_attachments

    install_attachments(app)
    install_pages(app)

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

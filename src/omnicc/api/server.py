"""Running the application under uvicorn: binding, start-up failures, graceful shutdown.

uvicorn's own signal handling gives the graceful shutdown (stop accepting, let requests finish
within `shutdown_grace_s`, run the lifespan's shutdown). After it, uvicorn re-raises the signal
it caught so that the default action would end the process; we install do-nothing handlers
first, so a SIGTERM'd server exits with status 0 like any finished program.
"""

from __future__ import annotations

import gc
import signal
import socket
from collections.abc import Awaitable, Callable

import uvicorn

from omnicc.api.app import create_app
from omnicc.config import Settings


class ServerError(Exception):
    """The server could not start; the message says why in one line."""


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None],
                 on_stopping: Callable[[], Awaitable[None]] | None = None) -> None:
        super().__init__(config)
        self.on_started = on_started
        self.on_stopping = on_stopping

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            settle_garbage_collector()
            self.on_started()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.on_stopping is not None:
            await self.on_stopping()
        await super().shutdown(sockets)


GC_THRESHOLDS = (20_000, 20, 20)
"""The youngest generation is collected after 20,000 net allocations instead of 700: a
server that holds thousands of connections allocates fast, and every collection of the oldest
generation stops the event loop for every conversation at once."""


def settle_garbage_collector() -> None:
    """Move what start-up made (modules, classes, the engine's configuration) out of the
    collector's sight, and collect less often. Measured in bench/chat_load.py: full collections
    of ~450,000 objects stopped the loop for up to 300 ms and made the p99 latency."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready socket for host:port (0 picks a free port)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as error:
        raise ServerError(f"cannot listen on {host}:{port}: {error.strerror or error}") from error
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def serve(settings: Settings, on_started: Callable[[str], None],
          on_stopping: Callable[[], Awaitable[None]] | None = None) -> None:
    """Serve until SIGTERM or SIGINT; `on_started(url)` once the server accepts requests,
    `on_stopping()` before it closes connections (for work running beside it in its loop)."""
    app = create_app(settings)
    sock = bind_socket(settings.host, settings.port)
    config = uvicorn.Config(
        app,
        log_config=None,  # logging is already configured (omnicc.observability)
        access_log=False,  # the request-context middleware logs each request with its id
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=settings.shutdown_grace_s,
        ws_max_size=settings.max_request_bytes,  # a WebSocket message obeys the body limit
        # Chat frames are a few hundred bytes: compressing them saves little bandwidth and
        # costs CPU on the one event loop that carries every conversation.
        ws_per_message_deflate=False,
    )
    server = _Server(config, lambda: on_started(url_of(sock)), on_stopping)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _ignore_signal)
    try:
        server.run(sockets=[sock])
    except SystemExit as error:  # uvicorn's way of saying that start-up failed
        raise ServerError(_startup_failure(app.state.startup_error)) from error
    finally:
        sock.close()
    if not server.started:
        raise ServerError(_startup_failure(app.state.startup_error))


def _startup_failure(error: BaseException | None) -> str:
    if error is None:
        return "the server did not start (see the log above)"
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"the server did not start: {first_line}"


def _ignore_signal(signum: int, frame: object) -> None:
    """Receives the signal uvicorn re-raises after it has already shut down gracefully."""

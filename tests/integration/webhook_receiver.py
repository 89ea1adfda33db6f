"""A CRM's webhook endpoint for tests: a real HTTP server on 127.0.0.1 in a thread, checking
signatures the way docs/api.md tells receivers to."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Receiver:
    """Checks each signature, fails the first `fail_first` attempts of every key (or answers
    `status` to all), and counts what it accepted per key, as a receiver that drops repeats
    would."""

    secret: str
    fail_first: int = 0
    status: int = 200
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    bad_signatures: int = 0
    accepted: Counter[str] = field(default_factory=Counter)
    hold: threading.Event | None = None
    arrived: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def handle(self, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str]]:
        if path == "/moved":
            return 302, {"Location": "/hook"}
        timestamp = headers["X-OmniCC-Timestamp"]
        expected = "sha256=" + hmac.new(self.secret.encode(), f"{timestamp}.".encode() + body,
                                        hashlib.sha256).hexdigest()
        key = headers["X-OmniCC-Delivery"]
        with self.lock:
            if not hmac.compare_digest(expected, headers["X-OmniCC-Signature"]):
                self.bad_signatures += 1
                return 400, {}
            envelope = json.loads(body)
            assert envelope["id"] == key and headers["X-OmniCC-Event"] == envelope["type"]
            self.requests.append((key, envelope))
            tries = self.tries(key)
        self.arrived.set()
        if self.hold is not None:
            self.hold.wait(10)
        if self.status != 200:
            return self.status, {}
        if tries <= self.fail_first:
            return 503, {}
        with self.lock:
            self.accepted[key] += 1
        return 200, {}

    def tries(self, key: str) -> int:
        return sum(1 for seen, _ in self.requests if seen == key)


def running_receiver(secret: str) -> Iterator[Receiver]:
    state = Receiver(secret)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status, headers = state.handle(self.path, self.headers, body)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        if state.hold is not None:
            state.hold.set()
        server.shutdown()
        server.server_close()

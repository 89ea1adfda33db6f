"""A CRM for tests: a real HTTP server on 127.0.0.1 in a thread that answers contact searches
the way HubSpot's search API is shaped (`{"results": [{"id", "properties": {...}}]}`), checks
the bearer token, counts the questions, and can be made to hang (a CRM that does not answer)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "Bearer crm-test-token"


@dataclass
class FakeCrm:
    contacts: list[dict[str, Any]] = field(default_factory=list)
    questions: list[dict[str, str]] = field(default_factory=list)
    hang: threading.Event | None = None
    """While set to an unset Event, every answer waits for it (at most 10 s)."""
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, path: str, headers: Any) -> tuple[int, Any]:
        query = {key: values[0] for key, values in parse_qs(urlsplit(path).query).items()}
        with self.lock:
            self.questions.append(query)
        if self.hang is not None:
            self.hang.wait(10)
        if headers.get("Authorization") != TOKEN:
            return 401, {"message": "bad token"}
        found = [contact for contact in self.contacts
                 if (query.get("phone") and contact["properties"].get("phone") == query["phone"])
                 or (query.get("email") and contact["properties"].get("email") == query["email"])]
        return 200, {"total": len(found), "results": found}


def running_crm() -> Iterator[FakeCrm]:
    state = FakeCrm()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = state.answer(self.path, self.headers)
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # a hanging answer's asker gave up (the timeout test): nobody to tell

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        if state.hang is not None:
            state.hang.set()
        server.shutdown()
        server.server_close()

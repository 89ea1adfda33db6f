"""Stand-ins for the providers' REST APIs, served on loopback: the paths, authentication,
request bodies and answers (success and error shapes) as each provider documents them.

Every request is recorded (path, headers, parsed body) for the tests to check, and a test can
script the next answers' status codes (`fail_next`) to exercise retries.
"""

from __future__ import annotations

import base64
import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.integration.api.live import free_port

TWILIO_SID = "AC00000000000000000000000000000001"
TWILIO_TOKEN = "twilio-auth-token"
GRAPH_TOKEN = "EAAG-graph-token"
BOT_TOKEN = "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11"


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    query: dict[str, str]
    body: Any


@dataclass
class FakeProviders:
    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)
    """Status codes to answer the next requests with (then success again)."""
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    media: dict[str, bytes] = field(default_factory=dict)
    """Files customers sent, by the id each provider names them with."""

    def fail_next(self, *statuses: int) -> None:
        self.failures.extend(statuses)

    def sent(self, prefix: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith(prefix)]

    def _failure(self, kind: str) -> JSONResponse | None:
        if not self.failures:
            return None
        status = self.failures.pop(0)
        if kind == "twilio":
            body: dict[str, Any] = {"code": 20429 if status == 429 else 20500,
                                    "message": "Too Many Requests" if status == 429
                                    else "Internal Server Error", "status": status}
        elif kind == "graph":
            body = {"error": {"message": "(#130429) Rate limit hit" if status == 429
                              else "An unknown error occurred", "type": "OAuthException",
                              "code": 130429 if status == 429 else 1, "fbtrace_id": "A1"}}
        else:
            body = {"ok": False, "error_code": status,
                    "description": "Too Many Requests: retry after 1" if status == 429
                    else "Bad Request: chat not found" if status == 400
                    else "Internal Server Error"}
        return JSONResponse(body, status_code=status)

    async def _record(self, request: Request, body: Any) -> None:
        self.requests.append(Recorded(request.url.path, dict(request.headers),
                                      dict(request.query_params), body))

    # Twilio: POST /2010-04-01/Accounts/{AccountSid}/Messages.json, basic auth, form body.
    async def twilio(self, request: Request) -> JSONResponse:
        form = await request.form()
        body = {key: form.getlist(key) if key == "MediaUrl" else form[key]
                for key in form.keys()}  # noqa: SIM118 - a multi-dict
        await self._record(request, body)
        expected = "Basic " + base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
        if (request.headers.get("authorization") != expected
                or request.path_params["sid"] != TWILIO_SID):
            return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401},
                                status_code=401)
        if failure := self._failure("twilio"):
            return failure
        if not any(k in body for k in ("Body", "MediaUrl", "ContentSid")):
            return JSONResponse({"code": 21602, "message": "Message body is required.",
                                 "status": 400}, status_code=400)
        sid = f"SM{next(self.counter):032d}"
        return JSONResponse({"sid": sid, "account_sid": TWILIO_SID, "to": body["To"],
                             "from": body["From"], "body": body.get("Body", ""),
                             "status": "queued", "num_media": "0"}, status_code=201)

    # Graph API: POST /v21.0/{phone-number-id}/messages (Bearer) and /v21.0/me/messages
    # (?access_token=), JSON bodies.
    async def graph(self, request: Request) -> JSONResponse:
        body = await request.json()
        await self._record(request, body)
        token = (request.query_params.get("access_token")
                 or request.headers.get("authorization", "").removeprefix("Bearer "))
        if token != GRAPH_TOKEN:
            return JSONResponse({"error": {"message": "Invalid OAuth access token.",
                                           "type": "OAuthException", "code": 190,
                                           "fbtrace_id": "A1"}}, status_code=401)
        if failure := self._failure("graph"):
            return failure
        number = next(self.counter)
        if request.path_params["node"] == "me":
            return JSONResponse({"recipient_id": body["recipient"]["id"],
                                 "message_id": f"m_{number}"})
        if body.get("messaging_product") != "whatsapp":
            return JSONResponse({"error": {"message": "(#100) The parameter "
                                           "messaging_product is required.", "code": 100}},
                                status_code=400)
        return JSONResponse({"messaging_product": "whatsapp",
                             "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                             "messages": [{"id": f"wamid.{number}"}]})

    # Telegram Bot API: POST /bot{token}/{method}, JSON bodies.
    async def telegram(self, request: Request) -> JSONResponse:
        body = await request.json()
        await self._record(request, body)
        if request.path_params["token"] != BOT_TOKEN:
            return JSONResponse({"ok": False, "error_code": 401,
                                 "description": "Unauthorized"}, status_code=401)
        if failure := self._failure("telegram"):
            return failure
        if request.path_params["method"] not in ("sendMessage", "sendPhoto", "sendDocument"):
            return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found"},
                                status_code=404)
        return JSONResponse({"ok": True, "result": {
            "message_id": next(self.counter), "date": int(time.time()),
            "chat": {"id": int(body["chat_id"]), "type": "private"}}})

    # Media a customer sent. Twilio: GET MediaUrl (basic auth) redirects to its CDN.
    async def twilio_media(self, request: Request) -> Response:
        await self._record(request, None)
        expected = "Basic " + base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401},
                                status_code=401)
        if failure := self._failure("twilio"):
            return failure
        return RedirectResponse(f"/cdn/twilio/{request.path_params['media']}", status_code=307)

    # Cloud API: GET /v21.0/{media-id} (Bearer) answers a short-lived URL, which also wants
    # the token.
    async def graph_media(self, request: Request) -> Response:
        await self._record(request, None)
        if request.headers.get("authorization") != f"Bearer {GRAPH_TOKEN}":
            return JSONResponse({"error": {"message": "Invalid OAuth access token.",
                                           "type": "OAuthException", "code": 190}},
                                status_code=401)
        media_id = request.path_params["node"]
        if media_id not in self.media:
            return JSONResponse({"error": {"message": "(#100) Invalid parameter",
                                           "type": "OAuthException", "code": 100}},
                                status_code=400)
        return JSONResponse({"messaging_product": "whatsapp", "id": media_id,
                             "url": f"{self.url}/cdn/whatsapp/{media_id}?ext=1",
                             "mime_type": "image/jpeg", "sha256": "x",
                             "file_size": len(self.media[media_id])})

    # Bot API: GET /bot{token}/getFile?file_id= answers file_path; the bytes are at
    # /file/bot{token}/{file_path}.
    async def telegram_get_file(self, request: Request) -> JSONResponse:
        await self._record(request, None)
        if request.path_params["token"] != BOT_TOKEN:
            return JSONResponse({"ok": False, "error_code": 401,
                                 "description": "Unauthorized"}, status_code=401)
        file_id = request.query_params.get("file_id", "")
        if file_id not in self.media:
            return JSONResponse({"ok": False, "error_code": 400,
                                 "description": "Bad Request: invalid file_id"},
                                status_code=400)
        return JSONResponse({"ok": True, "result": {
            "file_id": file_id, "file_unique_id": "u" + file_id,
            "file_size": len(self.media[file_id]), "file_path": f"documents/{file_id}.pdf"}})

    async def telegram_file(self, request: Request) -> Response:
        await self._record(request, None)
        if request.path_params["token"] != BOT_TOKEN:
            return Response(status_code=404)
        name = request.path_params["path"].rpartition("/")[2].removesuffix(".pdf")
        return self._bytes(name)

    async def cdn(self, request: Request) -> Response:
        """The providers' file hosts (the Cloud API's wants the token; Messenger's and
        Twilio's CDN links do not)."""
        await self._record(request, None)
        if (request.path_params["provider"] == "whatsapp"
                and request.headers.get("authorization") != f"Bearer {GRAPH_TOKEN}"):
            return Response(status_code=401)
        return self._bytes(request.path_params["name"])

    def _bytes(self, name: str) -> Response:
        if name not in self.media:
            return Response(status_code=404)
        return Response(self.media[name], media_type="application/octet-stream")

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/2010-04-01/Accounts/{sid}/Messages.json", self.twilio, methods=["POST"]),
            Route("/2010-04-01/Accounts/{sid}/Messages/{message}/Media/{media}",
                  self.twilio_media),
            Route("/v21.0/{node}/messages", self.graph, methods=["POST"]),
            Route("/v21.0/{node}", self.graph_media),
            Route("/bot{token}/getFile", self.telegram_get_file),
            Route("/bot{token}/{method}", self.telegram, methods=["POST"]),
            Route("/file/bot{token}/{path:path}", self.telegram_file),
            Route("/cdn/{provider}/{name}", self.cdn),
        ])


def fake_providers() -> Iterator[FakeProviders]:
    fake = FakeProviders()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(fake.app(), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the fake providers did not start")
        time.sleep(0.02)
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        server.should_exit = True
        thread.join(timeout=15)

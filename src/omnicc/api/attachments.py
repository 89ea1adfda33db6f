"""Files in chats on the wire: the customer's and the agent's uploads, and the one download.

Uploads are `multipart/form-data` with one part named `file`. The uploader is checked before
the body is read: a customer by the widget's visitor token (`X-Visitor-Token`) and their open
chat, an agent by their session (and CSRF token) and the chat being assigned to them.

`GET /api/attachments/{id}` serves a file to the customer whose conversation it belongs to
(visitor token header) or to the tenant's staff (session or API token). The URL carries no
credential, so it can be logged or leaked without giving the file away: a page on the same
origin loads it with its cookie, the widget fetches it with its header. Files are served with
`nosniff`, a sandboxing Content-Security-Policy, and as downloads unless they are images, so an
uploaded file can never run as a page of this origin.

The widget runs on the customer's own website, another origin: the customer's routes answer
CORS (any origin, no cookies: the visitor token in a header is the credential, which another
site cannot know), and `GET /api/chat/attachments/rules` tells it the limits before it sends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel
from sqlalchemy import select
from starlette.datastructures import MutableHeaders, UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from omnicc.api.auth import optional_principal, require_permission
from omnicc.api.database import request_database
from omnicc.api.desk import agent_of
from omnicc.api.problems import ProblemResponse, problem, problem_type
from omnicc.app.attachments import (
    ALLOWED_TYPES,
    CHUNK_BYTES,
    CSV,
    FILE_KINDS,
    IMAGE_TYPES,
    PLAIN_TEXT,
    AttachmentStore,
    EmptyUpload,
    UnsupportedFileType,
    UploadTooLarge,
)
from omnicc.app.chats import VISITOR, visitor_digest
from omnicc.app.permissions import Permission, require
from omnicc.app.principals import Principal, Unauthenticated
from omnicc.app.runtime import ContactCenter, TenantRuntime
from omnicc.core.errors import Conflict, NotFound
from omnicc.store.database import Database
from omnicc.store.repositories import Conversations, Identities
from omnicc.store.tables import Attachment

router = APIRouter(tags=["attachments"])

VISITOR_HEADER: Final = "X-Visitor-Token"
Handler = Annotated[Principal, Depends(require_permission(Permission.HANDLE_CONTACTS))]
VisitorToken = Annotated[str | None, Header(alias=VISITOR_HEADER, max_length=100,
                                            description="The widget's visitor token.")]

UPLOAD_BODY: Final[dict[str, Any]] = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary",
                                "description": "One of: " + ", ".join(ALLOWED_TYPES)}}}}}}}


CORS_PATHS: Final = ("/api/chat/attachments", "/api/attachments/", "/api/chat/callback",
                      "/api/forms/contact")
CORS_HEADERS: Final = (
    (b"access-control-allow-origin", b"*"),
    (b"access-control-expose-headers", b"Content-Disposition"),
)
PREFLIGHT_HEADERS: Final = (
    *CORS_HEADERS,
    (b"access-control-allow-methods", b"GET, POST"),
    (b"access-control-allow-headers", VISITOR_HEADER.encode() + b", Content-Type"),
    (b"access-control-max-age", b"600"),
)


class VisitorCors:
    """CORS for the customer's routes only: preflights answered, every answer (problems
    included) readable by the widget's page; the staff's routes stay same-origin."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(CORS_PATHS):
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            await send({"type": "http.response.start", "status": 204,
                        "headers": list(PREFLIGHT_HEADERS)})
            await send({"type": "http.response.body", "body": b""})
            return

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in CORS_HEADERS:
                    headers[key.decode()] = value.decode()
            await send(message)

        await self.app(scope, receive, with_cors)


class UploadRules(BaseModel):
    max_bytes: int
    content_types: list[str]
    accept: str


def _store(request: Request) -> AttachmentStore:
    store: AttachmentStore = request.app.state.attachment_store
    return store



def _center(request: Request) -> ContactCenter:
    center: ContactCenter = request.app.state.center
    return center


async def _upload(request: Request) -> tuple[str, AsyncIterator[bytes]]:
    """The one file of a multipart request, as its name and its bytes in chunks."""
    form = await request.form(max_files=1, max_fields=1)
    file = form.get("file")
    if not isinstance(file, UploadFile):
        raise EmptyUpload("Send the file as the multipart part named 'file'.")

    async def chunks() -> AsyncIterator[bytes]:
        try:
            while chunk := await file.read(CHUNK_BYTES):
                yield chunk
        finally:
            await file.close()

    return file.filename or "file", chunks()


async def _visitor_customer(database: Database, tenant_id: str, token: str | None) -> str:
    """The customer a visitor token belongs to in the tenant, or `Unauthenticated`."""
    if not token:
        raise Unauthenticated(f"send the widget's visitor token in {VISITOR_HEADER}")
    async with database.session() as session:
        identity = await Identities(session, tenant_id).by_value(VISITOR, visitor_digest(token))
    if identity is None:
        raise Unauthenticated("unknown visitor token")
    return identity.customer_id


@router.get("/api/chat/attachments/rules", response_model=UploadRules,
            summary="What a chat accepts: the size limit and the kinds of file")
async def upload_rules(request: Request) -> UploadRules:
    extensions = [e for kind in (*FILE_KINDS, CSV, PLAIN_TEXT) for e in kind.extensions]
    return UploadRules(max_bytes=_store(request).max_bytes, content_types=list(ALLOWED_TYPES),
                       accept=",".join(extensions))


@router.post("/api/chat/attachments", status_code=201, openapi_extra=UPLOAD_BODY,
             summary="The customer sends a file in their open chat")
async def customer_upload(request: Request, visitor: VisitorToken = None,
                          tenant: str = Query(min_length=1, max_length=64)) -> dict[str, Any]:
    runtime: TenantRuntime = await _center(request).by_slug(tenant)
    customer_id = await _visitor_customer(request_database(request), runtime.tenant_id, visitor)
    chat = runtime.chats.open_chat_of(customer_id)
    if chat is None:
        raise Conflict("no open chat: start one before sending a file")
    filename, chunks = await _upload(request)
    return await _store(request).post(runtime.chats, chat, "customer", customer_id, filename,
                                      chunks)


@router.post("/api/desk/conversations/{conversation_id}/attachments", status_code=201,
             openapi_extra=UPLOAD_BODY, tags=["agent desktop"],
             summary="The agent sends a file in a chat assigned to them")
async def agent_upload(conversation_id: str, request: Request,
                       principal: Handler) -> dict[str, Any]:
    agent_id = await agent_of(request, principal)
    runtime = await _center(request).tenant(principal.tenant_id)
    chat = runtime.chats.assigned_chat(agent_id, conversation_id)
    filename, chunks = await _upload(request)
    return await _store(request).post(runtime.chats, chat, "agent", agent_id, filename, chunks)


@router.get("/api/attachments/{attachment_id}", response_class=FileResponse,
            summary="Download a file: its customer (visitor token) or the tenant's staff",
            responses={200: {"content": {t: {} for t in ALLOWED_TYPES}}})
async def download(attachment_id: str, request: Request,
                   visitor: VisitorToken = None) -> Response:
    database = request_database(request)
    principal = await optional_principal(request)
    if principal is None and not visitor:
        raise Unauthenticated(f"log in, or send the widget's visitor token in {VISITOR_HEADER}")
    async with database.session() as session:
        # Ids are unique across tenants; whose it is decides who may read it, below.
        attachment = (await session.execute(
            select(Attachment).where(Attachment.id == attachment_id))).scalar_one_or_none()
    missing = NotFound(f"attachment {attachment_id} not found")
    if principal is not None:
        require(principal, Permission.HANDLE_CONTACTS)
        if attachment is None or attachment.tenant_id != principal.tenant_id:
            raise missing
    else:
        if attachment is None:
            raise missing
        customer_id = await _visitor_customer(database, attachment.tenant_id, visitor)
        async with database.session() as session:
            conversation = await Conversations(session, attachment.tenant_id).get(
                attachment.conversation_id)
        if conversation.customer_id != customer_id:
            raise missing
    path = _store(request).path_of(attachment)
    if not path.is_file():
        raise NotFound(f"the file of attachment {attachment_id} is missing")
    is_image = attachment.content_type in IMAGE_TYPES
    return FileResponse(
        path, media_type=attachment.content_type, filename=attachment.filename,
        content_disposition_type="inline" if is_image else "attachment",
        headers={"X-Content-Type-Options": "nosniff",
                 "Content-Security-Policy": "sandbox; default-src 'none'",
                 "Cache-Control": "private, no-store",
                 "Cross-Origin-Resource-Policy": "same-origin"})


async def _too_large(request: Request, error: Exception) -> ProblemResponse:
    assert isinstance(error, UploadTooLarge)
    return problem(413, type_=problem_type("upload-too-large"), title="File too large",
                   detail=str(error), instance=request.url.path,
                   limit_bytes=error.limit_bytes)


async def _unsupported(request: Request, error: Exception) -> ProblemResponse:
    return problem(415, type_=problem_type("unsupported-file-type"),
                   title="Unsupported file type", detail=str(error),
                   instance=request.url.path, allowed=list(ALLOWED_TYPES))


async def _empty(request: Request, error: Exception) -> ProblemResponse:
    return problem(422, type_=problem_type("empty-upload"), title="No file",
                   detail=str(error), instance=request.url.path)


def install_attachments(app: FastAPI) -> None:
    """The routes, their problems, and the store on `app.state.attachment_store`."""
    settings = app.state.settings
    app.state.attachment_store = AttachmentStore(settings.data_dir,
                                                 max_bytes=settings.max_upload_bytes)
    app.add_exception_handler(UploadTooLarge, _too_large)
    app.add_exception_handler(UnsupportedFileType, _unsupported)
    app.add_exception_handler(EmptyUpload, _empty)
    app.add_middleware(VisitorCors)
    app.include_router(router)

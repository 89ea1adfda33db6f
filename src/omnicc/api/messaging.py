"""Messaging over HTTP: the providers' webhooks (signature checked first), the agent's side
of a messaging conversation (its messages with their delivery state, answer, template,
done) and the administration of provider accounts.

A webhook is answered 200 only after every message it carried is committed; a bad signature
is 403 and logged, never read further; a malformed body is 400 with the reason. Accounts'
secrets are written, never read back.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Annotated, Any, Final, Literal
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from omnicc.api.admin.changes import changing
from omnicc.api.admin.channel_sources import get_source, list_sources, save_source
from omnicc.api.auth import require_permission
from omnicc.api.center import tenant_runtime
from omnicc.api.desk import Transfer, agent_of, check_conversation_access, desk_state
from omnicc.api.problems import problem, problem_type
from omnicc.app.messaging import MessagingDesk, account_of
from omnicc.app.permissions import Permission
from omnicc.app.principals import Principal
from omnicc.channels.messaging.providers import CHANNELS, PROVIDERS
from omnicc.channels.messaging.service import MessagingService
from omnicc.channels.messaging.shape import BadPayload, BadSignature, WebhookRequest
from omnicc.core.errors import InvalidConfiguration, NotFound
from omnicc.store.repositories import MessagingAccounts
from omnicc.store.tables import MessagingAccount

router = APIRouter(tags=["messaging"])
webhooks = APIRouter(tags=["messaging"])
"""The providers' webhooks, matched before every other route (the busiest path under load:
matching a path through all the API's routers costs more than checking the signature)."""
log = logging.getLogger("omnicc.messaging")

Handler = Annotated[Principal, Depends(require_permission(Permission.HANDLE_CONTACTS))]
Admin = Annotated[Principal, Depends(require_permission(Permission.CONFIGURE_TENANT))]
ProviderName = Literal["twilio", "whatsapp", "telegram", "messenger"]
Channel = Literal["sms", "whatsapp", "telegram", "messenger"]
MEDIA_URL: Final = r"^https?://[^\s]{1,2000}$"
TWIML_EMPTY: Final = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such row in the tenant."}}
WEBHOOK_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed payload; the problem says why."},
    403: {"description": "The signature (or verify token) is not the account's."},
    404: {"description": "No such enabled account."},
    503: {"description": "The account has no queue to route to: try again later."},
}
CHANGE_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such account in the tenant."},
    409: {"description": "An account with this name exists already."},
    422: {"description": "Invalid input; the problem lists each field at fault."},
}
SEND_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "The conversation's task is not assigned to you."},
    404: {"description": "No messaging in this conversation."},
    409: {"description": "Outside WhatsApp's 24-hour window (send a template), or a template "
                         "on a channel without them."},
}


def messaging_service(request: Request) -> MessagingService:
    service: MessagingService = request.app.state.messaging
    return service


async def messaging_desk(request: Request, tenant_id: str) -> MessagingDesk:
    return await messaging_service(request).desk(tenant_id)


# --- webhooks ----------------------------------------------------------------------------------

async def _account(request: Request, account_id: str) -> MessagingAccount:
    account = await messaging_service(request).account(account_id)
    if account is None or not account.is_enabled:
        raise NotFound(f"messaging account {account_id} not found")
    return account


def _public_url(request: Request) -> str:
    """The URL the provider called, as it knows it (Twilio signs it): the public base URL
    (the address behind any proxy) with the path and query received."""
    base = str(request.app.state.settings.public_base_url).rstrip("/")
    query = f"?{request.url.query}" if request.url.query else ""
    return f"{base}{request.url.path}{query}"


@webhooks.get("/api/messaging/{account_id}/webhook", responses=WEBHOOK_ERRORS,
            summary="Meta's subscription check (hub.mode=subscribe, hub.verify_token, "
                    "hub.challenge)")
async def handshake(account_id: str, request: Request) -> Response:
    account = await _account(request, account_id)
    provider = PROVIDERS[account.provider]
    try:
        challenge = provider.handshake(account_of(account), request.query_params)
    except BadSignature as error:
        log.warning("messaging: refused handshake for account %s: %s", account_id, error)
        return problem(403, type_=problem_type("bad-signature"), detail=str(error))
    if challenge is None:
        return problem(400, type_=problem_type("bad-payload"),
                       detail="not a subscription check (hub.mode=subscribe)")
    return Response(challenge, media_type="text/plain")


@webhooks.post("/api/messaging/{account_id}/webhook", responses=WEBHOOK_ERRORS,
             summary="A provider's webhook: messages and delivery receipts")
async def webhook(account_id: str, request: Request) -> Response:
    account = await _account(request, account_id)
    provider = PROVIDERS[account.provider]
    body = await request.body()
    is_form = request.headers.get("content-type", "").startswith(
        "application/x-www-form-urlencoded")
    try:
        form = parse_qsl(body.decode(), keep_blank_values=True) if is_form else []
    except UnicodeDecodeError:
        form = []
    hook = WebhookRequest(method="POST", url=_public_url(request),
                          headers={k.lower(): v for k, v in request.headers.items()},
                          query=dict(request.query_params), body=body, form=form)
    credentials = account_of(account)
    try:
        provider.verify(credentials, hook)
    except BadSignature as error:
        log.warning("messaging: refused webhook for account %s from %s: %s", account_id,
                    request.client.host if request.client else "?", error)
        return problem(403, type_=problem_type("bad-signature"), detail=str(error))
    try:
        parsed = provider.parse(credentials, hook)
    except BadPayload as error:
        log.info("messaging: malformed webhook for account %s: %s", account_id, error)
        return problem(400, type_=problem_type("bad-payload"), detail=str(error))
    desk = await messaging_desk(request, account.tenant_id)
    try:
        # Together, so they join one batch (a Meta webhook may carry several messages).
        await asyncio.gather(*(desk.receive(account.id, message)
                               for message in parsed.messages))
    except InvalidConfiguration as error:
        return problem(503, type_=problem_type("not-routable"), detail=str(error),
                       headers={"Retry-After": "60"})
    for receipt in parsed.receipts:
        await desk.receipt(account.id, receipt)
    if account.provider == "twilio":
        return Response(TWIML_EMPTY, media_type="text/xml")
    return Response('{"ok":true}', media_type="application/json")


# --- the agent ---------------------------------------------------------------------------------

class AnswerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(default="", max_length=4096)
    media_urls: list[Annotated[str, Field(pattern=MEDIA_URL)]] = Field(
        default_factory=list, max_length=10,
        description="Public http(s) URLs the provider fetches (one for WhatsApp, Telegram "
                    "and Messenger; up to 10 for Twilio MMS).")
    id: str | None = Field(default=None, max_length=128, description="Idempotency key.")

    @model_validator(mode="after")
    def _something(self) -> AnswerIn:
        if not self.text.strip() and not self.media_urls:
            raise ValueError("an answer needs text or media")
        return self


class TemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200,
                      description="The approved template (Twilio: its Content SID).")
    language: str = Field(default="en", min_length=2, max_length=20)
    parameters: list[Annotated[str, Field(max_length=1024)]] = Field(default_factory=list,
                                                                      max_length=20)
    id: str | None = Field(default=None, max_length=128, description="Idempotency key.")


CONVERSATION = "/api/messaging/conversations/{conversation_id}"


@router.get(CONVERSATION, responses=NOT_FOUND,
            summary="The messages of a conversation with their delivery state, and its thread")
async def conversation(conversation_id: str, request: Request,
                       principal: Handler) -> dict[str, Any]:
    await check_conversation_access(request, principal, conversation_id)
    return await (await messaging_desk(request, principal.tenant_id)).conversation(
        conversation_id)


@router.post(CONVERSATION + "/messages", status_code=201, responses=SEND_ERRORS,
             summary="Answer the customer on their channel (text and/or media by URL)")
async def answer(conversation_id: str, body: AnswerIn, request: Request,
                 principal: Handler) -> dict[str, Any]:
    agent_id = await agent_of(request, principal)
    desk = await messaging_desk(request, principal.tenant_id)
    return await desk.reply(agent_id, conversation_id, body.text, tuple(body.media_urls),
                            body.id)


@router.post(CONVERSATION + "/templates", status_code=201, responses=SEND_ERRORS,
             summary="Send an approved WhatsApp template (allowed outside the 24-hour window)")
async def template(conversation_id: str, body: TemplateIn, request: Request,
                   principal: Handler) -> dict[str, Any]:
    agent_id = await agent_of(request, principal)
    desk = await messaging_desk(request, principal.tenant_id)
    return await desk.send_template(agent_id, conversation_id, body.name, body.language,
                                    tuple(body.parameters), body.id)


@router.post(CONVERSATION + "/finish", responses=SEND_ERRORS,
             summary="Done for now (wrap-up follows when the queue asks)")
async def finish(conversation_id: str, request: Request, principal: Handler) -> dict[str, str]:
    agent_id = await agent_of(request, principal)
    await (await messaging_desk(request, principal.tenant_id)).finish(agent_id,
                                                                      conversation_id)
    return {"status": "finished"}


@router.post(CONVERSATION + "/transfer", responses=SEND_ERRORS,
             summary="Hand the conversation to a queue or a colleague; answers the desk's state")
async def transfer(conversation_id: str, body: Transfer, request: Request,
                   principal: Handler) -> dict[str, Any]:
    agent_id = await agent_of(request, principal)
    await (await messaging_desk(request, principal.tenant_id)).transfer(
        agent_id, conversation_id, queue_id=body.queue_id, to_agent_id=body.agent_id)
    return desk_state(await tenant_runtime(request, principal), agent_id)


# --- accounts ----------------------------------------------------------------------------------

class AccountIn(BaseModel):
    """A provider account; secrets left out of a change are kept."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    provider: ProviderName
    channel: Channel
    queue_id: str = Field(max_length=36, description="Where its messages are routed.")
    address: str = Field(min_length=1, max_length=200, description=(
        "Twilio: our number (E.164); WhatsApp: the phone number id; Telegram: the bot's "
        "username; Messenger: the page id."))
    account_sid: str = Field(default="", max_length=100, description="Twilio's Account SID.")
    auth_token: str | None = Field(default=None, max_length=500, description=(
        "Twilio's auth token, the WhatsApp or page access token, the bot token."))
    app_secret: str | None = Field(default=None, max_length=500, description=(
        "Meta's app secret, or the secret token given to Telegram's setWebhook."))
    verify_token: str | None = Field(default=None, max_length=500,
                                     description="Meta's webhook verify token.")
    api_base_url: str = Field(default="", max_length=500, pattern=r"^(https?://\S+)?$",
                              description="Empty: the provider's public API.")
    is_enabled: bool = True

    @model_validator(mode="after")
    def _channel_fits(self) -> AccountIn:
        if self.channel not in CHANNELS[self.provider]:
            raise ValueError(f"{self.provider} carries {', '.join(CHANNELS[self.provider])}")
        return self


class AccountOut(BaseModel):
    id: str
    name: str
    provider: str
    channel: str
    queue_id: str | None
    address: str
    account_sid: str
    has_auth_token: bool
    has_app_secret: bool
    has_verify_token: bool
    api_base_url: str
    is_enabled: bool
    webhook_path: str
    created_at: datetime


SECRETS: Final = ("auth_token", "app_secret", "verify_token")


def _out(row: MessagingAccount) -> AccountOut:
    return AccountOut(
        id=row.id, name=row.name, provider=row.provider, channel=row.channel,
        queue_id=row.queue_id, address=row.address, account_sid=row.account_sid,
        has_auth_token=bool(row.auth_token), has_app_secret=bool(row.app_secret),
        has_verify_token=bool(row.verify_token), api_base_url=row.api_base_url,
        is_enabled=row.is_enabled, webhook_path=f"/api/messaging/{row.id}/webhook",
        created_at=row.created_at)


def _apply(row: MessagingAccount, body: AccountIn) -> None:
    for key, value in body.model_dump(exclude=set(SECRETS)).items():
        setattr(row, key, value)
    for key in SECRETS:
        value = getattr(body, key)
        if value is not None:
            setattr(row, key, value)


async def _save(request: Request, principal: Principal, body: AccountIn,
                account_id: str | None) -> AccountOut:
    return await save_source(
        request, principal, MessagingAccounts, body, row_id=account_id,
        new=lambda: MessagingAccount(auth_token="", app_secret="", verify_token=""),
        apply=_apply, out=_out, name_column=MessagingAccount.name, owner="account")


ADMIN = "/api/admin/messaging/accounts"


@router.get(ADMIN, response_model=list[AccountOut], summary="List accounts (no secrets)")
async def list_accounts(request: Request, principal: Admin) -> list[AccountOut]:
    return await list_sources(request, principal, MessagingAccounts, MessagingAccount.name,
                              _out)


@router.get(ADMIN + "/{account_id}", response_model=AccountOut, responses=NOT_FOUND,
            summary="Get an account (no secrets)")
async def get_account(account_id: str, request: Request, principal: Admin) -> AccountOut:
    return await get_source(request, principal, MessagingAccounts, account_id, _out)


@router.post(ADMIN, status_code=201, response_model=AccountOut, responses=CHANGE_ERRORS,
             summary="Add a messaging account (its webhook is at webhook_path)")
async def create_account(body: AccountIn, request: Request, principal: Admin) -> AccountOut:
    out = await _save(request, principal, body, None)
    await messaging_desk(request, principal.tenant_id)  # its outbox sender runs from now on
    return out


@router.put(ADMIN + "/{account_id}", response_model=AccountOut, responses=CHANGE_ERRORS,
            summary="Change an account (left-out secrets are kept)")
async def update_account(account_id: str, body: AccountIn, request: Request,
                         principal: Admin) -> AccountOut:
    out = await _save(request, principal, body, account_id)
    messaging_service(request).forget(account_id)
    return out


@router.delete(ADMIN + "/{account_id}", status_code=204, responses=NOT_FOUND,
               summary="Remove an account and the record of its messages")
async def delete_account(account_id: str, request: Request, principal: Admin) -> None:
    async with changing(request, principal, affects_routing=False) as session:
        await MessagingAccounts(session, principal.tenant_id).delete(account_id)
    messaging_service(request).forget(account_id)

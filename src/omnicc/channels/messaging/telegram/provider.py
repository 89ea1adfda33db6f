"""Telegram: the bot's webhook (set with `setWebhook` and a `secret_token`) receives Update
objects with the `X-Telegram-Bot-Api-Secret-Token` header; a message goes out by
`POST /bot{token}/sendMessage` (`sendPhoto`, `sendDocument` for media by URL).

An Update's message id is unique only within its chat, so the provider message id is
`{chat id}:{message id}`. An inbound file is kept as `telegram-file:{file_id}`: its download
URL contains the bot's token and must not reach a browser. Telegram sends no delivery
receipts to bots: a message is `sent` when the Bot API took it.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any, Final

import httpx

from omnicc.channels.messaging.shape import (
    Account,
    BadPayload,
    BadSignature,
    InboundMessage,
    Media,
    MediaFailed,
    MediaSource,
    Outgoing,
    Parsed,
    SendFailed,
    WebhookRequest,
    base_url,
    failed_response,
    file_name,
    get,
    is_image,
    json_body,
    media_failure,
    post,
    response_json,
)

TELEGRAM_FILE: Final = "telegram-file:"
"""How a received file is kept: its file id (the Bot API's download URL holds the token)."""


class TelegramProvider:
    name = "telegram"
    default_base_url = "https://api.telegram.org"

    def verify(self, account: Account, request: WebhookRequest) -> None:
        given = request.headers.get("x-telegram-bot-api-secret-token", "")
        if not account.app_secret:
            raise BadSignature("the account has no secret token to check webhooks with")
        if not hmac.compare_digest(given.encode(), account.app_secret.encode()):
            raise BadSignature("X-Telegram-Bot-Api-Secret-Token is not the account's")

    def handshake(self, account: Account, query: Mapping[str, str]) -> str | None:
        return None

    def parse(self, account: Account, request: WebhookRequest) -> Parsed:
        body = json_body(request)
        if not isinstance(body.get("update_id"), int):
            raise BadPayload("update_id is missing")
        message = body.get("message")
        if message is None:
            return Parsed()  # edits, channel posts, inline queries: nothing for the desk
        try:
            return Parsed(messages=[self._message(message)])
        except (KeyError, TypeError, AttributeError) as error:
            raise BadPayload(f"not a Telegram message: missing or wrong {error}") from None

    def _message(self, message: Mapping[str, Any]) -> InboundMessage:
        chat_id = message["chat"]["id"]
        sender = message.get("from") or {}
        name = " ".join(part for part in (sender.get("first_name"), sender.get("last_name"))
                        if part)
        media: list[Media] = []
        if message.get("photo"):
            largest = message["photo"][-1]
            media.append(Media(url=f"{TELEGRAM_FILE}{largest['file_id']}",
                               content_type="image/jpeg"))
        for kind in ("document", "audio", "voice", "video"):
            if kind in message:
                part = message[kind]
                media.append(Media(url=f"{TELEGRAM_FILE}{part['file_id']}",
                                   content_type=part.get("mime_type", "")))
        return InboundMessage(provider_message_id=f"{chat_id}:{message['message_id']}",
                              peer=str(chat_id),
                              text=message.get("text") or message.get("caption") or "",
                              name=name or sender.get("username", ""), media=tuple(media))

    async def send(self, client: httpx.AsyncClient, account: Account,
                   outgoing: Outgoing) -> str:
        if outgoing.media_urls:
            url = outgoing.media_urls[0]
            method, field = ("sendPhoto", "photo") if is_image(url) else ("sendDocument",
                                                                          "document")
            payload: dict[str, Any] = {"chat_id": outgoing.peer, field: url}
            if outgoing.text:
                payload["caption"] = outgoing.text
        else:
            method, payload = "sendMessage", {"chat_id": outgoing.peer, "text": outgoing.text}
        response = await post(client, f"{base_url(self, account)}/bot{account.auth_token}/"
                                       f"{method}", json=payload)
        body = response_json(response)
        if response.status_code >= 400 or not body.get("ok"):
            raise failed_response(response, str(body.get("description", "refused")))
        result = body.get("result") or {}
        if not isinstance(result, dict) or "message_id" not in result:
            raise SendFailed("the Bot API's answer has no message_id", retryable=False)
        return f"{outgoing.peer}:{result['message_id']}"

    async def media_source(self, client: httpx.AsyncClient, account: Account,
                           media: Media) -> MediaSource:
        """`getFile` answers the file's path; its bytes are at `/file/bot{token}/{path}`
        (the Bot API lets bots download files up to 20 MB)."""
        file_id = media.url.removeprefix(TELEGRAM_FILE)
        bot = f"{base_url(self, account)}/bot{account.auth_token}"
        response = await get(client, f"{bot}/getFile", params={"file_id": file_id})
        body = response_json(response)
        if response.status_code >= 400 or not body.get("ok"):
            raise media_failure(response, str(body.get("description", "refused")))
        path = (body.get("result") or {}).get("file_path")
        if not isinstance(path, str) or not path:
            raise MediaFailed("getFile answered no file_path", retryable=False)
        return MediaSource(f"{base_url(self, account)}/file/bot{account.auth_token}/{path}",
                           filename=file_name(path))

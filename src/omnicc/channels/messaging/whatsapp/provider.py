"""WhatsApp Cloud API: webhooks (`object: whatsapp_business_account`) carry `messages` and
`statuses` in `entry[].changes[].value`, signed with `X-Hub-Signature-256`; a message goes out
by `POST /{version}/{phone-number-id}/messages` with the access token as a Bearer token.

An inbound photo, voice note or document names a media id, not a URL: it is kept as the Graph
API URL of that media (`GET` it with the access token for the download link). A message
refused outside the 24-hour customer-service window (error 131047) is not retried.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import httpx

from omnicc.app.voice import normalize_phone
from omnicc.channels.messaging.meta import GRAPH_VERSION, GraphProvider, graph_failure
from omnicc.channels.messaging.shape import (
    Account,
    InboundMessage,
    Media,
    MediaFailed,
    MediaSource,
    Outgoing,
    Parsed,
    Receipt,
    ReceiptState,
    SendFailed,
    base_url,
    get,
    is_image,
    media_failure,
    post,
    response_json,
)

MEDIA_TYPES: Final = ("image", "audio", "video", "document", "sticker")
STATES: Final[dict[str, ReceiptState]] = {"sent": "sent", "delivered": "delivered",
                                          "read": "read", "failed": "failed"}


def _errors(status: Mapping[str, Any]) -> str:
    errors = status.get("errors") or []
    return "; ".join(f"{e.get('title') or e.get('message', '')} (code {e.get('code', '?')})"
                     for e in errors if isinstance(e, dict))


class WhatsAppProvider(GraphProvider):
    name = "whatsapp"
    label = "WhatsApp"
    webhook_object = "whatsapp_business_account"

    def _entry(self, account: Account, entry: Mapping[str, Any], parsed: Parsed) -> None:
        for change in entry.get("changes", []):
            if change.get("field") != "messages":
                continue
            value = change["value"]
            names = {c["wa_id"]: c.get("profile", {}).get("name", "")
                     for c in value.get("contacts", [])}
            for message in value.get("messages", []):
                parsed.messages.append(self._message(account, message, names))
            for status in value.get("statuses", []):
                state = STATES.get(status["status"])
                if state is not None:
                    parsed.receipts.append(Receipt(
                        state=state, provider_message_id=status["id"],
                        error=_errors(status)))

    def _message(self, account: Account, message: Mapping[str, Any],
                 names: Mapping[str, str]) -> InboundMessage:
        kind = message["type"]
        text = ""
        media: tuple[Media, ...] = ()
        if kind == "text":
            text = message["text"]["body"]
        elif kind in MEDIA_TYPES:
            part = message[kind]
            text = part.get("caption", "")
            media = (Media(url=f"{base_url(self, account)}/{GRAPH_VERSION}/{part['id']}",
                           content_type=part.get("mime_type", "")),)
        elif kind == "button":
            text = message["button"].get("text", "")
        elif kind == "interactive":
            reply = message["interactive"]
            chosen = reply.get("button_reply") or reply.get("list_reply") or {}
            text = chosen.get("title", "")
        elif kind == "location":
            place = message["location"]
            text = f"Location: {place['latitude']}, {place['longitude']} {place.get('name', '')}"
        else:
            text = f"[a {kind} message the desk cannot show]"
        return InboundMessage(provider_message_id=message["id"],
                              peer=normalize_phone("+" + message["from"].lstrip("+")),
                              text=text, name=names.get(message["from"], ""), media=media)

    async def send(self, client: httpx.AsyncClient, account: Account,
                   outgoing: Outgoing) -> str:
        payload: dict[str, Any] = {"messaging_product": "whatsapp",
                                   "recipient_type": "individual",
                                   "to": outgoing.peer.lstrip("+")}
        if outgoing.template:
            template: dict[str, Any] = {"name": outgoing.template,
                                        "language": {"code": outgoing.template_language}}
            if outgoing.template_parameters:
                template["components"] = [{"type": "body", "parameters": [
                    {"type": "text", "text": value} for value in outgoing.template_parameters]}]
            payload |= {"type": "template", "template": template}
        elif outgoing.media_urls:
            url = outgoing.media_urls[0]
            kind = "image" if is_image(url) else "document"
            part: dict[str, Any] = {"link": url}
            if outgoing.text:
                part["caption"] = outgoing.text
            payload |= {"type": kind, kind: part}
        else:
            payload |= {"type": "text", "text": {"preview_url": False, "body": outgoing.text}}
        url = f"{base_url(self, account)}/{GRAPH_VERSION}/{account.address}/messages"
        response = await post(client, url, json=payload,
                              headers={"Authorization": f"Bearer {account.auth_token}"})
        if response.status_code >= 400:
            raise graph_failure(response)
        messages = response_json(response).get("messages") or [{}]
        message_id = messages[0].get("id") if isinstance(messages[0], dict) else None
        if not isinstance(message_id, str) or not message_id:
            raise SendFailed("the Cloud API's answer has no message id", retryable=False)
        return message_id

    async def media_source(self, client: httpx.AsyncClient, account: Account,
                           media: Media) -> MediaSource:
        """`GET /{media-id}` (Bearer) answers the download URL; that URL wants the same
        token. It is valid for five minutes: asked for just before the download."""
        bearer = {"Authorization": f"Bearer {account.auth_token}"}
        response = await get(client, media.url, headers=bearer)
        body = response_json(response)
        if response.status_code >= 400:
            error = body.get("error")
            reason = (error.get("message", "refused") if isinstance(error, dict)
                      else response.reason_phrase)
            raise media_failure(response, str(reason))
        url = body.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise MediaFailed("the Cloud API's answer has no download url", retryable=False)
        return MediaSource(url, bearer, filename=f"{body.get('id', 'media')}")

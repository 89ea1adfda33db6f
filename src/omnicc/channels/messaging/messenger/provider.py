"""Messenger: page webhooks (`object: page`) carry `entry[].messaging[]` events (a `message`,
a `delivery` naming message ids, a `read` watermark), signed with `X-Hub-Signature-256`; a
message goes out by `POST /{version}/me/messages?access_token=...` (the page's token).

Within 24 hours of the customer's last message an answer is `messaging_type: RESPONSE`; after
that Messenger accepts a person's answer only with the `HUMAN_AGENT` tag (7 days).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from omnicc.channels.messaging.meta import GRAPH_VERSION, GraphProvider, graph_failure
from omnicc.channels.messaging.shape import (
    Account,
    InboundMessage,
    Media,
    MediaSource,
    Outgoing,
    Parsed,
    Receipt,
    SendFailed,
    base_url,
    file_name,
    is_image,
    post,
    response_json,
)


class MessengerProvider(GraphProvider):
    name = "messenger"
    label = "Messenger"
    webhook_object = "page"
    malformed = (KeyError, TypeError, AttributeError, ValueError)

    def _entry(self, account: Account, entry: Mapping[str, Any], parsed: Parsed) -> None:
        for event in entry.get("messaging", []):
            self._event(event, parsed)

    def _event(self, event: Mapping[str, Any], parsed: Parsed) -> None:
        psid = str(event["sender"]["id"])
        if "message" in event:
            message = event["message"]
            if message.get("is_echo"):
                return  # our own message, sent by us or from the page's inbox
            media = tuple(Media(url=a["payload"]["url"], content_type=a.get("type", ""))
                          for a in message.get("attachments", [])
                          if isinstance(a.get("payload"), dict) and a["payload"].get("url"))
            parsed.messages.append(InboundMessage(
                provider_message_id=message["mid"], peer=psid,
                text=message.get("text", ""), media=media))
        elif "delivery" in event:
            parsed.receipts.extend(Receipt(state="delivered", provider_message_id=mid)
                                   for mid in event["delivery"].get("mids", []))
        elif "read" in event:
            watermark = int(event["read"]["watermark"]) / 1000
            parsed.receipts.append(Receipt(state="read", peer=psid,
                                           read_up_to=datetime.fromtimestamp(watermark, UTC)))

    async def send(self, client: httpx.AsyncClient, account: Account,
                   outgoing: Outgoing) -> str:
        if outgoing.media_urls:
            url = outgoing.media_urls[0]
            message: dict[str, Any] = {"attachment": {
                "type": "image" if is_image(url) else "file",
                "payload": {"url": url, "is_reusable": True}}}
        else:
            message = {"text": outgoing.text}
        payload: dict[str, Any] = {"recipient": {"id": outgoing.peer}, "message": message}
        if outgoing.in_window:
            payload["messaging_type"] = "RESPONSE"
        else:
            payload |= {"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"}
        url = f"{base_url(self, account)}/{GRAPH_VERSION}/me/messages"
        response = await post(client, url, json=payload,
                              params={"access_token": account.auth_token})
        if response.status_code >= 400:
            raise graph_failure(response)
        message_id = response_json(response).get("message_id")
        if not isinstance(message_id, str) or not message_id:
            raise SendFailed("the Send API's answer has no message_id", retryable=False)
        return message_id

    async def media_source(self, client: httpx.AsyncClient, account: Account,
                           media: Media) -> MediaSource:
        """An attachment's `payload.url` is a CDN link that needs no token (and expires)."""
        return MediaSource(media.url, filename=file_name(media.url))

"""Twilio: an incoming message or a status callback is a form POST signed with
`X-Twilio-Signature`; a message goes out by `POST /2010-04-01/Accounts/{sid}/Messages.json`
with basic auth (Account SID, auth token).

The signature is the base64 HMAC-SHA1, keyed with the auth token, of the URL Twilio called
followed by each POST parameter's name and value, sorted by name. Twilio may sign the URL with
or without its port (`:443`), so both forms are accepted, as its own validator does.
WhatsApp through Twilio is the same API with `whatsapp:` before the numbers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import httpx

from omnicc.app.voice import normalize_phone
from omnicc.channels.messaging.shape import (
    Account,
    BadPayload,
    BadSignature,
    InboundMessage,
    Media,
    MediaSource,
    Outgoing,
    Parsed,
    Receipt,
    ReceiptState,
    SendFailed,
    WebhookRequest,
    base_url,
    failed_response,
    post,
    response_json,
)

STATES: Final[dict[str, ReceiptState | None]] = {
    "accepted": None, "scheduled": None, "queued": None, "sending": None, "sent": "sent",
    "delivered": "delivered", "read": "read", "undelivered": "failed", "failed": "failed",
    "canceled": "failed",
}
WHATSAPP: Final = "whatsapp:"


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """Twilio's request signature of `url` and the POST parameters."""
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    data = url + "".join(name + value for name in sorted(values)
                         for value in sorted(values[name]))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _url_forms(url: str) -> set[str]:
    """The URL as given, without its port, and with the scheme's default port."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    default_port = 443 if parts.scheme == "https" else 80
    auth = f"{parts.username}:{parts.password}@" if parts.username else ""
    bare = urlunsplit(parts._replace(netloc=f"{auth}{host}"))
    ported = urlunsplit(parts._replace(netloc=f"{auth}{host}:{parts.port or default_port}"))
    return {url, bare, ported}


class TwilioProvider:
    name = "twilio"
    default_base_url = "https://api.twilio.com"

    def verify(self, account: Account, request: WebhookRequest) -> None:
        given = request.headers.get("x-twilio-signature", "")
        if not account.auth_token:
            raise BadSignature("the account has no auth token to check signatures with")
        for url in _url_forms(request.url):
            expected = twilio_signature(account.auth_token, url, request.form)
            if given and hmac.compare_digest(given, expected):
                return
        raise BadSignature("X-Twilio-Signature does not match the URL and parameters")

    def handshake(self, account: Account, query: Mapping[str, str]) -> str | None:
        return None

    def parse(self, account: Account, request: WebhookRequest) -> Parsed:
        form = dict(request.form)
        sid = form.get("MessageSid") or form.get("SmsSid") or ""
        if not sid:
            raise BadPayload("MessageSid is missing")
        status = form.get("MessageStatus") or form.get("SmsStatus") or ""
        if status and status != "received":
            if status not in STATES:
                raise BadPayload(f"unknown MessageStatus {status!r}")
            state = STATES[status]
            if state is None:
                return Parsed()
            error = form.get("ErrorCode", "")
            return Parsed(receipts=[Receipt(
                state=state, provider_message_id=sid,
                error=f"Twilio error {error}" if error else "")])
        sender = form.get("From", "")
        if not sender:
            raise BadPayload("From is missing")
        try:
            count = int(form.get("NumMedia", "0") or "0")
        except ValueError:
            raise BadPayload("NumMedia is not a number") from None
        media = tuple(Media(url=form[f"MediaUrl{i}"],
                            content_type=form.get(f"MediaContentType{i}", ""))
                      for i in range(count) if form.get(f"MediaUrl{i}"))
        peer = normalize_phone(sender.removeprefix(WHATSAPP))
        return Parsed(messages=[InboundMessage(
            provider_message_id=sid, peer=peer, text=form.get("Body", ""),
            name=form.get("ProfileName", ""), media=media)])

    async def send(self, client: httpx.AsyncClient, account: Account,
                   outgoing: Outgoing) -> str:
        prefix = WHATSAPP if account.channel == "whatsapp" else ""
        data: dict[str, str | list[str]] = {"To": prefix + outgoing.peer,
                                            "From": prefix + account.address}
        if outgoing.template:
            data["ContentSid"] = outgoing.template
            data["ContentVariables"] = json.dumps(
                {str(i): value for i, value in enumerate(outgoing.template_parameters, 1)})
        else:
            if outgoing.text:
                data["Body"] = outgoing.text
            if outgoing.media_urls:
                data["MediaUrl"] = list(outgoing.media_urls)
        if outgoing.status_callback_url:
            data["StatusCallback"] = outgoing.status_callback_url
        url = (f"{base_url(self, account)}/2010-04-01/Accounts/{account.account_sid}"
               f"/Messages.json")
        response = await post(client, url, data=data,
                               auth=(account.account_sid, account.auth_token))
        body = response_json(response)
        if response.status_code >= 400:
            raise failed_response(response, f"{body.get('message', response.reason_phrase)}"
                                            f" (code {body.get('code', '?')})")
        sid = body.get("sid")
        if not isinstance(sid, str) or not sid:
            raise SendFailed("Twilio's answer has no message sid", retryable=False)
        if body.get("status") == "failed":
            raise SendFailed(f"Twilio failed it: {body.get('error_message')}", retryable=False)
        return sid

    async def media_source(self, client: httpx.AsyncClient, account: Account,
                           media: Media) -> MediaSource:
        """`MediaUrl{n}` with the account's basic auth (Twilio's default; it redirects to
        its CDN, and the credentials are not sent across that redirect)."""
        basic = base64.b64encode(f"{account.account_sid}:{account.auth_token}".encode())
        return MediaSource(media.url, {"Authorization": f"Basic {basic.decode()}"})

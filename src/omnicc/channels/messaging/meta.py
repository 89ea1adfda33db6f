"""What WhatsApp's Cloud API and Messenger share, both being Meta webhooks and Graph API
calls: the `X-Hub-Signature-256` check, the `hub.challenge` subscription handshake, the
webhook's `object` and `entry[]` envelope and the Graph API's error body."""

from __future__ import annotations

import hashlib
import hmac
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Final

import httpx

from omnicc.channels.messaging.shape import (
    Account,
    BadPayload,
    BadSignature,
    Parsed,
    SendFailed,
    WebhookRequest,
    failed_response,
    json_body,
    response_json,
)

GRAPH_URL: Final = "https://graph.facebook.com"
GRAPH_VERSION: Final = "v21.0"


def hub_signature(app_secret: str, body: bytes) -> str:
    """`sha256=` and the hex HMAC-SHA256 of the raw body keyed with the app secret."""
    digest = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_hub_signature(account: Account, request: WebhookRequest) -> None:
    given = request.headers.get("x-hub-signature-256", "")
    if not account.app_secret:
        raise BadSignature("the account has no app secret to check signatures with")
    if not given or not hmac.compare_digest(
            given.lower(), hub_signature(account.app_secret, request.body)):
        raise BadSignature("X-Hub-Signature-256 does not match the body")


def hub_challenge(account: Account, query: Mapping[str, str]) -> str | None:
    """Meta's subscription check: `hub.mode=subscribe`, our verify token, then echo
    `hub.challenge`. None when the request is not one; `BadSignature` for a wrong token."""
    if query.get("hub.mode") != "subscribe":
        return None
    token = query.get("hub.verify_token", "")
    if not account.verify_token or not hmac.compare_digest(token, account.verify_token):
        raise BadSignature("hub.verify_token is not this account's verify token")
    return query.get("hub.challenge", "")


def graph_failure(response: httpx.Response) -> SendFailed:
    """The Graph API's `{"error": {"message", "code", ...}}` as a `SendFailed`."""
    error = response_json(response).get("error")
    if isinstance(error, dict):
        reason = f"{error.get('message', 'refused')} (code {error.get('code', '?')})"
    else:
        reason = response.text[:500] or response.reason_phrase
    return failed_response(response, reason)


class GraphProvider(ABC):
    """A Meta provider's webhook side: signature, handshake and the `entry[]` envelope; a
    subclass reads one entry and sends."""

    label: ClassVar[str]
    webhook_object: ClassVar[str]
    malformed: ClassVar[tuple[type[Exception], ...]] = (KeyError, TypeError, AttributeError)
    default_base_url = GRAPH_URL

    def verify(self, account: Account, request: WebhookRequest) -> None:
        verify_hub_signature(account, request)

    def handshake(self, account: Account, query: Mapping[str, str]) -> str | None:
        return hub_challenge(account, query)

    def parse(self, account: Account, request: WebhookRequest) -> Parsed:
        body = json_body(request)
        if body.get("object") != self.webhook_object:
            raise BadPayload(f"object is not {self.webhook_object}")
        parsed = Parsed()
        try:
            for entry in body["entry"]:
                self._entry(account, entry, parsed)
        except self.malformed as error:
            raise BadPayload(f"not a {self.label} webhook: missing or wrong {error}") from None
        return parsed

    @abstractmethod
    def _entry(self, account: Account, entry: Mapping[str, Any], parsed: Parsed) -> None:
        """Read one `entry[]` item of the webhook into `parsed`."""

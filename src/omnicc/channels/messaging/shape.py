"""The one shape of every messaging provider: what a webhook carries in, what goes out, and
how a provider says no.

A provider checks a webhook's signature (`verify`), turns its body into messages and receipts
(`parse`) and sends a message through its REST API (`send`). A failed send says whether trying
again may help (`SendFailed.retryable`: network trouble, 429 and 5xx) so the outbox retries
only those and shows the rest to the agent as failed at once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import httpx

ReceiptState = Literal["sent", "delivered", "read", "failed"]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp")


class BadSignature(Exception):
    """The webhook is not from the provider (or not for this account): answered 403."""


class BadPayload(Exception):
    """The webhook's body is not what the provider documents: answered 400 with the reason."""


class MediaFailed(Exception):
    """A received medium could not be fetched; `retryable` when a later try may work."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.retryable = retryable


class SendFailed(Exception):
    """The provider refused or could not be reached; `retryable` when a later try may work."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class Account:
    """What a provider needs of an account (see `MessagingAccount`)."""

    channel: str
    address: str
    account_sid: str = ""
    auth_token: str = ""
    app_secret: str = ""
    verify_token: str = ""
    api_base_url: str = ""


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """A webhook as received: `url` is the public URL the provider called (Twilio signs it),
    `headers` have lower-case names, `form` the decoded form fields in order."""

    method: str
    url: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    form: Sequence[tuple[str, str]] = ()


@dataclass(frozen=True, slots=True)
class Media:
    url: str
    content_type: str = ""


@dataclass(frozen=True, slots=True)
class MediaSource:
    """Where a received medium's bytes are, with the credentials the provider wants for them
    (`filename`: the provider's name for the file, shown once the bytes said what it is)."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    filename: str = ""


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A customer's message. `peer` is how the provider names the customer (a phone number,
    a chat id, a page-scoped id), `provider_message_id` is unique per account."""

    provider_message_id: str
    peer: str
    text: str
    name: str = ""
    media: tuple[Media, ...] = ()


@dataclass(frozen=True, slots=True)
class Receipt:
    """A delivery receipt for one of our messages, or (`read_up_to`) for all of them sent to
    `peer` up to a time (Messenger's read watermark)."""

    state: ReceiptState
    provider_message_id: str = ""
    error: str = ""
    peer: str = ""
    read_up_to: datetime | None = None


@dataclass(frozen=True, slots=True)
class Parsed:
    messages: list[InboundMessage] = field(default_factory=list)
    receipts: list[Receipt] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to send: text and/or media by URL, or an approved template (WhatsApp)."""

    peer: str
    text: str = ""
    media_urls: tuple[str, ...] = ()
    template: str = ""
    template_language: str = ""
    template_parameters: tuple[str, ...] = ()
    status_callback_url: str = ""
    in_window: bool = True
    """Whether the customer wrote in the last 24 hours (Messenger tags answers after it)."""


class Provider(Protocol):
    name: str
    default_base_url: str

    def verify(self, account: Account, request: WebhookRequest) -> None:
        """Raise `BadSignature` unless the provider signed this request for this account."""

    def handshake(self, account: Account, query: Mapping[str, str]) -> str | None:
        """The answer to a subscription check (Meta's hub.challenge), None when not one."""

    def parse(self, account: Account, request: WebhookRequest) -> Parsed:
        """The messages and receipts of a verified webhook; `BadPayload` if malformed."""

    async def send(self, client: httpx.AsyncClient, account: Account,
                   outgoing: Outgoing) -> str:
        """Send; the provider's message id. `SendFailed` when it was not accepted."""

    async def media_source(self, client: httpx.AsyncClient, account: Account,
                           media: Media) -> MediaSource:
        """Where to fetch a received medium (asking the provider's API when it gives an id,
        not a URL). `MediaFailed` when it will not say."""


def base_url(provider: Provider, account: Account) -> str:
    return (account.api_base_url or provider.default_base_url).rstrip("/")


def is_image(url: str) -> bool:
    return urlsplit(url).path.lower().endswith(IMAGE_SUFFIXES)


def json_body(request: WebhookRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadPayload(f"the body is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise BadPayload("the body is not a JSON object")
    return body


def failed_response(response: httpx.Response, reason: str) -> SendFailed:
    """A refusal: a later try may help after 429 (rate limit) and 5xx, not after other 4xx."""
    retryable = response.status_code == 429 or response.status_code >= 500
    return SendFailed(f"{response.status_code}: {reason}"[:2000], retryable=retryable)


async def post(client: httpx.AsyncClient, url: str, **kwargs: Any) -> httpx.Response:
    """POST, with network trouble as a retryable `SendFailed`."""
    try:
        return await client.post(url, **kwargs)
    except httpx.HTTPError as error:
        raise SendFailed(f"{type(error).__name__}: {error}"[:2000], retryable=True) from None


def media_failure(response: httpx.Response, reason: str) -> MediaFailed:
    """A refused media request: a later try may help after 429 and 5xx."""
    retryable = response.status_code == 429 or response.status_code >= 500
    return MediaFailed(f"{response.status_code}: {reason}"[:500], retryable=retryable)


def file_name(url: str) -> str:
    """The last part of a URL's path (a provider's name for the file)."""
    return urlsplit(url).path.rstrip("/").rpartition("/")[2]


async def get(client: httpx.AsyncClient, url: str, **kwargs: Any) -> httpx.Response:
    """GET for a media lookup, with network trouble as a retryable `MediaFailed`."""
    try:
        return await client.get(url, **kwargs)
    except httpx.HTTPError as error:
        raise MediaFailed(f"{type(error).__name__}: {error}"[:500], retryable=True) from None


def response_json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}

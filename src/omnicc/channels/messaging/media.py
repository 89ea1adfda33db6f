"""A customer's media (a photo, a document sent by WhatsApp, Telegram, Messenger or Twilio MMS)
fetched into OmniCC's attachment store, so the agent has the file itself in the conversation,
not a provider's link that expires or needs the account's credentials.

The provider says where the bytes are (`Provider.media_source`: a URL with its credentials,
asked for through its API when the webhook gave only an id). The bytes stream into the store,
which counts them against its size limit and decides the type by the first bytes (the
provider's content type is not believed): what it refuses is never kept.
"""

from __future__ import annotations

import httpx

from omnicc.app.attachments import AttachmentStore, StoredFile, UploadTooLarge
from omnicc.channels.messaging.shape import (
    Account,
    Media,
    MediaFailed,
    Provider,
    file_name,
    media_failure,
)


async def fetch_medium(client: httpx.AsyncClient, provider: Provider, account: Account,
                       media: Media, store: AttachmentStore, tenant_id: str) -> StoredFile:
    """The medium's bytes into `store`. `MediaFailed` when the provider would not give them,
    the store's refusals (`UploadTooLarge`, `UnsupportedFileType`, `EmptyUpload`) as they
    are."""
    source = await provider.media_source(client, account, media)
    try:
        async with client.stream("GET", source.url, headers=dict(source.headers),
                                 follow_redirects=True) as response:
            if response.status_code >= 400:
                await response.aread()
                raise media_failure(response, response.reason_phrase or "refused")
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) > store.max_bytes:
                raise UploadTooLarge(store.max_bytes)  # said before a byte is read
            name = source.filename or file_name(source.url) or "media"
            return await store.receive(tenant_id, name, response.aiter_bytes())
    except httpx.HTTPError as error:
        raise MediaFailed(f"{type(error).__name__}: {error}"[:500], retryable=True) from None

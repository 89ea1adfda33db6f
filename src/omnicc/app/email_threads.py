"""Email threads: Message-IDs (normalised and hashed) and the `[#REF]` token a ticket's
subject carries, for the mail clients that drop In-Reply-To and References."""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Final

MESSAGE_ID: Final = re.compile(r"<[^<>\s]+>")
TOKEN: Final = re.compile(r"\[#([A-Z0-9]{6,12})\]", re.IGNORECASE)
REFERENCE_ALPHABET: Final = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud
REFERENCE_LENGTH: Final = 8
REPLY_PREFIX: Final = re.compile(r"^\s*((re|aw|sv|antw|vs|r|fw|fwd|wg|tr)\s*(\[\d+\])?\s*:\s*)+",
                                 re.IGNORECASE)


def message_ids(header: str | None) -> list[str]:
    """The Message-IDs in a header (References holds several), `<...>` each, in order."""
    return MESSAGE_ID.findall(header or "")


def normal_message_id(header: str | None) -> str:
    """One Message-ID as `<id>`, or "" when the header has none."""
    found = message_ids(header)
    if found:
        return found[0]
    text = (header or "").strip()
    return f"<{text}>" if text and " " not in text else ""


def message_id_hash(message_id: str) -> str:
    """The indexed form of a Message-ID (they can be 998 characters long)."""
    return hashlib.sha256(message_id.strip().encode("utf-8", "replace")).hexdigest()


def new_reference() -> str:
    return "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(REFERENCE_LENGTH))


def reference_in(subject: str) -> str | None:
    """The ticket reference of a `[#REF]` token in the subject, upper-cased."""
    found = TOKEN.search(subject or "")
    return found.group(1).upper() if found else None


def with_token(subject: str, reference: str) -> str:
    """The subject with the ticket's token, once."""
    if reference_in(subject) == reference:
        return subject
    return f"{subject.strip()} [#{reference}]".strip()


def reply_subject(subject: str, reference: str) -> str:
    """`Re: <subject without earlier Re:/AW:/SV: prefixes> [#REF]`."""
    bare = REPLY_PREFIX.sub("", subject or "").strip() or "Your message"
    return with_token(f"Re: {bare}", reference)

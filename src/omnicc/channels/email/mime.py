"""Reading and writing MIME with the standard library's `email` package (policy `default`,
its parsed headers reused when reading).

`read_email` turns the bytes of any message into an `InboundEmail`: headers decoded (RFC 2047
encoded words, any charset Python knows), the text and HTML bodies of `multipart/alternative`
and `multipart/related` trees decoded from their charset (an unknown or lying charset falls
back to a lossless-enough decode instead of failing), inline `cid:` images and attachments kept
as files, HTML sanitised and a plain-text alternative made when the sender gave none, and the
signs that a robot wrote it (see `loops.py`). Nothing in it raises on a malformed message: a
mailbox must never stall on one bad email.
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.policy import EmailPolicy
from email.utils import format_datetime, getaddresses, parseaddr
from functools import lru_cache
from typing import Any, Final

from omnicc.app.email_threads import message_ids, normal_message_id
from omnicc.app.emails import EmailFile, InboundEmail, OutgoingEmail
from omnicc.channels.email.loops import automation_of, bounce_of
from omnicc.channels.email.markup import html_to_text, sanitize_html

MAX_INLINE_IMAGE_BYTES: Final = 2 * 1024 * 1024
MAX_ADDRESS_CHARS: Final = 320  # RFC 5321's limits: 64 + 1 + 255
INLINE_IMAGE_TYPES: Final = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


class _ReadPolicy(EmailPolicy):
    """`policy.default` that parses each distinct header once: the parser and the readers
    ask for the same header many times (a part's content type a dozen times), and the
    standard library parses it again each time - most of a mailbox import's parsing time."""

    def header_fetch_parse(self, name: str, value: Any) -> Any:
        if hasattr(value, "name"):
            return value
        return _parsed_header(name, value)


@lru_cache(maxsize=4096)
def _parsed_header(name: str, value: str) -> Any:
    """A header object of `policy.default` (immutable, so shared)."""
    return email.policy.default.header_fetch_parse(name, value)


READ_POLICY: Final = _ReadPolicy()


def parse_bytes(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=READ_POLICY)
    assert isinstance(message, EmailMessage)  # policy.default builds EmailMessage
    return message


def header_text(message: Message, name: str) -> str:
    """A header as text; a malformed one is read as raw text rather than failing."""
    try:
        value = message.get(name)
    except (ValueError, IndexError, LookupError, UnicodeError):
        raw = message.get_all(name, failobj=[])
        return str(raw[0]) if raw else ""
    return "" if value is None else " ".join(str(value).split())


def addresses(message: Message, name: str) -> list[tuple[str, str]]:
    """(display name, lower-case address) of every mailbox in a header."""
    found = []
    for display, address in getaddresses([header_text(message, name)]):
        if "@" in address and len(address) <= MAX_ADDRESS_CHARS:
            found.append((display.strip(), address.strip().lower()))
    return found


def part_text(part: Message) -> str:
    """A text part's content, decoded from its charset whatever that charset claims."""
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    charset = part.get_content_charset() or "utf-8"
    for candidate in (charset, "utf-8", "cp1252"):
        try:
            return data.decode(candidate)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("latin-1")


def _filename(part: Message) -> str:
    try:
        name = part.get_filename()
    except (ValueError, LookupError, UnicodeError):
        name = None
    return (name or "").strip()


def _content_id(part: Message) -> str:
    return header_text(part, "Content-ID").strip().strip("<>")


def read_email(raw: bytes) -> InboundEmail:
    """Everything OmniCC keeps of a received email (see the module's docstring)."""
    message = parse_bytes(raw)
    texts: list[str] = []
    htmls: list[str] = []
    files: list[EmailFile] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        content_type = part.get_content_type()
        disposition = (part.get_content_disposition() or "").lower()
        filename = _filename(part)
        is_body = disposition != "attachment" and not filename
        if content_type == "text/plain" and is_body:
            texts.append(part_text(part))
        elif content_type == "text/html" and is_body:
            htmls.append(part_text(part))
        elif content_type in ("message/delivery-status", "text/rfc822-headers",
                              "message/rfc822", "message/disposition-notification"):
            continue
        else:
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
            files.append(EmailFile(filename=filename or f"part.{content_type.split('/')[-1]}",
                                   content_type=content_type, data=data,
                                   content_id=_content_id(part),
                                   is_inline=disposition == "inline" or (
                                       bool(_content_id(part)) and disposition != "attachment")))
    images = {file.content_id: _data_uri(file) for file in files
              if file.content_id and file.content_type in INLINE_IMAGE_TYPES
              and len(file.data) <= MAX_INLINE_IMAGE_BYTES}
    html = "\n".join(htmls)
    safe_html = sanitize_html(html, images) if html.strip() else ""
    text = "\n\n".join(t.strip() for t in texts if t.strip())
    if not text and html:
        text = html_to_text(html)
    sender_name, sender = (addresses(message, "From") or [("", "")])[0]
    references = message_ids(header_text(message, "References"))
    return InboundEmail(
        raw=raw,
        message_id=normal_message_id(header_text(message, "Message-ID")),
        in_reply_to=normal_message_id(header_text(message, "In-Reply-To")),
        references=tuple(references),
        from_address=sender,
        from_name=sender_name,
        reply_to=(addresses(message, "Reply-To") or [("", sender)])[0][1],
        to=tuple(address for _, address in addresses(message, "To")),
        cc=tuple(address for _, address in addresses(message, "Cc")),
        subject=header_text(message, "Subject"),
        text=text,
        safe_html=safe_html,
        files=tuple(files),
        automation=automation_of(message, sender),
        bounce=bounce_of(message, sender),
        content_hash=hashlib.sha256(raw).hexdigest(),
    )


def _data_uri(file: EmailFile) -> str:
    return f"data:{file.content_type};base64,{base64.b64encode(file.data).decode()}"


def compose(outgoing: OutgoingEmail) -> EmailMessage:
    """The MIME of an email we send: text and its HTML alternative, threading headers, and
    `Auto-Submitted: auto-replied` on automatic answers so other robots do not answer them."""
    message = EmailMessage(policy=email.policy.SMTP)
    name, address = parseaddr(outgoing.from_address)
    message["From"] = Address(display_name=outgoing.from_name or name,
                              addr_spec=address or outgoing.from_address)
    message["To"] = ", ".join(outgoing.to)
    message["Subject"] = outgoing.subject
    message["Message-ID"] = outgoing.message_id
    message["Date"] = format_datetime(outgoing.date)
    if outgoing.in_reply_to:
        message["In-Reply-To"] = outgoing.in_reply_to
    if outgoing.references:
        message["References"] = " ".join(outgoing.references)
    if outgoing.is_automatic:
        message["Auto-Submitted"] = "auto-replied"
        message["X-Auto-Response-Suppress"] = "All"
        message["Precedence"] = "auto_reply"
    message.set_content(outgoing.text)
    if outgoing.html:
        message.add_alternative(outgoing.html, subtype="html")
    return message

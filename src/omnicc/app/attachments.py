"""Files in chats: received within a size limit, recognised by their bytes, stored under a name
of our own, and posted to the conversation as a message.

The type of a file is what its first bytes say, from the short list in `FILE_KINDS`; the
client's Content-Type and the file's extension are never believed (a page renamed `.png` is
still a page, and is refused). The bytes go to a temporary file under
`<data_dir>/uploads/tmp` while they are counted and hashed, then move to
`<data_dir>/attachments/<tenant>/<year>/<random id>`: the uploader's file name is kept only
for display, cleaned of paths and control characters.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import os
import re
import secrets
import tempfile
import unicodedata
import zipfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Final

from omnicc.app.chats import Chat, ChatDesk
from omnicc.core.errors import InvalidConfiguration
from omnicc.store.tables import Attachment

CHUNK_BYTES: Final = 64 * 1024
SNIFF_BYTES: Final = 512
MAX_FILENAME_CHARS: Final = 200
TEXT_MARKUP: Final = (b"<!doctype", b"<html", b"<head", b"<body", b"<script", b"<svg",
                      b"<?xml", b"<iframe", b"<object", b"<embed", b"<meta")
BINARY_CHARACTERS: Final = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f]")


class UploadTooLarge(InvalidConfiguration):
    """A file over the size limit (HTTP 413)."""

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"The file is larger than the limit of {limit_bytes} bytes "
                         f"({limit_bytes / 1_048_576:.1f} MiB).")
        self.limit_bytes = limit_bytes


class UnsupportedFileType(InvalidConfiguration):
    """A file whose content is not one of the allowed kinds (HTTP 415)."""


class EmptyUpload(InvalidConfiguration):
    """A file with no bytes (HTTP 422)."""


@dataclass(frozen=True, slots=True)
class FileKind:
    """One allowed kind of file: the type it is served as, its usual extensions, and the test
    its content must pass."""

    content_type: str
    extensions: tuple[str, ...]
    matches: Callable[[bytes, Path], bool]
    is_image: bool = False


def _starts(*signatures: bytes) -> Callable[[bytes, Path], bool]:
    return lambda head, _: head.startswith(signatures)


def _webp(head: bytes, _: Path) -> bool:
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


def _office(inner: str) -> Callable[[bytes, Path], bool]:
    """An Office Open XML file: a zip holding `inner` (only its directory is read)."""

    def matches(head: bytes, path: Path) -> bool:
        if not head.startswith(b"PK\x03\x04"):
            return False
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
        except (zipfile.BadZipFile, OSError, ValueError):
            return False
        return inner in names and "[Content_Types].xml" in names

    return matches


def _text(head: bytes, path: Path) -> bool:
    """UTF-8 text without control characters (which binaries have, even when their bytes
    happen to decode), and not markup a browser would run."""
    start = head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    if start.startswith(TEXT_MARKUP):
        return False
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            try:
                if BINARY_CHARACTERS.search(decoder.decode(chunk)):
                    return False
            except UnicodeDecodeError:
                return False
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


# The allow-list: the only kinds of file a chat accepts. Text kinds come last: they are what
# is left when no binary signature matched, and `.csv` chooses CSV over plain text.
FILE_KINDS: Final[tuple[FileKind, ...]] = (
    FileKind("image/png", (".png",), _starts(b"\x89PNG\r\n\x1a\n"), is_image=True),
    FileKind("image/jpeg", (".jpg", ".jpeg"), _starts(b"\xff\xd8\xff"), is_image=True),
    FileKind("image/gif", (".gif",), _starts(b"GIF87a", b"GIF89a"), is_image=True),
    FileKind("image/webp", (".webp",), _webp, is_image=True),
    FileKind("application/pdf", (".pdf",), _starts(b"%PDF-")),
    FileKind("application/vnd.openxmlformats-officedocument.wordprocessingml.document",
             (".docx",), _office("word/document.xml")),
    FileKind("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
             (".xlsx",), _office("xl/workbook.xml")),
)
CSV: Final = FileKind("text/csv", (".csv",), _text)
PLAIN_TEXT: Final = FileKind("text/plain", (".txt", ".log", ".md"), _text)
IMAGE_TYPES: Final = frozenset(k.content_type for k in FILE_KINDS if k.is_image)
ALLOWED_TYPES: Final = tuple(k.content_type for k in (*FILE_KINDS, CSV, PLAIN_TEXT))


def sniff(path: Path, filename: str) -> FileKind:
    """The kind of the file at `path`, by its content; `UnsupportedFileType` if none fits."""
    with path.open("rb") as file:
        head = file.read(SNIFF_BYTES)
    for kind in FILE_KINDS:
        if kind.matches(head, path):
            return kind
    text = CSV if filename.lower().endswith(".csv") else PLAIN_TEXT
    if text.matches(head, path):
        return text
    raise UnsupportedFileType(
        "This kind of file cannot be sent. Allowed: images (PNG, JPEG, GIF, WebP), PDF, "
        "Word and Excel documents (.docx, .xlsx), plain text and CSV.")


def display_name(filename: str, kind: FileKind) -> str:
    """The uploader's file name, safe to show and to put in a header: no directories, no
    control or format characters, not too long, and an extension that matches the content."""
    name = PurePosixPath(filename.replace("\\", "/")).name
    name = unicodedata.normalize("NFC", name)
    name = "".join(c for c in name if unicodedata.category(c)[0] not in ("C", "Z") or c == " ")
    name = re.sub(r"\s+", " ", name).strip(" .")
    stem, dot, extension = name.rpartition(".")
    if not dot or f".{extension.lower()}" not in kind.extensions:
        stem, extension = name, kind.extensions[0].lstrip(".")
    stem = stem[:MAX_FILENAME_CHARS] or "file"
    return f"{stem}.{extension.lower()}"


@dataclass(frozen=True, slots=True)
class StoredFile:
    attachment: Attachment
    path: Path


class AttachmentStore:
    """Where files live on disk, and the use case that puts one in a chat."""

    def __init__(self, data_dir: Path, *, max_bytes: int) -> None:
        self.data_dir = data_dir.resolve()
        self.max_bytes = max_bytes

    def path_of(self, attachment: Attachment) -> Path:
        """The file's bytes on disk; never outside the attachments directory."""
        root = self.data_dir / "attachments"
        path = (self.data_dir / attachment.storage_path).resolve()
        if not path.is_relative_to(root):
            raise InvalidConfiguration(f"attachment {attachment.id} has a bad storage path")
        return path

    async def receive(self, tenant_id: str, filename: str,
                      chunks: AsyncIterator[bytes]) -> StoredFile:
        """Count, hash and keep the bytes; check the kind; move them to their own name."""
        temporary = self.data_dir / "uploads" / "tmp"
        temporary.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        handle, name = tempfile.mkstemp(dir=temporary, prefix="upload-")
        path = Path(name)
        try:
            with os.fdopen(handle, "wb") as file:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise UploadTooLarge(self.max_bytes)
                    digest.update(chunk)
                    file.write(chunk)
            if size == 0:
                raise EmptyUpload("The file is empty.")
            kind = sniff(path, filename)
            attachment_id = secrets.token_hex(16)
            at = datetime.now(UTC)
            relative = PurePosixPath("attachments", tenant_id, f"{at:%Y}", attachment_id)
            final = self.data_dir / relative
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, final)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return StoredFile(Attachment(
            id=attachment_id, filename=display_name(filename, kind),
            content_type=kind.content_type, size_bytes=size, sha256=digest.hexdigest(),
            storage_path=str(relative), created_at=at), final)

    async def post(self, desk: ChatDesk, chat: Chat, author_kind: str, author_id: str,
                   filename: str, chunks: AsyncIterator[bytes]) -> dict[str, Any]:
        """Put a file in an open chat as `author_kind` (customer or agent); returns the
        message view. The file is removed again when its rows cannot be written."""
        stored = await self.receive(desk.tenant_id, filename, chunks)
        try:
            return await desk.post_attachment(chat, author_kind, author_id, stored.attachment)
        except BaseException:
            with contextlib.suppress(OSError):
                stored.path.unlink()
            raise


__all__ = [
    "ALLOWED_TYPES",
    "CSV",
    "FILE_KINDS",
    "IMAGE_TYPES",
    "PLAIN_TEXT",
    "AttachmentStore",
    "EmptyUpload",
    "FileKind",
    "UnsupportedFileType",
    "UploadTooLarge",
    "display_name",
    "sniff",
]

"""The attachment store on its own: what counts as which kind of file, the names it shows, the
size limit while streaming, and that nothing is left behind when a file is refused."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from omnicc.app.attachments import (
    FILE_KINDS,
    PLAIN_TEXT,
    AttachmentStore,
    EmptyUpload,
    UnsupportedFileType,
    UploadTooLarge,
    display_name,
    sniff,
)
from omnicc.core.errors import InvalidConfiguration
from omnicc.store.tables import Attachment

pytestmark = pytest.mark.anyio


def office(*names: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.writestr(name, "<x/>")
    return buffer.getvalue()


@pytest.mark.parametrize(("content", "filename", "expected"), [
    (b"\x89PNG\r\n\x1a\n....", "a.png", "image/png"),
    (b"\xff\xd8\xff\xe0....", "a.jpg", "image/jpeg"),
    (b"GIF89a....", "a.gif", "image/gif"),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "a.webp", "image/webp"),
    (b"%PDF-1.4\n", "a.pdf", "application/pdf"),
    (office("[Content_Types].xml", "word/document.xml"), "a.docx",
     "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    (office("[Content_Types].xml", "xl/workbook.xml"), "a.xlsx",
     "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ("Grüße, order 42\n".encode(), "notes.txt", "text/plain"),
    (b"name,total\nCarol,42\n", "Report.CSV", "text/csv"),
    (b"\x89PNG\r\n\x1a\n....", "renamed.pdf", "image/png"),
])
def test_the_content_decides_the_kind(tmp_path: Path, content: bytes, filename: str,
                                      expected: str) -> None:
    path = tmp_path / "upload"
    path.write_bytes(content)
    assert sniff(path, filename).content_type == expected


@pytest.mark.parametrize("content", [
    b"<!DOCTYPE html><script>alert(1)</script>",
    b"\xef\xbb\xbf  <HTML><body>hi</body>",
    b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>",
    b"MZ\x90\x00\x03\x00\x00\x00",
    b"\x7fELF\x02\x01\x01",
    office("[Content_Types].xml", "evil.bin"),
    b"PK\x03\x04 not really a zip",
    b"text with a \x00 NUL",
    b"latin-1 \xe9t\xe9",
])
def test_anything_else_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "upload"
    path.write_bytes(content)
    with pytest.raises(UnsupportedFileType, match="cannot be sent"):
        sniff(path, "cat.png")


@pytest.mark.parametrize(("given", "shown"), [
    ("../../etc/passwd.txt", "passwd.txt"),
    ("C:\\Users\\carol\\bill.txt", "bill.txt"),
    ("in\u202evoice\u0000.txt", "invoice.txt"),
    ("  spaced   out .txt ", "spaced out .txt"),
    ("report.exe", "report.exe.txt"),
    ("", "file.txt"),
    ("...", "file.txt"),
    ("x" * 300 + ".txt", "x" * 200 + ".txt"),
])
def test_names_are_for_display_only(given: str, shown: str) -> None:
    assert display_name(given, PLAIN_TEXT) == shown


def test_the_extension_follows_the_content() -> None:
    png = FILE_KINDS[0]
    assert display_name("holiday.JPG", png) == "holiday.JPG.png"
    assert display_name("holiday.PNG", png) == "holiday.png"


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_a_file_is_kept_under_its_own_name(tmp_path: Path) -> None:
    store = AttachmentStore(tmp_path, max_bytes=1000)
    stored = await store.receive("tenant-1", "../me.txt", chunks(b"hello ", b"world\n"))
    row = stored.attachment
    assert (row.filename, row.content_type, row.size_bytes) == ("me.txt", "text/plain", 12)
    assert row.sha256 == "a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447"
    assert row.storage_path.startswith("attachments/tenant-1/")
    assert row.storage_path.endswith(row.id)
    assert store.path_of(row) == stored.path and stored.path.read_bytes() == b"hello world\n"
    assert list((tmp_path / "uploads" / "tmp").iterdir()) == []


@pytest.mark.parametrize(("parts", "error"), [
    ((b"a" * 600, b"a" * 401), UploadTooLarge),
    ((b"",), EmptyUpload),
    ((b"<html>",), UnsupportedFileType),
])
async def test_a_refused_file_leaves_nothing(tmp_path: Path, parts: tuple[bytes, ...],
                                             error: type[Exception]) -> None:
    store = AttachmentStore(tmp_path, max_bytes=1000)
    with pytest.raises(error):
        await store.receive("tenant-1", "a.txt", chunks(*parts))
    assert list((tmp_path / "uploads" / "tmp").iterdir()) == []
    assert not (tmp_path / "attachments").exists()


def test_a_stored_path_cannot_point_outside(tmp_path: Path) -> None:
    store = AttachmentStore(tmp_path, max_bytes=1000)
    row = Attachment(id="a1", storage_path="attachments/../secret_key")
    with pytest.raises(InvalidConfiguration, match="bad storage path"):
        store.path_of(row)

"""Files in the chat widget, in Chromium on the demo page: a picture is sent with the paperclip
and shown as a preview the widget fetched with its visitor token, again after a reload; another
file downloads through the same token; a dropped file is sent too; files the chat refuses,
before sending or by the server, are refused in words."""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

from tests.e2e.conftest import screenshot
from tests.integration.api.live import LiveServer, Seeded


def png(width: int, height: int) -> bytes:
    """A valid RGB PNG of one colour, so the browser has something real to decode."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    rows = b"".join(b"\x00" + b"\x1d\x4e\xd8" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def choose(page: Page, widget: Locator, path: Path) -> None:
    """Click the paperclip and pick `path` in the file chooser it opens."""
    with page.expect_file_chooser() as chooser:
        widget.get_by_role("button", name="Attach a file").click()
    chooser.value.set_files(str(path))


def wait_decoded(page: Page, image: Locator) -> int:
    """The picture's natural width once the browser has decoded it (0 never passes)."""
    expect(image).to_have_attribute("src", re.compile(r"^blob:"))
    page.wait_for_function("image => image.complete && image.naturalWidth > 0",
                           arg=image.element_handle())
    width: int = image.evaluate("image => image.naturalWidth")
    return width


def test_the_customer_sends_a_picture_and_a_file_and_is_told_what_is_refused(
        e2e_site: tuple[LiveServer, Seeded], new_page: Callable[..., Page],
        tmp_path: Path) -> None:
    server, _ = e2e_site
    picture = tmp_path / "meter.png"
    picture.write_bytes(png(120, 80))
    notes = tmp_path / "notes.txt"
    notes.write_text("Meter 4471, reading 10532 kWh\n")
    program = tmp_path / "setup.exe"
    program.write_bytes(b"MZ\x90\x00" + bytes(60))
    disguised = tmp_path / "fake.png"
    disguised.write_bytes(b"MZ\x90\x00" + bytes(60))

    page = new_page()
    page.goto(f"{server.url}/demo?tenant=acme")
    widget = page.locator("#omnicc-chat-widget")
    widget.get_by_role("button", name="Open chat").click()
    widget.get_by_label("Name").fill("Nora Quinn")
    widget.get_by_label("Email").fill("nora@example.com")
    widget.get_by_label("Topic").select_option(label="Support questions")
    widget.get_by_role("button", name="Start chat").click()

    # No chat yet, so nowhere to put a file: said, and no file chooser.
    attach = widget.get_by_role("button", name="Attach a file")
    expect(attach).to_have_attribute("aria-disabled", "true")
    attach.click(force=True)  # aria-disabled: focusable and clickable, it explains itself
    alert = widget.get_by_role("alert")
    expect(alert).to_contain_text("Send a message first")

    widget.get_by_label("Message").fill("Here is a photo of my meter")
    widget.get_by_role("button", name="Send").click()
    expect(attach).to_have_attribute("aria-disabled", "false")
    expect(widget.get_by_test_id("file-input")).to_have_attribute("accept", re.compile(r"\.png"))

    choose(page, widget, picture)
    mine = widget.locator("li.msg.mine")
    sent = mine.filter(has=page.locator("figure.picture"))
    expect(sent).to_have_count(1)
    expect(sent).to_have_attribute("data-id", re.compile(r".+"))
    image = sent.get_by_role("img", name="meter.png")
    assert wait_decoded(page, image) == 120
    expect(sent.get_by_role("link", name=re.compile(r"^Download meter\.png"))).to_be_visible()
    expect(widget.get_by_test_id("upload")).to_have_count(0)

    choose(page, widget, notes)
    download_button = widget.get_by_role("button", name=re.compile(r"^Download notes\.txt"))
    expect(download_button).to_be_visible()
    with page.expect_download() as download:
        download_button.click()
    assert download.value.suggested_filename == "notes.txt"
    assert Path(download.value.path()).read_text() == notes.read_text()

    # Dropped on the panel: the overlay shows while dragging, the file is sent on drop.
    dropped = page.evaluate_handle("""() => {
        const transfer = new DataTransfer();
        transfer.items.add(new File(["date,kWh\\n2024-05-01,10532\\n"], "readings.csv",
                                    { type: "text/csv" }));
        return transfer;
    }""")
    panel = widget.get_by_test_id("panel")
    panel.dispatch_event("dragenter", {"dataTransfer": dropped})
    expect(widget.get_by_test_id("drop-zone")).to_be_visible()
    panel.dispatch_event("drop", {"dataTransfer": dropped})
    expect(widget.get_by_test_id("drop-zone")).to_be_hidden()
    readings = widget.get_by_role("button", name=re.compile(r"^Download readings\.csv"))
    expect(readings).to_be_visible()

    # Refused before sending: nothing goes to the server.
    choose(page, widget, program)
    expect(alert).to_contain_text('"setup.exe" cannot be sent')
    expect(alert).to_contain_text(".pdf")
    expect(mine.filter(has_text="setup.exe")).to_have_count(0)

    # A name the browser accepts, bytes the server does not: the server's refusal, in words.
    choose(page, widget, disguised)
    expect(alert).to_contain_text('"fake.png" was not sent. This kind of file cannot be sent.')
    refused = widget.locator("li.msg.mine.failed", has_text="fake.png")
    expect(refused).to_contain_text("Not sent")
    screenshot(page, "widget-attachment")

    # After a reload the history has the picture and the file again, fetched the same way.
    page.reload()
    widget = page.locator("#omnicc-chat-widget")
    again = widget.locator("li.msg.mine").filter(has=page.locator("figure.picture"))
    expect(again).to_have_count(1)
    assert wait_decoded(page, again.get_by_role("img", name="meter.png")) == 120
    expect(widget.get_by_role("button", name=re.compile(r"^Download notes\.txt"))).to_be_visible()
    expect(widget.locator("li.msg.mine", has_text="fake.png")).to_have_count(0)

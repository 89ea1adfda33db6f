"""Moving a chat in Chromium: an agent transfers it to a colleague with the Transfer dialog
(the colleague gets the offer, the customer is told), and a supervisor moves a waiting chat to
another queue with the wallboard's Reassign dialog."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Locator, Page, expect

from tests.e2e.conftest import log_in, screenshot
from tests.integration.api.live import LiveServer, Seeded


def start_chat(page: Page, server: LiveServer, name: str, text: str) -> Locator:
    """A customer on the demo page opens the widget and writes to support; the widget."""
    page.goto(f"{server.url}/demo?tenant=acme")
    chat = page.locator("#omnicc-chat-widget")
    chat.get_by_role("button", name="Open chat").click()
    chat.get_by_label("Name").fill(name)
    chat.get_by_label("Email").fill(f"{name.lower()}@example.com")
    chat.get_by_label("Topic").select_option(label="Support questions")
    chat.get_by_role("button", name="Start chat").click()
    chat.get_by_label("Message").fill(text)
    chat.get_by_role("button", name="Send", exact=True).click()
    expect(chat.get_by_test_id("messages")).to_contain_text(text)
    return chat


def open_desk(page: Page, server: LiveServer, username: str) -> None:
    log_in(page, server, username, "/desk")
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "online")


def test_an_agent_transfers_a_chat_to_a_colleague(e2e_site: tuple[LiveServer, Seeded],
                                                  new_page: Callable[..., Page]) -> None:
    server, seeded = e2e_site
    alice, bob, customer = new_page(), new_page(), new_page(420, 820)
    open_desk(alice, server, "alice")
    open_desk(bob, server, "bob")
    alice.get_by_role("button", name="Available", exact=True).click()
    expect(alice.get_by_test_id("presence-badge")).to_contain_text("Available")

    chat = start_chat(customer, server, "Dora", "Can I move my contract?")
    offer = alice.get_by_test_id("offer")
    expect(offer).to_contain_text("Dora")
    offer.get_by_role("button", name="Accept").click()
    expect(alice.get_by_test_id("conversation-title")).to_contain_text("Dora")
    expect(chat.get_by_test_id("messages")).to_contain_text("Alice joined the chat.")

    # Bob becomes available only now, so the chat could only have gone to Alice.
    bob.get_by_role("button", name="Available", exact=True).click()
    expect(bob.get_by_test_id("presence-badge")).to_contain_text("Available")
    alice.get_by_role("button", name="Transfer", exact=True).click()
    dialog = alice.get_by_role("dialog", name="Transfer chat")
    dialog.get_by_role("radio", name="An agent").check()
    expect(dialog.get_by_label("Queue", exact=True)).to_be_hidden()
    dialog.get_by_label("Agent", exact=True).select_option(seeded.agents["bob"])
    expect(dialog.get_by_label("Agent", exact=True)).to_contain_text("Bob")
    screenshot(alice, "desk-transfer")
    dialog.get_by_role("button", name="Confirm transfer").click()
    expect(dialog).to_be_hidden()
    expect(alice.get_by_test_id("chat-item")).to_have_count(0)

    handed = bob.get_by_test_id("offer")
    expect(handed).to_contain_text("Dora")
    handed.get_by_role("button", name="Accept").click()
    expect(bob.get_by_test_id("chat-item")).to_have_count(1)
    expect(bob.get_by_test_id("conversation-title")).to_contain_text("Dora")
    expect(bob.get_by_test_id("messages")).to_contain_text("Can I move my contract?")
    log = chat.get_by_test_id("messages")
    expect(log).to_contain_text("The chat was transferred to Bob.")
    expect(log).to_contain_text("Bob joined the chat.")

    bob.get_by_label("Reply").fill("Hi Dora, Bob here: yes, you can.")
    bob.get_by_role("button", name="Send", exact=True).click()
    expect(log).to_contain_text("Bob here")

    # Support limits wrap-up to 60 s: the desk counts it down.
    bob.get_by_role("button", name="End chat").click()
    expect(bob.get_by_test_id("wrap-up")).to_be_visible()
    expect(bob.get_by_role("timer", name="Time left in wrap-up")).to_contain_text("left")


def test_a_supervisor_reassigns_a_waiting_chat(e2e_site: tuple[LiveServer, Seeded],
                                               new_page: Callable[..., Page]) -> None:
    server, _ = e2e_site
    supervisor, customer = new_page(1600, 900), new_page(420, 820)
    log_in(supervisor, server, "sam", "/wallboard")
    expect(supervisor.get_by_test_id("connection")).to_contain_text("Live")
    # Nobody takes chats, so the next one waits.
    for name in ("Alice", "Bob"):
        row = supervisor.get_by_test_id(f"agent-{name}")
        row.get_by_label(f"Status of {name}").select_option("break")
        expect(row.get_by_test_id("status")).to_contain_text("Break")

    start_chat(customer, server, "Erik", "My meter reading is wrong")
    row = supervisor.get_by_test_id("conversation").filter(has_text="Erik")
    expect(row.get_by_test_id("queue")).to_have_text("support")
    expect(row).to_contain_text("Waiting")
    row.get_by_role("button", name="Reassign").click()
    dialog = supervisor.get_by_role("dialog", name="Reassign")
    expect(dialog.get_by_role("radio", name="A queue")).to_be_checked()
    dialog.get_by_label("Queue", exact=True).select_option(label="billing (0 waiting)")
    screenshot(supervisor, "wallboard-reassign")
    dialog.get_by_role("button", name="Reassign").click()
    expect(dialog).to_be_hidden()
    expect(row.get_by_test_id("queue")).to_have_text("billing")
    expect(supervisor.get_by_test_id("queue-billing").get_by_test_id("waiting")).to_contain_text(
        "1")

    # The tiles at the usual screen widths: every figure's label in full, nothing cut off.
    for width, height in ((1366, 768), (1600, 900), (1920, 1080)):
        supervisor.set_viewport_size({"width": width, "height": height})
        cut = supervisor.locator(".wb-figure dt, .wb-figure dd").evaluate_all(
            "cells => cells.filter((c) => c.scrollWidth > c.clientWidth)"
            ".map((c) => c.textContent)")
        assert cut == [], (width, cut)
        screenshot(supervisor, f"wallboard-{width}")

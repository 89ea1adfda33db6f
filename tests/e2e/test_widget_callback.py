"""The widget's "Call me back" form in Chromium on the demo page: offered next to starting a
chat, a number that cannot be called is refused next to its field (tied to it for screen
readers), a chosen time slot is booked and confirmed, and the request is kept for the number;
keyboard only, from the launcher to the confirmation."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from datetime import UTC, datetime

from playwright.sync_api import Page, expect

from omnicc.store.database import Database
from omnicc.store.repositories import CallbackRequests
from omnicc.store.tables import CallbackRequest
from tests.e2e.conftest import screenshot
from tests.integration.api.live import LiveServer, Seeded


def kept_requests(server: LiveServer, tenant_id: str) -> list[CallbackRequest]:
    async def read() -> list[CallbackRequest]:
        database = Database(server.settings.database_url)
        try:
            async with database.session() as session:
                return await CallbackRequests(session, tenant_id).list_all()
        finally:
            await database.dispose()

    # Playwright's sync API keeps an event loop on this thread: read from another one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, read()).result()


def test_the_visitor_books_a_call_at_a_time_they_choose(
        e2e_site: tuple[LiveServer, Seeded], new_page: Callable[..., Page]) -> None:
    server, seeded = e2e_site
    page = new_page()
    page.goto(f"{server.url}/demo?tenant=acme")
    widget = page.locator("#omnicc-chat-widget")
    widget.get_by_role("button", name="Open chat").click()
    offer = widget.get_by_test_id("callback")
    expect(offer).to_be_visible()
    expect(offer).to_have_accessible_name("Call me back")
    screenshot(page, "widget-callback-offer")
    offer.click()

    form = widget.get_by_test_id("callback-form")
    expect(form).to_be_visible()
    number = form.get_by_label("Phone number")
    topic = form.get_by_label("What should we call about?")
    expect(topic).to_be_focused()   # the first field
    topic.select_option(label="Billing questions")
    number.fill("+1 2")
    form.get_by_label("Who should we ask for? (optional)").fill("Nora <b>Quinn</b>")
    form.get_by_role("button", name="Request a call").click()
    error = form.locator("#omnicc-cb-number-error")
    expect(error).to_contain_text("That number does not look complete")  # before sending
    expect(number).to_be_focused()
    number.fill("+999 1234 5678")
    expect(number).to_have_attribute("aria-invalid", "false")   # typing clears the error
    form.get_by_role("button", name="Request a call").click()
    # Refused by the server (no such country code): said next to the field, tied to it.
    expect(error).to_contain_text("We cannot call that number")
    expect(number).to_have_attribute("aria-invalid", "true")
    expect(number).to_have_accessible_description(
        "With the country code, e.g. +44 20 7946 0958 We cannot call that number. Please "
        "check it and include the country code, e.g. +44 20 7946 0958.")
    expect(number).to_be_focused()
    assert kept_requests(server, seeded.tenant_id) == []
    screenshot(page, "widget-callback-refused")

    number.fill("+44 20 7946 0958")
    expect(number).to_have_attribute("aria-invalid", "false")
    form.get_by_label("At a time I choose").check()
    day = form.get_by_label("Day")
    expect(day).to_be_visible()
    day.select_option(index=1)  # a later day: the queues are always open in this seed
    time = form.get_by_label("Time", exact=True)
    chosen = time.locator("option").nth(20)
    slot = chosen.get_attribute("value")
    assert slot is not None
    time.select_option(value=slot)
    screenshot(page, "widget-callback-form")
    form.get_by_role("button", name="Request a call").click()

    confirmation = widget.get_by_test_id("callback-confirmation")
    expect(confirmation).to_be_visible()
    expect(confirmation).to_have_attribute("role", "status")
    expect(confirmation).to_contain_text("We will call you at")
    expect(confirmation).to_contain_text("We will call +442079460958.")
    screenshot(page, "widget-callback-confirmed")

    [request] = kept_requests(server, seeded.tenant_id)
    assert (request.number, request.source, request.queue_id) == (
        "+442079460958", "widget", seeded.queues["billing"])
    assert request.due_at is not None
    assert request.due_at.replace(tzinfo=request.due_at.tzinfo or UTC) == (
        datetime.fromisoformat(slot))
    assert request.attributes["name"] == "Nora <b>Quinn</b>"
    assert request.attributes["visitor_customer_id"]   # the widget sent its visitor token
    # Back to the chat form: the offer stays until the chat has started.
    widget.get_by_role("button", name="Back to chat").click()
    expect(widget.get_by_test_id("prechat")).to_be_visible()
    widget.get_by_label("Name").fill("Nora Quinn")
    widget.get_by_label("Email").fill("nora@example.com")   # nobody is in: we answer by email
    widget.get_by_label("Topic").select_option(label="Support questions")
    widget.get_by_role("button", name="Start chat").click()
    expect(widget.get_by_test_id("composer")).to_be_visible()
    expect(offer).to_be_visible()
    widget.get_by_label("Message").fill("Or we can chat")
    widget.get_by_role("button", name="Send").click()
    expect(offer).to_be_hidden()


def test_the_form_works_from_the_keyboard_alone(
        e2e_site: tuple[LiveServer, Seeded], new_page: Callable[..., Page]) -> None:
    server, seeded = e2e_site
    page = new_page(width=400, height=760)
    page.goto(f"{server.url}/demo?tenant=acme")
    widget = page.locator("#omnicc-chat-widget")
    widget.get_by_role("button", name="Open chat").focus()
    page.keyboard.press("Enter")
    offer = widget.get_by_test_id("callback")
    expect(offer).to_be_visible()
    offer.focus()
    page.keyboard.press("Enter")
    expect(widget.get_by_label("What should we call about?")).to_be_focused()
    page.keyboard.press("Tab")
    expect(widget.get_by_label("Phone number")).to_be_focused()
    page.keyboard.type("+358 40 765 4321")
    page.keyboard.press("Enter")   # submits the form, "as soon as possible" is the default
    confirmation = widget.get_by_test_id("callback-confirmation")
    expect(confirmation).to_contain_text(
        "We will call you as soon as one of our team is free.")
    expect(widget.get_by_role("button", name="Back to chat")).to_be_focused()
    screenshot(page, "widget-callback-mobile")
    numbers = {r.number: r for r in kept_requests(server, seeded.tenant_id)}
    assert numbers["+358407654321"].due_at is None

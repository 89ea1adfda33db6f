"""Click-to-call in Chromium, on a real call: a customer chats with alice, whose customer panel
shows the customer's phone number with a Call button; alice clicks it, her SIP desk phone
(baresip) rings first and answers, then OmniCC dials the customer through the carrier trunk -
sipp playing the carrier, answering and talking until it gets BYE - with the chat queue's caller
ID; the desk's call card follows the call's `call.outbound` notices to Connected, alice hangs
up from the card and both phones get BYE. The Dial form shows a bad number's 422 inline, a
call without a phone to ring as the card's final state, and a phone that rings as "Calling your
phone…" until alice hangs up (the phone's INVITE is cancelled)."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from omnicc.channels.voice.media.daemon import random_port_window
from omnicc.channels.voice.service import VoiceService
from omnicc.store.database import Database, migrate, sqlite_url
from omnicc.store.repositories import CallRecords, Customers, Identities, VoiceNumbers
from omnicc.store.tables import Identity, VoiceNumber
from tests.e2e.conftest import log_in, screenshot
from tests.e2e.test_softphone import CallerLoop, wait_for
from tests.e2e.test_transfer import start_chat
from tests.integration.api.live import LiveServer, Seeded, seed, start_live_server
from tests.integration.voice.harness import (
    PHONE_PASSWORD,
    SCENARIOS,
    TRUNK_PASSWORD,
    Carrier,
    open_support_line,
)
from tests.integration.voice.peers import Baresip

QUEUE_NUMBER = "+358201234567"
CUSTOMER_NUMBER = "+358401234567"


def in_thread(work: object) -> object:
    """Run a coroutine on its own loop: Playwright's sync API keeps one on this thread."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()  # type: ignore[arg-type]


async def caller_id_for_support(url: str, seeded: Seeded) -> None:
    database = Database(url)
    try:
        async with database.session() as session:
            await VoiceNumbers(session, seeded.tenant_id).add(VoiceNumber(
                number=QUEUE_NUMBER, outbound_queue_id=seeded.queues["support"]))
    finally:
        await database.dispose()


async def give_phone_number(url: str, seeded: Seeded, name: str, number: str) -> None:
    """The chatting customer (found by name) gets a phone number on their record."""
    database = Database(url)
    try:
        async with database.session() as session:
            [customer] = [c for c in await Customers(session, seeded.tenant_id).list_all()
                          if c.name == name]
            await Identities(session, seeded.tenant_id).add(Identity(
                customer_id=customer.id, kind="phone", value=number))
    finally:
        await database.dispose()


async def last_record(url: str, seeded: Seeded) -> tuple[str, str, str, str | None]:
    database = Database(url)
    try:
        async with database.session() as session:
            records = await CallRecords(session, seeded.tenant_id).list_all()
    finally:
        await database.dispose()
    outbound = [r for r in records if r.direction == "outbound"]
    outbound.sort(key=lambda r: r.started_at)
    record = outbound[-1]
    return record.from_number, record.to_number, record.outcome, record.hangup_side


@pytest.fixture(scope="module")
def dial_site(tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[LiveServer, Seeded, Carrier, str]]:
    folder = tmp_path_factory.mktemp("dial")
    url = sqlite_url(folder / "omnicc.db")
    migrate(url)
    seeded = in_thread(seed(url))
    assert isinstance(seeded, Seeded)
    in_thread(open_support_line(url, seeded))
    in_thread(caller_id_for_support(url, seeded))
    carrier = Carrier(SCENARIOS / "outbound_customer_talks_until_bye.xml", folder / "carrier")
    low, high = random_port_window()
    server = start_live_server(url, folder / "data", sip_port=0, media_ports=f"{low}-{high}",
                               sip_trunk=f"sip:omnicc@127.0.0.1:{carrier.port}",
                               sip_trunk_password=TRUNK_PASSWORD, phone_region="FI")
    try:
        yield server, seeded, carrier, url
    finally:
        server.stop()


def open_desk(page: Page, server: LiveServer) -> None:
    log_in(page, server, "alice", "/desk")
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "online")


def test_a_bad_number_is_refused_inline_and_the_agents_phone_rings_first(
        dial_site: tuple[LiveServer, Seeded, Carrier, str], browser: Browser,
        tmp_path: Path) -> None:
    server, _, _, _ = dial_site
    voice: VoiceService = server.server.config.app.state.voice
    context = browser.new_context(viewport={"width": 1366, "height": 860})
    context.set_default_timeout(15_000)
    page = context.new_page()
    loop = CallerLoop()
    phone: Baresip | None = None

    async def ringing_phone() -> Baresip:
        started = Baresip(tmp_path / "alice-phone", user="alice", password=PHONE_PASSWORD,
                          registrar=("127.0.0.1", voice.stack.udp.port), auto_answer=False)
        await started.start()
        await wait_for(lambda: bool(voice.registrar("acme").bindings("alice")))
        return started

    try:
        open_desk(page, server)
        dial = page.get_by_test_id("dial")
        expect(dial.get_by_label("Caller ID of queue")).to_contain_text("support")
        dial.get_by_label("Phone number").fill("12")
        dial.get_by_role("button", name="Call", exact=True).click()
        error = dial.get_by_role("alert")
        expect(error).to_contain_text("'12' is not a phone number")
        expect(dial.get_by_label("Phone number")).to_have_attribute("aria-invalid", "true")
        expect(dial.get_by_label("Phone number")).to_be_focused()
        expect(page.get_by_test_id("outbound-call")).to_be_hidden()
        screenshot(page, "desk-dial-invalid")
        dial.get_by_label("Phone number").fill("040 765 4321")
        expect(error).to_be_hidden()

        # alice has no SIP phone registered yet: the call ends before anything rings.
        page.keyboard.press("Enter")
        card = page.get_by_test_id("outbound-call")
        expect(card.get_by_test_id("outbound-state")).to_have_text("Your phone did not answer")
        expect(card).to_contain_text("+358407654321")
        expect(card).to_contain_text("no registered SIP phone")
        card.get_by_role("button", name="Close").click()
        expect(card).to_be_hidden()
        expect(dial.get_by_label("Phone number")).to_be_focused()

        # With a phone that rings until answered, the card says so; hanging up cancels it.
        phone = loop.run(ringing_phone())
        page.keyboard.press("Enter")
        expect(card.get_by_test_id("outbound-state")).to_have_text("Calling your phone…")
        expect(card).to_contain_text("Answer on your phone")
        loop.run(phone.wait_for("CALL_INCOMING"))
        expect(card.get_by_role("button", name="Hang up")).to_be_focused()
        screenshot(page, "desk-dial-ringing")
        page.keyboard.press("Enter")
        expect(card.get_by_test_id("outbound-state")).to_have_text("Call cancelled")
        loop.run(phone.wait_for("CALL_CLOSED"))
        expect(card.get_by_role("button", name="Close")).to_be_focused()
    finally:
        if phone is not None:
            loop.run(phone.stop())
        loop.close()
        context.close()


def test_an_agent_calls_the_customer_from_the_customer_panel_and_hangs_up(
        dial_site: tuple[LiveServer, Seeded, Carrier, str], browser: Browser,
        tmp_path: Path) -> None:
    server, seeded, carrier, url = dial_site
    voice: VoiceService = server.server.config.app.state.voice
    context = browser.new_context(viewport={"width": 1366, "height": 860})
    context.set_default_timeout(15_000)
    page, customer = context.new_page(), context.new_page()
    customer.set_viewport_size({"width": 420, "height": 820})
    loop = CallerLoop()

    async def desk_phone() -> Baresip:
        phone = Baresip(tmp_path / "alice-phone", user="alice", password=PHONE_PASSWORD,
                        registrar=("127.0.0.1", voice.stack.udp.port))
        await phone.start()
        await wait_for(lambda: bool(voice.registrar("acme").bindings("alice")))
        return phone

    phone = loop.run(desk_phone())
    try:
        open_desk(page, server)
        page.get_by_role("button", name="Available", exact=True).click()
        expect(page.get_by_test_id("presence-badge")).to_contain_text("Available")
        start_chat(customer, server, "Dora", "Please call me about my invoice.")
        in_thread(give_phone_number(url, seeded, "Dora", CUSTOMER_NUMBER))
        offer = page.get_by_test_id("offer")
        offer.get_by_role("button", name="Accept").click()
        expect(page.get_by_test_id("conversation-title")).to_contain_text("Dora")

        loop.run(carrier.start())
        panel = page.get_by_test_id("customer-panel")
        panel.get_by_role("button", name=f"Call {CUSTOMER_NUMBER}").click()
        card = page.get_by_test_id("outbound-call")
        expect(card.get_by_test_id("outbound-state")).to_have_text("Connected")
        expect(card).to_contain_text(CUSTOMER_NUMBER)
        expect(page.get_by_role("status").filter(has_text="Connected to")).to_be_attached()
        loop.run(phone.wait_for("CALL_RTPESTAB"))
        screenshot(page, "desk-dial-connected")

        card.get_by_role("button", name="Hang up").click()
        expect(card.get_by_test_id("outbound-state")).to_have_text("Call ended")
        expect(card.get_by_role("button", name="Close")).to_be_focused()
        code, output = loop.run(carrier.finish(), 90)
        assert code == 0, output  # sipp got its BYE
        loop.run(phone.wait_for("CALL_CLOSED"))
        screenshot(page, "desk-dial-ended")
        assert in_thread(last_record(url, seeded)) == (QUEUE_NUMBER, CUSTOMER_NUMBER,
                                                       "answered", "agent")
    finally:
        loop.run(carrier.stop())
        loop.run(phone.stop())
        loop.close()
        context.close()

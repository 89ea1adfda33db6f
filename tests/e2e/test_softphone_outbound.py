"""Click-to-call with the browser softphone, in Chromium on a real call: alice's desk Phone is
on (a fake microphone plays a 440 Hz tone), she dials a customer from the Dial form, her
softphone rings with "Your call" (an agent-first call: OmniCC's sink offers to the browser),
she answers, and only then does OmniCC dial the customer through the carrier trunk - a carrier
made of OmniCC's SIP stack and an RTP endpoint, offered plain RTP with one G.711 codec - which
hears alice's tone; while it lasts the call is her voice task (Transfer and Consult are on),
Hold gives the carrier music and Resume alice again, she hangs up from the softphone, the
carrier gets BYE and the desk's wrap-up follows."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from omnicc.channels.voice.media.daemon import random_port_window
from omnicc.channels.voice.media.rtp import PayloadType, RtpEndpoint
from omnicc.channels.voice.service import VoiceService
from omnicc.channels.voice.sip.dialog import Dialog
from omnicc.channels.voice.sip.stack import IncomingRequest, SipStack
from omnicc.channels.voice.sip.transaction import Timers
from omnicc.store.database import migrate, sqlite_url
from tests.e2e.conftest import log_in, screenshot
from tests.e2e.test_desk_dial import caller_id_for_support, in_thread, last_record
from tests.e2e.test_softphone import LOOPBACK_ONLY, CallerLoop, phone_browser, wait_for
from tests.integration.api.live import LiveServer, Seeded, seed, start_live_server
from tests.integration.voice.harness import QUEUE_NUMBER, Sound, music_instead_of, tone

__all__ = ["phone_browser"]  # the fake-microphone Chromium fixture, shared

CUSTOMER_NUMBER = "+358401234567"


class FakeCarrier:
    """The carrier's side of the trunk: answers the INVITE at once, talks a 660 Hz tone and
    keeps what it hears."""

    def __init__(self) -> None:
        self.stack = SipStack("127.0.0.1", udp_port=0, tcp_port=None, timers=Timers(t1=0.1))
        self.rtp = RtpEndpoint(payload_type=PayloadType.PCMA)
        self.invites: list[IncomingRequest] = []
        self.dialog: Dialog | None = None
        self._talking: asyncio.Task[None] | None = None

    async def start(self) -> int:
        await self.stack.start()
        await self.rtp.open()
        self.stack.set_handler(self._answer)
        return self.stack.udp.port

    async def _answer(self, incoming: IncomingRequest) -> None:
        if incoming.method != "INVITE":
            return
        self.invites.append(incoming)
        self.rtp.connect(incoming.message.body.decode())
        await incoming.respond(200, body=self.rtp.sdp().encode(), content_type="application/sdp")
        self.dialog = incoming.dialog

        async def talk() -> None:
            while True:
                await self.rtp.send_tone(660, 1.0)

        self._talking = asyncio.create_task(talk())

    async def hears(self, sound: Sound, what: str, windows: int = 15) -> None:
        for _ in range(windows):
            start = len(self.rtp.packets)
            await asyncio.sleep(1.0)
            if sound(self.rtp.audio(since=start)):
                return
        raise AssertionError(f"the carrier never heard {what}")

    async def hung_up_on(self) -> None:
        assert self.dialog is not None
        await asyncio.wait_for(self.dialog.terminated.wait(), 20)

    async def stop(self) -> None:
        if self._talking is not None:
            self._talking.cancel()
        await self.rtp.close()
        await self.stack.stop()


@pytest.fixture(scope="module")
def outbound_site(tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[tuple[LiveServer, Seeded, FakeCarrier, CallerLoop, str]]:
    folder = tmp_path_factory.mktemp("softphone-outbound")
    url = sqlite_url(folder / "omnicc.db")
    migrate(url)
    seeded = in_thread(seed(url))
    assert isinstance(seeded, Seeded)
    in_thread(caller_id_for_support(url, seeded))
    loop = CallerLoop()
    carrier = FakeCarrier()
    port = loop.run(carrier.start())
    low, high = random_port_window()
    server = start_live_server(url, folder / "data", sip_port=0, media_ports=f"{low}-{high}",
                               sip_trunk=f"sip:omnicc@127.0.0.1:{port}", phone_region="FI")
    try:
        yield server, seeded, carrier, loop, url
    finally:
        server.stop()
        loop.run(carrier.stop())
        loop.close()


def test_the_browser_softphone_takes_an_agent_first_call(
        outbound_site: tuple[LiveServer, Seeded, FakeCarrier, CallerLoop, str],
        phone_browser: Browser) -> None:
    server, seeded, carrier, loop, url = outbound_site
    voice: VoiceService = server.server.config.app.state.voice
    alice = seeded.agents["alice"]
    context = phone_browser.new_context(viewport={"width": 1366, "height": 860})
    context.set_default_timeout(15_000)
    context.add_init_script(LOOPBACK_ONLY)
    page: Page = context.new_page()
    try:
        log_in(page, server, "alice", "/desk")
        expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "online")
        page.get_by_role("switch", name="Phone").click()
        expect(page.get_by_role("switch", name="Phone")).to_have_attribute("aria-checked", "true")
        loop.run(wait_for(lambda: voice.browser_phones.is_online(seeded.tenant_id, alice)))

        dial = page.get_by_test_id("dial")
        dial.get_by_label("Caller ID of queue").select_option(label="support")
        dial.get_by_label("Phone number").fill("040 123 4567")
        dial.get_by_role("button", name="Call", exact=True).click()
        card = page.get_by_test_id("softphone")
        expect(card.get_by_test_id("call-state")).to_have_text("Your call")
        expect(card).to_contain_text(f"Call to {CUSTOMER_NUMBER}")
        answer = card.get_by_role("button", name="Answer")
        expect(answer).to_be_focused()
        assert carrier.invites == []  # agent first: nobody dialled yet
        screenshot(page, "softphone-outbound-ringing")

        page.keyboard.press("Enter")  # the focused Answer button
        expect(card.get_by_test_id("call-state")).to_have_text("On call")
        loop.run(wait_for(lambda: bool(carrier.invites)))
        offer = carrier.invites[0].message.body.decode()
        assert "RTP/AVP 8 " in offer and "a=fingerprint" not in offer and "a=ice" not in offer
        # alice's microphone through ICE, DTLS-SRTP and back
        loop.run(carrier.hears(tone(440), "alice"))
        outbound = page.get_by_test_id("outbound-call")
        expect(outbound.get_by_test_id("outbound-state")).to_have_text("Connected")
        expect(card.get_by_role("button", name="Transfer")).to_be_enabled()
        expect(card.get_by_role("button", name="Consult")).to_be_enabled()
        card.get_by_role("button", name="Hold").click()
        expect(card.get_by_role("button", name="Resume")).to_have_attribute("aria-pressed",
                                                                             "true")
        loop.run(carrier.hears(music_instead_of(440), "music on hold"))
        card.get_by_role("button", name="Resume").click()
        expect(card.get_by_role("button", name="Hold")).to_have_attribute("aria-pressed", "false")
        loop.run(carrier.hears(tone(440), "alice after Resume"))
        # The call is her voice task: its conversation is open with the customer's record.
        expect(page.locator("#conversation-meta")).to_contain_text("Voice")
        expect(page.get_by_test_id("customer-panel")).to_contain_text(CUSTOMER_NUMBER)
        screenshot(page, "softphone-outbound-in-call")

        card.get_by_role("button", name="Hang up").click()
        loop.run(carrier.hung_up_on())
        expect(card).to_be_hidden()
        wrap_up = page.get_by_test_id("wrap-up")
        expect(wrap_up).to_contain_text("The call has ended.")
        screenshot(page, "softphone-outbound-wrap-up")
        wrap_up.get_by_role("button", name="Finish wrap-up").click()
        expect(wrap_up).to_be_hidden()
        assert in_thread(last_record(url, seeded)) == (QUEUE_NUMBER, CUSTOMER_NUMBER,
                                                       "answered", "agent")
    finally:
        context.close()

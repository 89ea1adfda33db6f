"""The browser softphone in Chromium, on a real call: alice switches the desk's Phone on (a fake
microphone plays a 440 Hz tone), a caller rings the support line of a live server with voice
on, the desk rings, alice answers with the keyboard-focused Answer button, and the caller
hears her tone through rtpengine's WebRTC leg (ICE, DTLS-SRTP); she holds and resumes, sends
keys from the keypad (the caller receives them as RFC 4733 events), then hangs up from the
desk and the caller gets BYE; wrap-up follows in the desk. With two desks open both ring; a
ring ends on both when the caller leaves, answering on one stops the other ringing, and a call
transferred to a queue leaves the card (the caller hears music).

The caller (OmniCC's SIP stack and an RTP endpoint) runs on its own event loop in a thread,
since Playwright's sync API owns this one."""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import subprocess
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect

from omnicc.channels.voice.media.daemon import random_port_window
from omnicc.channels.voice.service import VoiceService
from omnicc.store.database import migrate, sqlite_url
from tests.e2e.conftest import CHROMIUM_FLAGS, chromium_path, log_in, screenshot
from tests.integration.api.live import LiveServer, Seeded, seed, start_live_server
from tests.integration.voice.harness import (
    CALLER_NAME,
    PHONE_PASSWORD,
    SUPPORT_LINE,
    Caller,
    music_instead_of,
    open_support_line,
    tone,
)
from tests.integration.voice.peers import Baresip

T = TypeVar("T")
WAIT_S = 30.0

# The sandbox allows traffic to loopback only: the desk's answer keeps its loopback ICE
# candidates (Chromium gathers them with --allow-loopback-in-peer-connection), so rtpengine
# checks no other address of this machine. A real desk keeps all of its LAN candidates.
LOOPBACK_ONLY = """
(() => {
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    try {
      const frame = JSON.parse(data);
      if (frame.type === "call.answer") {
        frame.sdp = frame.sdp.split("\\r\\n")
          .filter((line) => !line.startsWith("a=candidate:") || line.includes(" 127.0.0.1 "))
          .join("\\r\\n");
        data = JSON.stringify(frame);
      }
    } catch (error) { /* not JSON: leave it */ }
    return send.call(this, data);
  };
})();
"""


class CallerLoop:
    """An event loop in a thread for the caller's SIP stack and RTP."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, work: Coroutine[Any, Any, T], timeout_s: float = WAIT_S) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def tone_file(path: Path, hz: float) -> Path:
    """A minute of a sine tone: Chromium's fake microphone plays it (in a loop)."""
    subprocess.run(["sox", "-n", "-r", "48000", "-c", "1", "-b", "16", str(path),
                    "synth", "60", "sine", str(hz), "vol", "0.5"], check=True)
    return path


@pytest.fixture(scope="module")
def voice_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Seeded]]:
    folder = tmp_path_factory.mktemp("softphone")
    url = sqlite_url(folder / "omnicc.db")
    migrate(url)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        seeded = pool.submit(asyncio.run, seed(url)).result()
        pool.submit(asyncio.run, open_support_line(url, seeded)).result()
    low, high = random_port_window()
    server = start_live_server(url, folder / "data", sip_port=0, media_ports=f"{low}-{high}")
    try:
        yield server, seeded
    finally:
        server.stop()


@pytest.fixture(scope="module")
def phone_browser(playwright: Playwright,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    microphone = tone_file(tmp_path_factory.mktemp("microphone") / "alice.wav", 440)
    launched = playwright.chromium.launch(executable_path=chromium_path(), args=[
        *CHROMIUM_FLAGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}", "--allow-loopback-in-peer-connection",
        "--autoplay-policy=no-user-gesture-required"])
    yield launched
    launched.close()


def connected_agent(voice: VoiceService) -> str | None:
    calls = [c for c in list(voice.calls.values()) if c.connected.is_set()]
    return calls[0].agent_id if calls else None


def test_an_agent_answers_a_call_in_the_browser_and_hangs_up_from_the_desk(
        voice_site: tuple[LiveServer, Seeded], phone_browser: Browser) -> None:
    server, seeded = voice_site
    voice: VoiceService = server.server.config.app.state.voice
    context = phone_browser.new_context(viewport={"width": 1366, "height": 860})
    context.set_default_timeout(15_000)
    context.add_init_script(LOOPBACK_ONLY)
    page: Page = context.new_page()
    callers = CallerLoop()
    caller = Caller(voice.stack.udp.port)
    try:
        log_in(page, server, "alice", "/desk")
        expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "online")
        switch = page.get_by_role("switch", name="Phone")
        expect(switch).to_have_attribute("aria-checked", "false")
        switch.click()
        expect(switch).to_have_attribute("aria-checked", "true")
        page.get_by_role("button", name="Available", exact=True).click()
        expect(page.get_by_test_id("presence-badge")).to_contain_text("Available")

        callers.run(caller.call(SUPPORT_LINE))
        card = page.get_by_test_id("softphone")
        expect(card).to_be_visible()
        expect(card.get_by_test_id("call-state")).to_have_text("Incoming call")
        expect(card).to_contain_text(CALLER_NAME)
        expect(card).to_contain_text("Queue: support")
        answer = card.get_by_role("button", name="Answer")
        expect(answer).to_be_focused()
        expect(page.get_by_role("status").filter(has_text="Incoming call from")).to_be_attached()
        screenshot(page, "softphone-ringing")

        page.keyboard.press("Enter")  # the focused Answer button
        expect(card.get_by_test_id("call-state")).to_have_text("On call")
        callers.run(wait_for(lambda: connected_agent(voice) == seeded.agents["alice"]))
        # The caller hears alice's microphone once ICE and DTLS are through.
        callers.run(caller.hears(tone(440), "alice's microphone"))
        expect(card.get_by_role("timer", name="Call time")).to_have_text(re.compile(r"^\d+:\d\d$"))
        screenshot(page, "softphone-in-call")

        card.get_by_role("button", name="Hold").click()
        expect(card.get_by_test_id("call-state")).to_have_text("On hold")
        expect(card.get_by_role("button", name="Resume")).to_have_attribute("aria-pressed", "true")
        callers.run(caller.hears(music_instead_of(440), "music on hold"))
        card.get_by_role("button", name="Resume").click()
        expect(card.get_by_test_id("call-state")).to_have_text("On call")
        card.get_by_role("button", name="Mute").click()
        expect(card.get_by_role("button", name="Unmute")).to_have_attribute("aria-pressed", "true")
        card.get_by_role("button", name="Unmute").click()
        card.get_by_role("button", name="Keypad").click()
        expect(card.get_by_role("button", name="1", exact=True)).to_be_focused()
        page.keyboard.press("1")
        card.get_by_role("button", name="Pound").click()
        expect(card.get_by_role("status", name="Keys sent")).to_have_text("1#")
        callers.run(wait_for(lambda: caller.rtp.dtmf_digits == ["1", "#"]))
        screenshot(page, "softphone-keypad")
        page.keyboard.press("Escape")
        expect(card.get_by_role("button", name="Keypad")).to_be_focused()
        card.get_by_role("button", name="Transfer").click()
        expect(card.get_by_label("Transfer to")).to_be_focused()
        screenshot(page, "softphone-transfer")
        card.get_by_role("button", name="Cancel").click()

        card.get_by_role("button", name="Hang up").click()
        callers.run(caller.hung_up_on())
        expect(card).to_be_hidden()
        wrap_up = page.get_by_test_id("wrap-up")
        expect(wrap_up).to_contain_text("The call has ended.")
        screenshot(page, "softphone-wrap-up")
        wrap_up.get_by_role("button", name="Finish wrap-up").click()
        expect(wrap_up).to_be_hidden()
    finally:
        callers.run(caller.close())
        callers.close()
        context.close()


def test_two_desks_ring_and_a_call_is_transferred_to_a_queue(
        voice_site: tuple[LiveServer, Seeded], phone_browser: Browser) -> None:
    server, seeded = voice_site
    voice: VoiceService = server.server.config.app.state.voice
    context = phone_browser.new_context(viewport={"width": 1366, "height": 860})
    context.set_default_timeout(15_000)
    context.add_init_script(LOOPBACK_ONLY)
    page: Page = context.new_page()
    # alice has a second desk open (another tab or computer): both ring.
    other_context = phone_browser.new_context(viewport={"width": 1366, "height": 860})
    other_context.set_default_timeout(15_000)
    other_context.add_init_script(LOOPBACK_ONLY)
    other: Page = other_context.new_page()
    callers = CallerLoop()
    impatient, patient = Caller(voice.stack.udp.port), Caller(voice.stack.udp.port)
    try:
        for desk in (page, other):
            log_in(desk, server, "alice", "/desk")
            expect(desk.get_by_test_id("connection")).to_have_attribute("data-state", "online")
            desk.get_by_role("switch", name="Phone").click()
            expect(desk.get_by_role("switch", name="Phone")).to_have_attribute("aria-checked",
                                                                               "true")
        page.get_by_role("button", name="Available", exact=True).click()
        card, other_card = page.get_by_test_id("softphone"), other.get_by_test_id("softphone")

        callers.run(impatient.call(SUPPORT_LINE))
        expect(card.get_by_test_id("call-state")).to_have_text("Incoming call")
        expect(other_card.get_by_test_id("call-state")).to_have_text("Incoming call")
        callers.run(impatient.hang_up())
        expect(card).to_be_hidden()
        expect(other_card).to_be_hidden()

        callers.run(patient.call(SUPPORT_LINE))
        expect(other_card.get_by_test_id("call-state")).to_have_text("Incoming call")
        card.get_by_role("button", name="Answer").click()
        expect(card.get_by_test_id("call-state")).to_have_text("On call")
        expect(other_card).to_be_hidden()
        callers.run(wait_for(lambda: connected_agent(voice) == seeded.agents["alice"]))
        # On a break, so the billing queue's offer cannot come straight back to alice.
        page.get_by_role("button", name="Break", exact=True).click()
        card.get_by_role("button", name="Transfer").click()
        card.get_by_label("Transfer to").select_option(label="billing")
        card.get_by_role("button", name="Transfer call").click()
        expect(card).to_be_hidden()
        callers.run(wait_for(lambda: connected_agent(voice) is None))
        callers.run(patient.hears(music_instead_of(440), "music while waiting"))
        [call] = list(voice.calls.values())
        assert call.contact is not None
        task = call.runtime.routing.engine.task(call.contact.task_id)
        assert task.queue_id == seeded.queues["billing"]
        callers.run(patient.hang_up())
    finally:
        for caller in (impatient, patient):
            callers.run(caller.close())
        callers.close()
        context.close()
        other_context.close()


async def wait_for(predicate: Any, timeout_s: float = WAIT_S) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


def test_a_call_on_the_agents_sip_phone_is_controlled_from_the_desk(
        voice_site: tuple[LiveServer, Seeded], phone_browser: Browser,
        tmp_path: Path) -> None:
    server, _ = voice_site
    voice: VoiceService = server.server.config.app.state.voice
    context = phone_browser.new_context(viewport={"width": 1366, "height": 860})
    context.set_default_timeout(15_000)
    page: Page = context.new_page()
    callers = CallerLoop()
    caller = Caller(voice.stack.udp.port)

    async def desk_phone() -> Baresip:
        phone = Baresip(tmp_path / "alice-phone", user="alice", password=PHONE_PASSWORD,
                        registrar=("127.0.0.1", voice.stack.udp.port), tone_hz=440)
        await phone.start()
        await wait_for(lambda: bool(voice.registrar("acme").bindings("alice")))
        return phone

    phone = callers.run(desk_phone())
    try:
        log_in(page, server, "alice", "/desk")
        expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "online")
        expect(page.get_by_role("switch", name="Phone")).to_have_attribute("aria-checked", "false")
        page.get_by_role("button", name="Available", exact=True).click()
        expect(page.get_by_test_id("presence-badge")).to_contain_text("Available")

        callers.run(caller.call(SUPPORT_LINE))
        card = page.get_by_test_id("softphone")
        expect(card.get_by_test_id("call-state")).to_have_text("On call")
        expect(card).to_contain_text("On your desk phone")
        expect(card.get_by_role("button", name="Mute")).to_have_count(0)
        callers.run(caller.hears(tone(440), "alice's desk phone"))
        screenshot(page, "softphone-desk-phone")

        card.get_by_role("button", name="Hold").click()
        expect(card.get_by_test_id("call-state")).to_have_text("On hold")
        callers.run(caller.hears(music_instead_of(440), "music on hold"))
        card.get_by_role("button", name="Resume").click()
        expect(card.get_by_test_id("call-state")).to_have_text("On call")

        card.get_by_role("button", name="Hang up").click()
        callers.run(caller.hung_up_on())
        callers.run(phone.wait_for("CALL_CLOSED"))
        expect(card).to_be_hidden()
        expect(page.get_by_test_id("wrap-up")).to_be_visible()
    finally:
        callers.run(caller.close())
        callers.run(phone.stop())
        callers.close()
        context.close()

"""A consult (attended transfer) from the browser softphone, in Chromium on a real call: alice
answers in the desk (fake microphone, 440 Hz), opens Consult with the keyboard, calls bob's
baresip phone (660 Hz); the card says who is on the consult while the caller hears music;
Conference lets the caller hear both (and the keys alice types on the keypad reach the caller
through the mixer as RFC 4733 events); hanging up then completes the transfer (as on a PBX):
alice's card closes saying the call was transferred, and the caller stays with bob. The
caller runs on its own event loop in a thread (see test_softphone)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from omnicc.channels.voice.media.tones import tone_share
from omnicc.channels.voice.service import VoiceService
from tests.e2e import test_softphone as softphone
from tests.e2e.conftest import log_in, screenshot
from tests.e2e.test_softphone import LOOPBACK_ONLY, CallerLoop, connected_agent, wait_for
from tests.integration.api.live import Browser as Desk
from tests.integration.api.live import LiveServer, Seeded
from tests.integration.voice.harness import (
    PHONE_PASSWORD,
    SUPPORT_LINE,
    Caller,
    music_instead_of,
    tone,
)
from tests.integration.voice.peers import Baresip

# The live server with voice and Chromium with a fake microphone (module-scoped there).
voice_site, phone_browser = softphone.voice_site, softphone.phone_browser

# Chromium's echo canceller and gain control take alice's tone down to a tenth once she hears
# bob's (the fake microphone is a pure tone, the loudspeaker another): the test measures the
# mix, so the desk's microphone is taken raw here. Real desks keep them on.
RAW_MICROPHONE = """
(() => {
  const media = navigator.mediaDevices;
  if (!media) return;
  const original = media.getUserMedia.bind(media);
  media.getUserMedia = (constraints) => original({ ...constraints, audio: {
    echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
})();
"""


async def finish_wrap_up(server: LiveServer, name: str) -> None:
    """Wait for the agent's wrap-up of their voice task and finish it."""
    desk = await Desk(server, name).login()
    try:
        for _ in range(200):
            state = (await desk.http.get("/api/desk/state")).json()
            wrapping = [t for t in state["tasks"] if t["phase"] == "wrapping"]
            if wrapping:
                done = await desk.http.post(f"/api/desk/tasks/{wrapping[0]['task_id']}/wrap-up",
                                            json={"code": "solved"})
                assert done.status_code == 200, done.text
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{name} never got to wrap-up")
    finally:
        await desk.close()


def test_an_agent_consults_bob_makes_a_conference_and_completes_the_transfer(
        voice_site: tuple[LiveServer, Seeded], phone_browser: Browser, tmp_path: Path) -> None:
    server, seeded = voice_site
    voice: VoiceService = server.server.config.app.state.voice
    context = phone_browser.new_context(viewport={"width": 1366, "height": 860})
    context.set_default_timeout(15_000)
    context.add_init_script(LOOPBACK_ONLY)
    context.add_init_script(RAW_MICROPHONE)
    page: Page = context.new_page()
    callers = CallerLoop()
    caller = Caller(voice.stack.udp.port)

    async def bobs_phone() -> Baresip:
        phone = Baresip(tmp_path / "bob-phone", user="bob", password=PHONE_PASSWORD,
                        registrar=("127.0.0.1", voice.stack.udp.port), tone_hz=660)
        await phone.start()
        await wait_for(lambda: bool(voice.registrar("acme").bindings("bob")))
        return phone

    async def set_status(name: str, status: str) -> None:
        desk = await Desk(server, name).login()
        try:
            (await desk.http.put("/api/desk/status", json={"status": status})).raise_for_status()
        finally:
            await desk.close()

    bob_phone = callers.run(bobs_phone())
    try:
        log_in(page, server, "alice", "/desk")
        expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "online")
        page.get_by_role("switch", name="Phone").click()
        expect(page.get_by_role("switch", name="Phone")).to_have_attribute("aria-checked", "true")
        page.get_by_role("button", name="Available", exact=True).click()
        callers.run(set_status("bob", "break"))  # the caller must reach alice first

        callers.run(caller.call(SUPPORT_LINE))
        card = page.get_by_test_id("softphone")
        card.get_by_role("button", name="Answer").click()
        expect(card.get_by_test_id("call-state")).to_have_text("On call")
        callers.run(wait_for(lambda: connected_agent(voice) == seeded.agents["alice"]))
        callers.run(caller.hears(tone(440), "alice's microphone"))
        callers.run(set_status("bob", "available"))

        # The consult form: keyboard first, labelled, Escape closes it.
        consult = card.get_by_role("button", name="Consult")
        expect(consult).to_have_attribute("aria-expanded", "false")
        consult.click()
        expect(consult).to_have_attribute("aria-expanded", "true")
        expect(card.get_by_label("Agent", exact=True)).to_be_focused()
        expect(card.get_by_role("radio", name="An agent")).to_be_checked()
        page.keyboard.press("Escape")
        expect(consult).to_be_focused()
        page.keyboard.press("Enter")
        card.get_by_role("radio", name="A number").check()
        expect(card.get_by_label("Number", exact=True)).to_be_visible()
        screenshot(page, "softphone-consult-form-number")
        card.get_by_role("radio", name="A queue").check()
        card.get_by_label("Queue", exact=True).select_option(label="billing")
        expect(card).to_contain_text("free now and idle longest")
        screenshot(page, "softphone-consult-form-queue")
        card.get_by_role("radio", name="An agent").check()
        card.get_by_label("Agent", exact=True).select_option(value=seeded.agents["bob"])
        screenshot(page, "softphone-consult-form")
        card.get_by_role("button", name="Call", exact=True).click()

        status = card.get_by_test_id("consult-status")
        expect(status).to_contain_text("The caller is on hold")
        expect(card.get_by_test_id("call-state")).to_have_text("Consulting")
        expect(card.get_by_role("button", name="Resume")).to_be_disabled()
        expect(card.get_by_role("button", name="Transfer", exact=True)).to_be_disabled()
        callers.run(caller.hears(music_instead_of(440), "music while alice consults"))
        screenshot(page, "softphone-consulting")

        card.get_by_role("button", name="Conference").click()
        expect(status).to_contain_text("Conference")
        expect(card.get_by_test_id("call-state")).to_have_text("Conference")
        callers.run(caller.hears(lambda s: tone_share(s, 440) > 0.3 and tone_share(s, 660) > 0.3,
                                 "alice and bob together"))
        # Keys typed in the browser reach the caller through the mixer.
        card.get_by_role("button", name="Keypad").click()
        page.keyboard.press("4")
        page.keyboard.press("#")
        callers.run(wait_for(lambda: caller.rtp.dtmf_digits == ["4", "#"]))
        page.keyboard.press("Escape")
        screenshot(page, "softphone-conference")

        # Hanging up with bob on the line hands him the caller (as on a PBX): alice's desk
        # says the call was transferred, not that it ended.
        card.get_by_role("button", name="Hang up").click()
        expect(card).to_be_hidden()
        expect(page.locator("#toasts")).to_contain_text("Call transferred to")
        expect(page.locator("#toasts")).not_to_contain_text("ended")
        callers.run(wait_for(lambda: connected_agent(voice) == seeded.agents["bob"]))
        callers.run(caller.hears(tone(660), "bob after the transfer"))
        callers.run(caller.hang_up())
        callers.run(bob_phone.wait_for("CALL_CLOSED"))
        callers.run(finish_wrap_up(server, "bob"))  # the call was bob's in the end
    finally:
        callers.run(caller.close())
        callers.run(bob_phone.stop())
        callers.close()
        context.close()


def test_bob_answers_a_consult_in_the_browser_and_controls_the_call_after_completion(
        voice_site: tuple[LiveServer, Seeded], phone_browser: Browser, tmp_path: Path) -> None:
    """alice talks on her baresip desk phone (550 Hz) and consults bob, who answers in his
    desk's softphone (Chromium's 440 Hz microphone, a WebRTC leg into the mixer); after
    alice completes, bob's card controls the call (hold: music, resume: his microphone)."""
    server, seeded = voice_site
    voice: VoiceService = server.server.config.app.state.voice
    context = phone_browser.new_context(viewport={"width": 1366, "height": 860})
    context.set_default_timeout(15_000)
    context.add_init_script(LOOPBACK_ONLY)
    context.add_init_script(RAW_MICROPHONE)
    page: Page = context.new_page()
    callers = CallerLoop()
    caller = Caller(voice.stack.udp.port)

    async def alices_phone() -> Baresip:
        phone = Baresip(tmp_path / "alice-phone", user="alice", password=PHONE_PASSWORD,
                        registrar=("127.0.0.1", voice.stack.udp.port), tone_hz=550)
        await phone.start()
        await wait_for(lambda: bool(voice.registrar("acme").bindings("alice")))
        return phone

    async def alice_desk(method: str, path: str, body: dict[str, str] | None = None) -> int:
        desk = await Desk(server, "alice").login()
        try:
            response = await desk.http.request(method, path, json=body)
            return response.status_code
        finally:
            await desk.close()

    alice_phone = callers.run(alices_phone())
    try:
        log_in(page, server, "bob", "/desk")
        expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "online")
        page.get_by_role("switch", name="Phone").click()
        expect(page.get_by_role("switch", name="Phone")).to_have_attribute("aria-checked", "true")
        page.get_by_role("button", name="Break", exact=True).click()
        assert callers.run(alice_desk("PUT", "/api/desk/status", {"status": "available"})) == 200

        callers.run(caller.call(SUPPORT_LINE))
        callers.run(wait_for(lambda: connected_agent(voice) == seeded.agents["alice"]))
        callers.run(caller.hears(tone(550), "alice's desk phone"))
        [call] = list(voice.calls.values())
        assert call.contact is not None
        task = call.contact.task_id
        page.get_by_role("button", name="Available", exact=True).click()
        expect(page.get_by_test_id("presence-badge")).to_contain_text("Available")

        consult_url = f"/api/desk/calls/{task}/consult"
        assert callers.run(alice_desk("POST", consult_url,
                                      {"agent_id": seeded.agents["bob"]})) == 202
        card = page.get_by_test_id("softphone")
        expect(card.get_by_test_id("call-state")).to_have_text("Incoming call")
        expect(card).to_contain_text("Maija - consult from Alice")
        card.get_by_role("button", name="Answer").click()
        expect(card.get_by_test_id("call-state")).to_have_text("On call")
        callers.run(caller.hears(music_instead_of(440), "music while bob is consulted"))
        assert callers.run(alice_desk("POST", f"{consult_url}/complete")) == 204
        callers.run(alice_phone.wait_for("CALL_CLOSED"))
        callers.run(caller.hears(tone(440), "bob's microphone after the transfer"))
        assert connected_agent(voice) == seeded.agents["bob"]

        card.get_by_role("button", name="Hold").click()
        expect(card.get_by_test_id("call-state")).to_have_text("On hold")
        callers.run(caller.hears(music_instead_of(440), "music on bob's hold"))
        card.get_by_role("button", name="Resume").click()
        callers.run(caller.hears(tone(440), "bob again"))
        screenshot(page, "softphone-consult-taken-over")
        card.get_by_role("button", name="Hang up").click()
        callers.run(caller.hung_up_on())
        expect(card).to_be_hidden()
    finally:
        callers.run(caller.close())
        callers.run(alice_phone.stop())
        callers.close()
        context.close()

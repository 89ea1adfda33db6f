"""Supervising a call from the wallboard in Chromium: a caller (1 kHz) talks with alice's
baresip phone (440 Hz); sam opens the wallboard, where the call shows in "Calls in progress"
with Listen, Whisper and Barge buttons named after it. Listen without a phone is refused (409,
shown and announced); sam switches the Phone on (a fake microphone plays 660 Hz), listens,
answers the ringing card, and the supervision is active while sam's browser plays the caller
and alice and the caller still hears alice only (also after Whisper); after Barge the caller
hears sam's microphone mixed in; Leave ends it and the card closes.

The caller (OmniCC's SIP stack and an RTP endpoint) and alice's phone run on their own event
loop in a thread, since Playwright's sync API owns this one."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect

from omnicc.channels.voice.media.daemon import random_port_window
from omnicc.channels.voice.media.tones import tone_share
from omnicc.channels.voice.service import VoiceService
from omnicc.store.database import migrate, sqlite_url
from tests.e2e.conftest import CHROMIUM_FLAGS, chromium_path, log_in, screenshot
from tests.e2e.test_softphone import LOOPBACK_ONLY, WAIT_S, CallerLoop, tone_file, wait_for
from tests.integration.api.live import PASSWORD, LiveServer, Seeded, seed, start_live_server
from tests.integration.voice.harness import (
    CALLER_NAME,
    SUPPORT_LINE,
    Caller,
    open_support_line,
    start_phone,
    tone,
)
from tests.integration.voice.peers import Baresip

ALICE_HZ, SAM_HZ = 440.0, 660.0
CALL_NAME = f"Alice's call with {CALLER_NAME}"

# Chromium's voice processing (noise suppression, gain control) takes the fake microphone's
# steady sine for noise and turns it down some 20 dB, under alice's phone in the mix; a voice
# it keeps. The test asks for the microphone's plain signal, and keeps the page's peer
# connections to read their statistics.
PLAIN_MICROPHONE = """
(() => {
  const getUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = (constraints) => getUserMedia({
    ...constraints,
    audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
})();
"""
KEEP_PEER_CONNECTIONS = """
(() => {
  const Original = window.RTCPeerConnection;
  window.peerConnections = [];
  window.RTCPeerConnection = function (...args) {
    const pc = new Original(...args);
    window.peerConnections.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = Original.prototype;
})();
"""


def audio_stats(page: Page) -> Any:
    """The latest peer connection's state and audio bytes in and out."""
    return page.evaluate("""async () => {
        const pc = window.peerConnections.at(-1);
        if (!pc) return null;
        const result = { state: pc.connectionState, received: 0, sent: 0 };
        (await pc.getStats()).forEach((report) => {
            if (report.kind !== "audio") return;
            if (report.type === "inbound-rtp") result.received += report.bytesReceived;
            if (report.type === "outbound-rtp") result.sent += report.bytesSent;
        });
        return result;
    }""")


@pytest.fixture(scope="module")
def voice_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Seeded]]:
    folder = tmp_path_factory.mktemp("wallboard-supervision")
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
def supervisor_browser(playwright: Playwright,
                       tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    microphone = tone_file(tmp_path_factory.mktemp("microphone") / "sam.wav", SAM_HZ)
    launched = playwright.chromium.launch(executable_path=chromium_path(), args=[
        *CHROMIUM_FLAGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}", "--allow-loopback-in-peer-connection",
        "--autoplay-policy=no-user-gesture-required"])
    yield launched
    launched.close()


async def make_alice_available(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        login = await http.post("/api/auth/login", json={"username": "alice",
                                                          "password": PASSWORD,
                                                          "tenant": "acme"})
        login.raise_for_status()
        response = await http.put("/api/desk/status", json={"status": "available"},
                                  headers={"X-CSRF-Token": login.json()["csrf_token"]})
        response.raise_for_status()


async def talk(caller: Caller) -> None:
    """The caller's tone, sent from the caller's loop until it hangs up."""
    caller.talk()


def monitor_state(page: Page, task_id: str) -> Any:
    """Sam's supervision as the API tells it (through sam's logged-in page)."""
    return page.evaluate("""async (task) => {
        const response = await fetch(`/api/supervisor/calls/${task}/monitor`);
        return response.ok ? (await response.json()).state : `HTTP ${response.status}`;
    }""", task_id)


def supervisor_hears(page: Page) -> dict[int, float]:
    """The share of 1 kHz (the caller) and 440 Hz (alice) in what sam's browser plays: the
    remote audio's spectrum, summed over a second, around each tone against the whole."""
    shares: dict[str, float] = page.evaluate("""async () => {
        const audio = new AudioContext();
        await audio.resume();
        const source = audio.createMediaStreamSource(
            document.querySelector("[data-testid=remote-audio]").srcObject);
        const analyser = audio.createAnalyser();
        analyser.fftSize = 4096;
        source.connect(analyser);
        const power = new Float32Array(analyser.frequencyBinCount);
        const bins = new Float32Array(analyser.frequencyBinCount);
        for (let i = 0; i < 20; i++) {
            await new Promise((resolve) => setTimeout(resolve, 50));
            analyser.getFloatFrequencyData(bins);
            bins.forEach((db, bin) => { power[bin] += 10 ** (db / 10); });
        }
        const hz = audio.sampleRate / analyser.fftSize;
        const total = power.reduce((a, b) => a + b, 0) || 1;
        const near = (f) => power.reduce(
            (sum, p, bin) => Math.abs(bin * hz - f) < 30 ? sum + p : sum, 0);
        const result = { "1000": near(1000) / total, "440": near(440) / total };
        await audio.close();
        return result;
    }""")
    return {int(hz): share for hz, share in shares.items()}


def wait_for_state(page: Page, task_id: str, state: str) -> None:
    for _ in range(int(WAIT_S / 0.2)):
        if monitor_state(page, task_id) == state:
            return
        page.wait_for_timeout(200)
    raise AssertionError(f"sam's supervision never became {state}")


def test_a_supervisor_listens_barges_and_leaves_from_the_wallboard(
        voice_site: tuple[LiveServer, Seeded], supervisor_browser: Browser,
        tmp_path: Path) -> None:
    server, _ = voice_site
    voice: VoiceService = server.server.config.app.state.voice
    context = supervisor_browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(15_000)
    context.add_init_script(LOOPBACK_ONLY)
    context.add_init_script(KEEP_PEER_CONNECTIONS)
    context.add_init_script(PLAIN_MICROPHONE)
    page: Page = context.new_page()
    callers = CallerLoop()
    caller = Caller(voice.stack.udp.port)
    alice_phone: Baresip = callers.run(start_phone(tmp_path, voice, "alice", tone_hz=ALICE_HZ))
    try:
        callers.run(make_alice_available(server))
        callers.run(caller.call(SUPPORT_LINE))
        callers.run(talk(caller))
        callers.run(wait_for(lambda: any(c.connected.is_set() for c in voice.calls.values())))
        callers.run(caller.hears(tone(ALICE_HZ), "alice"))

        log_in(page, server, "sam", "/wallboard")
        expect(page.get_by_test_id("connection")).to_have_text("Live")
        calls = page.get_by_test_id("calls")
        row = calls.get_by_test_id("call")
        expect(row).to_have_count(1)
        expect(row).to_contain_text("Talking")
        task_id = row.get_attribute("data-task-id")
        assert task_id
        listen = page.get_by_role("button", name=f"Listen to {CALL_NAME}")
        barge = page.get_by_role("button", name=f"Barge into {CALL_NAME}")
        expect(page.get_by_role("button", name=f"Whisper in {CALL_NAME}")).to_be_enabled()

        # No phone yet: refused, shown and announced.
        listen.click()
        error = calls.get_by_test_id("calls-error")
        expect(error).to_have_text(f"Could not listen to {CALL_NAME}: switch your Phone on "
                                   "(top right) first.")
        expect(error).to_have_attribute("role", "alert")

        switch = page.get_by_role("switch", name="Phone")
        switch.click()
        expect(switch).to_have_attribute("aria-checked", "true")

        listen.focus()
        page.keyboard.press("Enter")
        expect(error).to_be_hidden()
        card = page.get_by_test_id("softphone")
        expect(card.get_by_test_id("call-state")).to_have_text("Incoming call")
        expect(row.get_by_test_id("supervising")).to_contain_text("ringing")
        answer = card.get_by_role("button", name="Answer")
        expect(answer).to_be_focused()
        page.keyboard.press("Enter")
        expect(card.get_by_test_id("call-state")).to_have_text("On call")
        wait_for_state(page, task_id, "active")
        expect(row.get_by_test_id("supervising")).to_contain_text("listening to")
        expect(listen).to_have_attribute("aria-pressed", "true")
        heard = callers.run(caller.heard(1.0))
        assert tone_share(heard, SAM_HZ) < 0.05 and tone_share(heard, ALICE_HZ) > 0.5
        before = audio_stats(page)
        assert before["state"] == "connected"
        hears = supervisor_hears(page)
        assert hears[1000] > 0.2 and hears[440] > 0.2, hears  # the caller and alice
        assert audio_stats(page)["received"] > before["received"]
        screenshot(page, "wallboard-supervising")

        whisper = page.get_by_role("button", name=f"Whisper in {CALL_NAME}")
        whisper.click()
        expect(whisper).to_have_attribute("aria-pressed", "true")
        expect(listen).to_have_attribute("aria-pressed", "false")
        expect(row.get_by_test_id("supervising")).to_contain_text("whispering in")
        heard = callers.run(caller.heard(1.0))  # only alice hears a whisper
        assert tone_share(heard, SAM_HZ) < 0.05 and tone_share(heard, ALICE_HZ) > 0.5

        barge.click()
        expect(barge).to_have_attribute("aria-pressed", "true")
        expect(row.get_by_test_id("supervising")).to_contain_text("barging into")
        callers.run(caller.hears(
            lambda s: tone_share(s, ALICE_HZ) > 0.3 and tone_share(s, SAM_HZ) > 0.3,
            "alice and sam's microphone"))

        page.get_by_role("button", name=f"Leave {CALL_NAME}").click()
        expect(card).to_be_hidden()
        expect(row.get_by_test_id("supervising")).to_have_count(0)
        expect(listen).to_be_enabled()
        expect(listen).to_be_focused()  # the keyboard focus stays in the row
        callers.run(caller.hears(tone(ALICE_HZ), "alice alone again"))
        screenshot(page, "wallboard-calls")
        assert monitor_state(page, task_id) == "ended"
        callers.run(caller.hang_up())
    finally:
        callers.run(caller.close())
        callers.run(alice_phone.stop())
        callers.close()
        context.close()

"""An email on the agent's desk in Chromium: offered, accepted, read (the hostile HTML only in a
sandboxed frame that runs no script), answered; the answer reaches the customer's mailbox."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from omnicc.channels.email.mime import parse_bytes
from omnicc.store.database import Database, migrate, sqlite_url
from omnicc.store.repositories import Agents, EmailMailboxes
from omnicc.store.tables import EmailMailbox
from tests.e2e.conftest import log_in, screenshot
from tests.integration.api.live import LiveServer, Seeded, seed, start_live_server
from tests.integration.email.servers import MailServers, corpus, mail_servers

SUPPORT = "support@support.example"
CUSTOMER = "maria.virtanen@example.fi"

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


async def _prepare(url: str, servers: MailServers) -> Seeded:
    seeded = await seed(url)
    database = Database(url)
    try:
        async with database.session() as session:
            for agent_id in seeded.agents.values():
                agent = await Agents(session, seeded.tenant_id).get(agent_id)
                agent.capacity = {"chat": 2, "voice": 1, "email": 5}
            await EmailMailboxes(session, seeded.tenant_id).add(EmailMailbox(
                name="Acme Support", address=SUPPORT, queue_id=seeded.queues["support"],
                imap_host="127.0.0.1", imap_port=servers.dovecot.port, imap_security="plain",
                imap_username=SUPPORT, imap_password=servers.dovecot.password,
                smtp_host="127.0.0.1", smtp_port=servers.smtp.port, smtp_security="plain",
                smtp_username=servers.smtp_user, smtp_password=servers.smtp_password))
    finally:
        await database.dispose()
    return seeded


@pytest.fixture(scope="module")
def email_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[LiveServer, MailServers]]:
    folder: Path = tmp_path_factory.mktemp("e2e-email")
    url = sqlite_url(folder / "omnicc.db")
    migrate(url)
    for servers in mail_servers([SUPPORT, CUSTOMER]):
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, _prepare(url, servers)).result()
        server = start_live_server(url, folder / "data")
        try:
            yield server, servers
        finally:
            server.stop()


def test_an_agent_reads_and_answers_an_email(email_site: tuple[LiveServer, MailServers],
                                             new_page: Callable[..., Page]) -> None:
    server, servers = email_site
    alice = new_page()
    log_in(alice, server, "alice", "/desk")
    expect(alice.get_by_test_id("connection")).to_have_attribute("data-state", "online")
    alice.get_by_role("button", name="Available", exact=True).click()
    dialogs: list[str] = []
    alice.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    servers.dovecot.append(SUPPORT, corpus("malicious.eml").replace(
        b"attacker@example.net", CUSTOMER.encode()))
    offer = alice.get_by_test_id("offer")
    expect(offer).to_contain_text("Email")
    offer.get_by_role("button", name="Accept").click()

    panel = alice.get_by_test_id("email-panel")
    expect(panel).to_be_visible()
    expect(panel.get_by_test_id("email").first).to_contain_text("Please see your invoice")
    expect(panel.get_by_test_id("email-due")).to_contain_text("Answer by")
    panel.get_by_role("button", name="Show formatted").click()
    frame = panel.locator("iframe.email-frame")
    expect(frame).to_have_attribute("sandbox", "allow-popups allow-popups-to-escape-sandbox")
    expect(frame.content_frame.get_by_role("link", name="real link")).to_be_visible()
    expect(frame.content_frame.locator("script")).to_have_count(0)

    panel.get_by_label(f"Your answer to {CUSTOMER}").fill("Hello Maria, that link was not ours.")
    panel.get_by_role("button", name="Send email").click()
    expect(panel.get_by_test_id("email").last).to_contain_text("Reply · sent")
    screenshot(alice, "desk-email")

    deadline = time.monotonic() + 20
    found: list[tuple[bytes, bytes]] = []
    while time.monotonic() < deadline and len(found) < 2:  # the acknowledgement and the reply
        found = servers.dovecot.messages(CUSTOMER)
        time.sleep(0.1)
    subjects = sorted(str(parse_bytes(raw)["Subject"]) for _, raw in found)
    assert len(subjects) == 2 and all("Your invoice [#" in s for s in subjects)
    assert dialogs == []  # no alert() of the email ever ran

    panel.get_by_role("button", name="Done").click()
    expect(alice.get_by_test_id("wrap-up")).to_be_visible()

"""The voice tests' exchanges (see harness.py): each test gets its own database, seeded and
provisioned with one phone line, and its own running VoiceService.

The voice tests run on SQLite only: a real-time call scenario costs the same wall time on either
database (the phones and the media set the pace), and running each twice cost six minutes of the
suite. What the voice code stores is tested on both databases where it is written and read back:
the call-record writer, restart recovery, agents' outbound tasks and the main inbound call (marked
`on_both_databases`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from omnicc.channels.voice.media.daemon import RtpengineDaemon, random_port_window
from tests.integration.voice.harness import (
    Customer,
    Exchange,
    open_both_ways,
    open_exchange,
    open_menu_line,
    open_outbound_line,
    open_support_line,
)


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """Voice tests run on SQLite unless marked `on_both_databases` (see the module docstring)."""
    name: str = request.param
    return name


@pytest.fixture
async def exchange(migrated_database_url: str, tmp_path: Path) -> AsyncIterator[Exchange]:
    """Number 1000 answers with the IVR menu (1: support, recorded; 2: voicemail); alice and bob
    have SIP accounts; agents' phones are probed every 0.5 s."""
    async with open_exchange(migrated_database_url, tmp_path, open_menu_line,
                             keepalive_s=0.5) as exchange:
        yield exchange


@pytest.fixture
async def support_exchange(migrated_database_url: str,
                           tmp_path: Path) -> AsyncIterator[Exchange]:
    """Number 1000 goes straight to the support queue; alice and bob have SIP accounts;
    agents' phones are probed every 0.5 s."""
    async with open_exchange(migrated_database_url, tmp_path, open_support_line,
                             keepalive_s=0.5) as exchange:
        yield exchange


@pytest.fixture
async def outbound_exchange(migrated_database_url: str,
                            tmp_path: Path) -> AsyncIterator[Exchange]:
    """For outbound calls: the support queue's caller ID is QUEUE_NUMBER; alice has a SIP
    account; default keepalives (a carrier played by sipp must not get OPTIONS)."""
    async with open_exchange(migrated_database_url, tmp_path, open_outbound_line) as exchange:
        yield exchange


@pytest.fixture
async def both_ways_exchange(migrated_database_url: str,
                             tmp_path: Path) -> AsyncIterator[Exchange]:
    """Number 1000 rings the support queue, which is also the caller ID of outbound calls;
    alice and bob have SIP accounts."""
    async with open_exchange(migrated_database_url, tmp_path, open_both_ways) as exchange:
        yield exchange


@pytest.fixture
async def customer() -> AsyncIterator[Customer]:
    """The customer behind the carrier trunk (`harness.Customer`)."""
    customer = Customer()
    try:
        yield customer
    finally:
        await customer.close()


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[RtpengineDaemon]:
    """A running rtpengine of the test's own, for media-level tests without an exchange."""
    daemon = RtpengineDaemon(recording_dir=tmp_path / "recordings",
                             port_range=random_port_window())
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.stop()

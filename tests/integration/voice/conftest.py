"""The voice tests' exchanges (see harness.py): each test gets its own database (SQLite and
PostgreSQL), seeded and provisioned with one phone line, and its own running VoiceService."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.voice.harness import (
    Exchange,
    open_exchange,
    open_menu_line,
    open_outbound_line,
    open_support_line,
)


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

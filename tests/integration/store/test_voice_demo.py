"""The demo center answers number 1000 with a flow whose references are the demo's own rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnicc.app.demo import seed_demo
from omnicc.channels.voice.ivr import parse_flow, reference_problems
from omnicc.channels.voice.ivr.demo import DEMO_NUMBER
from omnicc.store.database import Database
from omnicc.store.repositories import (
    BusinessHoursRepository,
    IvrFlows,
    Queues,
    VoiceNumbers,
    find_number,
)
from tests.integration.api.live import TEST_PASSWORDS

pytestmark = pytest.mark.anyio


async def test_the_demo_number_runs_a_valid_flow_and_seeding_twice_adds_nothing(
    migrated_database_url: str, tmp_path: Path
) -> None:
    for _ in range(2):
        await seed_demo(migrated_database_url, tmp_path, passwords=TEST_PASSWORDS)
    database = Database(migrated_database_url)
    try:
        async with database.session() as session:
            number = await find_number(session, DEMO_NUMBER)
            assert number is not None and number.flow_id is not None
            tenant_id = number.tenant_id
            assert len(await VoiceNumbers(session, tenant_id).list_all()) == 1
            assert len(await IvrFlows(session, tenant_id).list_all()) == 1
            flow = parse_flow((await IvrFlows(session, tenant_id).get(number.flow_id)).definition)
            queues = {q.id for q in await Queues(session, tenant_id).list_all()}
            hours = {h.id for h in await BusinessHoursRepository(session, tenant_id).list_all()}
            assert reference_problems(flow, queue_ids=queues, business_hours_ids=hours,
                                      prompt_ids=set()) == []
    finally:
        await database.dispose()

"""A number's route is kept between calls (no lookup per call under load), and read again
after an administrative change or a routing reload: the next call follows the change."""

from __future__ import annotations

import pytest

from omnicc.store.repositories import VoiceNumbers
from omnicc.store.tables import VoiceNumber
from tests.integration.voice.harness import SUPPORT_LINE, Caller, Exchange


@pytest.fixture
def exchange(support_exchange: Exchange) -> Exchange:
    return support_exchange


async def set_flow(exchange: Exchange, flow_id: str | None) -> str | None:
    """Point the support line at `flow_id` (None: no flow, 480) in the store only, as
    another process would; returns the flow it had."""
    async with exchange.database.session() as session:
        numbers = VoiceNumbers(session, exchange.seeded.tenant_id)
        row = await numbers.first(numbers.select().where(VoiceNumber.number == SUPPORT_LINE))
        assert row is not None
        before, row.flow_id = row.flow_id, flow_id
        await numbers.save(row)
    return before


async def dial(exchange: Exchange) -> None:
    """A call that must be answered; hung up at once."""
    caller = Caller(exchange.voice.stack.udp.port)
    try:
        await caller.call(SUPPORT_LINE)
        await caller.hang_up()
    finally:
        await caller.close()


@pytest.mark.anyio
async def test_the_route_is_read_again_after_an_admin_change_or_a_routing_reload(
        exchange: Exchange) -> None:
    voice = exchange.voice
    await dial(exchange)
    assert voice.routes.get(SUPPORT_LINE) is not None  # kept for the next call
    flow = await set_flow(exchange, None)
    voice.forget_configuration()  # what the admin API's change transaction does
    with pytest.raises(AssertionError, match="480"):
        await dial(exchange)

    await set_flow(exchange, flow)
    await (await exchange.runtime()).routing.reload()  # a routing change: a new engine
    await dial(exchange)
    kept = voice.routes.get(SUPPORT_LINE)
    assert kept is not None and kept[1] is (await exchange.runtime()).routing.engine
    await set_flow(exchange, None)
    await (await exchange.runtime()).routing.reload()
    with pytest.raises(AssertionError, match="480"):
        await dial(exchange)

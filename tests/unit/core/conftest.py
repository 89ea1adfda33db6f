"""Shared set-up for engine tests: an engine on a manual clock and small builders."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pytest

from omnicc.core import events as ev
from omnicc.core.clock import ManualClock
from omnicc.core.engine import Engine
from omnicc.core.model import AgentConfig, QueueConfig, TaskRequest


class Desk:
    """An engine, its clock and shortcuts that read like a test scenario."""

    def __init__(self, **engine_options: object) -> None:
        self.clock = ManualClock(1_700_000_000.0)
        self.engine = Engine(self.clock, keep_log=True, **engine_options)  # type: ignore[arg-type]

    def queue(self, queue_id: str, **options: object) -> None:
        self.engine.configure_queue(QueueConfig(id=queue_id, **options))  # type: ignore[arg-type]

    def agent(
        self,
        agent_id: str,
        skills: Mapping[str, int] | None = None,
        status: str = "available",
        capacity: Mapping[str, int] | None = None,
        **attributes: object,
    ) -> None:
        config = AgentConfig(
            id=agent_id,
            skills=dict(skills or {}),
            attributes=attributes,
            status=status,
            **({"capacity": dict(capacity)} if capacity is not None else {}),
        )
        self.engine.configure_agent(config)

    def task(self, queue: str = "q", channel: str = "voice", **options: object) -> str:
        events = self.engine.create_task(TaskRequest(channel=channel, queue=queue, **options))  # type: ignore[arg-type]
        created = events[0]
        assert isinstance(created, ev.TaskCreated)
        return created.task_id

    def tick(self, seconds: float) -> list[ev.Event]:
        self.clock.advance(seconds)
        return self.engine.advance()

    def offers_to(self, agent_id: str) -> list[str]:
        return sorted(self.engine.agent(agent_id).offers)

    def offered_task(self, agent_id: str) -> str:
        (offer_id,) = self.engine.agent(agent_id).offers
        return self.engine.offer(offer_id).task_id

    def accept(self, agent_id: str) -> str:
        """Accept the agent's only pending offer; return the task id."""
        (offer_id,) = self.engine.agent(agent_id).offers
        task_id = self.engine.offer(offer_id).task_id
        self.engine.accept(offer_id)
        return task_id

    def events(self, kind: type[ev.Event]) -> list[ev.Event]:
        assert self.engine.log is not None
        return [e for e in self.engine.log if isinstance(e, kind)]

    def offered_pairs(self) -> list[tuple[str, str]]:
        return [(e.task_id, e.agent_id) for e in self.events(ev.OfferCreated)]  # type: ignore[attr-defined]


@pytest.fixture
def desk() -> Desk:
    d = Desk()
    d.queue("q")
    return d


def ids(items: Iterable[object]) -> list[str]:
    return [i.id for i in items]

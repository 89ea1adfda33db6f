"""Live figures (10) and events (11): the log rebuilds the engine's state."""

from __future__ import annotations

import itertools
import random

import pytest

from omnicc.core.errors import Conflict, OmniccError
from omnicc.core.model import PolicyStep, RoutingPolicy, Strategy
from omnicc.core.projection import Projection, snapshot_of

from .conftest import Desk


class TestQueueFigures:
    def test_service_levels_by_their_three_definitions(self) -> None:
        desk = Desk()
        desk.queue("q", sl_threshold_s=20, short_abandon_s=5)
        desk.agent("a", status="break")
        fast = desk.task()
        slow = desk.task()
        short = desk.task()
        late_abandon = desk.task()
        desk.tick(3)
        desk.engine.abandon(short)
        desk.tick(7)
        desk.engine.set_status("a", "available")
        desk.accept("a")  # fast: waited 10 s
        desk.engine.set_status("a", "break")
        desk.tick(20)
        desk.engine.abandon(late_abandon)  # after 30 s
        desk.engine.complete(fast)
        desk.engine.set_status("a", "available")
        assert desk.accept("a") == slow  # waited 30 s
        figures = desk.engine.queue_figures("q")
        assert (figures.offered, figures.handled, figures.abandoned, figures.short_abandoned) == (
            4, 2, 2, 1)
        assert figures.service_level_1 == pytest.approx(1 / 2)
        assert figures.service_level_2 == pytest.approx(1 / 3)
        assert figures.service_level_3 == pytest.approx(1 / 4)
        assert figures.asa_s == pytest.approx(20)

    def test_waiting_longest_wait_and_agents_by_presence(self, desk: Desk) -> None:
        desk.agent("a")
        desk.agent("b", status="break")
        desk.task()
        desk.accept("a")
        desk.task()
        desk.tick(42)
        desk.task()
        figures = desk.engine.queue_figures("q")
        assert (figures.waiting, figures.longest_wait_s) == (2, 42)
        assert figures.agents_by_presence == {"busy": 1, "break": 1}

    def test_ewt_is_zero_with_an_idle_agent_and_none_without_agents(self, desk: Desk) -> None:
        assert desk.engine.queue_figures("q").ewt_s is None
        desk.agent("a")
        assert desk.engine.queue_figures("q").ewt_s == 0

    def test_figures_reset_at_midnight(self, desk: Desk) -> None:
        desk.agent("a")
        task = desk.task()
        desk.accept("a")
        desk.engine.complete(task)
        assert desk.engine.queue_figures("q").handled == 1
        desk.tick(86_400)
        assert desk.engine.queue_figures("q").handled == 0


class TestEvents:
    def test_sequence_numbers_are_gap_free_and_time_ordered(self, desk: Desk) -> None:
        desk.agent("a")
        task = desk.task()
        desk.tick(5)
        desk.accept("a")
        desk.tick(60)
        desk.engine.complete(task)
        log = desk.engine.log or []
        assert [e.seq for e in log] == list(range(1, len(log) + 1))
        assert all(x.at <= y.at for x, y in itertools.pairwise(log))

    def test_a_task_life_in_events(self, desk: Desk) -> None:
        desk.agent("a")
        task = desk.task()
        desk.tick(5)
        desk.accept("a")
        desk.tick(60)
        desk.engine.complete(task)
        types = [e.type for e in desk.engine.log or [] if getattr(e, "task_id", None) == task]
        assert types == ["task.created", "task.queued", "offer.created", "offer.accepted",
                         "task.completed", "task.ended"]

    def test_refused_commands_emit_nothing(self, desk: Desk) -> None:
        desk.agent("a")
        before = len(desk.engine.log or [])
        with pytest.raises(Conflict):
            desk.engine.accept("O999")
        assert len(desk.engine.log or []) == before


def drive_randomly(desk: Desk, rng: random.Random, steps: int) -> None:
    """Random legal commands; what the engine refuses is skipped."""
    engine = desk.engine
    for _ in range(steps):
        action = rng.randrange(11)
        agents = sorted(a.id for a in engine.agents())
        tasks = sorted(t.id for t in engine.tasks())
        offers = sorted(o.id for o in engine.pending_offers())
        try:
            if action == 0:
                desk.task(rng.choice(["q", "chat_q"]), channel=rng.choice(["voice", "chat"]),
                          priority=rng.randrange(3))
            elif action == 1 and offers:
                engine.accept(rng.choice(offers))
            elif action == 2 and offers:
                engine.reject(rng.choice(offers))
            elif action == 3 and tasks:
                task = rng.choice(tasks)
                if rng.random() < 0.5:
                    engine.complete(task)
                else:
                    engine.wrap_up(task, "done")
            elif action == 4 and tasks:
                engine.abandon(rng.choice(tasks))
            elif action == 5 and agents:
                engine.set_status(rng.choice(agents), rng.choice(["available", "break"]))
            elif action == 6 and tasks:
                engine.transfer(rng.choice(tasks), queue_id=rng.choice(["q", "chat_q"]))
            elif action == 7:
                desk.task(queue=None, policy="escalate", channel="voice")
            elif action == 8 and agents:
                desk.task(rng.choice(["q", "chat_q"]), channel=rng.choice(["voice", "chat"]),
                          agent_id=rng.choice(agents))
            elif action == 9 and tasks:
                engine.reprioritise(rng.choice(tasks), rng.randrange(5))
            else:
                desk.tick(rng.choice([0.5, 5, 30]))
        except OmniccError:
            pass


def configure_center(desk: Desk) -> None:
    """Two queues with different strategies, wrap-up and aging, and an escalating policy."""
    desk.queue("q", wrap_up_s=15, aging_per_s=0.05, reoffer_delay_s=3)
    desk.queue("chat_q", strategy=Strategy.ROUND_ROBIN, offer_timeout_s=8)
    desk.engine.configure_policy(RoutingPolicy(id="escalate", steps=(
        PolicyStep(queue="chat_q", timeout_s=20), PolicyStep(queue="q"))))


def busy_desk(seed: int, steps: int) -> Desk:
    """The center of `configure_center` with four agents, after `steps` random commands."""
    desk = Desk(max_missed_offers=2)
    configure_center(desk)
    for i in range(4):
        desk.agent(f"a{i}", status="break", capacity={"voice": 1, "chat": 2})
    drive_randomly(desk, random.Random(seed), steps)
    return desk


@pytest.mark.parametrize("seed", range(12))
def test_the_event_log_rebuilds_the_engines_state(seed: int) -> None:
    desk = busy_desk(seed, 400)
    rebuilt = Projection().apply_all(desk.engine.log or []).snapshot()
    assert rebuilt == snapshot_of(desk.engine)


def test_queue_ewt_follows_the_channel_of_the_waiting_work() -> None:
    desk = Desk()
    desk.queue("q", expected_handle_s=300)
    desk.agent("a", capacity={"chat": 2})
    for _ in range(3):
        desk.task(channel="chat")
    figures = desk.engine.queue_figures("q")
    assert figures.waiting == 1
    assert figures.ewt_s == pytest.approx(2 * 300 / 2)
    assert desk.engine.queue_figures("q", channel="voice").ewt_s is None


@pytest.mark.parametrize("seed", range(4))
def test_events_survive_their_wire_form(seed: int) -> None:
    import json

    from omnicc.core import events as ev

    desk = busy_desk(seed, 200)
    decoded = 0
    for event in desk.engine.log or []:
        payload = json.loads(json.dumps(ev.encode_payload(event)))
        if event.type in ("status.defined", "queue.configured", "policy.configured",
                          "agent.configured"):
            with pytest.raises(ValueError, match="cannot decode"):
                ev.decode_event(event.type, event.at, event.seq, payload)
            continue
        assert ev.decode_event(event.type, event.at, event.seq, payload) == event
        decoded += 1
    assert decoded > 100


def test_expected_wait_with_abandonment() -> None:
    from omnicc.core.engine import expected_wait_s

    assert expected_wait_s(0.1, 0.0, 4) == pytest.approx(50)
    assert expected_wait_s(0.1, 0.01, 2) == pytest.approx(1 / 0.1 + 1 / 0.11 + 1 / 0.12)
    exact = sum(1 / (0.5 + i * 0.002) for i in range(5001))
    assert expected_wait_s(0.5, 0.002, 5000) == pytest.approx(exact, rel=1e-3)


def test_ewt_discounts_callers_ahead_who_give_up(desk: Desk) -> None:
    desk.queue("q", expected_handle_s=100)
    desk.agent("a")
    desk.task()
    desk.accept("a")
    waiting = [desk.task() for _ in range(3)]
    assert desk.engine.task_position(waiting[2]).ewt_s == pytest.approx(300)
    desk.tick(50)
    # one abandon over 50 s of finished waits (the handled task waited 0 s): theta = 1/50
    desk.engine.abandon(waiting[0])
    ewt = desk.engine.task_position(waiting[2]).ewt_s
    assert ewt == pytest.approx(1 / 0.01 + 1 / (0.01 + 1 / 50))

"""Pools: the engine's indexes, so that a routing decision never scans all tasks or agents.

A pool is one queue seen through one set of extra requirements (a policy step's expression bound
to the task's values, the task's required skills, an explicit agent list). Every waiting task sits
in exactly one pool; every agent knows the pools it is eligible for. A pool keeps, per channel,

- `waiting`: its waiting tasks, sorted by (-base score + aging, enqueued_at, seq), which is the
  queue's order at any time because the aging rate is the same for the whole queue;
- `idle`: its eligible agents who can take that channel now, sorted by the queue's strategy key.

So "an agent became free" looks at the head of each of the agent's pools, and "a task arrived"
looks at the head of one idle index: both cost O(log n), not O(n).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping

from sortedcontainers import SortedList

from omnicc.core.model import AgentState, Channel, QueueState, Strategy

AgentPredicate = Callable[[Mapping[str, object], Mapping[str, int]], bool]
IdleEntry = tuple[object, ...]
WaitingEntry = tuple[float, float, int, str]


class Pool:
    """The agents eligible for, and the tasks waiting under, one set of routing requirements."""

    __slots__ = (
        "explicit_agents",
        "id",
        "idle",
        "key",
        "members",
        "predicate",
        "queue",
        "rank_skills",
        "references",
        "waiting",
    )

    def __init__(
        self,
        pool_id: int,
        key: Hashable,
        queue: QueueState,
        predicate: AgentPredicate,
        rank_skills: tuple[str, ...],
        explicit_agents: frozenset[str] | None,
    ) -> None:
        self.id = pool_id
        self.key = key
        self.queue = queue
        self.predicate = predicate
        self.rank_skills = rank_skills
        self.explicit_agents = explicit_agents
        self.members: set[str] = set()
        self.waiting: dict[Channel, SortedList] = {}
        self.idle: dict[Channel, SortedList] = {}
        self.references = 0

    def __repr__(self) -> str:
        return f"Pool({self.id}, queue={self.queue.config.id}, members={len(self.members)})"

    def admits(self, agent: AgentState) -> bool:
        if self.explicit_agents is not None:
            if agent.id not in self.explicit_agents:
                return False
        elif agent.id not in self.queue.members:
            return False
        return self.predicate(agent.attributes, agent.skills)

    def add_waiting(self, channel: Channel, entry: WaitingEntry) -> None:
        bucket = self.waiting.get(channel)
        if bucket is None:
            bucket = self.waiting[channel] = SortedList()
        bucket.add(entry)

    def remove_waiting(self, channel: Channel, entry: WaitingEntry) -> None:
        bucket = self.waiting[channel]
        bucket.remove(entry)
        if not bucket:
            del self.waiting[channel]

    def count_ahead(self, channel: Channel, entry: WaitingEntry) -> int:
        bucket = self.waiting.get(channel)
        return 0 if bucket is None else bucket.bisect_left(entry)

    def idle_entry(self, agent: AgentState, contacts_today: int) -> IdleEntry:
        """The agent's sort key in this pool's idle indexes, per the queue's strategy."""
        strategy = self.queue.config.strategy
        if strategy is Strategy.LONGEST_IDLE:
            return (agent.idle_since, agent.ordinal, agent.id)
        if strategy is Strategy.LEAST_OCCUPIED:
            used = sum(agent.in_progress.values())
            slots = sum(agent.capacity.values()) or 1
            return (used / slots, agent.idle_since, agent.ordinal, agent.id)
        if strategy is Strategy.MOST_PROFICIENT:
            skills = agent.skills
            proficiency = sum(skills.get(skill, 0) for skill in self.rank_skills)
            return (-proficiency, agent.idle_since, agent.ordinal, agent.id)
        if strategy is Strategy.FEWEST_CONTACTS:
            return (contacts_today, agent.idle_since, agent.ordinal, agent.id)
        if strategy is Strategy.SEQUENTIAL:
            order = self.queue.config.hunt_order
            position = order.index(agent.id) if agent.id in order else len(order) + agent.ordinal
            return (position, agent.id)
        return (agent.ordinal, agent.id)

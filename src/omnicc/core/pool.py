"""Pools: the engine's indexes, so that a routing decision never scans all tasks or agents.

A pool is one queue seen through one set of extra requirements (a policy step's expression bound
to the task's values, the task's required skills, an explicit agent list). Every waiting task sits
in exactly one pool; every agent knows the pools it is eligible for. A pool keeps, per channel,

- `waiting`: a `Line` of its waiting tasks, sorted by (-base score + aging, enqueued_at, seq),
  which is the queue's order at any time because the aging rate is the same for the whole queue;
- `idle`: its eligible agents who can take that channel now, sorted by the queue's strategy key.

So "an agent became free" looks at the head of each of the agent's pools, and "a task arrived"
looks at the head of one idle index: both cost O(log n), not O(n).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Hashable, Mapping
from heapq import heappop, heappush, nsmallest

from sortedcontainers import SortedList

from omnicc.core.model import AgentState, Channel, QueueState, Strategy

AgentPredicate = Callable[[Mapping[str, object], Mapping[str, int]], bool]
IdleEntry = tuple[object, ...]
WaitingEntry = tuple[float, float, int, str]


class Line:
    """The waiting tasks of one pool on one channel, in order, with the head kept at hand.

    A binary heap with lazy deletion: taking the head is a C-level pop, and a task that leaves
    from the middle (abandon, step change) is only marked stale until it surfaces. `declined`
    holds the ids of tasks in the line that some agent declined recently, so that the common
    case (nobody declined the head) needs no look at the task itself.
    """

    __slots__ = (
        "aging_per_s", "channel", "declined", "head", "heap", "pool", "rank", "size", "stale",
    )

    def __init__(self, pool: Pool, channel: Channel) -> None:
        self.pool = pool
        self.channel = channel
        self.rank = -pool.queue.config.priority
        self.aging_per_s = pool.queue.config.aging_per_s
        self.heap: list[WaitingEntry] = []
        self.stale: dict[WaitingEntry, int] = {}
        self.size = 0
        self.head: WaitingEntry | None = None
        self.declined: set[str] = set()

    def __len__(self) -> int:
        return self.size

    def add(self, entry: WaitingEntry, declined: bool) -> None:
        heappush(self.heap, entry)
        self.size += 1
        head = self.head
        if head is None or entry < head:
            self.head = entry
        if declined:
            self.declined.add(entry[3])

    def remove(self, entry: WaitingEntry) -> None:
        self.size -= 1
        self.declined.discard(entry[3])
        if entry == self.head:
            heappop(self.heap)
            self._settle_head()
            return
        self.stale[entry] = self.stale.get(entry, 0) + 1
        if len(self.stale) > 64 and len(self.stale) * 2 > len(self.heap):
            self._compact()

    def ordered(self) -> list[WaitingEntry]:
        """The live entries in serving order."""
        stale = dict(self.stale)
        live = []
        for entry in sorted(self.heap):
            count = stale.get(entry)
            if count:
                stale[entry] = count - 1
            else:
                live.append(entry)
        return live

    def first(self, count: int) -> list[WaitingEntry]:
        """Up to `count` live entries from the head, in order."""
        if not self.stale:
            return nsmallest(count, self.heap)
        return self.ordered()[:count]

    def count_ahead(self, entry: WaitingEntry) -> int:
        return bisect_left(self.ordered(), entry)

    def _settle_head(self) -> None:
        heap, stale = self.heap, self.stale
        while heap:
            top = heap[0]
            count = stale.get(top)
            if not count:
                self.head = top
                return
            heappop(heap)
            if count == 1:
                del stale[top]
            else:
                stale[top] = count - 1
        self.head = None

    def _compact(self) -> None:
        self.heap = self.ordered()
        self.stale.clear()
        self.head = self.heap[0] if self.heap else None


class LineGroup:
    """An agent's lines on one channel that share a queue priority (`rank`, lower first)."""

    __slots__ = ("aged", "lines", "rank")

    def __init__(self, rank: int) -> None:
        self.rank = rank
        self.lines: list[Line] = []
        self.aged = False

    def classify(self) -> None:
        self.aged = any(line.aging_per_s for line in self.lines)


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
        self.waiting: dict[Channel, Line] = {}
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

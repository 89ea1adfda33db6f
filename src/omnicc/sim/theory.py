"""What queueing theory predicts for a scenario, when it is the textbook case.

A scenario is the textbook case when it is one M/M/N queue: one stream of Poisson arrivals
without a profile, exponential handle times, no wrap-up, N agents always available who answer at
once and take one contact at a time. Erlang C applies without patience, Erlang A with
exponential patience.
"""

from __future__ import annotations

from dataclasses import dataclass

from omnicc.core.expression import compile_expression
from omnicc.sim.scenario import Scenario
from omnicc.wfm.erlang import erlang_a_figures, erlang_c_figures


@dataclass(frozen=True, slots=True)
class TheoryFigures:
    model: str
    agents: int
    traffic_erl: float
    service_level: float
    asa_s: float
    p_wait: float
    p_abandon: float
    occupancy: float


def theory_for(scenario: Scenario) -> TheoryFigures | None:
    """Erlang C or Erlang A figures when the scenario is one M/M/N(+M) queue, else None."""
    if len(scenario.traffic) != 1 or len(scenario.queues) != 1:
        return None
    stream = scenario.traffic[0]
    queue = scenario.queues[0]
    if (
        stream.queue != queue.id
        or stream.profile is not None
        or stream.required_skills
        or stream.handle.distribution != "exponential"
        or queue.wrap_up_s
    ):
        return None
    expression = compile_expression(queue.expression)
    agents = 0
    for group in scenario.agents:
        if group.shifts is not None or group.answer_delay_s > 0:
            return None
        config = group.to_configs()[0]
        slots = config.capacity.get(stream.channel, 0)
        if slots == 0 or not expression.evaluate(config.attributes, config.skills):
            continue
        if slots != 1:
            return None
        agents += group.count
    if agents == 0:
        return None
    threshold_s = scenario.threshold_of(stream)
    if stream.patience_s is None:
        c = erlang_c_figures(stream.arrivals_per_hour, stream.handle.mean_s, agents, threshold_s)
        return TheoryFigures("Erlang C", agents, c.traffic_erl, c.service_level, c.asa_s,
                             c.p_wait, 0.0, c.occupancy)
    a = erlang_a_figures(stream.arrivals_per_hour, stream.handle.mean_s, agents,
                         stream.patience_s, threshold_s)
    return TheoryFigures("Erlang A", agents, a.traffic_erl, a.service_level, a.asa_s,
                         a.p_wait, a.p_abandon, a.occupancy)

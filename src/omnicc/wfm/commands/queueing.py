"""`omnicc wfm erlang` and `omnicc wfm staff`: the queueing figures of one interval.

Both print one JSON object with `--json` (for scripts) or a table; bad input exits with code 2
and a one-line reason, like every `omnicc` command.
"""

from __future__ import annotations

import json
import math
from enum import StrEnum
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from omnicc.wfm.commands import wfm_app
from omnicc.wfm.erlang import (
    SECONDS_PER_HOUR,
    erlang_a_figures,
    erlang_b,
    erlang_b_lines,
    erlang_c_figures,
    required_agents,
    scheduled_agents,
)

USAGE_ERROR = 2


class Model(StrEnum):
    b = "b"
    c = "c"
    a = "a"


Figures = dict[str, float | int | str | None]

_LABELS = {
    "model": "Model",
    "traffic_erl": "Offered load (Erlang)",
    "agents": "Agents",
    "lines": "Lines",
    "threshold_s": "Threshold T (s)",
    "patience_s": "Mean patience (s)",
    "required_agents": "Required agents",
    "required_lines": "Required lines",
    "shrinkage": "Shrinkage",
    "scheduled_agents": "Scheduled agents",
    "scheduled_lines": "Scheduled lines",
    "p_block": "P(block)",
    "p_wait": "P(wait)",
    "p_abandon": "P(abandon)",
    "service_level": "Service level P(answered within T)",
    "asa_s": "ASA (s)",
    "occupancy": "Occupancy",
}
_MODEL_NAMES = {"b": "Erlang B", "c": "Erlang C", "a": "Erlang A"}


def fail(message: str) -> NoReturn:
    """Stop with the usage-error exit code and a one-line reason on stderr."""
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"omnicc: error: {message}", markup=False
    )
    raise typer.Exit(USAGE_ERROR)


def _check(ok: bool, message: str) -> None:
    if not ok:
        fail(message)


def _finite_at_least(option: str, value: float | None, minimum: float, *, strict: bool) -> None:
    if value is None:
        return
    ok = math.isfinite(value) and (value > minimum if strict else value >= minimum)
    _check(ok, f"{option} must be a number {'>' if strict else '>='} {minimum:g}, got {value:g}")


def _share(option: str, value: float | None, *, closed_above: bool) -> None:
    if value is None:
        return
    upper_ok = value <= 1.0 if closed_above else value < 1.0
    interval = "(0, 1]" if closed_above else "(0, 1)"
    _check(math.isfinite(value) and value > 0 and upper_ok,
           f"{option} must lie in {interval}, got {value:g}")


def _check_workload(arrivals_per_hour: float, aht_s: float, threshold_s: float,
                    patience_s: float | None) -> None:
    _finite_at_least("--arrivals-per-hour", arrivals_per_hour, 0, strict=False)
    _finite_at_least("--aht-s", aht_s, 0, strict=True)
    _finite_at_least("--threshold-s", threshold_s, 0, strict=False)
    _finite_at_least("--patience-s", patience_s, 0, strict=True)


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _print(figures: Figures, json_output: bool, title: str) -> None:
    if json_output:
        typer.echo(json.dumps(figures, allow_nan=False))
        return
    table = Table(title=title, show_header=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        if key == "model":
            shown = _MODEL_NAMES[str(value)]
        elif key == "shrinkage" and isinstance(value, float):
            shown = f"{value:.1%}"
        elif value is None:
            shown = "infinite (unstable)" if key == "asa_s" else "-"
        elif isinstance(value, float) and key in {"traffic_erl", "threshold_s", "patience_s",
                                                  "asa_s"}:
            shown = f"{value:,.3f}"
        elif isinstance(value, float):
            shown = f"{value:.6f}"
        else:
            shown = str(value)
        table.add_row(_LABELS[key], shown)
    Console(highlight=False).print(table)


def erlang_figures(model: Model, arrivals_per_hour: float, aht_s: float, agents: int,
                   threshold_s: float, patience_s: float | None) -> Figures:
    """The `--json` object of `omnicc wfm erlang`."""
    traffic_erl = arrivals_per_hour * aht_s / SECONDS_PER_HOUR
    if model is Model.b:
        p_block = erlang_b(traffic_erl, agents)
        return {"model": "b", "traffic_erl": traffic_erl, "lines": agents, "p_block": p_block,
                "occupancy": traffic_erl * (1.0 - p_block) / agents}
    if model is Model.c:
        c = erlang_c_figures(arrivals_per_hour, aht_s, agents, threshold_s)
        return {"model": "c", "traffic_erl": c.traffic_erl, "agents": agents,
                "threshold_s": threshold_s, "p_wait": c.p_wait,
                "service_level": c.service_level, "asa_s": _number(c.asa_s),
                "occupancy": c.occupancy}
    assert patience_s is not None
    a = erlang_a_figures(arrivals_per_hour, aht_s, agents, patience_s, threshold_s)
    return {"model": "a", "traffic_erl": a.traffic_erl, "agents": agents,
            "threshold_s": threshold_s, "patience_s": patience_s, "p_wait": a.p_wait,
            "p_abandon": a.p_abandon, "service_level": a.service_level,
            "asa_s": _number(a.asa_s), "occupancy": a.occupancy}


ArrivalsOption = Annotated[float, typer.Option(
    "--arrivals-per-hour", help="Contacts arriving per hour (Poisson).", show_default=False)]
AhtOption = Annotated[float, typer.Option(
    "--aht-s", help="Average handle time in seconds (METRICS.md's AHT).", show_default=False)]
ThresholdOption = Annotated[float, typer.Option(
    "--threshold-s", help="Service-level threshold T in seconds.")]
PatienceOption = Annotated[float | None, typer.Option(
    "--patience-s", help="Mean patience before abandoning (Erlang A).", show_default=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


@wfm_app.command("erlang")
def erlang_command(
    arrivals_per_hour: ArrivalsOption,
    aht_s: AhtOption,
    agents: Annotated[int, typer.Option(
        "--agents", help="Agents (lines for Erlang B).", show_default=False)],
    model: Annotated[Model, typer.Option(
        "--model", help="b: loss system, c: M/M/N queue, a: M/M/N+M with abandonment.")
    ] = Model.c,
    threshold_s: ThresholdOption = 20.0,
    patience_s: PatienceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Queueing figures for one interval: Erlang B, C or A."""
    _check_workload(arrivals_per_hour, aht_s, threshold_s, patience_s)
    _check(agents >= 1, f"--agents must be >= 1, got {agents}")
    if model is Model.a:
        _check(patience_s is not None, "--model a (Erlang A) needs --patience-s")
    else:
        _check(patience_s is None, "--patience-s applies to --model a (Erlang A) only")
    try:
        figures = erlang_figures(model, arrivals_per_hour, aht_s, agents, threshold_s,
                                 patience_s)
    except ValueError as error:
        fail(str(error))
    _print(figures, json_output, f"{_MODEL_NAMES[model.value]} figures")


def staff_figures(
    arrivals_per_hour: float,
    aht_s: float,
    *,
    service_level: float | None,
    threshold_s: float,
    asa_s: float | None,
    max_abandon: float | None,
    patience_s: float | None,
    max_occupancy: float | None,
    max_block: float | None,
    shrinkage: float,
) -> Figures:
    """The `--json` object of `omnicc wfm staff`: required and scheduled agents, and the
    figures the required agents achieve."""
    traffic_erl = arrivals_per_hour * aht_s / SECONDS_PER_HOUR
    if max_block is not None:
        lines = erlang_b_lines(traffic_erl, max_block)
        p_block = erlang_b(traffic_erl, lines)
        return {"model": "b", "traffic_erl": traffic_erl, "required_lines": lines,
                "shrinkage": shrinkage, "scheduled_lines": scheduled_agents(lines, shrinkage),
                "p_block": p_block,
                "occupancy": traffic_erl * (1.0 - p_block) / lines if lines else 0.0}
    required = required_agents(
        arrivals_per_hour, aht_s, target_service_level=service_level, threshold_s=threshold_s,
        target_asa_s=asa_s, target_p_abandon=max_abandon, patience_s=patience_s,
        max_occupancy=max_occupancy,
    )
    model = Model.c if patience_s is None else Model.a
    achieved = erlang_figures(model, arrivals_per_hour, aht_s, required, threshold_s,
                              patience_s)
    del achieved["agents"]
    return {"model": achieved.pop("model"), "traffic_erl": achieved.pop("traffic_erl"),
            "required_agents": required, "shrinkage": shrinkage,
            "scheduled_agents": scheduled_agents(required, shrinkage), **achieved}


@wfm_app.command("staff")
def staff_command(
    arrivals_per_hour: ArrivalsOption,
    aht_s: AhtOption,
    service_level: Annotated[float | None, typer.Option(
        "--service-level", help="Target share answered within --threshold-s, e.g. 0.8.",
        show_default=False)] = None,
    threshold_s: ThresholdOption = 20.0,
    asa_s: Annotated[float | None, typer.Option(
        "--asa-s", help="Target ASA in seconds (at most).", show_default=False)] = None,
    max_abandon: Annotated[float | None, typer.Option(
        "--max-abandon", help="Target P(abandon), at most (Erlang A: needs --patience-s).",
        show_default=False)] = None,
    patience_s: PatienceOption = None,
    max_occupancy: Annotated[float | None, typer.Option(
        "--max-occupancy", help="Occupancy at most, e.g. 0.85.", show_default=False)] = None,
    max_block: Annotated[float | None, typer.Option(
        "--max-block", help="Erlang B: lines for at most this blocking, e.g. 0.02.",
        show_default=False)] = None,
    shrinkage: Annotated[float, typer.Option(
        "--shrinkage", help="Share of paid time not available for contacts (METRICS.md).")
    ] = 0.0,
    json_output: JsonOption = False,
) -> None:
    """Agents needed for a target, and agents to schedule after shrinkage.

    Targets: service level, ASA, abandonment (Erlang A, with --patience-s), occupancy; or
    blocking alone (Erlang B lines, --max-block).
    """
    _check_workload(arrivals_per_hour, aht_s, threshold_s, patience_s)
    _share("--service-level", service_level, closed_above=False)
    _finite_at_least("--asa-s", asa_s, 0, strict=True)
    _share("--max-abandon", max_abandon, closed_above=False)
    _share("--max-occupancy", max_occupancy, closed_above=True)
    _share("--max-block", max_block, closed_above=True)
    _check(math.isfinite(shrinkage) and 0 <= shrinkage < 1,
           f"--shrinkage must lie in [0, 1), got {shrinkage:g}")
    queue_targets = (service_level, asa_s, max_abandon, max_occupancy)
    if max_block is not None:
        _check(all(t is None for t in queue_targets) and patience_s is None,
               "--max-block (Erlang B lines) cannot be combined with queue targets")
    else:
        _check(any(t is not None for t in queue_targets),
               "give a target: --service-level, --asa-s, --max-abandon, --max-occupancy "
               "or --max-block")
    _check(max_abandon is None or patience_s is not None,
           "--max-abandon needs --patience-s (Erlang A)")
    try:
        figures = staff_figures(
            arrivals_per_hour, aht_s, service_level=service_level, threshold_s=threshold_s,
            asa_s=asa_s, max_abandon=max_abandon, patience_s=patience_s,
            max_occupancy=max_occupancy, max_block=max_block, shrinkage=shrinkage,
        )
    except ValueError as error:
        fail(str(error))
    _print(figures, json_output, "Staffing")

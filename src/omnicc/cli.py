"""The `omnicc` command: one entry point for every admin task."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from typer.core import TyperCommand

from omnicc.reports.commands import reports_app
from omnicc.sim.scenario import (
    DEFAULT_BATCHES,
    Scenario,
    ScenarioError,
    load_scenario,
    parse_scenario,
)
from omnicc.sim.scenario import single_queue_scenario as build_single_queue
from omnicc.sim.simulation import ProgressCallback, QueueKpis, SimulationResult, simulate
from omnicc.sim.statistics import Estimate
from omnicc.sim.theory import TheoryFigures, theory_for
from omnicc.wfm.commands import wfm_app

if TYPE_CHECKING:
    from omnicc.app.demo import Login
    from omnicc.config import Settings

USAGE_ERROR = 2
SINGLE_QUEUE_HOURS = 1000.0
SINGLE_QUEUE_THRESHOLD_S = 20.0
ProgressFactory = Callable[[str], ProgressCallback]
"""Makes one progress line for a simulation run and returns its callback."""
DEMO_SCENARIOS = ("nordic_specialists.yaml", "nordic_cross_trained.yaml")

app = typer.Typer(
    name="omnicc",
    help="OmniCC: an open-source omnichannel contact center.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main() -> None:
    """OmniCC: an open-source omnichannel contact center."""


def _fail(message: str) -> NoReturn:
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"omnicc: error: {message}", markup=False
    )
    raise typer.Exit(USAGE_ERROR)


# --- simulate ------------------------------------------------------------------------------


@app.command("simulate")
def simulate_command(
    scenario_path: Annotated[
        Path | None,
        typer.Argument(metavar="[SCENARIO.yaml]", show_default=False,
                       help="Scenario file; or describe one queue with the options below."),
    ] = None,
    arrivals_per_hour: Annotated[
        float | None, typer.Option("--arrivals-per-hour", help="Single queue: Poisson arrivals.")
    ] = None,
    aht_s: Annotated[
        float | None, typer.Option("--aht-s", help="Single queue: mean handle time (exponential).")
    ] = None,
    agents: Annotated[int | None, typer.Option("--agents", help="Single queue: agents.")] = None,
    patience_s: Annotated[
        float | None,
        typer.Option("--patience-s", help="Single queue: mean patience (Erlang A); none: wait."),
    ] = None,
    threshold_s: Annotated[
        float | None, typer.Option("--threshold-s", help="Service-level threshold \\[default: 20].")
    ] = None,
    hours: Annotated[
        float | None, typer.Option("--hours", help="Simulated hours \\[single queue: 1000].")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed \\[default: 1].")] = None,
    batches: Annotated[
        int | None, typer.Option("--batches", help="Batches for the confidence intervals.")
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the KPIs as one JSON object on the last line.")
    ] = False,
) -> None:
    """Simulate a contact center on the real routing engine and print KPIs with 99 % CIs."""
    single_queue = (arrivals_per_hour, aht_s, agents, patience_s)
    if scenario_path is not None:
        if any(value is not None for value in single_queue):
            _fail("give either a SCENARIO file or the single-queue options, not both")
        scenario = _scenario_from_file(scenario_path, hours, seed, batches, threshold_s)
    else:
        scenario = _single_queue(arrivals_per_hour, aht_s, agents, patience_s, threshold_s,
                                 hours, seed, batches)
    theory = _theory(scenario)
    with _progress_bar(enabled=not json_output) as progress:
        result = _run(scenario, progress(scenario.name or "simulation"))
    if json_output:
        typer.echo(json.dumps(result_json(result, theory), allow_nan=False))
        return
    console = Console(highlight=False)
    _print_result(console, result, theory)


def _scenario_from_file(
    path: Path, hours: float | None, seed: int | None, batches: int | None,
    threshold_s: float | None,
) -> Scenario:
    try:
        scenario = load_scenario(path)
        overrides = {k: v for k, v in (("hours", hours), ("seed", seed), ("batches", batches),
                                       ("threshold_s", threshold_s)) if v is not None}
        if overrides:
            data = scenario.model_dump(exclude_unset=True, mode="json")
            scenario = parse_scenario({**data, **overrides}, str(path))
    except ScenarioError as error:
        _fail(str(error))
    return scenario


def _single_queue(
    arrivals_per_hour: float | None, aht_s: float | None, agents: int | None,
    patience_s: float | None, threshold_s: float | None, hours: float | None,
    seed: int | None, batches: int | None,
) -> Scenario:
    if arrivals_per_hour is None or aht_s is None or agents is None:
        _fail("give a SCENARIO file, or --arrivals-per-hour, --aht-s and --agents")
    checks = (
        (math.isfinite(arrivals_per_hour) and arrivals_per_hour >= 0,
         "--arrivals-per-hour must be >= 0"),
        (math.isfinite(aht_s) and aht_s > 0, "--aht-s must be > 0"),
        (agents >= 1, "--agents must be >= 1"),
        (patience_s is None or (math.isfinite(patience_s) and patience_s > 0),
         "--patience-s must be > 0"),
        (threshold_s is None or (math.isfinite(threshold_s) and threshold_s >= 0),
         "--threshold-s must be >= 0"),
        (hours is None or (math.isfinite(hours) and hours > 0), "--hours must be > 0"),
        (batches is None or batches >= 2, "--batches must be >= 2"),
    )
    for ok, message in checks:
        if not ok:
            _fail(message)
    try:
        return build_single_queue(
            arrivals_per_hour=arrivals_per_hour,
            aht_s=aht_s,
            agents=agents,
            patience_s=patience_s,
            threshold_s=SINGLE_QUEUE_THRESHOLD_S if threshold_s is None else threshold_s,
            hours=SINGLE_QUEUE_HOURS if hours is None else hours,
            seed=1 if seed is None else seed,
            batches=DEFAULT_BATCHES if batches is None else batches,
        )
    except ScenarioError as error:
        _fail(str(error).removeprefix("scenario: "))


def _theory(scenario: Scenario) -> TheoryFigures | None:
    try:
        return theory_for(scenario)
    except ValueError:
        return None  # e.g. an Erlang A chain too long to compute; the simulation still runs


def _run(scenario: Scenario, progress: ProgressCallback) -> SimulationResult:
    try:
        return simulate(scenario, progress)
    except ScenarioError as error:
        _fail(str(error))


@contextmanager
def _progress_bar(*, enabled: bool) -> Iterator[ProgressFactory]:
    """A rich progress bar on stderr; one line per simulation run inside it."""
    if not enabled:
        yield lambda description: lambda share: None
        return
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )

    def factory(description: str) -> ProgressCallback:
        task = progress.add_task(description, total=1.0)
        return lambda share: progress.update(task, completed=share)

    with progress:
        yield factory



# --- output ------------------------------------------------------------------------------------


def _estimate_json(estimate: Estimate) -> dict[str, object]:
    return {
        "mean": _finite(estimate.mean),
        "ci99": [_finite(estimate.low), _finite(estimate.high)],
    }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


_KPI_FIELDS = ("service_level", "service_level_1", "service_level_2", "asa_s", "p_wait",
               "p_abandon", "ewt_mae_s", "ewt_bias_s")


def _queue_json(kpis: QueueKpis) -> dict[str, object]:
    payload: dict[str, object] = {name: _estimate_json(getattr(kpis, name))
                                  for name in _KPI_FIELDS}
    payload.update(threshold_s=kpis.threshold_s, calls=kpis.contacts, handled=kpis.handled,
                   abandoned=kpis.abandoned, timed_out=kpis.timed_out)
    return payload


def result_json(result: SimulationResult, theory: TheoryFigures | None) -> dict[str, object]:
    """The `--json` object: overall KPIs at the top level, then per queue and per group."""
    payload = _queue_json(result.overall)
    payload["occupancy"] = _estimate_json(result.occupancy)
    payload.update(
        scenario=result.scenario,
        seed=result.seed,
        hours=result.simulated_hours,
        warmup_hours=result.warmup_hours,
        batches=result.batches,
        batch_hours=result.batch_hours,
        arrivals=result.arrivals,
        unfinished=result.unfinished,
        wall_s=round(result.wall_s, 3),
        arrivals_per_wall_s=round(result.arrivals_per_wall_s, 1),
        queues={q.id: _queue_json(q) for q in result.queues},
        groups={g.group: {"agents": g.agents, "occupancy": _estimate_json(g.occupancy)}
                for g in result.groups},
        theory=None if theory is None else {
            "model": theory.model,
            "agents": theory.agents,
            "traffic_erl": theory.traffic_erl,
            "service_level": theory.service_level,
            "asa_s": theory.asa_s,
            "p_wait": theory.p_wait,
            "p_abandon": theory.p_abandon,
            "occupancy": theory.occupancy,
        },
    )
    return payload


def _ratio(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4f}"


def _seconds(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def _ci(estimate: Estimate, fmt: str) -> str:
    if math.isnan(estimate.low):
        return "-"
    return f"[{estimate.low:{fmt}}, {estimate.high:{fmt}}]"


def _mean_pm(estimate: Estimate, fmt: str) -> str:
    if math.isnan(estimate.mean):
        return "-"
    if math.isnan(estimate.half_width):
        return f"{estimate.mean:{fmt}}"
    return f"{estimate.mean:{fmt}} ±{estimate.half_width:{fmt}}"


def _percent_pm(estimate: Estimate) -> str:
    scaled = Estimate(estimate.mean * 100, estimate.low * 100, estimate.high * 100,
                      estimate.batches)
    return _mean_pm(scaled, ".1f")


def _threshold_label(threshold_s: float | None) -> str:
    return "T" if threshold_s is None else f"{threshold_s:g} s"


def kpi_table(result: SimulationResult, theory: TheoryFigures | None) -> Table:
    """Overall KPIs, one per row, with the 99 % CI and the theory beside them."""
    overall = result.overall
    title = f"{result.scenario or 'simulation'}: all queues"
    table = Table(title=title, title_justify="left")
    table.add_column("KPI")
    table.add_column("mean", justify="right")
    table.add_column("99 % CI", justify="right")
    if theory is not None:
        table.add_column(theory.model, justify="right")
        table.add_column("in CI", justify="center")
    threshold = _threshold_label(overall.threshold_s)
    rows: list[tuple[str, Estimate, str, float | None]] = [
        (f"service level (≤ {threshold})", overall.service_level, ".4f",
         None if theory is None else theory.service_level),
        ("SL1 (of handled)", overall.service_level_1, ".4f", None),
        ("SL2 (also late abandons)", overall.service_level_2, ".4f", None),
        ("ASA (s)", overall.asa_s, ".2f", None if theory is None else theory.asa_s),
        ("P(wait)", overall.p_wait, ".4f", None if theory is None else theory.p_wait),
        ("P(abandon)", overall.p_abandon, ".4f", None if theory is None else theory.p_abandon),
        ("occupancy", result.occupancy, ".4f", None if theory is None else theory.occupancy),
        ("EWT abs. error (s)", overall.ewt_mae_s, ".2f", None),
        ("EWT bias (s)", overall.ewt_bias_s, ".2f", None),
    ]
    for label, estimate, fmt, expected in rows:
        mean = "-" if math.isnan(estimate.mean) else f"{estimate.mean:{fmt}}"
        cells = [label, mean, _ci(estimate, fmt)]
        if theory is not None:
            if expected is None:
                cells += ["", ""]
            else:
                inside = estimate.contains(expected)
                cells += [f"{expected:{fmt}}", "[green]yes[/]" if inside else "[red]no[/]"]
        table.add_row(*cells)
    return table


def queue_table(result: SimulationResult) -> Table:
    """One row per traffic stream: mean ±half-width of the 99 % CI, shares in per cent."""
    if result.overall.threshold_s is not None:
        threshold = _threshold_label(result.overall.threshold_s)
    else:
        threshold = ", ".join(f"{q.id} {_threshold_label(q.threshold_s)}" for q in result.queues)
    table = Table(title=f"{result.scenario or 'simulation'}: per queue (SL within {threshold})",
                  title_justify="left", box=box.SIMPLE_HEAD)
    for header in ("queue", "calls", "SL %", "ASA s", "P(wait) %", "aband. %", "EWT err s"):
        table.add_column(header, justify="left" if header == "queue" else "right")
    for kpis in (*result.queues, result.overall):
        table.add_row(
            kpis.id,
            f"{kpis.contacts:,}",
            _percent_pm(kpis.service_level),
            _mean_pm(kpis.asa_s, ".1f"),
            _percent_pm(kpis.p_wait),
            _percent_pm(kpis.p_abandon),
            _mean_pm(kpis.ewt_mae_s, ".1f"),
            end_section=kpis is result.queues[-1],
        )
    return table


def group_table(result: SimulationResult) -> Table:
    table = Table(title=f"{result.scenario or 'simulation'}: occupancy per agent group",
                  title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("group")
    table.add_column("agents", justify="right")
    table.add_column("occupancy", justify="right")
    for group in result.groups:
        table.add_row(group.group, str(group.agents), _mean_pm(group.occupancy, ".3f"))
    table.add_row("all", str(sum(g.agents for g in result.groups)),
                  _mean_pm(result.occupancy, ".3f"))
    return table


def _run_summary(result: SimulationResult) -> str:
    return (
        f"{result.simulated_hours:g} simulated hours (warm-up {result.warmup_hours:g} h, "
        f"{result.batches} batches of {result.batch_hours:g} h), seed {result.seed}: "
        f"{result.arrivals:,} contacts in {result.wall_s:.1f} s wall time "
        f"({result.arrivals_per_wall_s:,.0f} contacts/s)"
    )


def _print_result(console: Console, result: SimulationResult,
                  theory: TheoryFigures | None) -> None:
    console.print(kpi_table(result, theory))
    if len(result.queues) > 1:
        console.print(queue_table(result))
    if len(result.groups) > 1:
        console.print(group_table(result))
    console.print(_run_summary(result), style="dim")
    if result.unfinished:
        console.print(
            f"[yellow]{result.unfinished:,} contacts were still open when the run stopped "
            "and are not counted: the center may be overloaded.[/]"
        )


# --- demo-sim ----------------------------------------------------------------------------------


def _examples_dir() -> Path:
    for candidate in (Path(__file__).resolve().parents[2] / "examples", Path.cwd() / "examples"):
        if all((candidate / name).is_file() for name in DEMO_SCENARIOS):
            return candidate
    _fail("the example scenarios were not found; run the demo from an OmniCC source checkout")


@app.command("demo-sim")
def demo_sim(
    hours: Annotated[
        float | None, typer.Option("--hours", help="Simulated hours per scenario.")
    ] = None,
) -> None:
    """Show the engine at work: a multi-skill Nordic center, with and without cross-training."""
    examples = _examples_dir()
    scenarios = [_scenario_from_file(examples / name, hours, None, None, None)
                 for name in DEMO_SCENARIOS]
    console = Console(highlight=False)
    console.print(Panel.fit(
        "OmniCC demo: the real routing engine, driven by a discrete-event simulation.\n"
        "Two versions of one Finnish/Swedish/English contact center with the same head count "
        "and the same callers;\nthe second replaces some specialists by bilingual agents.",
        border_style="cyan",
    ))
    results: list[SimulationResult] = []
    with _progress_bar(enabled=True) as progress:
        for scenario in scenarios:
            results.append(_run(scenario, progress(scenario.name)))
    for result in results:
        console.print(queue_table(result))
    specialists, cross_trained = results
    console.print(comparison_table(specialists, cross_trained))
    console.print(Panel(_explanation(specialists, cross_trained), title="What you just saw",
                        border_style="cyan"))


def comparison_table(before: SimulationResult, after: SimulationResult) -> Table:
    """Per queue, each figure before → after (means; the CIs are in the tables above)."""
    table = Table(title=f"What cross-training buys: {before.scenario} → {after.scenario}",
                  title_justify="left", box=box.SIMPLE_HEAD)
    for header in ("queue", "service level", "ASA (s)", "abandoned"):
        table.add_column(header, justify="left" if header == "queue" else "right")
    for old, new in zip((*before.queues, before.overall), (*after.queues, after.overall),
                        strict=True):
        table.add_row(
            old.id,
            f"{old.service_level.mean:.1%} → {new.service_level.mean:.1%}",
            f"{old.asa_s.mean:.1f} → {new.asa_s.mean:.1f}",
            f"{old.p_abandon.mean:.1%} → {new.p_abandon.mean:.1%}",
            end_section=old is before.queues[-1],
        )
    return table


def _explanation(before: SimulationResult, after: SimulationResult) -> str:
    weakest = min(before.queues, key=lambda q: q.service_level.mean)
    improved = next(q for q in after.queues if q.id == weakest.id)
    lines: Sequence[str] = (
        f"Each run pushed {after.arrivals:,} simulated calls (the same callers in both) through "
        "the routing engine that serves production: queue expressions like "
        "`skills.swedish >= 1` choose the eligible agents, a routing policy waits for a native "
        "speaker first and then widens the pool, and every offer, acceptance and wrap-up is an "
        "engine event.",
        f"Specialists only: the {weakest.id} queue reaches a service level of "
        f"{weakest.service_level.mean:.1%}. With bilingual agents and the same head count it "
        f"reaches {improved.service_level.mean:.1%}, and the whole center goes from "
        f"{before.overall.service_level.mean:.1%} to {after.overall.service_level.mean:.1%}: "
        "small queues gain most, because an agent who can serve two queues is idle less often "
        "while someone waits (the pooling effect queueing theory predicts).",
        "The ± figures are 99 % confidence intervals by batch means; run "
        "`omnicc simulate examples/nordic_cross_trained.yaml` to explore, or "
        "`omnicc simulate --arrivals-per-hour 200 --aht-s 180 --agents 14` to see the simulator "
        "agree with Erlang C.",
    )
    return "\n\n".join(lines)


# --- server ----------------------------------------------------------------------------------
# The server stack is imported inside these commands so that `simulate` and `demo-sim` start
# fast.


def _server_settings(**overrides: object) -> Settings:
    from omnicc.config import SettingsError, load_settings

    try:
        return load_settings(**overrides)
    except SettingsError as error:
        _fail(str(error))


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option("--host", help="Address to listen on \\[default: 127.0.0.1].")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Port to listen on; 0 picks a free one "
                                                 "\\[default: 8080].")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML settings file (or OMNICC_CONFIG).")
    ] = None,
) -> None:
    """Run the OmniCC server until SIGTERM or Ctrl-C (settings: OMNICC_* and --config)."""
    from omnicc.api.server import ServerError
    from omnicc.api.server import serve as run_server
    from omnicc.observability import configure_logging

    settings = _server_settings(host=host, port=port, config=config)
    configure_logging(settings.log_level, settings.log_format)

    def announce(url: str) -> None:
        typer.echo(f"OmniCC is serving on {url}; Ctrl-C stops it.")
        sys.stdout.flush()

    try:
        run_server(settings, announce)
    except ServerError as error:
        _fail(str(error))


# --- configuration and users -------------------------------------------------------------------

config_app = typer.Typer(help="Export or import the tenant's configuration as one YAML file.",
                         no_args_is_help=True)
users_app = typer.Typer(help="Manage users.", no_args_is_help=True)
email_app = typer.Typer(help="Email channel tasks.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(users_app, name="users")
app.add_typer(email_app, name="email")
app.add_typer(wfm_app, name="wfm")
app.add_typer(reports_app, name="reports")
TenantOption = Annotated[str | None, typer.Option(
    "--tenant", help="Tenant slug \\[default: the only tenant; `default` is created if none].")]


def _with_tenant(slug: str | None, work: Callable[..., object]) -> object:
    """Run `work(session, tenant_id)` in one transaction on the configured database."""
    import asyncio

    from omnicc.store.database import Database
    from omnicc.store.repositories import Tenants

    settings = _server_settings()
    migrate_database(settings.database_url)

    async def run() -> object:
        database = Database(settings.database_url)
        try:
            async with database.session() as session:
                tenants = Tenants(session)
                listed = await tenants.list_all()
                if slug is not None:
                    found = [t for t in listed if t.slug == slug]
                    tenant = found[0] if found else await tenants.create(slug, slug)
                elif len(listed) == 1:
                    tenant = listed[0]
                elif not listed:
                    tenant = await tenants.create("default", "Default")
                else:
                    _fail("several tenants exist: name one with --tenant")
                return await work(session, tenant.id)  # type: ignore[misc]
        finally:
            await database.dispose()

    from omnicc.core.errors import OmniccError

    try:
        return asyncio.run(run())
    except OmniccError as error:
        _fail(str(error))


@config_app.command("export")
def config_export(
    tenant: TenantOption = None,
    output: Annotated[Path | None, typer.Option("-o", "--output",
                                                help="File to write \\[default: stdout].")] = None,
) -> None:
    """Write the tenant's configuration (names, no ids, no passwords) as YAML."""
    from omnicc.api.admin.configuration import dump_yaml
    from omnicc.app.configuration import export_configuration

    text = dump_yaml(_with_tenant(tenant, export_configuration))  # type: ignore[arg-type]
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


@config_app.command("import")
def config_import(
    file: Annotated[Path, typer.Argument(help="The YAML file.", exists=True, dir_okay=False)],
    tenant: TenantOption = None,
    replace: Annotated[bool, typer.Option("--replace",
                                          help="Delete what the file does not name.")] = False,
) -> None:
    """Create or update everything the file names, all or nothing."""
    import yaml

    from omnicc.app.configuration import import_configuration

    try:
        document = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        _fail(f"{file}: not valid YAML: {error}")

    async def work(session: object, tenant_id: str) -> object:
        return await import_configuration(session, tenant_id, document,  # type: ignore[arg-type]
                                          replace=replace)

    _with_tenant(tenant, work)
    typer.echo(f"Imported {file}.")
    typer.echo("A running server picks the change up at its next restart; the admin API "
               "(PUT /api/admin/config) applies it live.")


@users_app.command("create")
def users_create(
    username: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[str, typer.Option("--role", help="admin, supervisor or agent.")] = "admin",
    tenant: TenantOption = None,
    display_name: Annotated[str, typer.Option("--display-name")] = "",
    password: Annotated[str | None, typer.Option(
        "--password", help="\\[default: asked for, hidden] (or OMNICC_PASSWORD)",
        envvar="OMNICC_PASSWORD")] = None,
) -> None:
    """Create a user with an argon2id password (the first admin, typically)."""
    from omnicc.app.passwords import Passwords, WeakPassword, check_password_policy
    from omnicc.store.repositories import Users
    from omnicc.store.tables import User

    if role not in ("admin", "supervisor", "agent"):
        _fail(f"unknown role {role!r} (admin, supervisor or agent)")
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        check_password_policy(password, username=username)
    except WeakPassword as error:
        _fail(str(error))
    password_hash = Passwords().hash(password)

    async def work(session: object, tenant_id: str) -> object:
        users = Users(session, tenant_id)  # type: ignore[arg-type]
        from omnicc.core.errors import Conflict, NotFound

        try:
            await users.by_username(username)
        except NotFound:
            return await users.add(User(username=username, role=role, display_name=display_name,
                                        password_hash=password_hash))
        raise Conflict(f"user {username} exists already")

    _with_tenant(tenant, work)
    typer.echo(f"User {username} ({role}) created.")


@email_app.command("import", help=(
    "Read a mailbox's whole folder over IMAP into OmniCC (nothing is stored twice); each new "
    "email becomes a ticket and a routed task. Run it while `omnicc serve` is stopped (the "
    "server is the routing engine's only writer); with a server running, use POST "
    "/api/admin/email/mailboxes/{id}/import instead."))
def email_import(
    mailbox: Annotated[str, typer.Argument(help="The mailbox's name, address or id.")],
    tenant: TenantOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """A mailbox import from the command line, with a progress bar on stderr."""
    import asyncio
    import time

    from omnicc.app.attachments import AttachmentStore
    from omnicc.app.routing import WallClock
    from omnicc.app.runtime import ContactCenter
    from omnicc.bus import Bus
    from omnicc.channels.email.imap import ImapError
    from omnicc.channels.email.service import EmailService
    from omnicc.core.errors import OmniccError
    from omnicc.store.database import Database
    from omnicc.store.repositories import EmailMailboxes, Tenants

    settings = _server_settings()
    migrate_database(settings.database_url)
    console = Console(stderr=True)

    async def run() -> tuple[int, int, float]:
        database = Database(settings.database_url)
        center = ContactCenter(database, WallClock(), Bus())
        try:
            async with database.session() as session:
                listed = [t for t in await Tenants(session).list_all()
                          if tenant is None or t.slug == tenant]
                if len(listed) != 1:
                    _fail("no such tenant" if listed == [] else
                          "several tenants exist: name one with --tenant")
                tenant_id = listed[0].id
                found = [m for m in await EmailMailboxes(session, tenant_id).list_all()
                         if mailbox in (m.id, m.name, m.address)]
                if not found:
                    _fail(f"no mailbox {mailbox!r}")
                mailbox_id = found[0].id
            await center.start()
            service = EmailService(database, center, AttachmentStore(
                settings.data_dir, max_bytes=settings.max_upload_bytes))
            progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                TaskProgressColumn(), TextColumn("{task.completed}/{task.total}"),
                                TimeElapsedColumn(), console=console, disable=quiet)
            with progress:
                bar = progress.add_task(f"Importing {found[0].name}", total=None)
                started = time.perf_counter()
                new = await service.import_mailbox(
                    tenant_id, mailbox_id,
                    lambda done, total: progress.update(bar, completed=done, total=total))
                read = int(progress.tasks[0].completed)
            return new, read, time.perf_counter() - started
        finally:
            await center.stop()
            await database.dispose()

    try:
        new, read, elapsed_s = asyncio.run(run())
    except (OmniccError, ImapError) as error:
        _fail(str(error))
    rate = read / elapsed_s if elapsed_s > 0 else 0.0
    typer.echo(f"{read} emails read, {new} new, in {elapsed_s:.1f} s ({rate:.0f} emails/s).")


def migrate_database(url: str) -> None:
    """The one place the CLI reaches into the store to migrate."""
    from omnicc.store.database import migrate as migrate_store

    migrate_store(url)


@app.command()
def migrate(
    database_url: Annotated[
        str | None, typer.Option("--database-url",
                                 help="SQLAlchemy URL \\[default: OMNICC_DATABASE_URL or the "
                                      "SQLite file in the data directory].")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML settings file (or OMNICC_CONFIG).")
    ] = None,
) -> None:
    """Bring the database schema up to date (Alembic upgrade to the newest revision)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from omnicc.observability import configure_logging

    settings = _server_settings(database_url=database_url, config=config)
    configure_logging(settings.log_level, settings.log_format)
    try:
        shown = make_url(settings.database_url).render_as_string(hide_password=True)
    except ArgumentError:
        _fail(f"setting database_url: not a database URL: {settings.database_url!r}")
    try:
        migrate_database(settings.database_url)
    except Exception as error:  # the CLI's edge: any failure becomes one line and exit 2
        message = str(error).strip().splitlines()
        _fail(f"migrating {shown} failed: {message[0] if message else type(error).__name__}")
    typer.echo(f"The database {shown} is up to date.")


# --- demo --------------------------------------------------------------------------------------

DEMO_PAGES = (
    ("Agent desktop", "/desk", "agents: go available, take chats"),
    ("Wallboard", "/wallboard", "the supervisor's live view"),
    ("Reports", "/reports", "history: charts, drill-down, exports"),
    ("Workforce", "/wfm", "forecast, staffing, schedules, adherence"),
    ("Admin", "/admin", "queues, skills, users, hours"),
    ("Customer page", "/demo?tenant=demo", "the chat widget as customers see it"),
    ("API docs", "/docs", "REST and WebSocket endpoints"),
)


DEFAULT_DEMO_RATE = 30.0


class _StandaloneTraffic(TyperCommand):
    """Lets `--traffic` stand alone (the default rate) as well as take one (`--traffic 60`)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer's own click Context
        given: list[str] = []
        for index, arg in enumerate(args):
            given.append(arg)
            following = args[index + 1] if index + 1 < len(args) else ""
            if arg == "--traffic" and not _is_number(following):
                given.append(f"{DEFAULT_DEMO_RATE:g}")
        return super().parse_args(ctx, given)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@app.command(cls=_StandaloneTraffic)
def demo(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Holds the demo's database, secret key and "
                                             "logins.json.")
    ] = Path("demo-data"),
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8080,
    traffic: Annotated[
        float | None, typer.Option(
            "--traffic", metavar="[RATE]", show_default=False,
            help=f"Simulated customers chat with the center: RATE an hour per queue "
                 f"({DEFAULT_DEMO_RATE:g} when --traffic stands alone).")
    ] = None,
    bot_agents: Annotated[
        int, typer.Option("--bot-agents", help="Simulated agents that log in and answer chats "
                                               "(their own users; the human logins stay free).")
    ] = 0,
    sip_port: Annotated[
        int, typer.Option("--sip-port", help="SIP port for calls and phones (a free one when "
                                             "taken); -1 turns voice off.")
    ] = 5060,
) -> None:
    """Start a ready-to-try contact center on this machine: a demo tenant with queues, skills,
    agents, a supervisor and an admin (logins printed), optionally with simulated customers and
    agents. Ctrl-C stops it; a second run finds everything as it was."""
    import asyncio

    from omnicc.api.server import ServerError
    from omnicc.api.server import serve as run_server
    from omnicc.app.demo import seed_demo
    from omnicc.app.traffic import Traffic, TrafficPlan, start_in_background
    from omnicc.observability import configure_logging

    if traffic is not None and not (math.isfinite(traffic) and traffic > 0):
        _fail("--traffic must be > 0 customers per hour")
    if not 0 <= bot_agents <= 50:
        _fail("--bot-agents must be between 0 and 50")
    console = Console(highlight=False)
    voice_port, voice_note = _demo_sip_port(host, sip_port)
    settings = _server_settings(data_dir=data_dir, host=host, port=port, log_format="text",
                                log_level="warning", sip_port=voice_port, sip_host=host)
    configure_logging(settings.log_level, settings.log_format)
    with console.status("Preparing the demo contact center..."):
        migrate_database(settings.database_url)
        center = asyncio.run(seed_demo(settings.database_url, settings.data_dir,
                                       bot_agents=bot_agents))
    plan = TrafficPlan(customers_per_hour=traffic or 0.0)
    background: list[asyncio.Task[None]] = []

    def announce(url: str) -> None:
        console.print(pages_table(center.name, url))
        console.print(logins_table(center.logins, settings.data_dir))
        console.print(voice_note)
        if traffic is not None or center.bots:
            local = url.replace("://0.0.0.0:", "://127.0.0.1:").replace("://[::]:", "://[::1]:")
            background.append(start_in_background(Traffic(
                local, center.slug, plan, bots=center.bots, origin=settings.public_base_url)))
            console.print(_traffic_line(traffic, len(center.bots), len(center.queues)))
        console.print(f"OmniCC demo is serving on {url}; Ctrl-C stops it.")
        sys.stdout.flush()

    async def stop_traffic() -> None:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)

    try:
        run_server(settings, announce, stop_traffic)
    except ServerError as error:
        _fail(str(error))


def _demo_sip_port(host: str, wanted: int) -> tuple[int | None, str]:
    """The demo's SIP port (None: voice off) and the line that tells how to call."""
    import shutil
    import socket

    if wanted < 0:
        return None, "Voice: off (--sip-port -1)."
    missing = [tool for tool in ("rtpengine", "espeak-ng") if shutil.which(tool) is None]
    if missing:
        return None, (f"Voice: off - {' and '.join(missing)} not installed "
                      "(`make demo` installs them: scripts/voice_packages.sh).")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((host, wanted))
        except OSError:
            probe.bind((host, 0))
        port = probe.getsockname()[1]  # 0 asked for any free port: say which
    return port, (f"Voice: call the hotline at sip:1000@{host}:{port} (e.g. `sipp -sn uac -s 1000 "
                  f"{host}:{port}`); agents' SIP phones register as sip:<username>@{host}:{port} "
                  "with their login password.")


def _traffic_line(rate: float | None, bots: int, queues: int) -> str:
    parts = []
    if rate is not None:
        parts.append(f"about {rate:g} simulated customers per hour on each of the {queues} "
                     "queues")
    if bots:
        parts.append(f"{bots} simulated agent{'s' if bots != 1 else ''} answering")
    return "Traffic: " + " and ".join(parts) + "."


def pages_table(name: str, url: str) -> Table:
    """Where to go in the demo."""
    table = Table(title=f"OmniCC demo: {name}", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("open")
    table.add_column("address", no_wrap=True)
    table.add_column("for")
    for title, path, what in DEMO_PAGES:
        table.add_row(title, f"{url}{path}", what)
    return table


def logins_table(logins: Sequence[Login], data_dir: Path) -> Table:
    """Who to log in as (tenant `demo`); the bots' logins are the traffic's own."""
    table = Table(title="Logins (tenant: demo)", title_justify="left", box=box.SIMPLE_HEAD,
                  caption=f"Kept in {data_dir / 'logins.json'}; every run prints the same.",
                  caption_justify="left")
    table.add_column("username")
    table.add_column("password", no_wrap=True)
    table.add_column("role")
    table.add_column("name")
    for login in logins:
        if not login.is_bot:
            table.add_row(login.username, login.password, login.role, login.display_name)
    return table

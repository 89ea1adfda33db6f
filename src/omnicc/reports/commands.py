"""`omnicc reports ...`: rebuild the report tables from the event log, print a report."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import date
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

reports_app = typer.Typer(help="Historical reports from the event log.", no_args_is_help=True)
TenantOption = Annotated[str | None, typer.Option(
    "--tenant", help="Tenant slug [default: the only tenant].")]


def _fail(message: str) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(2)


async def _tenant_ids(database: object, slug: str | None) -> list[tuple[str, str]]:
    from sqlalchemy import select

    from omnicc.store.database import Database
    from omnicc.store.tables import Tenant

    assert isinstance(database, Database)
    async with database.session() as session:
        statement = select(Tenant.id, Tenant.slug).order_by(Tenant.slug)
        if slug is not None:
            statement = statement.where(Tenant.slug == slug)
        found = [(str(i), str(s)) for i, s in (await session.execute(statement)).all()]
    if slug is not None and not found:
        _fail(f"no tenant {slug!r}")
    return found


def _database_url() -> str:
    from omnicc.config import SettingsError, load_settings
    from omnicc.store.database import migrate

    try:
        url = load_settings().database_url
    except SettingsError as error:
        _fail(str(error))
    migrate(url)
    return url


@reports_app.command("rebuild")
def rebuild(tenant: TenantOption = None) -> None:
    """Drop the report tables' rows and fold the whole event log again (every tenant unless
    --tenant names one). Safe while the server runs: its next fold continues from here."""
    from omnicc.reports.builder import ReportBuilder
    from omnicc.store.database import Database

    async def run() -> list[tuple[str, int, float]]:
        database = Database(_database_url())
        done = []
        try:
            for tenant_id, slug in await _tenant_ids(database, tenant):
                started = time.perf_counter()
                folded = await ReportBuilder(database, tenant_id).rebuild()
                done.append((slug, folded, time.perf_counter() - started))
        finally:
            await database.dispose()
        return done

    for slug, folded, elapsed_s in asyncio.run(run()):
        typer.echo(f"{slug}: {folded} events folded in {elapsed_s:.1f} s.")


@reports_app.command("show")
def show(
    start: Annotated[str, typer.Option(help="First day (YYYY-MM-DD, the tenant's time zone).")],
    end: Annotated[str | None, typer.Option(help="Last day [default: start].")] = None,
    grain: Annotated[str, typer.Option(
        help="15min, 30min, 60min, day, week, month or all.")] = "day",
    by: Annotated[str, typer.Option(
        help="total, queue, channel, agent, team, disposition or segment.")] = "queue",
    tenant: TenantOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Print a report (folding the newest events first)."""
    from omnicc.reports.builder import ReportBuilder
    from omnicc.reports.exports import table_rows
    from omnicc.reports.queries import (
        FIGURES,
        ReportError,
        ReportRequest,
        build_report,
        key_names,
    )
    from omnicc.store.database import Database

    try:
        request = ReportRequest(start=date.fromisoformat(start),
                                end=date.fromisoformat(end or start), grain=grain, dimension=by)
    except (ValueError, ReportError) as error:
        _fail(str(error))

    async def run() -> list[list[object]]:
        database = Database(_database_url())
        try:
            tenants = await _tenant_ids(database, tenant)
            if len(tenants) != 1:
                _fail("several tenants exist: name one with --tenant")
            tenant_id = tenants[0][0]
            await ReportBuilder(database, tenant_id).catch_up()
            async with database.session() as session:
                report = await build_report(session, tenant_id, request)
                return table_rows(report, await key_names(session, tenant_id, by))
        finally:
            await database.dispose()

    lines = asyncio.run(run())
    header, rows = lines[0], lines[1:]
    if as_json:
        typer.echo(json.dumps([dict(zip(map(str, header), row, strict=True)) for row in rows]))
        return
    table = Table(str(header[0]), str(header[1]), *SHOWN.values())
    table.columns[1].no_wrap = True
    for row in rows:
        table.add_row(str(row[0]), str(row[1]), *[
            _cell(name, row[2 + FIGURES.index(name)]) for name in SHOWN])
    Console().print(table)


SHOWN = {"offered": "Offered", "handled": "Handled", "abandoned": "Aband.",
         "service_level_sl2": "SL2", "asa_s": "ASA s", "aht_s": "AHT s",
         "occupancy": "Occup."}
"""The figures the table shows (`--json` has them all)."""


def _cell(name: str, value: object) -> str:
    from omnicc.reports.exports import RATIOS

    if not isinstance(value, float):
        return str(value)
    return f"{value:.1%}" if name in RATIOS else f"{value:.0f}"

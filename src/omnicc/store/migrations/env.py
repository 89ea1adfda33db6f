"""Alembic's environment for OmniCC, on SQLite or PostgreSQL.

`omnicc.store.database` passes an open connection in `config.attributes["connection"]`
(the async engine's connection, run synchronously); with none, a URL in the configuration is
connected to with an async engine, which lets `alembic -x`-style tools work as well.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from omnicc.store.database import create_engine
from omnicc.store.tables import metadata

config = context.config


def run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite alters a table by copying it; batch mode makes later revisions portable.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_with_url(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_with)
            await connection.commit()
    finally:
        await engine.dispose()


def run_offline(url: str) -> None:
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_with(connection)
elif context.is_offline_mode():
    run_offline(config.get_main_option("sqlalchemy.url") or "")
else:
    asyncio.run(run_with_url(config.get_main_option("sqlalchemy.url") or ""))

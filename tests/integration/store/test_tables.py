"""Rules every table keeps (checked on the metadata, no database needed)."""

from __future__ import annotations

from sqlalchemy import DateTime

from omnicc.store.tables import metadata
from omnicc.store.tables.base import UtcDateTime

POSTGRESQL_MAX_IDENTIFIER = 63


def test_every_tenant_owned_table_is_indexed_by_tenant() -> None:
    for table in metadata.sorted_tables:
        if table.name == "tenants":
            continue
        assert "tenant_id" in table.c, table.name
        assert not table.c.tenant_id.nullable, table.name
        leading = {index.columns[0].name for index in table.indexes}
        leading |= {constraint.columns[0].name for constraint in [table.primary_key]}
        assert "tenant_id" in leading, f"{table.name} has no index led by tenant_id"


def test_every_timestamp_is_utc_aware() -> None:
    for table in metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, DateTime | UtcDateTime):
                assert isinstance(column.type, UtcDateTime), f"{table.name}.{column.name}"


def test_every_constraint_is_named_within_postgresql_limits() -> None:
    for table in metadata.sorted_tables:
        for item in [*table.constraints, *table.indexes]:
            assert item.name, f"unnamed constraint on {table.name}"
            assert len(str(item.name)) <= POSTGRESQL_MAX_IDENTIFIER, item.name

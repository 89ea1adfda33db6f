"""The system of record: SQLAlchemy 2 tables, tenant-scoped repositories, Alembic migrations."""

from omnicc.store.database import Database, migrate, sqlite_url

__all__ = ["Database", "migrate", "sqlite_url"]

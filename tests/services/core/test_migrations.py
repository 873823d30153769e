"""Migrations build the schema the models describe, on SQLite and on PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from services.core.db import make_engine
from services.core.migrate import upgrade
from services.core.models import Base


def test_upgrade_to_head_matches_the_models(database_url: str) -> None:
    upgrade(database_url)
    upgrade(database_url)  # a second run is a no-op
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
            assert diff == [], f"models and migrations differ: {diff}"
            tables = set(inspect(connection).get_table_names())
        assert {"orders", "payments", "refunds", "webhook_events", "alerts", "audit_log"} <= tables
    finally:
        engine.dispose()

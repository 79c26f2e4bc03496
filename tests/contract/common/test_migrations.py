"""Every service's migrations produce exactly the schema its models declare, on SQLite and
PostgreSQL, and downgrade back to an empty database."""

from __future__ import annotations

import importlib

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import signet.common.outbox  # noqa: F401  (registers the outbox tables)
from signet.common.db import Base as CommonBase
from signet.common.db import Database

SERVICES = ["identity", "ca_gateway", "signer", "evidence", "notify"]


def _combined(*parts: sa.MetaData) -> sa.MetaData:
    combined = sa.MetaData()
    for part in parts:
        for table in part.tables.values():
            table.to_metadata(combined)
    return combined


@pytest.mark.parametrize("service", SERVICES)
def test_migrated_schema_matches_models(service: str, database_url: str) -> None:
    models = importlib.import_module(f"signet.{service}.models")
    db = Database.from_url(database_url)
    try:
        db.migrate(models.MIGRATIONS_DIR)
        with db.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, _combined(models.Base.metadata, CommonBase.metadata))
        assert diff == []
        tables = set(sa.inspect(db.engine).get_table_names())
        assert set(models.Base.metadata.tables) <= tables
        assert {"outbox", "processed_events"} <= tables
    finally:
        db.dispose()


@pytest.mark.parametrize("service", SERVICES)
def test_migrations_are_idempotent_and_reversible(service: str, database_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    models = importlib.import_module(f"signet.{service}.models")
    db = Database.from_url(database_url)
    try:
        db.migrate(models.MIGRATIONS_DIR)
        db.migrate(models.MIGRATIONS_DIR)  # a second start must be a no-op
        cfg = Config()
        cfg.set_main_option("script_location", str(models.MIGRATIONS_DIR))
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "base")
        assert set(sa.inspect(db.engine).get_table_names()) <= {"alembic_version"}
    finally:
        db.dispose()

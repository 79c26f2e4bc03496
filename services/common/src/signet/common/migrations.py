"""Alembic glue shared by every service's migrations directory.

A service's ``migrations/env.py`` is two lines: import its metadata and call
:func:`run_env`. Migrations run on the connection handed over by
:func:`signet.common.db.run_migrations` (in-process, at start-up and in tests) or, when
Alembic's own CLI is used, on an engine built from ``sqlalchemy.url``.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import context
from sqlalchemy import Connection, MetaData, create_engine


def run_env(target_metadata: MetaData | Sequence[MetaData]) -> None:
    """Run the pending migrations for ``target_metadata`` (online mode only)."""
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection, target_metadata)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url or pass a connection in config.attributes")
    with create_engine(url).connect() as conn:
        _run(conn, target_metadata)


def _run(connection: Connection, target_metadata: MetaData | Sequence[MetaData]) -> None:
    # Batch mode lets the same migration alter tables on SQLite, which lacks ALTER COLUMN.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()

"""Evidence tables: the append-only log's entries (sequenced leaves) and signed tree heads."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import BigInteger, Integer, LargeBinary, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from signet.common.db import NAMING_CONVENTION, UtcDateTime, utcnow

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
"""Alembic scripts creating these tables (and the shared outbox tables)."""


class Base(DeclarativeBase):
    """Declarative base of the evidence service's own tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class LogEntry(Base):
    """One leaf of the log. ``leaf_index`` is null until the sequencer integrates it."""

    __tablename__ = "log_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    event_type: Mapped[str] = mapped_column(String(128))
    leaf_index: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    leaf_data: Mapped[bytes] = mapped_column(LargeBinary)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32), index=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class TreeHead(Base):
    """A signed tree head: size, root hash, time and the log key's signature."""

    __tablename__ = "tree_heads"

    tree_size: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    timestamp: Mapped[datetime] = mapped_column(UtcDateTime())
    signature: Mapped[bytes] = mapped_column(LargeBinary)

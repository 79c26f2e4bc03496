"""Evidence tables: log entries, stored subtree hashes, signed tree heads, timestamps, keys.

Entries arrive unsequenced (``leaf_index`` null) and the sequencer integrates them in
batches. Every complete subtree of the tree is stored once in ``merkle_nodes`` (the
leaves at level 0), so a proof reads O(log n) rows however big the log grows.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from signet.common.db import NAMING_CONVENTION, UtcDateTime, utcnow

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
"""Alembic scripts creating these tables (and the shared outbox tables)."""

# SQLite only auto-numbers a column declared exactly INTEGER PRIMARY KEY.
_ID_TYPE = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base of the evidence service's own tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class LogEntry(Base):
    """One leaf of the log. ``leaf_index`` is null until the sequencer integrates it."""

    __tablename__ = "log_entries"

    id: Mapped[int] = mapped_column(_ID_TYPE, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    event_type: Mapped[str] = mapped_column(String(128), index=True)
    source: Mapped[str] = mapped_column(String(64), default="")
    subject: Mapped[str] = mapped_column(String(128), default="", index=True)
    tenant: Mapped[str] = mapped_column(String(64), default="", index=True)
    transaction_id: Mapped[str] = mapped_column(String(128), default="", index=True)
    event_time: Mapped[datetime] = mapped_column(UtcDateTime())
    leaf_index: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    leaf_data: Mapped[bytes] = mapped_column(LargeBinary)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32), index=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    integrated_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class EntryRef(Base):
    """Something an entry is about (a digest, a certificate serial, an account, a grant).

    Lets a package gather every entry of one signing without scanning the log.
    """

    __tablename__ = "entry_refs"

    entry_id: Mapped[int] = mapped_column(
        ForeignKey("log_entries.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[str] = mapped_column(String(160), primary_key=True)

    __table_args__ = (Index("ix_entry_refs_kind_value", "kind", "value"),)


class MerkleNode(Base):
    """The hash of one complete subtree: leaves ``[index * 2**level, (index+1) * 2**level)``."""

    __tablename__ = "merkle_nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    node_index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class TreeHead(Base):
    """A signed tree head: size, root hash, time and the log key's signature."""

    __tablename__ = "tree_heads"

    id: Mapped[int] = mapped_column(_ID_TYPE, primary_key=True, autoincrement=True)
    tree_size: Mapped[int] = mapped_column(BigInteger, index=True)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    timestamp: Mapped[datetime] = mapped_column(UtcDateTime())
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(64))


class ServiceKey(Base):
    """A system key of this service in the signer (the log key, the TSA key)."""

    __tablename__ = "service_keys"

    purpose: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(64), unique=True)
    spki_der: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class TimestampToken(Base):
    """An RFC 3161 token this TSA issued, kept so packages can include it."""

    __tablename__ = "timestamp_tokens"

    serial: Mapped[str] = mapped_column(String(40), primary_key=True)
    gen_time: Mapped[datetime] = mapped_column(UtcDateTime())
    imprint_algorithm: Mapped[str] = mapped_column(String(16))
    imprint: Mapped[bytes] = mapped_column(LargeBinary(64), index=True)
    token_sha256: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    token_der: Mapped[bytes] = mapped_column(LargeBinary)

"""Signer tables: key records and the ids of signing grants already consumed.

The token holds the key; the record holds its owner, state and history. A grant id is
stored once, so a grant is accepted once.
"""

from __future__ import annotations

import enum
from datetime import datetime
from pathlib import Path

from sqlalchemy import Integer, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from signet.common.db import NAMING_CONVENTION, UtcDateTime, str_enum, utcnow

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
"""Alembic scripts creating these tables (and the shared outbox tables)."""


class Base(DeclarativeBase):
    """Declarative base of the signer's own tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class KeyState(enum.StrEnum):
    """Lifecycle of a key: only ACTIVE keys sign; DESTROYED keys are gone from the token."""

    ACTIVE = "active"
    DISABLED = "disabled"
    DESTROYED = "destroyed"


class KeyRecord(Base):
    """One HSM key: who owns it, what it is for, and its state; never the key material."""

    __tablename__ = "keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(32))
    purpose: Mapped[str] = mapped_column(String(32))
    tenant: Mapped[str | None] = mapped_column(String(64), index=True)
    account_id: Mapped[str | None] = mapped_column(String(64), index=True)
    system_owner: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[KeyState] = mapped_column(str_enum(KeyState), default=KeyState.ACTIVE)
    public_key_der: Mapped[bytes]
    sign_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    destroyed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    retirement_reason: Mapped[str | None] = mapped_column(String(32))
    # The caller's idempotency key for CreateKey: a retried request returns the same key.
    request_id: Mapped[str | None] = mapped_column(String(128), unique=True)


class ConsumedGrant(Base):
    """A signing grant id already used; the primary key makes a replay fail atomically."""

    __tablename__ = "consumed_grants"

    grant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(64))
    consumed_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)

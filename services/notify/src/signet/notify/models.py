"""Notify tables: deliveries, one per (event id, channel, recipient), with their attempts.

Recipients are stored masked plus a keyed hash; one-time codes are never stored.
"""

from __future__ import annotations

import enum
from datetime import datetime
from pathlib import Path

from sqlalchemy import ForeignKey, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from signet.common.db import NAMING_CONVENTION, UtcDateTime, str_enum, utcnow

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
"""Alembic scripts creating these tables (and the shared outbox tables)."""


class Base(DeclarativeBase):
    """Declarative base of the notify service's own tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class DeliveryState(enum.StrEnum):
    """Where a delivery stands; DEAD_LETTERED ones wait for a replay."""

    PENDING = "pending"
    DELIVERED = "delivered"
    RETRYING = "retrying"
    DEAD_LETTERED = "dead_lettered"


class Delivery(Base):
    """One message to one recipient over one channel; the unique key makes sends idempotent."""

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("idempotency_key", "channel", "recipient_hash"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(16))
    recipient_hash: Mapped[str] = mapped_column(String(64))
    recipient_masked: Mapped[str] = mapped_column(String(200))
    template: Mapped[str] = mapped_column(String(64))
    tenant: Mapped[str | None] = mapped_column(String(64), index=True)
    state: Mapped[DeliveryState] = mapped_column(
        str_enum(DeliveryState), default=DeliveryState.PENDING
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class DeliveryAttempt(Base):
    """One try of a delivery and its outcome (status code or error class, never content)."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("deliveries.id"), index=True)
    attempted_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    succeeded: Mapped[bool]
    detail: Mapped[str] = mapped_column(Text, default="")

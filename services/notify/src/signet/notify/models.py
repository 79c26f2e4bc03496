"""Notify tables: deliveries and attempts, endpoints, preferences, roster, incidents.

A delivery is one per idempotency key, channel and recipient.

Recipients are stored masked plus a keyed hash; literal addresses, sensitive template
parameters (one-time codes) and webhook secrets only sealed (AES-GCM), never in clear.
"""

from __future__ import annotations

import enum
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
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
    SUPPRESSED = "suppressed"


class Delivery(Base):
    """One message to one recipient over one channel; the unique key makes sends idempotent."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("idempotency_key", "channel", "recipient_hash"),
        Index("ix_deliveries_due", "state", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(16))
    recipient_hash: Mapped[str] = mapped_column(String(64))
    recipient_masked: Mapped[str] = mapped_column(String(200))
    account_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    endpoint_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # A literal e-mail address or phone number, sealed.
    sealed_address: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    template: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(32))
    locale: Mapped[str] = mapped_column(String(16), default="")
    tenant: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Sensitive template parameters (one-time codes), sealed; dropped once delivered.
    sealed_params: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # The JSON body of a webhook delivery of an event.
    body: Mapped[str | None] = mapped_column(Text, nullable=True)
    source_event_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    state: Mapped[DeliveryState] = mapped_column(
        str_enum(DeliveryState), default=DeliveryState.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Attempts since the delivery was last queued (a replay starts a new round).
    round_attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    deliver_before: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_error_class: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class DeliveryAttempt(Base):
    """One try of a delivery and its outcome (status code or error class, never content)."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("deliveries.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    # The recipient's hash and channel, copied so rate limits count without a join.
    recipient_hash: Mapped[str] = mapped_column(String(64), default="")
    channel: Mapped[str] = mapped_column(String(16), default="")
    attempted_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    succeeded: Mapped[bool]
    outcome: Mapped[str] = mapped_column(String(16), default="")
    error_class: Mapped[str] = mapped_column(String(64), default="")
    response_code: Mapped[int] = mapped_column(Integer, default=0)
    detail: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_delivery_attempts_recipient", "recipient_hash", "attempted_at"),)


class WebhookEndpoint(Base):
    """A tenant's webhook URL with its sealed secret (and the previous one during a rotation)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    url: Mapped[str] = mapped_column(Text)
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    description: Mapped[str] = mapped_column(String(200), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    sealed_secret: Mapped[bytes] = mapped_column(LargeBinary)
    sealed_previous_secret: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    previous_secret_valid_until: Mapped[datetime | None] = mapped_column(
        UtcDateTime(), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    secret_rotated_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class Preference(Base):
    """A recipient's choices: locale and, per category, the channels turned off."""

    __tablename__ = "preferences"

    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    locale: Mapped[str] = mapped_column(String(16), default="")
    # {category: [channel, ...]}
    disabled: Mapped[dict[str, list[str]]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class KnownAccount(Base):
    """An account notify heard of from identity's events: the roster incidents notify."""

    __tablename__ = "known_accounts"

    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class Incident(Base):
    """A declared personal-data incident and whether its notice is in the evidence log."""

    __tablename__ = "incidents"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), nullable=True, unique=True)
    title: Mapped[str] = mapped_column(String(200))
    severity: Mapped[str] = mapped_column(String(16))
    # The four notice items, verbatim.
    notice: Mapped[dict[str, str]] = mapped_column(JSON)
    scope: Mapped[str] = mapped_column(String(100))
    affected_count: Mapped[int] = mapped_column(Integer)
    notifications_queued: Mapped[int] = mapped_column(Integer)
    declared_by: Mapped[str] = mapped_column(String(128))
    declared_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    # The IncidentDeclared envelope, appended to the evidence log (again on a retry).
    event: Mapped[bytes] = mapped_column(LargeBinary)
    evidence_recorded: Mapped[bool] = mapped_column(Boolean, default=False)

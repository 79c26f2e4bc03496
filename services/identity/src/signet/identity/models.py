"""Identity tables: tenants and accounts.

Personal data is never stored in clear: the vault columns hold ciphertext (AES-GCM data
keys wrapped by an HSM key) and a keyed hash for look-ups; masked forms are derived.
"""

from __future__ import annotations

import enum
from datetime import datetime
from pathlib import Path

from sqlalchemy import ForeignKey, MetaData, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from signet.common.db import NAMING_CONVENTION, UtcDateTime, str_enum, utcnow

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
"""Alembic scripts creating these tables (and the shared outbox tables)."""


class Base(DeclarativeBase):
    """Declarative base of identity's own tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class AccountType(enum.StrEnum):
    """A natural person or an enterprise (legal person)."""

    PERSON = "person"
    ENTERPRISE = "enterprise"


class AccountState(enum.StrEnum):
    """Where an account stands between registration and cancellation."""

    REGISTERED = "registered"
    VERIFIED = "verified"
    SUSPENDED = "suspended"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"


class Tenant(Base):
    """A business customer of the platform; accounts and keys belong to one tenant."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Account(Base):
    """A person or enterprise; the id is stable while login handles may change hands."""

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("tenant_id", "external_ref"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    external_ref: Mapped[str | None] = mapped_column(String(128))
    type: Mapped[AccountType] = mapped_column(str_enum(AccountType))
    state: Mapped[AccountState] = mapped_column(
        str_enum(AccountState), default=AccountState.REGISTERED
    )
    display_name_masked: Mapped[str] = mapped_column(String(200))
    name_ciphertext: Mapped[bytes | None]
    id_number_ciphertext: Mapped[bytes | None]
    id_number_lookup: Mapped[str | None] = mapped_column(String(64), index=True)
    phone_ciphertext: Mapped[bytes | None]
    phone_lookup: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)

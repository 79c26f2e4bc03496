"""CA gateway tables: certificate records and their revocations.

Records are archived, never deleted, until ``archive_until`` (at least five years after
the certificate expires, per the Electronic Signature Law and the CA agreements).
"""

from __future__ import annotations

import enum
from datetime import datetime
from pathlib import Path

from sqlalchemy import ForeignKey, Integer, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from signet.common.db import NAMING_CONVENTION, UtcDateTime, str_enum, utcnow

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
"""Alembic scripts creating these tables (and the shared outbox tables)."""


class Base(DeclarativeBase):
    """Declarative base of the CA gateway's own tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class CertificateState(enum.StrEnum):
    """Stored state; expiry is derived from ``not_after`` when answering status."""

    ISSUED = "issued"
    REVOKED = "revoked"


class CertificateRecord(Base):
    """One issued certificate, its owner and key, and its archive deadline."""

    __tablename__ = "certificates"

    serial: Mapped[str] = mapped_column(String(64), primary_key=True)
    issuer: Mapped[str] = mapped_column(String(64))
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    account_id: Mapped[str] = mapped_column(String(64), index=True)
    key_id: Mapped[str] = mapped_column(String(64), index=True)
    profile: Mapped[str] = mapped_column(String(32))
    state: Mapped[CertificateState] = mapped_column(
        str_enum(CertificateState), default=CertificateState.ISSUED
    )
    der: Mapped[bytes]
    not_before: Mapped[datetime] = mapped_column(UtcDateTime())
    not_after: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    auto_renew: Mapped[bool] = mapped_column(default=False)
    archive_until: Mapped[datetime] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Revocation(Base):
    """The revocation of a certificate: when, why (RFC 5280 reason code) and by whom."""

    __tablename__ = "revocations"

    serial: Mapped[str] = mapped_column(ForeignKey("certificates.serial"), primary_key=True)
    revoked_at: Mapped[datetime] = mapped_column(UtcDateTime())
    reason_code: Mapped[int] = mapped_column(Integer)
    ground: Mapped[str] = mapped_column(String(32))
    requested_by: Mapped[str] = mapped_column(String(128))

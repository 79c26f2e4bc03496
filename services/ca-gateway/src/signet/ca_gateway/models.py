"""CA gateway tables: CA certificates, issued certificates, requests, revocations, CRLs.

Certificate records, the requests behind them and their revocations are archived, never
deleted, until ``archive_until``: at least five years after the certificate expires (the
Electronic Signature Law and the CA agreements). No code path deletes them.
"""

from __future__ import annotations

import enum
from datetime import datetime
from pathlib import Path

from sqlalchemy import ForeignKey, Integer, LargeBinary, MetaData, String
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


class CaCertificateRecord(Base):
    """A certificate of the built-in CA itself: the root or an issuing CA."""

    __tablename__ = "ca_certificates"

    ca_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(32), index=True)
    # The CA that signed it (itself for a root).
    issuer_ca_id: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(64))
    key_algorithm: Mapped[str] = mapped_column(String(32))
    serial: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(512))
    der: Mapped[bytes] = mapped_column(LargeBinary)
    not_before: Mapped[datetime] = mapped_column(UtcDateTime())
    not_after: Mapped[datetime] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class CertificateRecord(Base):
    """One issued end-entity certificate, its holder and key, and its archive deadline."""

    __tablename__ = "certificates"

    serial: Mapped[str] = mapped_column(String(64), primary_key=True)
    issuer_ca_id: Mapped[str] = mapped_column(String(64), index=True)
    issuer: Mapped[str] = mapped_column(String(512))
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    account_id: Mapped[str | None] = mapped_column(String(64), index=True)
    system_owner: Mapped[str | None] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(64), index=True)
    key_algorithm: Mapped[str] = mapped_column(String(32))
    profile: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(512))
    state: Mapped[CertificateState] = mapped_column(
        str_enum(CertificateState), default=CertificateState.ISSUED
    )
    der: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[bytes] = mapped_column(LargeBinary)
    not_before: Mapped[datetime] = mapped_column(UtcDateTime())
    not_after: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    auto_renewal: Mapped[bool] = mapped_column(default=False)
    # Seconds before not_after that automatic renewal runs; None = the profile default.
    renew_before_seconds: Mapped[int | None] = mapped_column(Integer)
    renewed_from: Mapped[str | None] = mapped_column(String(64))
    renewed_by: Mapped[str | None] = mapped_column(String(64))
    # Smallest expiry-notice threshold (days) already announced; None = none yet.
    expiry_notice_days: Mapped[int | None] = mapped_column(Integer)
    archive_until: Mapped[datetime] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)


class CertificateRequest(Base):
    """A request that changed a certificate (issue, renew, revoke), kept with it.

    ``(kind, request_id)`` makes retried requests idempotent: the second one finds the
    first one's result instead of acting again.
    """

    __tablename__ = "certificate_requests"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    serial: Mapped[str] = mapped_column(String(64), index=True)
    tenant: Mapped[str] = mapped_column(String(64))
    requested_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    archive_until: Mapped[datetime] = mapped_column(UtcDateTime())


class Revocation(Base):
    """The revocation of a certificate: when, why, by whom, and whether its key is disabled."""

    __tablename__ = "revocations"

    serial: Mapped[str] = mapped_column(ForeignKey("certificates.serial"), primary_key=True)
    revoked_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    reason: Mapped[str] = mapped_column(String(32))
    reason_code: Mapped[int] = mapped_column(Integer)
    initiator: Mapped[str] = mapped_column(String(16))
    invalidity_date: Mapped[datetime | None] = mapped_column(UtcDateTime())
    requested_by: Mapped[str] = mapped_column(String(128))
    # Set once the signer disabled the key (or it did not need to be); retried until then.
    key_settled_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    archive_until: Mapped[datetime] = mapped_column(UtcDateTime())


class CrlRecord(Base):
    """A CRL as published: one row per (CA, CRL number), the newest is served."""

    __tablename__ = "crls"

    ca_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    this_update: Mapped[datetime] = mapped_column(UtcDateTime())
    next_update: Mapped[datetime] = mapped_column(UtcDateTime())
    der: Mapped[bytes] = mapped_column(LargeBinary)
    revoked_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)

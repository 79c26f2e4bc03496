"""Data access for certificate records and revocations."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from signet.ca_gateway.models import CertificateRecord, CertificateState, Revocation
from signet.common.db import get_or_not_found


class CertificateRepository:
    """Certificates of one unit of work."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, record: CertificateRecord) -> CertificateRecord:
        """Store a newly issued certificate."""
        self._session.add(record)
        self._session.flush()
        return record

    def get(self, serial: str) -> CertificateRecord:
        """The certificate with ``serial`` (lower-case hex), or NotFound."""
        return get_or_not_found(self._session, CertificateRecord, serial, "certificate")

    def revocation(self, serial: str) -> Revocation | None:
        """The revocation of ``serial``, if it was revoked."""
        return self._session.get(Revocation, serial)

    def add_revocation(self, revocation: Revocation) -> None:
        """Record a revocation and flip the certificate's state in the same transaction."""
        self.get(revocation.serial).state = CertificateState.REVOKED
        self._session.add(revocation)
        self._session.flush()

    def revoked_until(self, now: datetime) -> Sequence[Revocation]:
        """Revocations effective at ``now`` whose certificates are still unexpired (the CRL)."""
        stmt = (
            select(Revocation)
            .join(CertificateRecord, CertificateRecord.serial == Revocation.serial)
            .where(Revocation.revoked_at <= now, CertificateRecord.not_after > now)
            .order_by(Revocation.revoked_at)
        )
        return self._session.scalars(stmt).all()

"""Data access for CA certificates, issued certificates, requests, revocations and CRLs.

There is deliberately no delete here: certificate records, requests and revocations are
archived for at least five years after expiry (``archive_until``), and nothing in the
gateway removes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from signet.ca_gateway.models import (
    CaCertificateRecord,
    CertificateRecord,
    CertificateRequest,
    CertificateState,
    CrlRecord,
    Revocation,
)
from signet.common.db import get_or_not_found


class CaCertificateRepository:
    """The built-in CA's own certificates."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, record: CaCertificateRecord) -> CaCertificateRecord:
        """Store a CA certificate (AlreadyExists when its ca_id is taken)."""
        self._session.add(record)
        self._session.flush()
        return record

    def get(self, ca_id: str) -> CaCertificateRecord | None:
        """The CA certificate ``ca_id``, if there is one."""
        return self._session.get(CaCertificateRecord, ca_id)

    def all(self) -> Sequence[CaCertificateRecord]:
        """Every CA certificate, oldest first."""
        return self._session.scalars(
            select(CaCertificateRecord).order_by(CaCertificateRecord.created_at)
        ).all()


class CertificateRepository:
    """Issued certificates, their requests and revocations, in one unit of work."""

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

    def find(self, serial: str) -> CertificateRecord | None:
        """The certificate with ``serial``, if this gateway issued it."""
        return self._session.get(CertificateRecord, serial)

    def lock(self, serial: str) -> CertificateRecord:
        """:meth:`get`, holding a row lock on PostgreSQL until the transaction ends."""
        stmt = select(CertificateRecord).where(CertificateRecord.serial == serial).with_for_update()
        record = self._session.scalars(stmt).first()
        return record if record is not None else self.get(serial)

    def with_key(self, key_id: str) -> Sequence[CertificateRecord]:
        """Every certificate over the key ``key_id``."""
        stmt = select(CertificateRecord).where(CertificateRecord.key_id == key_id)
        return self._session.scalars(stmt).all()

    def page(
        self,
        *,
        tenant: str,
        account_id: str = "",
        profile: str = "",
        expiring_before: datetime | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int,
    ) -> Sequence[CertificateRecord]:
        """Certificates of a tenant in issue order, after the keyset position ``after``."""
        stmt = select(CertificateRecord).where(CertificateRecord.tenant == tenant)
        if account_id:
            stmt = stmt.where(CertificateRecord.account_id == account_id)
        if profile:
            stmt = stmt.where(CertificateRecord.profile == profile)
        if expiring_before is not None:
            stmt = stmt.where(CertificateRecord.not_after < expiring_before)
        if after is not None:
            stmt = stmt.where(
                tuple_(CertificateRecord.created_at, CertificateRecord.serial) > tuple_(*after)
            )
        stmt = stmt.order_by(CertificateRecord.created_at, CertificateRecord.serial).limit(limit)
        return self._session.scalars(stmt).all()

    def renewal_candidates(self, now: datetime, horizon: datetime) -> Sequence[CertificateRecord]:
        """Good certificates with automatic renewal, no successor yet, expiring by ``horizon``.

        Each one's own renewal time (``not_after`` minus its renew-before) is checked by
        the caller.
        """
        stmt = select(CertificateRecord).where(
            CertificateRecord.auto_renewal.is_(True),
            CertificateRecord.state == CertificateState.ISSUED,
            CertificateRecord.renewed_by.is_(None),
            CertificateRecord.not_after > now,
            CertificateRecord.not_after <= horizon,
        )
        return self._session.scalars(stmt).all()

    def unexpired_issued(self, now: datetime, before: datetime) -> Sequence[CertificateRecord]:
        """Good certificates expiring before ``before`` (for expiry notices)."""
        stmt = select(CertificateRecord).where(
            CertificateRecord.state == CertificateState.ISSUED,
            CertificateRecord.not_after > now,
            CertificateRecord.not_after <= before,
        )
        return self._session.scalars(stmt).all()

    def latest_of(
        self, *, system_owner: str, profile: str, now: datetime
    ) -> CertificateRecord | None:
        """The newest good certificate a platform component holds for ``profile``."""
        stmt = (
            select(CertificateRecord)
            .where(
                CertificateRecord.system_owner == system_owner,
                CertificateRecord.profile == profile,
                CertificateRecord.state == CertificateState.ISSUED,
                CertificateRecord.not_before <= now,
                CertificateRecord.not_after > now,
            )
            .order_by(CertificateRecord.not_before.desc(), CertificateRecord.created_at.desc())
            .limit(1)
        )
        return self._session.scalars(stmt).first()

    def good_system_certificates(self, now: datetime) -> Sequence[CertificateRecord]:
        """Unexpired, unrevoked certificates of platform components (TSA, OCSP responder)."""
        stmt = (
            select(CertificateRecord)
            .where(
                CertificateRecord.system_owner.is_not(None),
                CertificateRecord.state == CertificateState.ISSUED,
                CertificateRecord.not_after > now,
            )
            .order_by(CertificateRecord.created_at)
        )
        return self._session.scalars(stmt).all()

    # ---- requests -----------------------------------------------------------------

    def request(self, kind: str, request_id: str) -> CertificateRequest | None:
        """The earlier request of ``kind`` with ``request_id``, if any."""
        return self._session.get(CertificateRequest, (kind, request_id))

    def add_request(self, request: CertificateRequest) -> None:
        """Record a request with its result (AlreadyExists when the id was used)."""
        self._session.add(request)
        self._session.flush()

    # ---- revocations --------------------------------------------------------------

    def revocation(self, serial: str) -> Revocation | None:
        """The revocation of ``serial``, if it was revoked."""
        return self._session.get(Revocation, serial)

    def add_revocation(self, revocation: Revocation) -> None:
        """Record a revocation and flip the certificate's state in the same transaction."""
        self.get(revocation.serial).state = CertificateState.REVOKED
        self._session.add(revocation)
        self._session.flush()

    def revoked_until(self, now: datetime, issuer_ca_id: str | None = None) -> Sequence[Revocation]:
        """Revocations effective at ``now`` whose certificates are still unexpired (the CRL)."""
        stmt = (
            select(Revocation)
            .join(CertificateRecord, CertificateRecord.serial == Revocation.serial)
            .where(Revocation.revoked_at <= now, CertificateRecord.not_after > now)
            .order_by(Revocation.revoked_at, Revocation.serial)
        )
        if issuer_ca_id is not None:
            stmt = stmt.where(CertificateRecord.issuer_ca_id == issuer_ca_id)
        return self._session.scalars(stmt).all()

    def latest_revocation_at(self, issuer_ca_id: str) -> datetime | None:
        """When the newest revocation of ``issuer_ca_id``'s certificates took effect."""
        stmt = (
            select(func.max(Revocation.revoked_at))
            .join(CertificateRecord, CertificateRecord.serial == Revocation.serial)
            .where(CertificateRecord.issuer_ca_id == issuer_ca_id)
        )
        return self._session.scalar(stmt)

    def unsettled_revocations(self) -> Sequence[Revocation]:
        """Revocations whose key the signer has not yet disabled."""
        stmt = select(Revocation).where(Revocation.key_settled_at.is_(None))
        return self._session.scalars(stmt).all()


class CrlRepository:
    """Published CRLs."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def latest(self, ca_id: str) -> CrlRecord | None:
        """The newest CRL of ``ca_id``."""
        stmt = (
            select(CrlRecord)
            .where(CrlRecord.ca_id == ca_id)
            .order_by(CrlRecord.number.desc())
            .limit(1)
        )
        return self._session.scalars(stmt).first()

    def add(self, record: CrlRecord) -> None:
        """Store a CRL (AlreadyExists when another replica published that number first)."""
        self._session.add(record)
        self._session.flush()

"""CA gateway repositories on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from signet.ca_gateway.models import (
    MIGRATIONS_DIR,
    CertificateRecord,
    CertificateState,
    Revocation,
)
from signet.ca_gateway.repository import CertificateRepository
from signet.common.db import Database, utcnow
from signet.common.errors import AlreadyExists, NotFound


@pytest.fixture
def db(migrated_db: Callable[[Path], Database]) -> Database:
    return migrated_db(MIGRATIONS_DIR)


def _cert(serial: str, days_left: int = 365) -> CertificateRecord:
    now = utcnow()
    return CertificateRecord(
        serial=serial,
        issuer="issuing-ca",
        tenant="t1",
        account_id="a1",
        key_id="k1",
        profile="person",
        der=b"\x30\x03\x02\x01\x01",
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=days_left),
        archive_until=now + timedelta(days=days_left + 5 * 366),
    )


def test_revocation_flips_state_and_is_listed_while_unexpired(db: Database) -> None:
    now = utcnow()
    with db.session() as s:
        repo = CertificateRepository(s)
        repo.add(_cert("01"))
        repo.add(_cert("02"))
        repo.add(_cert("03", days_left=-1))
        for serial in ("01", "03"):
            repo.add_revocation(
                Revocation(
                    serial=serial,
                    revoked_at=now - timedelta(minutes=1),
                    reason_code=1,
                    ground="key_compromise",
                    requested_by="subscriber",
                )
            )
    with db.session() as s:
        repo = CertificateRepository(s)
        assert repo.get("01").state is CertificateState.REVOKED
        assert repo.get("02").state is CertificateState.ISSUED
        assert repo.revocation("02") is None
        revocation = repo.revocation("01")
        assert revocation is not None
        assert revocation.reason_code == 1
        # Expired certificates drop off the CRL; future-dated revocations are not yet on it.
        assert [r.serial for r in repo.revoked_until(now)] == ["01"]
        assert repo.revoked_until(now - timedelta(minutes=5)) == []


def test_a_certificate_is_revoked_only_once(db: Database) -> None:
    revocation = dict(revoked_at=utcnow(), reason_code=0, ground="unspecified", requested_by="ca")
    with db.session() as s:
        CertificateRepository(s).add(_cert("0a"))
        CertificateRepository(s).add_revocation(Revocation(serial="0a", **revocation))
    with pytest.raises(AlreadyExists), db.session() as s:
        CertificateRepository(s).add_revocation(Revocation(serial="0a", **revocation))


def test_unknown_serial_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound, match="certificate not found"), db.session() as s:
        CertificateRepository(s).get("ff")

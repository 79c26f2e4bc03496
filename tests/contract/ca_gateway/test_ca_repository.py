"""CA gateway repositories on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from signet.ca_gateway.models import (
    MIGRATIONS_DIR,
    CertificateRecord,
    CertificateRequest,
    CertificateState,
    CrlRecord,
    Revocation,
)
from signet.ca_gateway.repository import CertificateRepository, CrlRepository
from signet.common.db import Database, utcnow
from signet.common.errors import AlreadyExists, NotFound


@pytest.fixture
def db(migrated_db: Callable[[Path], Database]) -> Database:
    return migrated_db(MIGRATIONS_DIR)


def _cert(serial: str, days_left: int = 365, **overrides: object) -> CertificateRecord:
    now = utcnow()
    fields: dict[str, object] = dict(
        serial=serial,
        issuer_ca_id="issuing-1",
        issuer="CN=Signet Issuing CA",
        tenant="t1",
        account_id="a1",
        key_id="k1",
        key_algorithm="EC_P256",
        profile="person_signing",
        subject="CN=Test",
        der=b"\x30\x03\x02\x01\x01",
        sha256=b"\x00" * 32,
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=days_left),
        archive_until=now + timedelta(days=days_left + 5 * 366),
        created_at=now,
    )
    fields.update(overrides)
    return CertificateRecord(**fields)


def _revocation(serial: str, **overrides: object) -> Revocation:
    fields: dict[str, object] = dict(
        serial=serial,
        revoked_at=utcnow() - timedelta(minutes=1),
        reason="key_compromise",
        reason_code=1,
        initiator="subscriber",
        requested_by="subscriber",
        archive_until=utcnow() + timedelta(days=6 * 365),
    )
    fields.update(overrides)
    return Revocation(**fields)


def test_revocation_flips_state_and_is_listed_while_unexpired(db: Database) -> None:
    now = utcnow()
    with db.session() as s:
        repo = CertificateRepository(s)
        repo.add(_cert("1"))
        repo.add(_cert("2"))
        repo.add(_cert("3", days_left=-1))
        repo.add(_cert("4", issuer_ca_id="issuing-0"))
        for serial in ("1", "3", "4"):
            repo.add_revocation(_revocation(serial))
    with db.session() as s:
        repo = CertificateRepository(s)
        assert repo.get("1").state is CertificateState.REVOKED
        assert repo.get("2").state is CertificateState.ISSUED
        assert repo.revocation("2") is None
        revocation = repo.revocation("1")
        assert revocation is not None
        assert revocation.reason_code == 1
        # Expired certificates drop off the CRL; future-dated revocations are not yet on it;
        # each CA's CRL lists only its own certificates.
        assert [r.serial for r in repo.revoked_until(now, "issuing-1")] == ["1"]
        assert {r.serial for r in repo.revoked_until(now)} == {"1", "4"}
        assert repo.revoked_until(now - timedelta(minutes=5)) == []
        assert repo.unsettled_revocations()[0].key_settled_at is None


def test_a_certificate_is_revoked_only_once(db: Database) -> None:
    with db.session() as s:
        CertificateRepository(s).add(_cert("a"))
        CertificateRepository(s).add_revocation(_revocation("a"))
    with pytest.raises(AlreadyExists), db.session() as s:
        CertificateRepository(s).add_revocation(_revocation("a"))


def test_unknown_serial_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound, match="certificate not found"), db.session() as s:
        CertificateRepository(s).get("ff")
    with db.session() as s:
        assert CertificateRepository(s).find("ff") is None


def test_a_request_id_is_used_once_per_kind(db: Database) -> None:
    request = dict(
        request_id="t1/r1",
        serial="1",
        tenant="t1",
        requested_by="tenant",
        archive_until=utcnow() + timedelta(days=3000),
    )
    with db.session() as s:
        repo = CertificateRepository(s)
        repo.add(_cert("1"))
        repo.add_request(CertificateRequest(kind="issue", **request))
        repo.add_request(CertificateRequest(kind="revoke", **request))
    with pytest.raises(AlreadyExists), db.session() as s:
        CertificateRepository(s).add_request(CertificateRequest(kind="issue", **request))
    with db.session() as s:
        found = CertificateRepository(s).request("issue", "t1/r1")
        assert found is not None
        assert found.serial == "1"


def test_renewal_candidates_are_auto_renewing_unrenewed_good_certificates(db: Database) -> None:
    now = utcnow()
    with db.session() as s:
        repo = CertificateRepository(s)
        repo.add(_cert("1", days_left=10, auto_renewal=True))
        repo.add(_cert("2", days_left=10, auto_renewal=False))
        repo.add(_cert("3", days_left=10, auto_renewal=True, renewed_by="9"))
        repo.add(_cert("4", days_left=400, auto_renewal=True))
        repo.add(_cert("5", days_left=10, auto_renewal=True))
        repo.add_revocation(_revocation("5"))
    with db.session() as s:
        found = CertificateRepository(s).renewal_candidates(now, now + timedelta(days=180))
        assert [r.serial for r in found] == ["1"]


def test_keyset_pages_follow_issue_order_and_filters(db: Database) -> None:
    base = utcnow()
    with db.session() as s:
        repo = CertificateRepository(s)
        for i in range(5):
            repo.add(
                _cert(f"{i + 1}", created_at=base + timedelta(seconds=i), account_id=f"a{i % 2}")
            )
        repo.add(_cert("9", tenant="t2"))
    with db.session() as s:
        repo = CertificateRepository(s)
        first = repo.page(tenant="t1", limit=2)
        assert [r.serial for r in first] == ["1", "2"]
        rest = repo.page(tenant="t1", after=(first[-1].created_at, first[-1].serial), limit=10)
        assert [r.serial for r in rest] == ["3", "4", "5"]
        assert [r.serial for r in repo.page(tenant="t1", account_id="a1", limit=10)] == ["2", "4"]


def test_the_newest_crl_number_is_served_and_numbers_are_unique(db: Database) -> None:
    now = utcnow()

    def crl(number: int) -> CrlRecord:
        return CrlRecord(
            ca_id="issuing-1",
            number=number,
            this_update=now,
            next_update=now + timedelta(days=1),
            der=b"crl%d" % number,
            revoked_count=0,
        )

    with db.session() as s:
        CrlRepository(s).add(crl(1))
        CrlRepository(s).add(crl(2))
    with pytest.raises(AlreadyExists), db.session() as s:
        CrlRepository(s).add(crl(2))
    with db.session() as s:
        latest = CrlRepository(s).latest("issuing-1")
        assert latest is not None
        assert latest.der == b"crl2"
        assert CrlRepository(s).latest("root-1") is None

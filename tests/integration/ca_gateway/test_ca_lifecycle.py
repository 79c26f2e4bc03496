"""The certificate lifecycle on the real SoftHSM token, checked with OpenSSL.

The gateway's root, issuing CA and OCSP responder keys live in the token (through an
in-process signer), identity is a test double, and every artefact relying parties see is
checked by OpenSSL: the chain by ``openssl verify``, OCSP by ``openssl ocsp`` against the
running responder, the CRL by ``openssl crl -verify``.
"""

from __future__ import annotations

import base64
import dataclasses
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import REGISTRY
from sqlalchemy import select

from signet.ca_gateway.domain import KeyInfo, RevocationReason
from signet.ca_gateway.models import CertificateRecord, CertificateRequest, Revocation
from signet.ca_gateway.ports import KeyService
from signet.ca_gateway.service import RevokeRequest
from signet.ca_gateway.v1 import ca_gateway_pb2 as pb
from signet.common.auth import Principal
from signet.common.errors import Unavailable
from signet.common.events import decode_envelope
from signet.common.keys import HashAlgorithm, SignatureScheme
from signet.common.outbox import OutboxMessage
from signet.common.pkcs11 import Pkcs11Pool
from signet.common.v1 import common_pb2
from signet.events.v1 import events_pb2
from signet.signer.v1 import signer_pb2
from tests.fixtures.ca import POLICY_OID, CaHarness, ca_harness, openssl, pem

pytestmark = pytest.mark.softhsm
_M = TypeVar("_M", bound=Message)

PERSON = pb.CERTIFICATE_PROFILE_PERSON_SIGNING
SEAL = pb.CERTIFICATE_PROFILE_ENTERPRISE_SEAL
P256 = common_pb2.KEY_ALGORITHM_EC_P256


@pytest.fixture(scope="module")
def ca(pkcs11_pool: Pkcs11Pool, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaHarness]:
    with ca_harness(pkcs11_pool, tmp_path_factory.mktemp("ca")) as harness:
        yield harness


def _issue(
    ca: CaHarness,
    tenant: str = "tenant-a",
    *,
    account_id: str = "",
    key_algorithm: int = P256,
    request_id: str = "",
    validity: Duration | None = None,
) -> pb.IssueCertificateResponse:
    request = pb.IssueCertificateRequest(
        tenant_id=tenant,
        account_id=account_id or ca.identity.add_person(tenant),
        profile=PERSON,
        key_algorithm=key_algorithm,  # type: ignore[arg-type]
        request_id=request_id,
        validity=validity,
    )
    return ca.stub(tenant).IssueCertificate(request)


def _ts(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def _write_chain(ca: CaHarness, directory: Path, leaf_der: bytes) -> None:
    (directory / "leaf.pem").write_bytes(pem(leaf_der))
    (directory / "issuing.pem").write_bytes(ca.issuing_pem())
    (directory / "root.pem").write_bytes(ca.root_pem())
    (directory / "chain.pem").write_bytes(ca.issuing_pem() + ca.root_pem())


def _ocsp(ca: CaHarness, directory: Path) -> str:
    proc = openssl(
        "ocsp",
        "-issuer",
        "issuing.pem",
        "-cert",
        "leaf.pem",
        "-url",
        f"{ca.base_url}/ocsp",
        "-CAfile",
        "chain.pem",
        "-resp_text",
        cwd=directory,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Response verify OK" in proc.stderr, proc.stderr
    return proc.stdout


def _events(ca: CaHarness, kind: type[_M]) -> list[_M]:
    with ca.db.session() as session:
        rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        envelopes = [decode_envelope(r.envelope) for r in rows]
    out = []
    for envelope in envelopes:
        if envelope.type == kind.DESCRIPTOR.full_name:
            payload = kind()
            envelope.payload.Unpack(payload)
            out.append(payload)
    return out


# ---- issuing -----------------------------------------------------------------------


def test_issued_certificate_verifies_against_root_and_issuing_ca(
    ca: CaHarness, tmp_path: Path
) -> None:
    account = ca.identity.add_person("tenant-a", name="李四")
    reply = _issue(ca, account_id=account)
    _write_chain(ca, tmp_path, reply.certificate.der)

    proc = openssl(
        "verify", "-CAfile", "root.pem", "-untrusted", "issuing.pem", "leaf.pem", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "leaf.pem: OK" in proc.stdout

    cert = x509.load_der_x509_certificate(reply.certificate.der)
    assert cert.serial_number.bit_length() >= 64
    assert format(cert.serial_number, "x") == reply.certificate.serial
    builtin = ca.gateway.builtin
    assert builtin is not None
    assert list(reply.chain_der) == [builtin.issuing.der, builtin.root.der]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and usage.value.content_commitment
    assert not usage.value.key_cert_sign
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and not basic.value.ca
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    issuing = x509.load_der_x509_certificate(reply.chain_der[0])
    assert aki == issuing.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert len(ski) == 20
    crl_dp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    full_name = crl_dp[0].full_name
    assert full_name is not None
    assert full_name[0].value == f"{ca.base_url}/crl/issuing-1.crl"
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert {d.access_location.value for d in aia} == {
        f"{ca.base_url}/ocsp",
        f"{ca.base_url}/ca/issuing-1.crt",
    }
    policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert policies[0].policy_identifier.dotted_string == POLICY_OID
    # The subject names the verified person; the identifier only as identity's keyed hash.
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "李四"
    serial_number = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value
    assert serial_number == ca.identity.accounts[account].subject_identifier_hash.hex()
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=365)


@pytest.mark.parametrize(
    "algorithm",
    [
        common_pb2.KEY_ALGORITHM_EC_P384,
        common_pb2.KEY_ALGORITHM_RSA_2048,
        common_pb2.KEY_ALGORITHM_ED25519,
    ],
    ids=["p384", "rsa2048", "ed25519"],
)
def test_subscriber_keys_of_each_algorithm_are_certified(
    ca: CaHarness, tmp_path: Path, algorithm: int
) -> None:
    reply = _issue(ca, key_algorithm=algorithm)
    assert reply.certificate.key_algorithm == algorithm
    _write_chain(ca, tmp_path, reply.certificate.der)
    proc = openssl(
        "verify", "-CAfile", "root.pem", "-untrusted", "issuing.pem", "leaf.pem", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The certified key is the signer's key: same public key.
    key = ca.signer.stub(ca.signer._servers[0], "ca-gateway").GetPublicKey(
        signer_pb2.GetPublicKeyRequest(key_id=reply.certificate.key_id)
    )
    cert = x509.load_der_x509_certificate(reply.certificate.der)
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert spki == key.public_key.spki_der


def test_enterprise_seal_needs_an_authorised_operator(ca: CaHarness) -> None:
    enterprise = ca.identity.add_enterprise("tenant-a", name="示例科技有限公司")
    operator = ca.identity.add_person("tenant-a")
    request = pb.IssueCertificateRequest(
        tenant_id="tenant-a", account_id=enterprise, profile=SEAL, operator_account_id=operator
    )
    with pytest.raises(grpc.RpcError) as denied:
        ca.stub("tenant-a").IssueCertificate(request)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "no active authorisation" in (denied.value.details() or "")

    ca.identity.authorize_operator(enterprise, operator)
    reply = ca.stub("tenant-a").IssueCertificate(request)
    cert = x509.load_der_x509_certificate(reply.certificate.der)
    assert (
        cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
        == "示例科技有限公司"
    )
    assert reply.certificate.profile == SEAL


def test_a_retried_issue_returns_the_same_certificate_and_key(ca: CaHarness) -> None:
    account = ca.identity.add_person("tenant-a")
    first = _issue(ca, account_id=account, request_id="req-1")
    again = _issue(ca, account_id=account, request_id="req-1")
    assert again.certificate.serial == first.certificate.serial
    assert again.certificate.key_id == first.certificate.key_id
    # Another tenant's identical request id is its own request.
    other = _issue(ca, tenant="tenant-b", request_id="req-1")
    assert other.certificate.serial != first.certificate.serial


def test_system_certificate_for_the_timestamping_authority(ca: CaHarness, tmp_path: Path) -> None:
    evidence_signer = ca.signer.stub(ca.signer._servers[0], "evidence")
    key = evidence_signer.CreateKey(
        signer_pb2.CreateKeyRequest(
            algorithm=P256,
            purpose=signer_pb2.KEY_PURPOSE_TIMESTAMPING,
            owner=signer_pb2.KeyOwner(system="evidence"),
        )
    )
    request = pb.IssueCertificateRequest(
        system_owner="evidence",
        profile=pb.CERTIFICATE_PROFILE_TIMESTAMPING,
        key_id=key.key.key_id,
    )
    with pytest.raises(grpc.RpcError) as denied:
        ca.stub("tenant-a").IssueCertificate(request)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    reply = ca.stub("evidence").IssueCertificate(request)
    cert = x509.load_der_x509_certificate(reply.certificate.der)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    _write_chain(ca, tmp_path, reply.certificate.der)
    proc = openssl(
        "verify",
        "-purpose",
        "timestampsign",
        "-CAfile",
        "root.pem",
        "-untrusted",
        "issuing.pem",
        "leaf.pem",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

    roles = {
        c.role
        for c in ca.stub("evidence").GetCaCertificates(pb.GetCaCertificatesRequest()).certificates
    }
    assert roles == {
        pb.CA_ROLE_ROOT,
        pb.CA_ROLE_ISSUING,
        pb.CA_ROLE_OCSP_RESPONDER,
        pb.CA_ROLE_TIMESTAMPING,
    }


# ---- OCSP and CRL ------------------------------------------------------------------


def test_ocsp_reports_good_then_revoked_with_reason(ca: CaHarness, tmp_path: Path) -> None:
    reply = _issue(ca)
    _write_chain(ca, tmp_path, reply.certificate.der)
    assert "leaf.pem: good" in _ocsp(ca, tmp_path)

    ca.stub("tenant-a").RevokeCertificate(
        pb.RevokeCertificateRequest(
            serial=reply.certificate.serial,
            reason=pb.REVOCATION_REASON_KEY_COMPROMISE,
            initiator=pb.REVOCATION_INITIATOR_SUBSCRIBER,
        )
    )
    out = _ocsp(ca, tmp_path)
    assert "leaf.pem: revoked" in out
    assert "Reason: keyCompromise" in out
    assert "Revocation Time" in out


def test_ocsp_answers_get_requests_and_unknown_serials(ca: CaHarness, tmp_path: Path) -> None:
    reply = _issue(ca)
    _write_chain(ca, tmp_path, reply.certificate.der)
    made = openssl(
        "ocsp",
        "-issuer",
        "issuing.pem",
        "-serial",
        "0x1234567890abcdef",
        "-no_nonce",
        "-reqout",
        "req.der",
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    encoded = base64.b64encode((tmp_path / "req.der").read_bytes()).decode()
    with urllib.request.urlopen(
        f"{ca.base_url}/ocsp/{urllib.parse.quote(encoded, safe='')}"
    ) as resp:
        assert resp.headers["Content-Type"] == "application/ocsp-response"
        (tmp_path / "resp.der").write_bytes(resp.read())
    proc = openssl(
        "ocsp",
        "-respin",
        "resp.der",
        "-issuer",
        "issuing.pem",
        "-serial",
        "0x1234567890abcdef",
        "-CAfile",
        "chain.pem",
        "-resp_text",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Cert Status: unknown" in proc.stdout

    garbage = urllib.request.Request(
        f"{ca.base_url}/ocsp",
        data=b"not an OCSP request",
        headers={"Content-Type": "application/ocsp-request"},
    )
    with urllib.request.urlopen(garbage) as resp:
        (tmp_path / "bad.der").write_bytes(resp.read())
    proc = openssl("ocsp", "-respin", "bad.der", "-resp_text", "-noverify", cwd=tmp_path)
    assert "malformedrequest" in (proc.stdout + proc.stderr).lower().replace(" ", "")


def test_crl_verifies_and_lists_the_revoked_serial(ca: CaHarness, tmp_path: Path) -> None:
    reply = _issue(ca)
    serial = reply.certificate.serial
    _write_chain(ca, tmp_path, reply.certificate.der)
    with urllib.request.urlopen(f"{ca.base_url}/crl/issuing-1.crl") as resp:
        before = x509.load_der_x509_crl(resp.read())
    ca.stub("tenant-a").RevokeCertificate(
        pb.RevokeCertificateRequest(serial=serial, reason=pb.REVOCATION_REASON_PLATFORM_MISUSE)
    )
    with urllib.request.urlopen(f"{ca.base_url}/crl/issuing-1.crl") as resp:
        assert resp.headers["Content-Type"] == "application/pkix-crl"
        (tmp_path / "crl.der").write_bytes(resp.read())
    proc = openssl(
        "crl", "-inform", "DER", "-in", "crl.der", "-CAfile", "chain.pem", "-noout", cwd=tmp_path
    )
    assert proc.returncode == 0 and "verify OK" in proc.stderr, proc.stderr
    text = openssl(
        "crl", "-inform", "DER", "-in", "crl.der", "-text", "-noout", cwd=tmp_path
    ).stdout
    assert serial.upper().rjust(len(serial) + len(serial) % 2, "0") in text.replace(":", "").upper()
    assert "Privilege Withdrawn" in text
    crl = x509.load_der_x509_crl((tmp_path / "crl.der").read_bytes())
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number > before.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert crl.next_update_utc is not None and crl.next_update_utc > datetime.now(UTC)
    # OpenSSL's own path check with the CRL now rejects the certificate.
    (tmp_path / "crl.pem").write_text(
        "-----BEGIN X509 CRL-----\n"
        + base64.encodebytes((tmp_path / "crl.der").read_bytes()).decode()
        + "-----END X509 CRL-----\n"
    )
    proc = openssl(
        "verify",
        "-crl_check",
        "-CRLfile",
        "crl.pem",
        "-CAfile",
        "root.pem",
        "-untrusted",
        "issuing.pem",
        "leaf.pem",
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert "certificate revoked" in proc.stdout + proc.stderr


def test_the_root_publishes_its_crl_too(ca: CaHarness, tmp_path: Path) -> None:
    with urllib.request.urlopen(f"{ca.base_url}/crl/root-1.crl") as resp:
        (tmp_path / "root.crl").write_bytes(resp.read())
    (tmp_path / "root.pem").write_bytes(ca.root_pem())
    proc = openssl(
        "crl", "-inform", "DER", "-in", "root.crl", "-CAfile", "root.pem", "-noout", cwd=tmp_path
    )
    assert proc.returncode == 0 and "verify OK" in proc.stderr, proc.stderr
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{ca.base_url}/crl/nope.crl")
    assert missing.value.code == 404


# ---- revocation and status ---------------------------------------------------------


def test_revocation_status_before_and_after_the_revocation(ca: CaHarness) -> None:
    reply = _issue(ca)
    serial = reply.certificate.serial
    stub = ca.stub("tenant-a")
    signed_at = datetime.now(UTC)
    revoked = stub.RevokeCertificate(
        pb.RevokeCertificateRequest(serial=serial, reason=pb.REVOCATION_REASON_SUPERSEDED)
    ).certificate
    revoked_at = revoked.revocation.revoked_at.ToDatetime(tzinfo=UTC)
    assert revoked.status == pb.CERTIFICATE_STATUS_REVOKED

    def status_at(at: datetime) -> pb.GetRevocationStatusResponse:
        return stub.GetRevocationStatus(
            pb.GetRevocationStatusRequest(serial=serial, at_time=_ts(at))
        )

    before = status_at(signed_at - timedelta(microseconds=1))
    assert before.status == pb.CERTIFICATE_STATUS_GOOD
    assert not before.HasField("revocation")
    after = status_at(revoked_at + timedelta(seconds=1))
    assert after.status == pb.CERTIFICATE_STATUS_REVOKED
    assert after.revocation.reason == pb.REVOCATION_REASON_SUPERSEDED
    assert status_at(revoked_at).status == pb.CERTIFICATE_STATUS_REVOKED
    not_before = reply.certificate.not_before.ToDatetime(tzinfo=UTC)
    assert (
        status_at(not_before - timedelta(seconds=1)).status == pb.CERTIFICATE_STATUS_NOT_YET_VALID
    )
    now = stub.GetRevocationStatus(pb.GetRevocationStatusRequest(serial=serial))
    assert now.status == pb.CERTIFICATE_STATUS_REVOKED

    good = _issue(ca).certificate
    not_after = good.not_after.ToDatetime(tzinfo=UTC)
    expired = stub.GetRevocationStatus(
        pb.GetRevocationStatusRequest(
            serial=good.serial, at_time=_ts(not_after + timedelta(days=1))
        )
    )
    assert expired.status == pb.CERTIFICATE_STATUS_EXPIRED
    unknown = stub.GetRevocationStatus(pb.GetRevocationStatusRequest(serial="abcdef0123"))
    assert unknown.status == pb.CERTIFICATE_STATUS_UNKNOWN


def test_revocation_disables_the_key_in_the_signer(ca: CaHarness) -> None:
    reply = _issue(ca)
    ca.stub("tenant-a").RevokeCertificate(
        pb.RevokeCertificateRequest(
            serial=reply.certificate.serial, reason=pb.REVOCATION_REASON_KEY_COMPROMISE
        )
    )
    key = ca.signer.stub(ca.signer._servers[0], "ca-gateway").GetKey(
        signer_pb2.GetKeyRequest(key_id=reply.certificate.key_id)
    )
    assert key.key.state == signer_pb2.KEY_STATE_DISABLED
    assert key.key.retirement_reason == signer_pb2.KEY_RETIREMENT_REASON_KEY_COMPROMISE
    with ca.db.session() as session:
        revocation = session.get(Revocation, reply.certificate.serial)
        assert revocation is not None and revocation.key_settled_at is not None


def test_superseding_a_renewed_certificate_keeps_the_shared_key(ca: CaHarness) -> None:
    old = _issue(ca).certificate
    new = (
        ca.stub("tenant-a")
        .RenewCertificate(pb.RenewCertificateRequest(serial=old.serial))
        .certificate
    )
    assert new.key_id == old.key_id
    ca.stub("tenant-a").RevokeCertificate(
        pb.RevokeCertificateRequest(serial=old.serial, reason=pb.REVOCATION_REASON_SUPERSEDED)
    )
    key = ca.signer.stub(ca.signer._servers[0], "ca-gateway").GetKey(
        signer_pb2.GetKeyRequest(key_id=old.key_id)
    )
    assert key.key.state == signer_pb2.KEY_STATE_ACTIVE
    status = ca.stub("tenant-a").GetRevocationStatus(
        pb.GetRevocationStatusRequest(serial=new.serial)
    )
    assert status.status == pb.CERTIFICATE_STATUS_GOOD


def test_key_compromise_revokes_every_certificate_on_the_key(ca: CaHarness) -> None:
    old = _issue(ca).certificate
    new = (
        ca.stub("tenant-a")
        .RenewCertificate(pb.RenewCertificateRequest(serial=old.serial))
        .certificate
    )
    ca.stub("tenant-a").RevokeCertificate(
        pb.RevokeCertificateRequest(
            serial=new.serial, reason=pb.REVOCATION_REASON_PLATFORM_KEY_LOSS
        )
    )
    for serial in (old.serial, new.serial):
        status = ca.stub("tenant-a").GetRevocationStatus(
            pb.GetRevocationStatusRequest(serial=serial)
        )
        assert status.status == pb.CERTIFICATE_STATUS_REVOKED
        assert status.revocation.reason == pb.REVOCATION_REASON_PLATFORM_KEY_LOSS


# ---- renewal -----------------------------------------------------------------------


def test_renewal_with_the_same_and_with_a_new_key(ca: CaHarness) -> None:
    stub = ca.stub("tenant-a")
    first = _issue(ca).certificate
    renewed = stub.RenewCertificate(pb.RenewCertificateRequest(serial=first.serial))
    assert renewed.previous_serial == first.serial
    second = renewed.certificate
    assert second.serial != first.serial and second.key_id == first.key_id
    assert second.renewed_from_serial == first.serial
    assert (
        stub.GetCertificate(
            pb.GetCertificateRequest(serial=first.serial)
        ).certificate.renewed_by_serial
        == second.serial
    )
    with pytest.raises(grpc.RpcError) as twice:
        stub.RenewCertificate(pb.RenewCertificateRequest(serial=first.serial))
    assert twice.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "already renewed" in (twice.value.details() or "")

    third = stub.RenewCertificate(
        pb.RenewCertificateRequest(
            serial=second.serial, new_key=True, key_algorithm=common_pb2.KEY_ALGORITHM_EC_P384
        )
    ).certificate
    assert third.key_id != second.key_id
    assert third.key_algorithm == common_pb2.KEY_ALGORITHM_EC_P384
    renewals = [
        e for e in _events(ca, events_pb2.CertificateRenewed) if e.previous_serial == second.serial
    ]
    assert len(renewals) == 1 and renewals[0].new_key and not renewals[0].automatic


def test_the_scheduler_renews_certificates_whose_subscriber_authorised_it(ca: CaHarness) -> None:
    stub = ca.stub("tenant-a")
    short = _issue(ca, validity=Duration(seconds=2 * 3600)).certificate
    manual = _issue(ca, validity=Duration(seconds=2 * 3600)).certificate
    stub.SetAutoRenewal(
        pb.SetAutoRenewalRequest(
            serial=short.serial, enabled=True, renew_before=Duration(seconds=3 * 3600)
        )
    )
    renewed = ca.gateway.renew_due()
    assert len(renewed) >= 1
    successor = stub.GetCertificate(
        pb.GetCertificateRequest(serial=short.serial)
    ).certificate.renewed_by_serial
    assert successor in renewed
    assert (
        stub.GetCertificate(
            pb.GetCertificateRequest(serial=manual.serial)
        ).certificate.renewed_by_serial
        == ""
    )
    automatic = [
        e for e in _events(ca, events_pb2.CertificateRenewed) if e.previous_serial == short.serial
    ]
    assert len(automatic) == 1 and automatic[0].automatic
    # Run again: nothing more to do for it.
    assert successor not in ca.gateway.renew_due()


# ---- errors ------------------------------------------------------------------------


def _code(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details() or ""


def test_every_refusal_has_its_own_clear_status(ca: CaHarness) -> None:
    stub = ca.stub("tenant-a")
    unverified = ca.identity.add_person("tenant-a", verified=False)
    code, message = _code(lambda: _issue(ca, account_id=unverified))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "real-name verification" in message

    cert = _issue(ca).certificate
    stub.RevokeCertificate(
        pb.RevokeCertificateRequest(
            serial=cert.serial, reason=pb.REVOCATION_REASON_AFFILIATION_CHANGED
        )
    )
    code, message = _code(
        lambda: stub.RevokeCertificate(pb.RevokeCertificateRequest(serial=cert.serial))
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "already revoked" in message
    code, message = _code(
        lambda: stub.RenewCertificate(pb.RenewCertificateRequest(serial=cert.serial))
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "revoked" in message

    for call in (
        lambda: stub.GetCertificate(pb.GetCertificateRequest(serial="abc123")),
        lambda: stub.RevokeCertificate(pb.RevokeCertificateRequest(serial="abc123")),
        lambda: stub.RenewCertificate(pb.RenewCertificateRequest(serial="abc123")),
    ):
        code, message = _code(call)
        assert code == grpc.StatusCode.NOT_FOUND and "certificate not found" in message

    code, _ = _code(lambda: _issue(ca, account_id="acc-does-not-exist"))
    assert code == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("request_fields", "expected"),
    [
        (
            {"tenant_id": "tenant-a", "profile": PERSON},
            "exactly one of account_id and system_owner",
        ),
        ({"system_owner": "evidence", "profile": PERSON}, "is for subscriber accounts"),
        ({"tenant_id": "tenant-a", "account_id": "x"}, "profile is required"),
        ({"tenant_id": "tenant-a", "account_id": "x", "profile": 99}, "unknown value 99"),
        ({"account_id": "x", "profile": PERSON}, "tenant_id is required"),
        (
            {
                "tenant_id": "tenant-a",
                "account_id": "x",
                "profile": pb.CERTIFICATE_PROFILE_TIMESTAMPING,
            },
            "platform components",
        ),
        ({"tenant_id": "tenant-a", "account_id": "x" * 65, "profile": PERSON}, "at most 64"),
    ],
)
def test_malformed_issue_requests_are_invalid_argument(
    ca: CaHarness, request_fields: dict[str, object], expected: str
) -> None:
    request = pb.IssueCertificateRequest(**request_fields)  # type: ignore[arg-type]
    code, message = _code(lambda: ca.stub("tenant-a").IssueCertificate(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in message


def test_malformed_serials_reasons_and_dates_are_invalid_argument(ca: CaHarness) -> None:
    stub = ca.stub("tenant-a")
    for serial in ("", "xyz", "12:zz", "0"):
        request = pb.GetCertificateRequest(serial=serial)
        code, message = _code(lambda: stub.GetCertificate(request))  # noqa: B023
        assert code == grpc.StatusCode.INVALID_ARGUMENT, serial
        assert "serial" in message
    cert = _issue(ca).certificate
    code, message = _code(
        lambda: stub.RevokeCertificate(
            pb.RevokeCertificateRequest(
                serial=cert.serial, reason=pb.REVOCATION_REASON_CERTIFICATE_HOLD
            )
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "permanent" in message
    code, message = _code(
        lambda: stub.RevokeCertificate(
            pb.RevokeCertificateRequest(
                serial=cert.serial, invalidity_date=_ts(datetime.now(UTC) + timedelta(days=1))
            )
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "future" in message
    person = ca.identity.add_person("tenant-a")
    code, message = _code(
        lambda: stub.IssueCertificate(
            pb.IssueCertificateRequest(tenant_id="tenant-a", account_id=person, profile=SEAL)
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "enterprise" in message
    code, message = _code(
        lambda: stub.ListCertificates(
            pb.ListCertificatesRequest(tenant_id="tenant-a", page_token="!!")
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in message


def test_another_tenants_certificates_are_out_of_reach(ca: CaHarness) -> None:
    cert = _issue(ca, tenant="tenant-a").certificate
    other = ca.stub("tenant-b")
    for call in (
        lambda: other.GetCertificate(pb.GetCertificateRequest(serial=cert.serial)),
        lambda: other.RevokeCertificate(pb.RevokeCertificateRequest(serial=cert.serial)),
        lambda: other.RenewCertificate(pb.RenewCertificateRequest(serial=cert.serial)),
        lambda: other.SetAutoRenewal(pb.SetAutoRenewalRequest(serial=cert.serial, enabled=True)),
        lambda: other.ListCertificates(pb.ListCertificatesRequest(tenant_id="tenant-a")),
    ):
        code, _ = _code(call)
        assert code == grpc.StatusCode.PERMISSION_DENIED
    account_a = ca.identity.add_person("tenant-a")
    code, message = _code(lambda: _issue(ca, tenant="tenant-b", account_id=account_a))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "another tenant" in message
    code, _ = _code(
        lambda: ca.stub(None).GetCertificate(pb.GetCertificateRequest(serial=cert.serial))
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED


# ---- records -----------------------------------------------------------------------


def test_records_are_archived_five_years_past_expiry_and_events_carry_no_identifier(
    ca: CaHarness,
) -> None:
    account = ca.identity.add_person("tenant-a")
    cert = _issue(ca, account_id=account, request_id="archive-1").certificate
    ca.stub("tenant-a").RevokeCertificate(
        pb.RevokeCertificateRequest(serial=cert.serial, request_id="rv-1")
    )
    not_after = cert.not_after.ToDatetime(tzinfo=UTC)
    with ca.db.session() as session:
        record = session.get(CertificateRecord, cert.serial)
        assert record is not None
        assert record.archive_until >= not_after.replace(year=not_after.year + 5)
        requests = session.scalars(
            select(CertificateRequest).where(CertificateRequest.serial == cert.serial)
        ).all()
        assert {r.kind for r in requests} == {"issue", "revoke"}
        assert all(r.archive_until == record.archive_until for r in requests)
        revocation = session.get(Revocation, cert.serial)
        assert revocation is not None and revocation.archive_until == record.archive_until
    issued = [e for e in _events(ca, events_pb2.CertificateIssued) if e.serial == cert.serial]
    revoked = [e for e in _events(ca, events_pb2.CertificateRevoked) if e.serial == cert.serial]
    assert len(issued) == 1 and len(revoked) == 1
    assert issued[0].account_id == account and issued[0].key_id == cert.key_id
    assert issued[0].sha256_fingerprint == cert.sha256_fingerprint
    # The subject in the event carries identity's keyed hash, not an ID number.
    assert ca.identity.accounts[account].subject_identifier_hash.hex() in issued[0].subject
    assert _events(ca, events_pb2.CrlPublished)


def test_get_with_chain_and_list_pages(ca: CaHarness) -> None:
    stub = ca.stub("tenant-b")
    account = ca.identity.add_person("tenant-b")
    serials = [
        _issue(ca, tenant="tenant-b", account_id=account).certificate.serial for _ in range(3)
    ]
    got = stub.GetCertificate(pb.GetCertificateRequest(serial=serials[0], include_chain=True))
    assert got.chain_pem.count("BEGIN CERTIFICATE") == 2
    assert got.certificate.pem.startswith("-----BEGIN CERTIFICATE-----")
    stub.RevokeCertificate(pb.RevokeCertificateRequest(serial=serials[1]))

    seen: list[str] = []
    token = ""
    while True:
        page = stub.ListCertificates(
            pb.ListCertificatesRequest(
                tenant_id="tenant-b", account_id=account, page_size=2, page_token=token
            )
        )
        seen += [c.serial for c in page.certificates]
        assert all(not c.der for c in page.certificates)
        token = page.next_page_token
        if not token:
            break
    assert seen == serials
    good = stub.ListCertificates(
        pb.ListCertificatesRequest(
            tenant_id="tenant-b", account_id=account, status=pb.CERTIFICATE_STATUS_GOOD
        )
    )
    assert [c.serial for c in good.certificates] == [serials[0], serials[2]]


@dataclasses.dataclass
class _SignerDownForDisable:
    """The gateway's key service, with DisableKey failing as if the signer were down."""

    keys: KeyService

    def create_key(self, **fields: Any) -> KeyInfo:
        return self.keys.create_key(**fields)

    def get_key(self, key_id: str) -> KeyInfo:
        return self.keys.get_key(key_id)

    def sign_digest(
        self, key_id: str, digest: bytes, hash_alg: HashAlgorithm, scheme: SignatureScheme
    ) -> bytes:
        return self.keys.sign_digest(key_id, digest, hash_alg, scheme)

    def disable_key(self, key_id: str, *, compromised: bool) -> None:
        raise Unavailable("the signer service is unavailable; retry later")


def test_a_revocation_stands_when_the_signer_is_down_and_the_scheduler_retires_the_key(
    ca: CaHarness,
) -> None:
    cert = _issue(ca).certificate
    degraded = dataclasses.replace(ca.gateway, keys=_SignerDownForDisable(ca.gateway.keys))
    view = degraded.revoke(
        Principal("app-tenant-a", "tenant", tenant="tenant-a"),
        RevokeRequest(serial=cert.serial, reason=RevocationReason.KEY_COMPROMISE),
    )
    assert view.revocation is not None
    signer = ca.signer.stub(ca.signer._servers[0], "ca-gateway")
    key = signer.GetKey(signer_pb2.GetKeyRequest(key_id=cert.key_id)).key
    assert key.state == signer_pb2.KEY_STATE_ACTIVE
    status = ca.stub("tenant-a").GetRevocationStatus(
        pb.GetRevocationStatusRequest(serial=cert.serial)
    )
    assert status.status == pb.CERTIFICATE_STATUS_REVOKED

    ca.gateway.tick()
    key = signer.GetKey(signer_pb2.GetKeyRequest(key_id=cert.key_id)).key
    assert key.state == signer_pb2.KEY_STATE_DISABLED
    assert REGISTRY.get_sample_value("signet_ca_gateway_key_retirements_pending") == 0
    responder_expiry = REGISTRY.get_sample_value(
        "signet_ca_gateway_ca_certificate_not_after_timestamp_seconds", {"role": "ocsp_responder"}
    )
    assert responder_expiry is not None and responder_expiry > datetime.now(UTC).timestamp()
    next_update = REGISTRY.get_sample_value(
        "signet_ca_gateway_crl_next_update_timestamp_seconds", {"ca": "issuing-1"}
    )
    assert next_update is not None and next_update > datetime.now(UTC).timestamp()

"""Domain values to and from the CA gateway's API messages and event payloads."""

from __future__ import annotations

from datetime import datetime

from signet.ca_gateway import certs
from signet.ca_gateway.domain import (
    CaCertificateView,
    CaRole,
    CertificateProfile,
    CertificateStatus,
    CertificateView,
    RevocationInitiator,
    RevocationReason,
    RevocationView,
)
from signet.ca_gateway.v1 import ca_gateway_pb2 as pb
from signet.common.keys import KeyAlgorithm
from signet.common.protoenum import ProtoEnum
from signet.common.prototime import timestamp
from signet.common.v1 import common_pb2
from signet.events.v1 import events_pb2

PROFILE = ProtoEnum(CertificateProfile, pb.CertificateProfile, "CERTIFICATE_PROFILE_")
STATUS = ProtoEnum(CertificateStatus, pb.CertificateStatus, "CERTIFICATE_STATUS_")
REASON = ProtoEnum(RevocationReason, pb.RevocationReason, "REVOCATION_REASON_")
INITIATOR = ProtoEnum(RevocationInitiator, pb.RevocationInitiator, "REVOCATION_INITIATOR_")
ROLE = ProtoEnum(CaRole, pb.CaRole, "CA_ROLE_")
KEY_ALGORITHM = ProtoEnum(KeyAlgorithm, common_pb2.KeyAlgorithm, "KEY_ALGORITHM_")


def revocation_message(view: RevocationView) -> pb.Revocation:
    """The API form of a revocation."""
    return pb.Revocation(
        revoked_at=timestamp(view.revoked_at),
        reason=REASON.to_proto(view.reason),  # type: ignore[arg-type]
        initiator=INITIATOR.to_proto(view.initiator),  # type: ignore[arg-type]
        invalidity_date=timestamp(view.invalidity_date),
    )


def certificate_message(view: CertificateView, *, with_encoding: bool = True) -> pb.Certificate:
    """The API form of a certificate record (DER and PEM unless ``with_encoding`` is off)."""
    message = pb.Certificate(
        serial=view.serial,
        tenant_id=view.tenant,
        account_id=view.account_id,
        system_owner=view.system_owner,
        key_id=view.key_id,
        key_algorithm=KEY_ALGORITHM.to_proto(view.key_algorithm),  # type: ignore[arg-type]
        profile=PROFILE.to_proto(view.profile),  # type: ignore[arg-type]
        subject=view.subject,
        issuer=view.issuer,
        not_before=timestamp(view.not_before),
        not_after=timestamp(view.not_after),
        status=STATUS.to_proto(view.status),  # type: ignore[arg-type]
        auto_renewal=view.auto_renewal,
        renewed_from_serial=view.renewed_from,
        renewed_by_serial=view.renewed_by,
        sha256_fingerprint=view.sha256,
    )
    if view.revocation is not None:
        message.revocation.CopyFrom(revocation_message(view.revocation))
    if with_encoding:
        message.der = view.der
        message.pem = certs.to_pem(view.der)
    return message


def ca_certificate_message(view: CaCertificateView) -> pb.CaCertificate:
    """The API form of a CA-side certificate."""
    return pb.CaCertificate(
        ca_id=view.ca_id,
        role=ROLE.to_proto(view.role),  # type: ignore[arg-type]
        subject=view.subject,
        not_before=timestamp(view.not_before),
        not_after=timestamp(view.not_after),
        der=view.der,
        pem=certs.to_pem(view.der),
        crl_url=view.crl_url,
        ocsp_url=view.ocsp_url,
    )


# ---- event payloads ----------------------------------------------------------------


def issued_event(view: CertificateView) -> events_pb2.CertificateIssued:
    """CertificateIssued: who holds it, which key, validity, fingerprint; no identifiers."""
    return events_pb2.CertificateIssued(
        serial=view.serial,
        account_id=view.account_id,
        system_owner=view.system_owner,
        key_id=view.key_id,
        profile=PROFILE.to_proto(view.profile),  # type: ignore[arg-type]
        key_algorithm=KEY_ALGORITHM.to_proto(view.key_algorithm),  # type: ignore[arg-type]
        subject=view.subject,
        issuer=view.issuer,
        not_before=timestamp(view.not_before),
        not_after=timestamp(view.not_after),
        sha256_fingerprint=view.sha256,
    )


def renewed_event(
    view: CertificateView, previous_serial: str, *, new_key: bool, automatic: bool
) -> events_pb2.CertificateRenewed:
    """CertificateRenewed: the successor and the certificate it renewed."""
    return events_pb2.CertificateRenewed(
        serial=view.serial,
        previous_serial=previous_serial,
        account_id=view.account_id,
        key_id=view.key_id,
        new_key=new_key,
        automatic=automatic,
        not_before=timestamp(view.not_before),
        not_after=timestamp(view.not_after),
        sha256_fingerprint=view.sha256,
    )


def revoked_event(
    view: CertificateView, revocation: RevocationView
) -> events_pb2.CertificateRevoked:
    """CertificateRevoked: which certificate, when, why and on whose initiative."""
    return events_pb2.CertificateRevoked(
        serial=view.serial,
        account_id=view.account_id,
        key_id=view.key_id,
        reason=REASON.to_proto(revocation.reason),  # type: ignore[arg-type]
        initiator=INITIATOR.to_proto(revocation.initiator),  # type: ignore[arg-type]
        revoked_at=timestamp(revocation.revoked_at),
        invalidity_date=timestamp(revocation.invalidity_date),
    )


def expiring_event(view: CertificateView) -> events_pb2.CertificateExpiring:
    """CertificateExpiring, for renewal reminders."""
    return events_pb2.CertificateExpiring(
        serial=view.serial,
        account_id=view.account_id,
        not_after=timestamp(view.not_after),
        auto_renewal=view.auto_renewal,
    )


def crl_event(
    ca_id: str,
    number: int,
    this_update: datetime,
    next_update: datetime,
    sha256: bytes,
    revoked_count: int,
) -> events_pb2.CrlPublished:
    """CrlPublished."""
    return events_pb2.CrlPublished(
        ca_id=ca_id,
        crl_number=number,
        this_update=timestamp(this_update),
        next_update=timestamp(next_update),
        crl_sha256=sha256,
        revoked_count=revoked_count,
    )

"""The ca-gateway as the evidence service's certificate source, over gRPC.

Two roles: :class:`CaGatewayTsaCertificates` obtains the TSA's certificate (profile
timestamping, system owner ``evidence``, over the TSA key already in the HSM), and
:class:`CaGatewayDirectory` looks up signers' certificates, their chains and their
revocation status at signing time for evidence packages.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import grpc

from signet.ca_gateway.v1 import ca_gateway_pb2, ca_gateway_pb2_grpc
from signet.common.errors import NotFound
from signet.evidence.backends.signer import translate_rpc_error
from signet.evidence.domain import CertificateRecord, CertifiedKey, SigningKey

SYSTEM_OWNER = "evidence"


class CaGatewayTsaCertificates:
    """IssueCertificate(profile timestamping) for the TSA key; idempotent per key."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._stub = ca_gateway_pb2_grpc.CaGatewayServiceStub(channel)

    def certificate_for(self, key: SigningKey) -> CertifiedKey:
        """The TSA certificate over ``key`` and its chain (issuer first, root last)."""
        request = ca_gateway_pb2.IssueCertificateRequest(
            system_owner=SYSTEM_OWNER,
            profile=ca_gateway_pb2.CERTIFICATE_PROFILE_TIMESTAMPING,
            key_id=key.key_id,
            request_id=f"evidence-tsa-{key.key_id}",
        )
        try:
            response = self._stub.IssueCertificate(request)
        except grpc.RpcError as err:
            raise translate_rpc_error(err, "ca-gateway") from err
        return CertifiedKey(bytes(response.certificate.der), tuple(response.chain_der))


class CaGatewayDirectory:
    """Certificates, chains and revocation status at a given time, from the ca-gateway."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._stub = ca_gateway_pb2_grpc.CaGatewayServiceStub(channel)

    def certificate(self, serial: str, at_time: datetime) -> CertificateRecord | None:
        """The certificate ``serial`` with chain and status at ``at_time``; None if unknown."""
        try:
            found = self._stub.GetCertificate(
                ca_gateway_pb2.GetCertificateRequest(serial=serial, include_chain=True)
            )
            status_request = ca_gateway_pb2.GetRevocationStatusRequest(serial=serial)
            status_request.at_time.FromDatetime(at_time)
            status = self._stub.GetRevocationStatus(status_request)
        except grpc.RpcError as err:
            error = translate_rpc_error(err, "ca-gateway")
            if isinstance(error, NotFound):
                return None
            raise error from err
        revoked_at = None
        reason = ""
        if status.HasField("revocation"):
            revoked_at = status.revocation.revoked_at.ToDatetime(tzinfo=UTC)
            reason = ca_gateway_pb2.RevocationReason.Name(status.revocation.reason)
        return CertificateRecord(
            serial=serial,
            certificate_der=bytes(found.certificate.der),
            chain_der=tuple(found.chain_der),
            status=ca_gateway_pb2.CertificateStatus.Name(status.status),
            status_at=at_time,
            revoked_at=revoked_at,
            revocation_reason=reason,
        )

    def ca_certificates(self) -> Sequence[bytes]:
        """Every CA certificate the gateway publishes (DER)."""
        try:
            response = self._stub.GetCaCertificates(ca_gateway_pb2.GetCaCertificatesRequest())
        except grpc.RpcError as err:
            raise translate_rpc_error(err, "ca-gateway") from err
        return [bytes(c.der) for c in response.certificates]

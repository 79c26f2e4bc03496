"""The CaGatewayService gRPC adapter: proto in, domain calls, proto out. No rules here."""

from __future__ import annotations

import grpc

from signet.ca_gateway import convert
from signet.ca_gateway.domain import RevocationInitiator, RevocationReason
from signet.ca_gateway.service import (
    CaGateway,
    IssueRequest,
    ListQuery,
    RenewRequest,
    RevokeRequest,
    record_chain,
)
from signet.ca_gateway.v1 import ca_gateway_pb2 as pb
from signet.ca_gateway.v1 import ca_gateway_pb2_grpc
from signet.common import prototime
from signet.common.auth import current_principal


class CaGatewayServicer(ca_gateway_pb2_grpc.CaGatewayServiceServicer):
    """Serves the certificate lifecycle of a :class:`CaGateway`."""

    def __init__(self, gateway: CaGateway) -> None:
        self._gateway = gateway

    def IssueCertificate(
        self, request: pb.IssueCertificateRequest, context: grpc.ServicerContext
    ) -> pb.IssueCertificateResponse:
        """Issue a certificate to a verified account or a platform component."""
        issued = self._gateway.issue(
            current_principal(),
            IssueRequest(
                tenant=request.tenant_id,
                account_id=request.account_id,
                system_owner=request.system_owner,
                profile=convert.PROFILE.from_proto(request.profile, "profile"),
                key_algorithm=convert.KEY_ALGORITHM.from_proto(
                    request.key_algorithm, "key_algorithm"
                ),
                key_id=request.key_id,
                validity=prototime.duration(request.validity, request.HasField("validity")),
                auto_renewal=request.auto_renewal,
                operator_account_id=request.operator_account_id,
                request_id=request.request_id,
            ),
        )
        return pb.IssueCertificateResponse(
            certificate=convert.certificate_message(issued.certificate), chain_der=issued.chain
        )

    def RenewCertificate(
        self, request: pb.RenewCertificateRequest, context: grpc.ServicerContext
    ) -> pb.RenewCertificateResponse:
        """Issue a successor certificate."""
        issued, previous = self._gateway.renew(
            current_principal(),
            RenewRequest(
                serial=request.serial,
                new_key=request.new_key,
                key_algorithm=convert.KEY_ALGORITHM.from_proto(
                    request.key_algorithm, "key_algorithm"
                ),
                validity=prototime.duration(request.validity, request.HasField("validity")),
                request_id=request.request_id,
            ),
        )
        return pb.RenewCertificateResponse(
            certificate=convert.certificate_message(issued.certificate),
            chain_der=issued.chain,
            previous_serial=previous,
        )

    def RevokeCertificate(
        self, request: pb.RevokeCertificateRequest, context: grpc.ServicerContext
    ) -> pb.RevokeCertificateResponse:
        """Revoke a certificate."""
        view = self._gateway.revoke(
            current_principal(),
            RevokeRequest(
                serial=request.serial,
                reason=convert.REASON.from_proto(request.reason, "reason")
                or RevocationReason.UNSPECIFIED,
                initiator=convert.INITIATOR.from_proto(request.initiator, "initiator")
                or RevocationInitiator.UNSPECIFIED,
                invalidity_date=prototime.instant(
                    request.invalidity_date, request.HasField("invalidity_date")
                ),
                requested_by=request.requested_by,
                request_id=request.request_id,
            ),
        )
        return pb.RevokeCertificateResponse(certificate=convert.certificate_message(view))

    def GetCertificate(
        self, request: pb.GetCertificateRequest, context: grpc.ServicerContext
    ) -> pb.GetCertificateResponse:
        """A certificate, with its chain on request."""
        issued = self._gateway.get(current_principal(), request.serial)
        response = pb.GetCertificateResponse(
            certificate=convert.certificate_message(issued.certificate)
        )
        if request.include_chain:
            response.chain_der.extend(issued.chain)
            response.chain_pem = record_chain(issued.chain)
        return response

    def ListCertificates(
        self, request: pb.ListCertificatesRequest, context: grpc.ServicerContext
    ) -> pb.ListCertificatesResponse:
        """One page of a tenant's certificates."""
        page = self._gateway.list_certificates(
            current_principal(),
            ListQuery(
                tenant=request.tenant_id,
                account_id=request.account_id,
                status=convert.STATUS.from_proto(request.status, "status"),
                profile=convert.PROFILE.from_proto(request.profile, "profile"),
                expiring_before=prototime.instant(
                    request.expiring_before, request.HasField("expiring_before")
                ),
                page_size=request.page_size,
                page_token=request.page_token,
            ),
        )
        return pb.ListCertificatesResponse(
            certificates=[
                convert.certificate_message(view, with_encoding=False) for view in page.certificates
            ],
            next_page_token=page.next_page_token,
        )

    def GetRevocationStatus(
        self, request: pb.GetRevocationStatusRequest, context: grpc.ServicerContext
    ) -> pb.GetRevocationStatusResponse:
        """The status of a serial at an instant."""
        answer = self._gateway.status(
            request.serial, prototime.instant(request.at_time, request.HasField("at_time"))
        )
        response = pb.GetRevocationStatusResponse(
            serial=answer.serial,
            at_time=prototime.timestamp(answer.at_time),
            status=convert.STATUS.to_proto(answer.status),  # type: ignore[arg-type]
            produced_at=prototime.timestamp(answer.produced_at),
        )
        if answer.revocation is not None:
            response.revocation.CopyFrom(convert.revocation_message(answer.revocation))
        return response

    def GetCaCertificates(
        self, request: pb.GetCaCertificatesRequest, context: grpc.ServicerContext
    ) -> pb.GetCaCertificatesResponse:
        """The platform's CA-side certificates."""
        return pb.GetCaCertificatesResponse(
            certificates=[
                convert.ca_certificate_message(view) for view in self._gateway.ca_certificates()
            ]
        )

    def SetAutoRenewal(
        self, request: pb.SetAutoRenewalRequest, context: grpc.ServicerContext
    ) -> pb.SetAutoRenewalResponse:
        """Turn automatic renewal on or off."""
        view = self._gateway.set_auto_renewal(
            current_principal(),
            request.serial,
            request.enabled,
            prototime.duration(request.renew_before, request.HasField("renew_before")),
        )
        return pb.SetAutoRenewalResponse(certificate=convert.certificate_message(view))

"""IdentityService over gRPC: requests to domain calls, results to responses.

Nothing here decides who may do what; :class:`signet.identity.service.IdentityService`
does. Bad input raises :mod:`signet.common.errors`, which the error interceptor turns
into statuses.
"""

from __future__ import annotations

import json

import grpc

from signet.common import prototime
from signet.common.auth import current_principal
from signet.common.errors import InvalidArgument
from signet.identity import convert
from signet.identity.domain import EnterpriseData, PersonData, VerificationInput, VerificationProof
from signet.identity.models import (
    DataCategory,
    OperatorRight,
    VerificationMethod,
    WillingnessMethod,
)
from signet.identity.service import IdentityService, jwk_of
from signet.identity.v1 import identity_pb2, identity_pb2_grpc

_UPDATE_PATHS = {
    p: p
    for p in ("phone", "email", "locale", "name", "enterprise_name", "legal_representative_name")
}
_CORRECT_PATHS = {
    p: p
    for p in (
        "name",
        "id_number",
        "phone",
        "email",
        "enterprise_name",
        "credit_code",
        "legal_representative_name",
    )
}


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    """The gRPC face of :class:`IdentityService`."""

    def __init__(self, service: IdentityService) -> None:
        self._service = service

    # ---- tenants and accounts --------------------------------------------------------

    def CreateTenant(
        self, request: identity_pb2.CreateTenantRequest, context: grpc.ServicerContext
    ) -> identity_pb2.CreateTenantResponse:
        """Create a tenant."""
        tenant = self._service.create_tenant(
            current_principal(), request.name, request.data_region, request.request_id
        )
        return identity_pb2.CreateTenantResponse(tenant=convert.tenant_message(tenant))

    def GetTenant(
        self, request: identity_pb2.GetTenantRequest, context: grpc.ServicerContext
    ) -> identity_pb2.GetTenantResponse:
        """A tenant."""
        tenant = self._service.get_tenant(current_principal(), request.tenant_id)
        return identity_pb2.GetTenantResponse(tenant=convert.tenant_message(tenant))

    def RegisterAccount(
        self, request: identity_pb2.RegisterAccountRequest, context: grpc.ServicerContext
    ) -> identity_pb2.RegisterAccountResponse:
        """Register a person or an enterprise."""
        kind = request.WhichOneof("registration")
        person = enterprise = None
        if kind == "person":
            p = request.person
            person = PersonData(p.name, p.phone, p.email, p.guardian_account_id)
        elif kind == "enterprise":
            e = request.enterprise
            enterprise = EnterpriseData(
                e.enterprise_name,
                e.credit_code,
                e.legal_representative_name,
                e.contact_phone,
                e.contact_email,
            )
        else:
            raise InvalidArgument("person or enterprise registration data is required")
        view = self._service.register_account(
            current_principal(),
            request.tenant_id,
            person,
            enterprise,
            request.locale,
            request.request_id,
        )
        return identity_pb2.RegisterAccountResponse(account=convert.account_message(view))

    def GetAccount(
        self, request: identity_pb2.GetAccountRequest, context: grpc.ServicerContext
    ) -> identity_pb2.GetAccountResponse:
        """An account, masked."""
        view = self._service.get_account(current_principal(), request.account_id)
        return identity_pb2.GetAccountResponse(account=convert.account_message(view))

    def UpdateAccount(
        self, request: identity_pb2.UpdateAccountRequest, context: grpc.ServicerContext
    ) -> identity_pb2.UpdateAccountResponse:
        """Change contact or display data."""
        values = convert.masked_values(request, request.update_mask, _UPDATE_PATHS)
        view, reverify = self._service.update_account(
            current_principal(), request.account_id, values
        )
        return identity_pb2.UpdateAccountResponse(
            account=convert.account_message(view), reverification_required=reverify
        )

    def GetContactDetails(
        self, request: identity_pb2.GetContactDetailsRequest, context: grpc.ServicerContext
    ) -> identity_pb2.GetContactDetailsResponse:
        """Contact details in clear, for notify."""
        details = self._service.get_contact_details(current_principal(), request.account_id)
        return identity_pb2.GetContactDetailsResponse(
            account_id=details.account_id,
            phone=details.phone,
            email=details.email,
            locale=details.locale,
        )

    # ---- operators -------------------------------------------------------------------

    def GrantOperatorAuthorization(
        self,
        request: identity_pb2.GrantOperatorAuthorizationRequest,
        context: grpc.ServicerContext,
    ) -> identity_pb2.GrantOperatorAuthorizationResponse:
        """Authorise an operator for an enterprise."""
        view = self._service.grant_operator_authorization(
            current_principal(),
            request.enterprise_account_id,
            request.operator_account_id,
            [convert.from_proto(OperatorRight, r, "rights") for r in request.rights],
            convert.from_timestamp(request, "valid_from"),
            convert.from_timestamp(request, "valid_until"),
            convert.optional_digest(request, "authorization_document_digest"),
            request.request_id,
        )
        return identity_pb2.GrantOperatorAuthorizationResponse(
            authorization=convert.operator_message(view)
        )

    def RevokeOperatorAuthorization(
        self,
        request: identity_pb2.RevokeOperatorAuthorizationRequest,
        context: grpc.ServicerContext,
    ) -> identity_pb2.RevokeOperatorAuthorizationResponse:
        """End an operator authorisation."""
        view = self._service.revoke_operator_authorization(
            current_principal(), request.authorization_id
        )
        return identity_pb2.RevokeOperatorAuthorizationResponse(
            authorization=convert.operator_message(view)
        )

    def ListOperatorAuthorizations(
        self,
        request: identity_pb2.ListOperatorAuthorizationsRequest,
        context: grpc.ServicerContext,
    ) -> identity_pb2.ListOperatorAuthorizationsResponse:
        """Operator authorisations of an enterprise or an operator."""
        views, token = self._service.list_operator_authorizations(
            current_principal(),
            request.enterprise_account_id,
            request.operator_account_id,
            request.include_inactive,
            request.page_size,
            request.page_token,
        )
        return identity_pb2.ListOperatorAuthorizationsResponse(
            authorizations=[convert.operator_message(v) for v in views], next_page_token=token
        )

    # ---- credentials -----------------------------------------------------------------

    def CreateApiCredential(
        self, request: identity_pb2.CreateApiCredentialRequest, context: grpc.ServicerContext
    ) -> identity_pb2.CreateApiCredentialResponse:
        """A new credential; the token is shown once."""
        view, token = self._service.create_api_credential(
            current_principal(),
            request.tenant_id,
            request.display_name,
            list(request.scopes),
            convert.from_timestamp(request, "expires_at"),
        )
        return identity_pb2.CreateApiCredentialResponse(
            credential=convert.credential_message(view), token=token
        )

    def RotateApiCredential(
        self, request: identity_pb2.RotateApiCredentialRequest, context: grpc.ServicerContext
    ) -> identity_pb2.RotateApiCredentialResponse:
        """A new secret, the old one valid for a grace period."""
        view, token, until = self._service.rotate_api_credential(
            current_principal(),
            request.credential_id,
            convert.from_duration(request, "grace_period"),
        )
        return identity_pb2.RotateApiCredentialResponse(
            credential=convert.credential_message(view),
            token=token,
            previous_token_valid_until=prototime.timestamp(until),
        )

    def RevokeApiCredential(
        self, request: identity_pb2.RevokeApiCredentialRequest, context: grpc.ServicerContext
    ) -> identity_pb2.RevokeApiCredentialResponse:
        """Revoke a credential."""
        view = self._service.revoke_api_credential(current_principal(), request.credential_id)
        return identity_pb2.RevokeApiCredentialResponse(credential=convert.credential_message(view))

    def AuthenticateApiCredential(
        self,
        request: identity_pb2.AuthenticateApiCredentialRequest,
        context: grpc.ServicerContext,
    ) -> identity_pb2.AuthenticateApiCredentialResponse:
        """Who a bearer token belongs to."""
        found = self._service.authenticate_api_credential(request.token)
        return identity_pb2.AuthenticateApiCredentialResponse(
            credential_id=found.credential_id,
            tenant_id=found.tenant_id,
            scopes=list(found.scopes),
            expires_at=prototime.timestamp(found.expires_at),
        )

    # ---- real-name verification ------------------------------------------------------

    def StartRealNameVerification(
        self,
        request: identity_pb2.StartRealNameVerificationRequest,
        context: grpc.ServicerContext,
    ) -> identity_pb2.StartRealNameVerificationResponse:
        """Start a verification with one method."""
        kind = request.WhichOneof("input")
        if kind == "person_id_phone":
            p = request.person_id_phone
            given = VerificationInput(
                VerificationMethod.PERSON_ID_PHONE,
                name=p.name,
                id_number=p.id_number,
                phone=p.phone,
            )
        elif kind == "bank_card":
            b = request.bank_card
            given = VerificationInput(
                VerificationMethod.BANK_CARD_FOUR_ELEMENTS,
                name=b.name,
                id_number=b.id_number,
                card_number=b.card_number,
                phone=b.phone,
            )
        elif kind == "face_match":
            f = request.face_match
            given = VerificationInput(
                VerificationMethod.FACE_MATCH,
                name=f.name,
                id_number=f.id_number,
                return_url=f.return_url,
            )
        elif kind == "enterprise":
            e = request.enterprise
            given = VerificationInput(
                VerificationMethod.ENTERPRISE,
                enterprise_name=e.enterprise_name,
                credit_code=e.credit_code,
                legal_representative_name=e.legal_representative_name,
                legal_representative_id_number=e.legal_representative_id_number,
                operator_account_id=e.operator_account_id,
                operator_authorization_id=e.operator_authorization_id,
            )
        else:
            raise InvalidArgument(
                "one verification input (person_id_phone, bank_card, ...) is required"
            )
        started = self._service.start_verification(
            current_principal(), request.account_id, given, convert.actor_from(request)
        )
        return identity_pb2.StartRealNameVerificationResponse(
            verification_id=started.verification_id,
            method=convert.to_proto(started.method),  # type: ignore[arg-type]
            status=convert.to_proto(started.status),  # type: ignore[arg-type]
            expires_at=prototime.timestamp(started.expires_at),
            masked_code_destination=started.masked_code_destination,
            face_session_url=started.face_session_url,
            failure_reason=convert.to_proto(started.failure_reason),  # type: ignore[arg-type]
        )

    def CompleteRealNameVerification(
        self,
        request: identity_pb2.CompleteRealNameVerificationRequest,
        context: grpc.ServicerContext,
    ) -> identity_pb2.CompleteRealNameVerificationResponse:
        """Complete a verification with its proof."""
        kind = request.WhichOneof("proof")
        if kind == "one_time_code":
            proof = VerificationProof(one_time_code=request.one_time_code)
        elif kind == "face_match":
            proof = VerificationProof(face_session_token=request.face_match.session_token)
        elif kind == "enterprise":
            proof = VerificationProof(
                legal_representative_code=request.enterprise.legal_representative_code,
                transfer_amount_fen=request.enterprise.transfer_amount_fen,
            )
        else:
            raise InvalidArgument("a proof (one_time_code, face_match or enterprise) is required")
        done = self._service.complete_verification(
            current_principal(), request.verification_id, proof, convert.actor_from(request)
        )
        return identity_pb2.CompleteRealNameVerificationResponse(
            verification_id=done.verification_id,
            status=convert.to_proto(done.status),  # type: ignore[arg-type]
            failure_reason=convert.to_proto(done.failure_reason),  # type: ignore[arg-type]
            attempts_remaining=done.attempts_remaining,
            account=convert.account_message(done.account),
            provider=done.provider,
            provider_reference=done.provider_reference,
        )

    # ---- willingness and grants ------------------------------------------------------

    def StartWillingness(
        self, request: identity_pb2.StartWillingnessRequest, context: grpc.ServicerContext
    ) -> identity_pb2.StartWillingnessResponse:
        """Start a willingness check for signing digests with a key."""
        started = self._service.start_willingness(
            current_principal(),
            request.account_id,
            request.key_id,
            [convert.digest_from(d, "digests") for d in request.digests],
            convert.from_proto(WillingnessMethod, request.method, "method"),
            request.operator_account_id,
            request.transaction_id,
            convert.actor_from(request),
        )
        return identity_pb2.StartWillingnessResponse(
            willingness_id=started.willingness_id,
            method=convert.to_proto(started.method),  # type: ignore[arg-type]
            expires_at=prototime.timestamp(started.expires_at),
            masked_code_destination=started.masked_code_destination,
            face_session_url=started.face_session_url,
            attempts_remaining=started.attempts_remaining,
        )

    def ConfirmWillingness(
        self, request: identity_pb2.ConfirmWillingnessRequest, context: grpc.ServicerContext
    ) -> identity_pb2.ConfirmWillingnessResponse:
        """Check the proof; the signing grant."""
        kind = request.WhichOneof("proof")
        if kind is None:
            raise InvalidArgument("a proof (one_time_code or face_match) is required")
        confirmed = self._service.confirm_willingness(
            current_principal(),
            request.willingness_id,
            request.one_time_code if kind == "one_time_code" else "",
            request.face_match.session_token if kind == "face_match" else "",
            convert.actor_from(request),
        )
        response = identity_pb2.ConfirmWillingnessResponse(
            status=convert.to_proto(confirmed.status),  # type: ignore[arg-type]
            attempts_remaining=confirmed.attempts_remaining,
        )
        if confirmed.grant is not None:
            response.grant.CopyFrom(convert.grant_message(confirmed.grant))
        return response

    def GetGrantVerificationKeys(
        self, request: identity_pb2.GetGrantVerificationKeysRequest, context: grpc.ServicerContext
    ) -> identity_pb2.GetGrantVerificationKeysResponse:
        """The public keys that verify grants, also as a JWKS document."""
        keys = []
        jwks = []
        for view in self._service.grant_verification_keys():
            jwk = jwk_of(view)
            jwks.append(jwk)
            keys.append(
                identity_pb2.GrantVerificationKey(
                    kid=jwk["kid"],
                    alg=jwk["alg"],
                    kty=jwk["kty"],
                    crv=jwk["crv"],
                    x=jwk["x"],
                    y=jwk["y"],
                    spki_der=view.spki_der,
                    not_before=prototime.timestamp(view.not_before),
                    not_after=prototime.timestamp(view.not_after),
                )
            )
        return identity_pb2.GetGrantVerificationKeysResponse(
            keys=keys, jwks_json=json.dumps({"keys": jwks}, separators=(",", ":"))
        )

    # ---- automatic signing -----------------------------------------------------------

    def CreateAutoSignAuthorization(
        self,
        request: identity_pb2.CreateAutoSignAuthorizationRequest,
        context: grpc.ServicerContext,
    ) -> identity_pb2.CreateAutoSignAuthorizationResponse:
        """A standing authorisation for unattended signing."""
        view = self._service.create_auto_sign(
            current_principal(),
            request.account_id,
            request.key_id,
            request.business_scope,
            convert.from_timestamp(request, "valid_from"),
            convert.from_timestamp(request, "valid_until"),
            request.max_uses,
            request.confirmation_grant,
            convert.optional_digest(request, "authorization_text_digest"),
            request.operator_account_id,
            request.request_id,
        )
        return identity_pb2.CreateAutoSignAuthorizationResponse(
            authorization=convert.auto_sign_message(view)
        )

    def RevokeAutoSignAuthorization(
        self,
        request: identity_pb2.RevokeAutoSignAuthorizationRequest,
        context: grpc.ServicerContext,
    ) -> identity_pb2.RevokeAutoSignAuthorizationResponse:
        """Revoke an automatic-signing authorisation."""
        view = self._service.revoke_auto_sign(current_principal(), request.authorization_id)
        return identity_pb2.RevokeAutoSignAuthorizationResponse(
            authorization=convert.auto_sign_message(view)
        )

    def ListAutoSignAuthorizations(
        self,
        request: identity_pb2.ListAutoSignAuthorizationsRequest,
        context: grpc.ServicerContext,
    ) -> identity_pb2.ListAutoSignAuthorizationsResponse:
        """An account's automatic-signing authorisations."""
        views, token = self._service.list_auto_sign(
            current_principal(),
            request.account_id,
            request.include_inactive,
            request.page_size,
            request.page_token,
        )
        return identity_pb2.ListAutoSignAuthorizationsResponse(
            authorizations=[convert.auto_sign_message(v) for v in views], next_page_token=token
        )

    def IssueAutoSignGrant(
        self, request: identity_pb2.IssueAutoSignGrantRequest, context: grpc.ServicerContext
    ) -> identity_pb2.IssueAutoSignGrantResponse:
        """Use an authorisation once."""
        grant, remaining = self._service.issue_auto_sign_grant(
            current_principal(),
            request.authorization_id,
            [convert.digest_from(d, "digests") for d in request.digests],
            request.transaction_id,
            request.request_id,
            convert.actor_from(request),
        )
        return identity_pb2.IssueAutoSignGrantResponse(
            grant=convert.grant_message(grant), uses_remaining=remaining
        )

    # ---- personal-data rights --------------------------------------------------------

    def ExportPersonalData(
        self, request: identity_pb2.ExportPersonalDataRequest, context: grpc.ServicerContext
    ) -> identity_pb2.ExportPersonalDataResponse:
        """A machine-readable copy of the account's personal data."""
        request_id, document, generated_at = self._service.export_personal_data(
            current_principal(), request.account_id
        )
        return identity_pb2.ExportPersonalDataResponse(
            request_id=request_id,
            media_type="application/json",
            document=document,
            generated_at=prototime.timestamp(generated_at),
        )

    def CorrectPersonalData(
        self, request: identity_pb2.CorrectPersonalDataRequest, context: grpc.ServicerContext
    ) -> identity_pb2.CorrectPersonalDataResponse:
        """Correct personal data."""
        values = convert.masked_values(request, request.update_mask, _CORRECT_PATHS)
        request_id, view, reverify = self._service.correct_personal_data(
            current_principal(), request.account_id, values
        )
        return identity_pb2.CorrectPersonalDataResponse(
            request_id=request_id,
            account=convert.account_message(view),
            reverification_required=reverify,
        )

    def RequestDeletion(
        self, request: identity_pb2.RequestDeletionRequest, context: grpc.ServicerContext
    ) -> identity_pb2.RequestDeletionResponse:
        """Delete what the law does not hold."""
        request_id, outcomes = self._service.request_deletion(
            current_principal(),
            request.account_id,
            [convert.from_proto(DataCategory, c, "categories") for c in request.categories],
            list(request.jointly_instructed_transaction_ids),
        )
        return identity_pb2.RequestDeletionResponse(
            request_id=request_id, outcomes=convert.outcomes(outcomes)
        )

    def CancelAccount(
        self, request: identity_pb2.CancelAccountRequest, context: grpc.ServicerContext
    ) -> identity_pb2.CancelAccountResponse:
        """Start cancelling an account."""
        view = self._service.cancel_account(
            current_principal(), request.account_id, request.reason, request.request_id
        )
        return identity_pb2.CancelAccountResponse(status=convert.cancellation_message(view))

    def GetCancellationStatus(
        self, request: identity_pb2.GetCancellationStatusRequest, context: grpc.ServicerContext
    ) -> identity_pb2.GetCancellationStatusResponse:
        """Where a cancellation stands."""
        view = self._service.get_cancellation_status(current_principal(), request.account_id)
        return identity_pb2.GetCancellationStatusResponse(status=convert.cancellation_message(view))

"""Between identity's domain values and its protobuf API.

Enum values map by name (``AccountState.VERIFIED`` <-> ``ACCOUNT_STATE_VERIFIED``). An
unspecified or unknown enum value from a caller is INVALID_ARGUMENT naming the field.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TypeVar

from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from signet.common.errors import InvalidArgument
from signet.common.prototime import timestamp
from signet.common.v1 import common_pb2
from signet.identity.domain import (
    AccountView,
    Actor,
    AutoSignView,
    CancellationView,
    CategoryOutcome,
    CredentialView,
    Digest,
    GrantView,
    OperatorAuthorizationView,
)
from signet.identity.events import digest_message, outcome_message
from signet.identity.models import (
    AccountState,
    AccountType,
    AuthorizationState,
    CancellationState,
    CredentialState,
    DataCategory,
    FailureReason,
    OperatorRight,
    Tenant,
    VerificationMethod,
    VerificationStatus,
    WillingnessMethod,
    WillingnessStatus,
)
from signet.identity.v1 import identity_pb2

_E = TypeVar("_E", bound=StrEnum)

_PREFIX: dict[type[StrEnum], tuple[str, object]] = {
    AccountType: ("ACCOUNT_TYPE_", identity_pb2.AccountType),
    AccountState: ("ACCOUNT_STATE_", identity_pb2.AccountState),
    VerificationMethod: ("VERIFICATION_METHOD_", identity_pb2.VerificationMethod),
    VerificationStatus: ("VERIFICATION_STATUS_", identity_pb2.VerificationStatus),
    FailureReason: ("VERIFICATION_FAILURE_REASON_", identity_pb2.VerificationFailureReason),
    WillingnessMethod: ("WILLINGNESS_METHOD_", identity_pb2.WillingnessMethod),
    WillingnessStatus: ("WILLINGNESS_STATUS_", identity_pb2.WillingnessStatus),
    OperatorRight: ("OPERATOR_RIGHT_", identity_pb2.OperatorRight),
    AuthorizationState: ("AUTHORIZATION_STATE_", identity_pb2.AuthorizationState),
    CredentialState: ("CREDENTIAL_STATE_", identity_pb2.CredentialState),
    DataCategory: ("PERSONAL_DATA_CATEGORY_", identity_pb2.PersonalDataCategory),
    CancellationState: ("CANCELLATION_STATE_", identity_pb2.CancellationState),
}
_HASHES = {
    common_pb2.HASH_ALGORITHM_SHA256: "sha256",
    common_pb2.HASH_ALGORITHM_SHA384: "sha384",
    common_pb2.HASH_ALGORITHM_SHA512: "sha512",
    common_pb2.HASH_ALGORITHM_SM3: "sm3",
}


def to_proto(value: StrEnum | None) -> int:
    """The proto enum number of a domain enum value (0 for None)."""
    if value is None:
        return 0
    prefix, wrapper = _PREFIX[type(value)]
    return int(wrapper.Value(prefix + value.value.upper()))  # type: ignore[attr-defined]


def from_proto(enum_cls: type[_E], number: int, field: str) -> _E:
    """The domain value of a proto enum number; unset or unknown is INVALID_ARGUMENT."""
    prefix, wrapper = _PREFIX[enum_cls]
    if number == 0:
        raise InvalidArgument(f"{field} is required")
    try:
        name = str(wrapper.Name(number))  # type: ignore[attr-defined]
    except ValueError as err:
        raise InvalidArgument(f"{field} has an unknown value {number}") from err
    return enum_cls(name.removeprefix(prefix).lower())


def from_timestamp(message: object, field: str) -> datetime | None:
    """The datetime of an optional timestamp field of ``message`` (None when unset)."""
    if not message.HasField(field):  # type: ignore[attr-defined]
        return None
    ts: Timestamp = getattr(message, field)
    return ts.ToDatetime(tzinfo=UTC)


def from_duration(message: object, field: str) -> timedelta | None:
    """The timedelta of an optional duration field (None when unset)."""
    if not message.HasField(field):  # type: ignore[attr-defined]
        return None
    value: Duration = getattr(message, field)
    return value.ToTimedelta()


def digest_from(message: common_pb2.Digest, field: str = "digest") -> Digest:
    """A domain digest; INVALID_ARGUMENT for an unknown algorithm."""
    algorithm = _HASHES.get(message.algorithm)
    if algorithm is None:
        raise InvalidArgument(f"{field}.algorithm is required")
    return Digest(algorithm, bytes(message.value))


def optional_digest(message: object, field: str) -> Digest | None:
    """An optional digest field, None when unset."""
    if not message.HasField(field):  # type: ignore[attr-defined]
        return None
    return digest_from(getattr(message, field), field)


def actor_from(message: object) -> Actor | None:
    """The request's actor context, None when unset."""
    if not message.HasField("actor"):  # type: ignore[attr-defined]
        return None
    a: common_pb2.ActorContext = message.actor  # type: ignore[attr-defined]
    return Actor(
        tenant_id=a.tenant_id,
        account_id=a.account_id,
        operator_account_id=a.operator_account_id,
        operator_authorization_id=a.operator_authorization_id,
        client_ip=a.client_ip,
        device_fingerprint_hash=bytes(a.device_fingerprint_hash),
        client=a.client,
        service=a.service,
    )


def masked_values(message: object, mask: FieldMask, allowed: dict[str, str]) -> dict[str, str]:
    """Field values named in ``mask`` (paths must be in ``allowed``: path -> attribute)."""
    if not mask.paths:
        raise InvalidArgument("update_mask is required")
    values: dict[str, str] = {}
    for path in mask.paths:
        if path not in allowed:
            raise InvalidArgument(f"update_mask path {path!r} is not one of: {', '.join(allowed)}")
        values[path] = str(getattr(message, allowed[path]))
    return values


def tenant_message(tenant: Tenant) -> identity_pb2.Tenant:
    """A tenant as the API shows it."""
    return identity_pb2.Tenant(
        tenant_id=tenant.id,
        name=tenant.name,
        created_at=timestamp(tenant.created_at),
        data_region=tenant.data_region,
    )


def account_message(view: AccountView) -> identity_pb2.Account:
    """An account with masked personal data."""
    message = identity_pb2.Account(
        account_id=view.account_id,
        tenant_id=view.tenant_id,
        type=to_proto(view.type),  # type: ignore[arg-type]
        state=to_proto(view.state),  # type: ignore[arg-type]
        subject_identifier_hash=view.subject_identifier_hash,
        created_at=timestamp(view.created_at),
        updated_at=timestamp(view.updated_at),
        locale=view.locale,
    )
    if view.type is AccountType.PERSON:
        message.person.CopyFrom(
            identity_pb2.PersonProfile(
                name=view.name,
                masked_id_number=view.masked_id_number,
                masked_phone=view.masked_phone,
                masked_email=view.masked_email,
                guardian_account_id=view.guardian_account_id,
            )
        )
    else:
        message.enterprise.CopyFrom(
            identity_pb2.EnterpriseProfile(
                enterprise_name=view.enterprise_name,
                masked_credit_code=view.masked_id_number,
                legal_representative_name=view.legal_representative_name,
                masked_contact_phone=view.masked_phone,
                masked_contact_email=view.masked_email,
            )
        )
    if view.verification is not None:
        v = view.verification
        message.verification.CopyFrom(
            identity_pb2.VerificationSummary(
                verification_id=v.verification_id,
                method=to_proto(v.method),  # type: ignore[arg-type]
                status=to_proto(v.status),  # type: ignore[arg-type]
                verified_at=timestamp(v.verified_at),
                valid_until=timestamp(v.valid_until),
            )
        )
    return message


def operator_message(view: OperatorAuthorizationView) -> identity_pb2.OperatorAuthorization:
    """An operator authorisation."""
    message = identity_pb2.OperatorAuthorization(
        authorization_id=view.authorization_id,
        enterprise_account_id=view.enterprise_account_id,
        operator_account_id=view.operator_account_id,
        rights=[to_proto(OperatorRight(r)) for r in view.rights],  # type: ignore[misc]
        valid_from=timestamp(view.valid_from),
        valid_until=timestamp(view.valid_until),
        state=to_proto(view.state),  # type: ignore[arg-type]
        revoked_at=timestamp(view.revoked_at),
    )
    if view.document_digest is not None:
        message.authorization_document_digest.CopyFrom(digest_message(view.document_digest))
    return message


def credential_message(view: CredentialView) -> identity_pb2.ApiCredential:
    """An API credential (never its secret)."""
    return identity_pb2.ApiCredential(
        credential_id=view.credential_id,
        tenant_id=view.tenant_id,
        display_name=view.display_name,
        scopes=list(view.scopes),
        state=to_proto(CredentialState(view.state)),  # type: ignore[arg-type]
        created_at=timestamp(view.created_at),
        expires_at=timestamp(view.expires_at),
        rotated_at=timestamp(view.rotated_at),
        last_used_at=timestamp(view.last_used_at),
    )


def grant_message(view: GrantView) -> identity_pb2.SigningGrant:
    """A signing grant."""
    return identity_pb2.SigningGrant(
        grant_id=view.grant_id,
        token=view.token,
        tenant_id=view.tenant_id,
        account_id=view.account_id,
        key_id=view.key_id,
        digests=[digest_message(d) for d in view.digests],
        issued_at=timestamp(view.issued_at),
        expires_at=timestamp(view.expires_at),
        auto_sign_authorization_id=view.auto_sign_authorization_id,
    )


def auto_sign_message(view: AutoSignView) -> identity_pb2.AutoSignAuthorization:
    """An automatic-signing authorisation."""
    return identity_pb2.AutoSignAuthorization(
        authorization_id=view.authorization_id,
        tenant_id=view.tenant_id,
        account_id=view.account_id,
        key_id=view.key_id,
        business_scope=view.business_scope,
        valid_from=timestamp(view.valid_from),
        valid_until=timestamp(view.valid_until),
        max_uses=view.max_uses,
        uses=view.uses,
        state=to_proto(view.state),  # type: ignore[arg-type]
        willingness_grant_id=view.willingness_grant_id,
        created_at=timestamp(view.created_at),
        revoked_at=timestamp(view.revoked_at),
    )


def outcomes(values: list[CategoryOutcome]) -> list[identity_pb2.CategoryOutcome]:
    """Category outcomes."""
    return [outcome_message(o) for o in values]


def cancellation_message(view: CancellationView) -> identity_pb2.CancellationStatus:
    """A cancellation's status."""
    return identity_pb2.CancellationStatus(
        request_id=view.request_id,
        account_id=view.account_id,
        state=to_proto(view.state),  # type: ignore[arg-type]
        requested_at=timestamp(view.requested_at),
        due_by=timestamp(view.due_by),
        completed_at=timestamp(view.completed_at),
        blocking_reasons=list(view.blocking_reasons),
        retained=outcomes(list(view.retained)),
    )

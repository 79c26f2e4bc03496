"""Identity's events: payloads built from domain values, written through the outbox.

Every payload carries personal data only masked or as keyed hashes, never codes or
secrets (the rules in events.proto). :func:`emit` adds the envelope to the outbox in the
caller's transaction, so the event commits with the state change or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from google.protobuf.message import Message
from sqlalchemy.orm import Session

from signet.common.events import IDENTITY_TOPIC, new_envelope
from signet.common.outbox import Outbox
from signet.common.v1 import common_pb2
from signet.events.v1 import events_pb2
from signet.identity.domain import Actor, CategoryOutcome, Digest
from signet.identity.models import (
    AccountType,
    DataCategory,
    FailureReason,
    OperatorRight,
    VerificationMethod,
    WillingnessMethod,
)
from signet.identity.v1 import identity_pb2

SOURCE = "identity"


def enum_number(prefix: str, value: str, wrapper: object) -> int:
    """The proto enum number of a domain enum value, by name (``PREFIX_VALUE``)."""
    return int(wrapper.Value(prefix + value.upper()))  # type: ignore[attr-defined]


def digest_message(digest: Digest) -> common_pb2.Digest:
    """A domain digest as the common proto message."""
    return common_pb2.Digest(
        algorithm=enum_number("HASH_ALGORITHM_", digest.algorithm, common_pb2.HashAlgorithm),  # type: ignore[arg-type]
        value=digest.value,
    )


def actor_message(actor: Actor | None) -> common_pb2.ActorContext | None:
    """The actor as the common proto message."""
    if actor is None:
        return None
    return common_pb2.ActorContext(
        tenant_id=actor.tenant_id,
        account_id=actor.account_id,
        operator_account_id=actor.operator_account_id,
        operator_authorization_id=actor.operator_authorization_id,
        client_ip=actor.client_ip,
        device_fingerprint_hash=actor.device_fingerprint_hash,
        client=actor.client,
        service=actor.service,
    )


def outcome_message(outcome: CategoryOutcome) -> identity_pb2.CategoryOutcome:
    """A category outcome as the identity proto message."""
    message = identity_pb2.CategoryOutcome(
        category=enum_number(  # type: ignore[arg-type]
            "PERSONAL_DATA_CATEGORY_", outcome.category.value, identity_pb2.PersonalDataCategory
        ),
        disposition=enum_number(  # type: ignore[arg-type]
            "DATA_DISPOSITION_", outcome.disposition, identity_pb2.DataDisposition
        ),
    )
    if outcome.retained_until is not None:
        message.retained_until.FromDatetime(outcome.retained_until)
    return message


def emit(
    session: Session,
    payload: Message,
    *,
    subject: str,
    tenant: str,
    actor: Actor | None = None,
    transaction_id: str = "",
    digests: Iterable[Digest] = (),
) -> None:
    """Write one identity event into the outbox of ``session``'s transaction."""
    envelope = new_envelope(payload, source=SOURCE, subject=subject, tenant=tenant)
    actor_pb = actor_message(actor)
    if actor_pb is not None:
        envelope.actor.CopyFrom(actor_pb)
    envelope.transaction_id = transaction_id
    envelope.digests.extend(digest_message(d) for d in digests)
    Outbox.add(session, IDENTITY_TOPIC, envelope)


def _ts(value: datetime | None, target: object) -> None:
    if value is not None:
        target.FromDatetime(value)  # type: ignore[attr-defined]


def tenant_created(tenant_id: str, name: str) -> Message:
    """TenantCreated."""
    return events_pb2.TenantCreated(tenant_id=tenant_id, tenant_name=name)


def account_registered(
    account_id: str, kind: AccountType, masked_name: str, masked_phone: str, masked_email: str
) -> Message:
    """AccountRegistered (masked contact data only)."""
    return events_pb2.AccountRegistered(
        account_id=account_id,
        account_type=enum_number("ACCOUNT_TYPE_", kind.value, identity_pb2.AccountType),  # type: ignore[arg-type]
        masked_display_name=masked_name,
        masked_phone=masked_phone,
        masked_email=masked_email,
    )


def account_updated(account_id: str, fields: Sequence[str], reverify: bool) -> Message:
    """AccountUpdated (field names, never values)."""
    return events_pb2.AccountUpdated(
        account_id=account_id, changed_fields=list(fields), reverification_required=reverify
    )


def _method(value: VerificationMethod) -> int:
    return enum_number("VERIFICATION_METHOD_", value.value, identity_pb2.VerificationMethod)


def _reason(value: FailureReason) -> int:
    return enum_number(
        "VERIFICATION_FAILURE_REASON_", value.value, identity_pb2.VerificationFailureReason
    )


def _wmethod(value: WillingnessMethod) -> int:
    return enum_number("WILLINGNESS_METHOD_", value.value, identity_pb2.WillingnessMethod)


def real_name_verified(
    account_id: str,
    verification_id: str,
    method: VerificationMethod,
    provider: str,
    reference: str,
    verified_at: datetime,
    valid_until: datetime,
    subject_hash: bytes,
) -> Message:
    """RealNameVerified."""
    message = events_pb2.RealNameVerified(
        account_id=account_id,
        verification_id=verification_id,
        method=_method(method),  # type: ignore[arg-type]
        provider=provider,
        provider_reference=reference,
        subject_identifier_hash=subject_hash,
    )
    _ts(verified_at, message.verified_at)
    _ts(valid_until, message.valid_until)
    return message


def real_name_failed(
    account_id: str,
    verification_id: str,
    method: VerificationMethod,
    reason: FailureReason,
    attempts_remaining: int,
    locked: bool,
) -> Message:
    """RealNameFailed."""
    return events_pb2.RealNameFailed(
        account_id=account_id,
        verification_id=verification_id,
        method=_method(method),  # type: ignore[arg-type]
        reason=_reason(reason),  # type: ignore[arg-type]
        attempts_remaining=attempts_remaining,
        locked=locked,
    )


def willingness_confirmed(
    account_id: str,
    willingness_id: str,
    method: WillingnessMethod,
    key_id: str,
    digests: Sequence[Digest],
    grant_id: str,
    grant_expires_at: datetime,
    operator_account_id: str,
) -> Message:
    """WillingnessConfirmed."""
    message = events_pb2.WillingnessConfirmed(
        account_id=account_id,
        willingness_id=willingness_id,
        method=_wmethod(method),  # type: ignore[arg-type]
        key_id=key_id,
        digests=[digest_message(d) for d in digests],
        grant_id=grant_id,
        operator_account_id=operator_account_id,
    )
    _ts(grant_expires_at, message.grant_expires_at)
    return message


def willingness_failed(
    account_id: str,
    willingness_id: str,
    method: WillingnessMethod,
    reason: FailureReason,
    attempts_remaining: int,
    locked: bool,
) -> Message:
    """WillingnessFailed."""
    return events_pb2.WillingnessFailed(
        account_id=account_id,
        willingness_id=willingness_id,
        method=_wmethod(method),  # type: ignore[arg-type]
        reason=_reason(reason),  # type: ignore[arg-type]
        attempts_remaining=attempts_remaining,
        locked=locked,
    )


def _rights(rights: Sequence[str]) -> list[int]:
    return [
        enum_number("OPERATOR_RIGHT_", OperatorRight(r).value, identity_pb2.OperatorRight)
        for r in rights
    ]


def operator_granted(
    authorization_id: str,
    enterprise_id: str,
    operator_id: str,
    rights: Sequence[str],
    valid_from: datetime,
    valid_until: datetime,
) -> Message:
    """OperatorAuthorizationGranted."""
    message = events_pb2.OperatorAuthorizationGranted(
        authorization_id=authorization_id,
        enterprise_account_id=enterprise_id,
        operator_account_id=operator_id,
        rights=_rights(rights),  # type: ignore[arg-type]
    )
    _ts(valid_from, message.valid_from)
    _ts(valid_until, message.valid_until)
    return message


def operator_revoked(authorization_id: str, enterprise_id: str, operator_id: str) -> Message:
    """OperatorAuthorizationRevoked."""
    return events_pb2.OperatorAuthorizationRevoked(
        authorization_id=authorization_id,
        enterprise_account_id=enterprise_id,
        operator_account_id=operator_id,
    )


def credential_created(
    credential_id: str, scopes: Sequence[str], expires_at: datetime | None
) -> Message:
    """ApiCredentialCreated."""
    message = events_pb2.ApiCredentialCreated(credential_id=credential_id, scopes=list(scopes))
    _ts(expires_at, message.expires_at)
    return message


def credential_rotated(credential_id: str, previous_valid_until: datetime) -> Message:
    """ApiCredentialRotated."""
    message = events_pb2.ApiCredentialRotated(credential_id=credential_id)
    _ts(previous_valid_until, message.previous_secret_valid_until)
    return message


def credential_revoked(credential_id: str) -> Message:
    """ApiCredentialRevoked."""
    return events_pb2.ApiCredentialRevoked(credential_id=credential_id)


def auto_sign_authorized(
    authorization_id: str,
    account_id: str,
    key_id: str,
    scope: str,
    valid_from: datetime,
    valid_until: datetime,
    max_uses: int,
    confirmation_grant_id: str,
    text_digest: Digest,
) -> Message:
    """AutoSignAuthorized."""
    message = events_pb2.AutoSignAuthorized(
        authorization_id=authorization_id,
        account_id=account_id,
        key_id=key_id,
        business_scope=scope,
        max_uses=max_uses,
        confirmation_grant_id=confirmation_grant_id,
        authorization_text_digest=digest_message(text_digest),
    )
    _ts(valid_from, message.valid_from)
    _ts(valid_until, message.valid_until)
    return message


def auto_sign_revoked(authorization_id: str, account_id: str, revoked_by: str) -> Message:
    """AutoSignRevoked."""
    return events_pb2.AutoSignRevoked(
        authorization_id=authorization_id, account_id=account_id, revoked_by=revoked_by
    )


def auto_sign_grant_issued(
    authorization_id: str,
    account_id: str,
    key_id: str,
    grant_id: str,
    digests: Sequence[Digest],
    uses: int,
    uses_remaining: int,
) -> Message:
    """AutoSignGrantIssued."""
    return events_pb2.AutoSignGrantIssued(
        authorization_id=authorization_id,
        account_id=account_id,
        key_id=key_id,
        grant_id=grant_id,
        digests=[digest_message(d) for d in digests],
        uses=uses,
        uses_remaining=uses_remaining,
    )


def data_exported(account_id: str, request_id: str) -> Message:
    """PersonalDataExported."""
    return events_pb2.PersonalDataExported(account_id=account_id, request_id=request_id)


def data_corrected(
    account_id: str, request_id: str, fields: Sequence[str], reverify: bool
) -> Message:
    """PersonalDataCorrected."""
    return events_pb2.PersonalDataCorrected(
        account_id=account_id,
        request_id=request_id,
        changed_fields=list(fields),
        reverification_required=reverify,
    )


def _categories(categories: Sequence[DataCategory]) -> list[int]:
    return [
        enum_number("PERSONAL_DATA_CATEGORY_", c.value, identity_pb2.PersonalDataCategory)
        for c in categories
    ]


def deletion_requested(
    account_id: str, request_id: str, categories: Sequence[DataCategory]
) -> Message:
    """DeletionRequested."""
    return events_pb2.DeletionRequested(
        account_id=account_id,
        request_id=request_id,
        categories=_categories(categories),  # type: ignore[arg-type]
    )


def deletion_completed(
    account_id: str, request_id: str, outcomes: Sequence[CategoryOutcome]
) -> Message:
    """DeletionCompleted."""
    return events_pb2.DeletionCompleted(
        account_id=account_id,
        request_id=request_id,
        outcomes=[outcome_message(o) for o in outcomes],
    )


def data_purged(account_id: str, categories: Sequence[DataCategory]) -> Message:
    """PersonalDataPurged."""
    return events_pb2.PersonalDataPurged(
        account_id=account_id,
        categories=_categories(categories),  # type: ignore[arg-type]
    )


def cancellation_requested(account_id: str, request_id: str, due_by: datetime) -> Message:
    """AccountCancellationRequested."""
    message = events_pb2.AccountCancellationRequested(account_id=account_id, request_id=request_id)
    _ts(due_by, message.due_by)
    return message


def account_cancelled(
    account_id: str, request_id: str, retained: Sequence[CategoryOutcome]
) -> Message:
    """AccountCancelled."""
    return events_pb2.AccountCancelled(
        account_id=account_id,
        request_id=request_id,
        retained=[outcome_message(o) for o in retained],
    )

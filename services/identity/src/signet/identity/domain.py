"""Identity's domain values: inputs, views and policy numbers, free of protobuf and SQL."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from signet.identity.models import (
    AccountState,
    AccountType,
    AuthorizationState,
    CancellationState,
    DataCategory,
    FailureReason,
    VerificationMethod,
    VerificationStatus,
    WillingnessMethod,
    WillingnessStatus,
)

DIGEST_SIZES = {"sha256": 32, "sha384": 48, "sha512": 64, "sm3": 32}
"""Digest length in bytes per hash algorithm a willingness check may name."""


@dataclass(frozen=True)
class Policy:
    """The numbers identity enforces (from settings)."""

    code_ttl: timedelta = timedelta(minutes=5)
    max_code_attempts: int = 5
    verification_session_ttl: timedelta = timedelta(minutes=15)
    verification_validity: timedelta = timedelta(days=730)
    grant_ttl: timedelta = timedelta(minutes=5)
    rate_window: timedelta = timedelta(minutes=10)
    max_checks_per_account: int = 5
    max_codes_per_destination: int = 10
    max_verifications_per_account: int = 10
    minor_age: int = 18
    retention_years: int = 5
    cancellation_working_days: int = 15
    cancellation_cooling_off: timedelta = timedelta(0)
    rotation_grace: timedelta = timedelta(hours=24)
    max_digests: int = 1000


@dataclass(frozen=True)
class Actor:
    """Who caused a change, from where (as events record it; no personal data in clear)."""

    tenant_id: str = ""
    account_id: str = ""
    operator_account_id: str = ""
    operator_authorization_id: str = ""
    client_ip: str = ""
    device_fingerprint_hash: bytes = b""
    client: str = ""
    service: str = ""


@dataclass(frozen=True)
class Digest:
    """A document digest a grant names: hash algorithm name and value."""

    algorithm: str
    value: bytes


@dataclass(frozen=True)
class PersonData:
    """Registration data of a person."""

    name: str
    phone: str = ""
    email: str = ""
    guardian_account_id: str = ""


@dataclass(frozen=True)
class EnterpriseData:
    """Registration data of an enterprise."""

    enterprise_name: str
    credit_code: str = ""
    legal_representative_name: str = ""
    contact_phone: str = ""
    contact_email: str = ""


@dataclass(frozen=True)
class VerificationSummaryView:
    """An account's current real-name verification."""

    verification_id: str
    method: VerificationMethod
    status: VerificationStatus
    verified_at: datetime | None
    valid_until: datetime | None


@dataclass(frozen=True)
class AccountView:
    """An account as responses show it: names in clear, identifiers and contacts masked."""

    account_id: str
    tenant_id: str
    type: AccountType
    state: AccountState
    name: str
    masked_id_number: str
    masked_phone: str
    masked_email: str
    guardian_account_id: str
    enterprise_name: str
    legal_representative_name: str
    subject_identifier_hash: bytes
    verification: VerificationSummaryView | None
    created_at: datetime
    updated_at: datetime
    locale: str


@dataclass(frozen=True)
class ContactDetails:
    """An account's phone and e-mail in clear, for delivering a message."""

    account_id: str
    phone: str
    email: str
    locale: str


@dataclass(frozen=True)
class VerificationInput:
    """What a caller submits to start a verification (fields unused by a method are empty)."""

    method: VerificationMethod
    name: str = ""
    id_number: str = ""
    phone: str = ""
    card_number: str = ""
    return_url: str = ""
    enterprise_name: str = ""
    credit_code: str = ""
    legal_representative_name: str = ""
    legal_representative_id_number: str = ""
    operator_account_id: str = ""
    operator_authorization_id: str = ""


@dataclass(frozen=True)
class VerificationProof:
    """What a caller submits to complete a verification."""

    one_time_code: str = ""
    face_session_token: str = ""
    legal_representative_code: str = ""
    transfer_amount_fen: int = 0


@dataclass(frozen=True)
class StartedVerification:
    """The outcome of starting a verification."""

    verification_id: str
    method: VerificationMethod
    status: VerificationStatus
    expires_at: datetime
    masked_code_destination: str = ""
    face_session_url: str = ""
    failure_reason: FailureReason | None = None


@dataclass(frozen=True)
class CompletedVerification:
    """The outcome of a completion attempt."""

    verification_id: str
    status: VerificationStatus
    failure_reason: FailureReason | None
    attempts_remaining: int
    account: AccountView
    provider: str
    provider_reference: str


@dataclass(frozen=True)
class StartedWillingness:
    """A willingness check waiting for its code or face result."""

    willingness_id: str
    method: WillingnessMethod
    expires_at: datetime
    masked_code_destination: str
    face_session_url: str
    attempts_remaining: int


@dataclass(frozen=True)
class GrantView:
    """A signing grant: the token for the signer and what it names."""

    grant_id: str
    token: str
    tenant_id: str
    account_id: str
    key_id: str
    digests: tuple[Digest, ...]
    issued_at: datetime
    expires_at: datetime
    auto_sign_authorization_id: str = ""


@dataclass(frozen=True)
class ConfirmedWillingness:
    """The result of a confirmation: the status and, when confirmed, the grant."""

    status: WillingnessStatus
    grant: GrantView | None
    attempts_remaining: int


@dataclass(frozen=True)
class GrantKeyView:
    """A grant verification public key and its validity window."""

    kid: str
    spki_der: bytes
    not_before: datetime
    not_after: datetime | None


@dataclass(frozen=True)
class CredentialView:
    """An API credential (never its secret)."""

    credential_id: str
    tenant_id: str
    display_name: str
    scopes: tuple[str, ...]
    state: str
    created_at: datetime
    expires_at: datetime | None
    rotated_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class AuthenticatedCredential:
    """Who a valid bearer token belongs to."""

    credential_id: str
    tenant_id: str
    scopes: tuple[str, ...]
    expires_at: datetime | None


@dataclass(frozen=True)
class OperatorAuthorizationView:
    """That an operator may act for an enterprise."""

    authorization_id: str
    enterprise_account_id: str
    operator_account_id: str
    rights: tuple[str, ...]
    valid_from: datetime
    valid_until: datetime
    state: AuthorizationState
    document_digest: Digest | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class AutoSignView:
    """A standing authorisation for unattended signing."""

    authorization_id: str
    tenant_id: str
    account_id: str
    key_id: str
    business_scope: str
    valid_from: datetime
    valid_until: datetime
    max_uses: int
    uses: int
    state: AuthorizationState
    willingness_grant_id: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class CategoryOutcome:
    """What a request did with one category of personal data."""

    category: DataCategory
    disposition: str
    retained_until: datetime | None = None


@dataclass(frozen=True)
class CancellationView:
    """Where an account cancellation stands."""

    request_id: str
    account_id: str
    state: CancellationState
    requested_at: datetime
    due_by: datetime
    completed_at: datetime | None
    blocking_reasons: tuple[str, ...] = ()
    retained: tuple[CategoryOutcome, ...] = field(default_factory=tuple)


DELETED = "deleted"
RETAINED_BY_LAW = "retained_by_law"
AWAITING_JOINT_INSTRUCTION = "awaiting_joint_instruction"
NONE_HELD = "none_held"

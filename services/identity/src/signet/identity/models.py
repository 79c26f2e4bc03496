"""Identity tables: tenants, accounts, credentials, verifications, willingness, privacy.

Personal data is never stored in clear: it lives in ``vault_entries`` as AES-GCM ciphertext
under a per-account data key that an HSM key wraps (see :mod:`signet.identity.vault`);
look-ups use keyed hashes and responses use the masked forms stored beside them.
One-time codes and API secrets are stored only as keyed or plain hashes.
"""

from __future__ import annotations

import enum
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, LargeBinary, MetaData, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from signet.common.db import NAMING_CONVENTION, UtcDateTime, str_enum, utcnow

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
"""Alembic scripts creating these tables (and the shared outbox tables)."""


class Base(DeclarativeBase):
    """Declarative base of identity's own tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class AccountType(enum.StrEnum):
    """A natural person or an enterprise (legal person)."""

    PERSON = "person"
    ENTERPRISE = "enterprise"


class AccountState(enum.StrEnum):
    """Where an account stands between registration and cancellation."""

    REGISTERED = "registered"
    VERIFIED = "verified"
    SUSPENDED = "suspended"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"


class VerificationMethod(enum.StrEnum):
    """How a real-name verification is done."""

    PERSON_ID_PHONE = "person_id_phone"
    BANK_CARD_FOUR_ELEMENTS = "bank_card_four_elements"
    FACE_MATCH = "face_match"
    ENTERPRISE = "enterprise"


class VerificationStatus(enum.StrEnum):
    """State of one real-name verification."""

    PENDING = "pending"
    VERIFIED = "verified"
    FAILED = "failed"
    LOCKED = "locked"
    EXPIRED = "expired"


class FailureReason(enum.StrEnum):
    """Why a verification or willingness check failed (client-safe)."""

    INVALID_ID_NUMBER = "invalid_id_number"
    INVALID_CREDIT_CODE = "invalid_credit_code"
    CODE_MISMATCH = "code_mismatch"
    CODE_EXPIRED = "code_expired"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    ELEMENTS_MISMATCH = "elements_mismatch"
    FACE_MISMATCH = "face_mismatch"
    LIVENESS_FAILED = "liveness_failed"
    OPERATOR_NOT_AUTHORIZED = "operator_not_authorized"
    MINOR_WITHOUT_GUARDIAN = "minor_without_guardian"
    PROVIDER_ERROR = "provider_error"


class WillingnessMethod(enum.StrEnum):
    """How a signer confirms their will to sign."""

    SMS_CODE = "sms_code"
    EMAIL_CODE = "email_code"
    FACE_MATCH = "face_match"


class WillingnessStatus(enum.StrEnum):
    """State of one willingness check."""

    PENDING = "pending"
    CONFIRMED = "confirmed"
    LOCKED = "locked"
    EXPIRED = "expired"


class OperatorRight(enum.StrEnum):
    """What an operator may do for an enterprise."""

    SIGN = "sign"
    MANAGE_CERTIFICATES = "manage_certificates"
    MANAGE_ACCOUNT = "manage_account"
    MANAGE_AUTO_SIGN = "manage_auto_sign"


class AuthorizationState(enum.StrEnum):
    """State of an operator or automatic-signing authorisation."""

    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"
    EXHAUSTED = "exhausted"


class CredentialState(enum.StrEnum):
    """State of an API credential."""

    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


class DataCategory(enum.StrEnum):
    """Categories of personal data, for export, deletion and retention."""

    IDENTITY = "identity"
    CONTACT = "contact"
    BANK_CARD = "bank_card"
    VERIFICATION_RECORDS = "verification_records"
    WILLINGNESS_RECORDS = "willingness_records"
    SIGNATURE_RECORDS = "signature_records"
    NOTIFICATIONS = "notifications"
    ACCESS_LOGS = "access_logs"


class DataRequestKind(enum.StrEnum):
    """A data-subject request."""

    EXPORT = "export"
    CORRECT = "correct"
    DELETE = "delete"
    CANCEL = "cancel"


class CancellationState(enum.StrEnum):
    """Steps of an account cancellation."""

    REQUESTED = "requested"
    PROCESSING = "processing"
    COMPLETED = "completed"
    REJECTED = "rejected"


class Tenant(Base):
    """A business customer of the platform; accounts and keys belong to one tenant."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    data_region: Mapped[str] = mapped_column(String(32), default="cn")
    request_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Account(Base):
    """A person or enterprise; the id is stable while login handles may change hands.

    ``id_number_lookup`` is the keyed hash (hex) of the verified ID number or credit code;
    ``phone_lookup``/``email_lookup`` those of the contact data. Clear values are in the vault.
    """

    __tablename__ = "accounts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "external_ref"),
        UniqueConstraint("tenant_id", "request_id", name="uq_accounts_request"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    external_ref: Mapped[str | None] = mapped_column(String(128))
    request_id: Mapped[str | None] = mapped_column(String(128))
    type: Mapped[AccountType] = mapped_column(str_enum(AccountType))
    state: Mapped[AccountState] = mapped_column(
        str_enum(AccountState), default=AccountState.REGISTERED
    )
    display_name_masked: Mapped[str] = mapped_column(String(200))
    id_number_lookup: Mapped[str | None] = mapped_column(String(64), index=True)
    phone_lookup: Mapped[str | None] = mapped_column(String(64), index=True)
    email_lookup: Mapped[str | None] = mapped_column(String(64), index=True)
    masked_id_number: Mapped[str] = mapped_column(String(64), default="")
    masked_phone: Mapped[str] = mapped_column(String(64), default="")
    masked_email: Mapped[str] = mapped_column(String(320), default="")
    locale: Mapped[str] = mapped_column(String(35), default="")
    guardian_account_id: Mapped[str | None] = mapped_column(String(64))
    verification_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
    cancelled_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class DataKey(Base):
    """A data-encryption key, stored only wrapped by the HSM key named ``kek_label``.

    ``account_id`` is set for per-account keys (destroyed when nothing of the account is
    left: crypto-shredding); platform keys (the look-up hash key) have ``purpose`` set.
    """

    __tablename__ = "data_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    purpose: Mapped[str] = mapped_column(String(32))
    kek_label: Mapped[str] = mapped_column(String(128))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class VaultEntry(Base):
    """One encrypted personal-data value of an account, owned by a record (``owner_ref``).

    ``owner_ref`` is ``account`` for the profile, ``verification:<id>`` for the elements a
    real-name check saw, ``request:<id>`` for a request's free text. ``retained_until`` set
    means the law keeps the value until then; unset, the user may delete it at any time.
    """

    __tablename__ = "vault_entries"
    __table_args__ = (UniqueConstraint("account_id", "owner_ref", "field"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(64), index=True)
    owner_ref: Mapped[str] = mapped_column(String(100))
    field: Mapped[str] = mapped_column(String(40))
    category: Mapped[DataCategory] = mapped_column(str_enum(DataCategory))
    data_key_id: Mapped[str] = mapped_column(ForeignKey("data_keys.id"))
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    retained_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class OperatorAuthorizationRecord(Base):
    """That an operator account may act for an enterprise account (rights, period)."""

    __tablename__ = "operator_authorizations"
    __table_args__ = (UniqueConstraint("tenant_id", "request_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    enterprise_account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    operator_account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    rights: Mapped[list[Any]] = mapped_column(JSON)
    valid_from: Mapped[datetime] = mapped_column(UtcDateTime())
    valid_until: Mapped[datetime] = mapped_column(UtcDateTime())
    state: Mapped[AuthorizationState] = mapped_column(str_enum(AuthorizationState))
    document_digest: Mapped[list[Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class ApiCredentialRecord(Base):
    """A tenant's API credential; its secrets are in ``credential_secrets``, hashed."""

    __tablename__ = "api_credentials"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    display_name: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[list[Any]] = mapped_column(JSON)
    state: Mapped[CredentialState] = mapped_column(str_enum(CredentialState))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    rotated_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class CredentialSecret(Base):
    """One secret of a credential, as a SHA-256 hash; ``valid_until`` set after a rotation."""

    __tablename__ = "credential_secrets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    credential_id: Mapped[str] = mapped_column(ForeignKey("api_credentials.id"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    valid_until: Mapped[datetime | None] = mapped_column(UtcDateTime())


class VerificationRecord(Base):
    """One real-name verification: method, outcome, provider reference, time; never images.

    The elements the check saw (name, ID number, card, phone) are vault entries owned by
    ``verification:<id>``, kept as long as the record (at least 5 years by law).
    """

    __tablename__ = "verifications"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    method: Mapped[VerificationMethod] = mapped_column(str_enum(VerificationMethod))
    status: Mapped[VerificationStatus] = mapped_column(str_enum(VerificationStatus))
    failure_reason: Mapped[FailureReason | None] = mapped_column(str_enum(FailureReason))
    code_hash: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    masked_destination: Mapped[str] = mapped_column(String(64), default="")
    phone_lookup: Mapped[str | None] = mapped_column(String(64), index=True)
    subject_lookup: Mapped[str | None] = mapped_column(String(64))
    masked_id_number: Mapped[str] = mapped_column(String(64), default="")
    provider: Mapped[str] = mapped_column(String(64), default="")
    provider_reference: Mapped[str] = mapped_column(String(200), default="")
    face_session_token: Mapped[str | None] = mapped_column(String(200))
    operator_account_id: Mapped[str | None] = mapped_column(String(64))
    operator_authorization_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    valid_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    retained_until: Mapped[datetime | None] = mapped_column(UtcDateTime())


class WillingnessCheck(Base):
    """One willingness check bound to (account, key, digests); the code only as a hash."""

    __tablename__ = "willingness_checks"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    operator_account_id: Mapped[str | None] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(128))
    # [[hash algorithm, hex value], ...]
    digests: Mapped[list[Any]] = mapped_column(JSON)
    method: Mapped[WillingnessMethod] = mapped_column(str_enum(WillingnessMethod))
    status: Mapped[WillingnessStatus] = mapped_column(str_enum(WillingnessStatus))
    code_hash: Mapped[str | None] = mapped_column(String(64))
    destination_lookup: Mapped[str | None] = mapped_column(String(64), index=True)
    masked_destination: Mapped[str] = mapped_column(String(64), default="")
    face_session_token: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    transaction_id: Mapped[str] = mapped_column(String(128), default="")
    grant_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    confirmed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    retained_until: Mapped[datetime | None] = mapped_column(UtcDateTime())


class GrantRecord(Base):
    """A signing grant identity issued (the record; the token itself is not kept)."""

    __tablename__ = "grants"
    __table_args__ = (UniqueConstraint("auto_sign_authorization_id", "request_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[str] = mapped_column(String(64), index=True)
    key_id: Mapped[str] = mapped_column(String(128))
    digests: Mapped[list[Any]] = mapped_column(JSON)
    willingness_id: Mapped[str | None] = mapped_column(String(64))
    auto_sign_authorization_id: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    transaction_id: Mapped[str] = mapped_column(String(128), default="")
    # Kept for an idempotent retry of IssueAutoSignGrant, dropped once expired.
    token: Mapped[str | None] = mapped_column(String(4096))
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    consumed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    retained_until: Mapped[datetime | None] = mapped_column(UtcDateTime())


class AutoSignAuthorizationRecord(Base):
    """A standing authorisation for unattended signing (scope, period, maximum uses)."""

    __tablename__ = "auto_sign_authorizations"
    __table_args__ = (UniqueConstraint("tenant_id", "request_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    operator_account_id: Mapped[str | None] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(128))
    business_scope: Mapped[str] = mapped_column(String(128))
    valid_from: Mapped[datetime] = mapped_column(UtcDateTime())
    valid_until: Mapped[datetime] = mapped_column(UtcDateTime())
    max_uses: Mapped[int] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[AuthorizationState] = mapped_column(str_enum(AuthorizationState))
    willingness_grant_id: Mapped[str] = mapped_column(String(64))
    text_digest: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    retained_until: Mapped[datetime | None] = mapped_column(UtcDateTime())


class DataRequest(Base):
    """A data-subject request (export, correct, delete, cancel) and its recorded outcome."""

    __tablename__ = "data_requests"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64), index=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[DataRequestKind] = mapped_column(str_enum(DataRequestKind))
    client_request_id: Mapped[str | None] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(32))
    # What was done: per category disposition and retention, changed fields, blockers.
    outcome: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    due_by: Mapped[datetime | None] = mapped_column(UtcDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class GrantKey(Base):
    """Identity's grant-signing key: a system key in the signer (the JWS kid is its id)."""

    __tablename__ = "grant_keys"

    kid: Mapped[str] = mapped_column(String(128), primary_key=True)
    spki_der: Mapped[bytes] = mapped_column(LargeBinary)
    not_before: Mapped[datetime] = mapped_column(UtcDateTime())
    not_after: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)

"""Identity's rules: accounts, credentials, real-name verification, willingness, grants, privacy.

Who someone is (real-name verification through local checks and provider adapters), that
they meant to sign (willingness checks that yield single-use signing grants), and what
happens to the personal data those checks need (vault, export, correction, deletion,
cancellation with legal retention). Every state change writes its event through the
outbox in the same transaction. Nothing here imports gRPC or protobuf: the servicer
converts, the ports (:class:`CodeSender`, :class:`GrantKeyBackend`, the providers, the
vault's key wrapper) are implemented in :mod:`signet.identity.backends`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from sqlalchemy.orm import Session

from signet.common.auth import Principal
from signet.common.db import Database
from signet.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    ServiceError,
    Unauthenticated,
    Unavailable,
)
from signet.common.grants import GrantClaims, encode_grant, verify_grant
from signet.common.masking import mask_email, mask_id_number, mask_middle, mask_name, mask_phone
from signet.identity import checks, events
from signet.identity.domain import (
    AWAITING_JOINT_INSTRUCTION,
    DELETED,
    DIGEST_SIZES,
    NONE_HELD,
    RETAINED_BY_LAW,
    AccountView,
    Actor,
    AuthenticatedCredential,
    AutoSignView,
    CancellationView,
    CategoryOutcome,
    CompletedVerification,
    ConfirmedWillingness,
    ContactDetails,
    CredentialView,
    Digest,
    EnterpriseData,
    GrantKeyView,
    GrantView,
    OperatorAuthorizationView,
    PersonData,
    Policy,
    StartedVerification,
    StartedWillingness,
    VerificationInput,
    VerificationProof,
    VerificationSummaryView,
)
from signet.identity.models import (
    Account,
    AccountState,
    AccountType,
    ApiCredentialRecord,
    AuthorizationState,
    AutoSignAuthorizationRecord,
    CancellationState,
    CredentialSecret,
    CredentialState,
    DataCategory,
    DataRequest,
    DataRequestKind,
    FailureReason,
    GrantKey,
    GrantRecord,
    OperatorAuthorizationRecord,
    OperatorRight,
    Tenant,
    VerificationMethod,
    VerificationRecord,
    VerificationStatus,
    WillingnessCheck,
    WillingnessMethod,
    WillingnessStatus,
)
from signet.identity.providers import Providers, ProviderUnavailable
from signet.identity.repository import (
    AccountRepository,
    AutoSignRepository,
    CredentialRepository,
    DataRequestRepository,
    GrantKeyRepository,
    GrantRepository,
    OperatorAuthorizationRepository,
    TenantRepository,
    VerificationRepository,
    WillingnessRepository,
    keep_records_until,
    retained_until_of_field,
)
from signet.identity.vault import ACCOUNT_OWNER, PersonalDataVault

_log = logging.getLogger("signet.identity.service")

GRANT_KEY_REQUEST_ID = "identity-grant-key-v1"
NOTIFY_SERVICE = "notify"
_MAX_ID = 64
_MAX_TEXT = 200
_IDENTITY_FIELDS = frozenset(
    {
        "name",
        "id_number",
        "enterprise_name",
        "credit_code",
        "legal_representative_name",
    }
)
_CONTACT_FIELDS = frozenset({"phone", "email"})
_DISPLAY_FIELDS = frozenset({"name", "enterprise_name", "legal_representative_name"})


class CodeSender(Protocol):
    """Delivers one-time codes (implemented over notify's RPC)."""

    def send_code(
        self,
        *,
        tenant_id: str,
        channel: str,
        destination: str,
        code: str,
        template_id: str,
        expires_at: datetime,
        idempotency_key: str,
        locale: str,
    ) -> None:
        """Send ``code`` by ``channel`` ("sms" or "email"); Unavailable when it cannot."""
        ...


class GrantKeyBackend(Protocol):
    """Identity's grant-signing key in the HSM (implemented over the signer's RPC)."""

    def create_key(self, request_id: str) -> tuple[str, bytes]:
        """Create the key (idempotent on ``request_id``); returns (key id, SPKI DER)."""
        ...

    def sign_digest(self, kid: str, digest: bytes) -> bytes:
        """DER ECDSA over a SHA-256 digest."""
        ...


@dataclass(frozen=True)
class _Failure:
    """A failed proof, recorded before the error is raised (so the attempt counts)."""

    error: ServiceError


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def _require_id(value: str, what: str) -> str:
    if not value:
        raise InvalidArgument(f"{what} is required")
    if len(value) > _MAX_ID:
        raise InvalidArgument(f"{what} must be at most {_MAX_ID} characters")
    return value


def _text(value: str, what: str, *, required: bool = False, limit: int = _MAX_TEXT) -> str:
    text = value.strip()
    if required and not text:
        raise InvalidArgument(f"{what} is required")
    if len(text) > limit:
        raise InvalidArgument(f"{what} must be at most {limit} characters")
    return text


def _request_id(value: str) -> str | None:
    if len(value) > 128:
        raise InvalidArgument("request_id must be at most 128 characters")
    return value or None


def _phone(value: str, what: str = "phone") -> str:
    phone = checks.normalise_phone(value)
    if phone is None:
        raise InvalidArgument(f"{what} must be a mainland mobile number (11 digits, may start +86)")
    return phone


def _email(value: str, what: str = "email") -> str:
    email = checks.normalise_email(value)
    if email is None:
        raise InvalidArgument(f"{what} is not a valid e-mail address")
    return email


def _digests_json(digests: Sequence[Digest]) -> list[Any]:
    return [[d.algorithm, d.value.hex()] for d in digests]


def _digests_from(raw: Sequence[Any]) -> tuple[Digest, ...]:
    return tuple(Digest(str(a), bytes.fromhex(str(v))) for a, v in raw)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class IdentityService:
    """The identity domain over a database, the vault, providers, notify and the signer."""

    def __init__(
        self,
        db: Database,
        vault: PersonalDataVault,
        providers: Providers,
        codes: CodeSender,
        grant_keys: GrantKeyBackend,
        *,
        policy: Policy | None = None,
        enforce_callers: bool = False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_commit: Callable[[], None] = lambda: None,
        code_generator: Callable[[], str] = checks.new_code,
    ) -> None:
        self._db = db
        self._vault = vault
        self._providers = providers
        self._codes = codes
        self._grant_keys = grant_keys
        self._policy = policy or Policy()
        self._enforce = enforce_callers
        self._clock = clock
        self._on_commit = on_commit
        self._new_code = code_generator
        self._kid = ""

    @property
    def policy(self) -> Policy:
        """The numbers this service enforces."""
        return self._policy

    # ---- who may call ----------------------------------------------------------------

    def _check_tenant(self, caller: Principal, tenant_id: str) -> None:
        if caller.kind == "service":
            return
        if caller.kind == "anonymous":
            if self._enforce:
                raise PermissionDenied("authentication is required")
            return
        if caller.tenant != tenant_id:
            # The same answer as for a missing record: other tenants' ids are not revealed.
            raise NotFound("not found in the caller's tenant")

    def _check_platform(self, caller: Principal) -> None:
        """Platform-level operations: services (or anyone when authentication is off)."""
        if caller.kind == "service" or (caller.kind == "anonymous" and not self._enforce):
            return
        raise PermissionDenied("only platform services may do this")

    def _account(self, session: Session, caller: Principal, account_id: str) -> Account:
        _require_id(account_id, "account_id")
        account = session.get(Account, account_id)
        if account is None:
            raise NotFound("account not found")
        try:
            self._check_tenant(caller, account.tenant_id)
        except NotFound:
            raise NotFound("account not found") from None
        return account

    def _commit(self) -> None:
        self._on_commit()

    # ---- tenants ---------------------------------------------------------------------

    def create_tenant(
        self, caller: Principal, name: str, data_region: str, request_id: str
    ) -> Tenant:
        """Create a tenant; a retry with the same request id returns the first one."""
        self._check_platform(caller)
        name = _text(name, "name", required=True)
        region = _text(data_region or "cn", "data_region", limit=32)
        rid = _request_id(request_id)
        if rid is not None:
            with self._db.session() as s:
                existing = TenantRepository(s).by_request_id(rid)
                if existing is not None:
                    return existing
        tenant = Tenant(
            id=_new_id("t"), name=name, data_region=region, request_id=rid, created_at=self._clock()
        )
        with self._db.session() as s:
            s.add(tenant)
            s.flush()
            events.emit(
                s, events.tenant_created(tenant.id, name), subject=tenant.id, tenant=tenant.id
            )
        self._commit()
        return tenant

    def get_tenant(self, caller: Principal, tenant_id: str) -> Tenant:
        """A tenant the caller may see."""
        _require_id(tenant_id, "tenant_id")
        with self._db.session() as s:
            tenant = s.get(Tenant, tenant_id)
            if tenant is None:
                raise NotFound("tenant not found")
            try:
                self._check_tenant(caller, tenant_id)
            except NotFound:
                raise NotFound("tenant not found") from None
            return tenant

    # ---- accounts --------------------------------------------------------------------

    def register_account(
        self,
        caller: Principal,
        tenant_id: str,
        person: PersonData | None,
        enterprise: EnterpriseData | None,
        locale: str,
        request_id: str,
    ) -> AccountView:
        """Register a person or enterprise (REGISTERED); idempotent on ``request_id``."""
        _require_id(tenant_id, "tenant_id")
        self._check_tenant(caller, tenant_id)
        if (person is None) == (enterprise is None):
            raise InvalidArgument("exactly one of person or enterprise is required")
        rid = _request_id(request_id)
        locale = _text(locale, "locale", limit=35)
        now = self._clock()
        with self._db.session() as s:
            if s.get(Tenant, tenant_id) is None:
                raise NotFound("tenant not found")
            if rid is not None:
                existing = AccountRepository(s).by_request_id(tenant_id, rid)
                if existing is not None:
                    return self._view(s, existing)
            account_id = _new_id("acct")
            values: dict[str, tuple[str, DataCategory]] = {}
            if person is not None:
                name = _text(person.name, "person.name", required=True)
                values["name"] = (name, DataCategory.IDENTITY)
                kind = AccountType.PERSON
                display = mask_name(name)
                phone_raw, email_raw = person.phone, person.email
                guardian = person.guardian_account_id or None
                if guardian is not None:
                    g = s.get(Account, guardian)
                    if g is None or g.tenant_id != tenant_id or g.type is not AccountType.PERSON:
                        raise InvalidArgument("guardian_account_id is not a person of this tenant")
            else:
                assert enterprise is not None
                name = _text(
                    enterprise.enterprise_name, "enterprise.enterprise_name", required=True
                )
                values["enterprise_name"] = (name, DataCategory.IDENTITY)
                legal = _text(enterprise.legal_representative_name, "legal_representative_name")
                if legal:
                    values["legal_representative_name"] = (legal, DataCategory.IDENTITY)
                kind = AccountType.ENTERPRISE
                display = mask_middle(name, 2, 4)
                phone_raw, email_raw = enterprise.contact_phone, enterprise.contact_email
                guardian = None
                if enterprise.credit_code:
                    code = checks.parse_credit_code(enterprise.credit_code)
                    if code is None:
                        raise InvalidArgument(
                            "credit_code is not a valid unified social credit code (GB 32100)"
                        )
                    values["credit_code"] = (code, DataCategory.IDENTITY)
            account = Account(
                id=account_id,
                tenant_id=tenant_id,
                request_id=rid,
                type=kind,
                state=AccountState.REGISTERED,
                display_name_masked=display,
                locale=locale,
                guardian_account_id=guardian,
                created_at=now,
                updated_at=now,
            )
            if phone_raw:
                phone = _phone(phone_raw)
                values["phone"] = (phone, DataCategory.CONTACT)
                account.phone_lookup = self._vault.lookup("phone", phone)
                account.masked_phone = mask_phone(phone)
            if email_raw:
                email = _email(email_raw)
                values["email"] = (email, DataCategory.CONTACT)
                account.email_lookup = self._vault.lookup("email", email)
                account.masked_email = mask_email(email)
            if "credit_code" in values:
                account.id_number_lookup = self._vault.lookup(
                    "credit_code", values["credit_code"][0]
                )
                account.masked_id_number = mask_id_number(values["credit_code"][0])
            s.add(account)
            s.flush()
            for field, (value, category) in values.items():
                self._vault.put(s, account_id, field, value, category)
            events.emit(
                s,
                events.account_registered(
                    account_id, kind, display, account.masked_phone, account.masked_email
                ),
                subject=account_id,
                tenant=tenant_id,
            )
            view = self._view(s, account)
        self._commit()
        return view

    def get_account(self, caller: Principal, account_id: str) -> AccountView:
        """An account with masked personal data and its verification summary."""
        with self._db.session() as s:
            account = self._account(s, caller, account_id)
            self._refresh_verification(s, account)
            return self._view(s, account)

    def get_contact_details(self, caller: Principal, account_id: str) -> ContactDetails:
        """Phone and e-mail in clear; only for the notify service."""
        if self._enforce and not (caller.kind == "service" and caller.subject == NOTIFY_SERVICE):
            raise PermissionDenied("only the notify service may read contact details")
        with self._db.session() as s:
            account = self._account(s, caller, account_id)
            data = self._vault.get_all(s, account.id)
            phone_key = "phone"
            return ContactDetails(
                account_id=account.id,
                phone=data.get(phone_key, ""),
                email=data.get("email", ""),
                locale=account.locale,
            )

    def update_account(
        self, caller: Principal, account_id: str, values: dict[str, str]
    ) -> tuple[AccountView, bool]:
        """Change contact or display data; identity data sends the account back to REGISTERED."""
        allowed = {
            "phone",
            "email",
            "locale",
            "name",
            "enterprise_name",
            "legal_representative_name",
        }
        unknown = set(values) - allowed
        if unknown:
            raise InvalidArgument(f"update_mask may name only: {', '.join(sorted(allowed))}")
        if not values:
            raise InvalidArgument("update_mask names no field")
        with self._db.session() as s:
            account = self._account(s, caller, account_id)
            changed, reverify = self._apply_changes(s, account, values)
            events.emit(
                s,
                events.account_updated(account.id, changed, reverify),
                subject=account.id,
                tenant=account.tenant_id,
            )
            view = self._view(s, account)
        self._commit()
        return view, reverify

    def _apply_changes(
        self, s: Session, account: Account, values: dict[str, str]
    ) -> tuple[list[str], bool]:
        """Validate and store changed fields; returns (changed field names, reverify)."""
        if account.state in (AccountState.CANCELLING, AccountState.CANCELLED):
            raise FailedPrecondition("the account is being cancelled")
        person = account.type is AccountType.PERSON
        current = self._vault.get_all(s, account.id)
        changed: list[str] = []
        reverify = False
        for field in sorted(values):
            raw = values[field]
            if field in ("name", "id_number") and not person:
                raise InvalidArgument(f"{field} applies to person accounts")
            if field in ("enterprise_name", "credit_code", "legal_representative_name") and person:
                raise InvalidArgument(f"{field} applies to enterprise accounts")
            if field == "locale":
                account.locale = _text(raw, "locale", limit=35)
                changed.append(field)
                continue
            if field == "phone":
                if not raw:
                    self._vault.remove(s, account.id, owner_ref=ACCOUNT_OWNER, fields=["phone"])
                    account.phone_lookup, account.masked_phone = None, ""
                else:
                    phone = _phone(raw)
                    self._vault.put(s, account.id, "phone", phone, DataCategory.CONTACT)
                    account.phone_lookup = self._vault.lookup("phone", phone)
                    account.masked_phone = mask_phone(phone)
                changed.append(field)
                continue
            if field == "email":
                if not raw:
                    self._vault.remove(s, account.id, owner_ref=ACCOUNT_OWNER, fields=["email"])
                    account.email_lookup, account.masked_email = None, ""
                else:
                    email = _email(raw)
                    self._vault.put(s, account.id, "email", email, DataCategory.CONTACT)
                    account.email_lookup = self._vault.lookup("email", email)
                    account.masked_email = mask_email(email)
                changed.append(field)
                continue
            # Identity data.
            if field == "id_number":
                parsed = checks.parse_resident_id(raw, self._clock().date())
                if parsed is None:
                    raise InvalidArgument(
                        "id_number is not a valid resident ID number (format, birth date or "
                        "GB 11643 check digit)"
                    )
                value = parsed.number
                account.id_number_lookup = self._vault.lookup("id_number", value)
                account.masked_id_number = mask_id_number(value)
            elif field == "credit_code":
                code = checks.parse_credit_code(raw)
                if code is None:
                    raise InvalidArgument(
                        "credit_code is not a valid unified social credit code (GB 32100)"
                    )
                value = code
                account.id_number_lookup = self._vault.lookup("credit_code", value)
                account.masked_id_number = mask_id_number(value)
            else:
                value = _text(raw, field, required=field != "legal_representative_name")
                if field == "name":
                    account.display_name_masked = mask_name(value)
                elif field == "enterprise_name":
                    account.display_name_masked = mask_middle(value, 2, 4)
            if current.get(field, "") == value:
                continue
            self._vault.put(s, account.id, field, value, DataCategory.IDENTITY)
            changed.append(field)
            reverify = True
        if reverify and account.state is AccountState.VERIFIED:
            self._invalidate_verification(s, account)
        account.updated_at = self._clock()
        return changed, reverify

    def _invalidate_verification(self, s: Session, account: Account) -> None:
        """Identity data changed: the verification no longer holds (re-verification)."""
        account.state = AccountState.REGISTERED
        if account.verification_id:
            record = s.get(VerificationRecord, account.verification_id)
            if record is not None and record.status is VerificationStatus.VERIFIED:
                record.status = VerificationStatus.EXPIRED
                record.valid_until = self._clock()

    def _refresh_verification(self, s: Session, account: Account) -> None:
        """A verification past its validity sends the account back to REGISTERED."""
        if account.state is not AccountState.VERIFIED or not account.verification_id:
            return
        record = s.get(VerificationRecord, account.verification_id)
        now = self._clock()
        if record is not None and record.valid_until is not None and record.valid_until <= now:
            record.status = VerificationStatus.EXPIRED
            account.state = AccountState.REGISTERED
            events.emit(
                s,
                events.account_updated(account.id, ["verification"], True),
                subject=account.id,
                tenant=account.tenant_id,
            )

    def _view(self, s: Session, account: Account) -> AccountView:
        data = (
            self._vault.get_all(s, account.id)
            if account.state is not AccountState.CANCELLED
            else {}
        )
        summary = None
        if account.verification_id:
            record = s.get(VerificationRecord, account.verification_id)
            if record is not None:
                summary = VerificationSummaryView(
                    verification_id=record.id,
                    method=record.method,
                    status=record.status,
                    verified_at=record.completed_at
                    if record.status in (VerificationStatus.VERIFIED, VerificationStatus.EXPIRED)
                    else None,
                    valid_until=record.valid_until,
                )
        return AccountView(
            account_id=account.id,
            tenant_id=account.tenant_id,
            type=account.type,
            state=account.state,
            name=data.get("name", ""),
            masked_id_number=account.masked_id_number,
            masked_phone=account.masked_phone,
            masked_email=account.masked_email,
            guardian_account_id=account.guardian_account_id or "",
            enterprise_name=data.get("enterprise_name", ""),
            legal_representative_name=data.get("legal_representative_name", ""),
            subject_identifier_hash=bytes.fromhex(account.id_number_lookup)
            if account.id_number_lookup
            else b"",
            verification=summary,
            created_at=account.created_at,
            updated_at=account.updated_at,
            locale=account.locale,
        )

    # ---- operators -------------------------------------------------------------------

    def grant_operator_authorization(
        self,
        caller: Principal,
        enterprise_account_id: str,
        operator_account_id: str,
        rights: Sequence[OperatorRight],
        valid_from: datetime | None,
        valid_until: datetime | None,
        document_digest: Digest | None,
        request_id: str,
    ) -> OperatorAuthorizationView:
        """Record that a person may act for an enterprise with ``rights`` until ``valid_until``."""
        if not rights:
            raise InvalidArgument("at least one right is required")
        if valid_until is None:
            raise InvalidArgument("valid_until is required; authorisations are never open-ended")
        now = self._clock()
        start = valid_from or now
        if valid_until <= start or valid_until <= now:
            raise InvalidArgument("valid_until must be in the future and after valid_from")
        rid = _request_id(request_id)
        with self._db.session() as s:
            enterprise = self._account(s, caller, enterprise_account_id)
            operator = self._account(s, caller, operator_account_id)
            if enterprise.type is not AccountType.ENTERPRISE:
                raise InvalidArgument("enterprise_account_id is not an enterprise account")
            if operator.type is not AccountType.PERSON:
                raise InvalidArgument("operator_account_id is not a person account")
            if operator.tenant_id != enterprise.tenant_id:
                raise InvalidArgument("the operator belongs to another tenant")
            if rid is not None:
                existing = OperatorAuthorizationRepository(s).by_request_id(
                    enterprise.tenant_id, rid
                )
                if existing is not None:
                    return self._operator_view(existing, now)
            record = OperatorAuthorizationRecord(
                id=_new_id("opa"),
                tenant_id=enterprise.tenant_id,
                request_id=rid,
                enterprise_account_id=enterprise.id,
                operator_account_id=operator.id,
                rights=sorted({r.value for r in rights}),
                valid_from=start,
                valid_until=valid_until,
                state=AuthorizationState.ACTIVE,
                document_digest=_digests_json([document_digest])[0] if document_digest else None,
                created_at=now,
            )
            s.add(record)
            s.flush()
            events.emit(
                s,
                events.operator_granted(
                    record.id, enterprise.id, operator.id, record.rights, start, valid_until
                ),
                subject=enterprise.id,
                tenant=enterprise.tenant_id,
            )
            view = self._operator_view(record, now)
        self._commit()
        return view

    def revoke_operator_authorization(
        self, caller: Principal, authorization_id: str
    ) -> OperatorAuthorizationView:
        """End an operator authorisation now."""
        _require_id(authorization_id, "authorization_id")
        now = self._clock()
        with self._db.session() as s:
            record = s.get(OperatorAuthorizationRecord, authorization_id)
            if record is None:
                raise NotFound("operator authorisation not found")
            self._account(s, caller, record.enterprise_account_id)
            if record.state is AuthorizationState.ACTIVE:
                record.state = AuthorizationState.REVOKED
                record.revoked_at = now
                events.emit(
                    s,
                    events.operator_revoked(
                        record.id, record.enterprise_account_id, record.operator_account_id
                    ),
                    subject=record.enterprise_account_id,
                    tenant=record.tenant_id,
                )
            view = self._operator_view(record, now)
        self._commit()
        return view

    def list_operator_authorizations(
        self,
        caller: Principal,
        enterprise_account_id: str,
        operator_account_id: str,
        include_inactive: bool,
        page_size: int,
        page_token: str,
    ) -> tuple[list[OperatorAuthorizationView], str]:
        """Authorisations of an enterprise or of an operator, by id."""
        if not enterprise_account_id and not operator_account_id:
            raise InvalidArgument("enterprise_account_id or operator_account_id is required")
        size = _page_size(page_size)
        now = self._clock()
        with self._db.session() as s:
            if enterprise_account_id:
                self._account(s, caller, enterprise_account_id)
            if operator_account_id:
                self._account(s, caller, operator_account_id)
            rows = OperatorAuthorizationRepository(s).page(
                enterprise_account_id=enterprise_account_id,
                operator_account_id=operator_account_id,
                active_at=None if include_inactive else now,
                after=page_token,
                limit=size + 1,
            )
            views = [self._operator_view(r, now) for r in rows]
        more = len(views) > size
        views = views[:size]
        return views, (views[-1].authorization_id if more else "")

    @staticmethod
    def _operator_view(
        record: OperatorAuthorizationRecord, now: datetime
    ) -> OperatorAuthorizationView:
        state = record.state
        if state is AuthorizationState.ACTIVE and record.valid_until <= now:
            state = AuthorizationState.EXPIRED
        digest = _digests_from([record.document_digest])[0] if record.document_digest else None
        return OperatorAuthorizationView(
            authorization_id=record.id,
            enterprise_account_id=record.enterprise_account_id,
            operator_account_id=record.operator_account_id,
            rights=tuple(record.rights),
            valid_from=record.valid_from,
            valid_until=record.valid_until,
            state=state,
            document_digest=digest,
            revoked_at=record.revoked_at,
        )

    def _authorized_operator(
        self,
        s: Session,
        enterprise: Account,
        operator_account_id: str,
        right: OperatorRight,
        authorization_id: str = "",
    ) -> tuple[Account, OperatorAuthorizationRecord] | None:
        """The verified operator and an active authorisation with ``right``, or None."""
        if not operator_account_id:
            return None
        operator = s.get(Account, operator_account_id)
        if (
            operator is None
            or operator.tenant_id != enterprise.tenant_id
            or operator.type is not AccountType.PERSON
        ):
            return None
        self._refresh_verification(s, operator)
        if operator.state is not AccountState.VERIFIED:
            return None
        now = self._clock()
        current = OperatorAuthorizationRepository(s).current(
            enterprise.id, operator.id, now, authorization_id
        )
        for record in current:
            if right.value in record.rights:
                return operator, record
        return None

    # ---- API credentials -------------------------------------------------------------

    def create_api_credential(
        self,
        caller: Principal,
        tenant_id: str,
        display_name: str,
        scopes: Sequence[str],
        expires_at: datetime | None,
    ) -> tuple[CredentialView, str]:
        """A new credential and its bearer token (returned once, stored hashed)."""
        _require_id(tenant_id, "tenant_id")
        self._check_tenant(caller, tenant_id)
        name = _text(display_name, "display_name", required=True)
        clean = sorted({_scope(x) for x in scopes})
        if not clean:
            raise InvalidArgument("at least one scope is required")
        now = self._clock()
        if expires_at is not None and expires_at <= now:
            raise InvalidArgument("expires_at must be in the future")
        credential_id = _new_id("cred")
        secret = secrets.token_urlsafe(32)
        with self._db.session() as s:
            if s.get(Tenant, tenant_id) is None:
                raise NotFound("tenant not found")
            record = ApiCredentialRecord(
                id=credential_id,
                tenant_id=tenant_id,
                display_name=name,
                scopes=clean,
                state=CredentialState.ACTIVE,
                created_at=now,
                expires_at=expires_at,
            )
            s.add(record)
            s.flush()
            s.add(
                CredentialSecret(
                    credential_id=credential_id, secret_hash=_hash_secret(secret), created_at=now
                )
            )
            events.emit(
                s,
                events.credential_created(credential_id, clean, expires_at),
                subject=credential_id,
                tenant=tenant_id,
            )
            view = _credential_view(record, now)
        self._commit()
        return view, f"{credential_id}.{secret}"

    def rotate_api_credential(
        self, caller: Principal, credential_id: str, grace: timedelta | None
    ) -> tuple[CredentialView, str, datetime]:
        """A new secret; the previous ones keep working for ``grace`` (default from policy)."""
        _require_id(credential_id, "credential_id")
        if grace is not None and (grace < timedelta(0) or grace > timedelta(days=30)):
            raise InvalidArgument("grace_period must be between 0 and 30 days")
        now = self._clock()
        until = now + (grace if grace is not None else self._policy.rotation_grace)
        secret = secrets.token_urlsafe(32)
        with self._db.session() as s:
            record = self._credential(s, caller, credential_id)
            if _credential_view(record, now).state != CredentialState.ACTIVE.value:
                raise FailedPrecondition("only an active credential can be rotated")
            for old in CredentialRepository(s).secrets(credential_id):
                if old.valid_until is None or old.valid_until > until:
                    old.valid_until = until
            s.add(
                CredentialSecret(
                    credential_id=credential_id, secret_hash=_hash_secret(secret), created_at=now
                )
            )
            record.rotated_at = now
            events.emit(
                s,
                events.credential_rotated(credential_id, until),
                subject=credential_id,
                tenant=record.tenant_id,
            )
            view = _credential_view(record, now)
        self._commit()
        return view, f"{credential_id}.{secret}", until

    def revoke_api_credential(self, caller: Principal, credential_id: str) -> CredentialView:
        """Revoke a credential and all its secrets at once."""
        _require_id(credential_id, "credential_id")
        now = self._clock()
        with self._db.session() as s:
            record = self._credential(s, caller, credential_id)
            if record.state is not CredentialState.REVOKED:
                record.state = CredentialState.REVOKED
                record.revoked_at = now
                events.emit(
                    s,
                    events.credential_revoked(credential_id),
                    subject=credential_id,
                    tenant=record.tenant_id,
                )
            view = _credential_view(record, now)
        self._commit()
        return view

    def _credential(self, s: Session, caller: Principal, credential_id: str) -> ApiCredentialRecord:
        record = s.get(ApiCredentialRecord, credential_id)
        if record is None:
            raise NotFound("credential not found")
        try:
            self._check_tenant(caller, record.tenant_id)
        except NotFound:
            raise NotFound("credential not found") from None
        return record

    def authenticate_api_credential(self, token: str) -> AuthenticatedCredential:
        """Who a bearer token belongs to; Unauthenticated when unknown, revoked or expired."""
        credential_id, dot, secret = token.strip().partition(".")
        if not dot or not credential_id or not secret or len(token) > 256:
            raise Unauthenticated("invalid API credential")
        now = self._clock()
        presented = _hash_secret(secret)
        with self._db.session() as s:
            record = s.get(ApiCredentialRecord, credential_id)
            if record is None:
                raise Unauthenticated("invalid API credential")
            matched = False
            for stored in CredentialRepository(s).secrets(credential_id):
                if hmac.compare_digest(stored.secret_hash, presented) and (
                    stored.valid_until is None or stored.valid_until > now
                ):
                    matched = True
            if not matched:
                raise Unauthenticated("invalid API credential")
            if record.state is CredentialState.REVOKED:
                raise Unauthenticated("the API credential was revoked")
            if record.expires_at is not None and record.expires_at <= now:
                raise Unauthenticated("the API credential has expired")
            # Recorded at most once a minute: authentication must not write on every call.
            if record.last_used_at is None or now - record.last_used_at > timedelta(minutes=1):
                record.last_used_at = now
            return AuthenticatedCredential(
                credential_id=record.id,
                tenant_id=record.tenant_id,
                scopes=tuple(record.scopes),
                expires_at=record.expires_at,
            )

    # ---- real-name verification ------------------------------------------------------

    def start_verification(
        self, caller: Principal, account_id: str, given: VerificationInput, actor: Actor | None
    ) -> StartedVerification:
        """Check the input locally, ask the provider, and send a code or open a face session."""
        now = self._clock()
        policy = self._policy
        with self._db.session() as s:
            account = self._account(s, caller, account_id)
            if account.state not in (AccountState.REGISTERED, AccountState.VERIFIED):
                raise FailedPrecondition("the account cannot be verified in its current state")
            enterprise_method = given.method is VerificationMethod.ENTERPRISE
            if enterprise_method != (account.type is AccountType.ENTERPRISE):
                raise InvalidArgument(
                    "this verification method does not apply to this kind of account"
                )
            recent = VerificationRepository(s).count_started_since(
                account.id, now - timedelta(hours=1)
            )
            if recent >= policy.max_verifications_per_account:
                raise ResourceExhausted("too many verification attempts; retry in an hour")
            tenant_id, locale = account.tenant_id, account.locale
            guardian = account.guardian_account_id
            enterprise_id = account.id
        if given.method is VerificationMethod.ENTERPRISE:
            return self._start_enterprise(caller, enterprise_id, tenant_id, given, actor, now)
        name = _text(given.name, "name", required=True)
        record = VerificationRecord(
            id=_new_id("ver"),
            tenant_id=tenant_id,
            account_id=account_id,
            method=given.method,
            status=VerificationStatus.PENDING,
            attempts=0,
            created_at=now,
            expires_at=now + policy.verification_session_ttl,
            retained_until=checks.add_years(now, policy.retention_years),
        )
        elements: dict[str, str] = {"name": name}
        resident = checks.parse_resident_id(given.id_number, now.date())
        phone = ""
        if given.method in (
            VerificationMethod.PERSON_ID_PHONE,
            VerificationMethod.BANK_CARD_FOUR_ELEMENTS,
        ):
            phone = _phone(given.phone)
            elements["phone"] = phone
            record.masked_destination = mask_phone(phone)
        if given.method is VerificationMethod.BANK_CARD_FOUR_ELEMENTS:
            card = "".join(given.card_number.split())
            if not card.isdigit() or not 12 <= len(card) <= 19:
                raise InvalidArgument("card_number must be 12 to 19 digits")
            elements["bank_card"] = card
        if resident is None:
            return self._fail_at_start(record, elements, FailureReason.INVALID_ID_NUMBER, actor)
        elements["id_number"] = resident.number
        record.subject_lookup = self._vault.lookup("id_number", resident.number)
        record.masked_id_number = mask_id_number(resident.number)
        if resident.age_on(now.date()) < policy.minor_age and not guardian:
            return self._fail_at_start(
                record, elements, FailureReason.MINOR_WITHOUT_GUARDIAN, actor
            )
        try:
            if given.method is VerificationMethod.PERSON_ID_PHONE:
                verdict = self._providers.carrier.check_phone(name, resident.number, phone)
            elif given.method is VerificationMethod.BANK_CARD_FOUR_ELEMENTS:
                verdict = self._providers.bank_card.check_bank_card(
                    name, resident.number, elements["bank_card"], phone
                )
            else:
                session = self._providers.face.start_session(
                    name, resident.number, _text(given.return_url, "return_url", limit=2000)
                )
                record.provider = session.provider
                record.provider_reference = session.reference
                record.face_session_token = session.session_token
                self._store_verification(record, elements, actor)
                return StartedVerification(
                    verification_id=record.id,
                    method=record.method,
                    status=record.status,
                    expires_at=record.expires_at,
                    face_session_url=session.url,
                )
        except ProviderUnavailable:
            return self._fail_at_start(record, elements, FailureReason.PROVIDER_ERROR, actor)
        record.provider, record.provider_reference = verdict.provider, verdict.reference
        if not verdict.matched:
            return self._fail_at_start(
                record, elements, verdict.reason or FailureReason.ELEMENTS_MISMATCH, actor
            )
        # Set only once a code goes out: the per-destination rate limit counts these.
        record.phone_lookup = self._vault.lookup("phone", phone)
        self._rate_limit_destination(record.phone_lookup, now)
        code = self._new_code()
        record.code_hash = checks.code_hash(self._vault.lookup_key, "verification", record.id, code)
        record.expires_at = now + policy.code_ttl
        self._store_verification(record, elements, actor)
        self._send_or_expire(
            VerificationRecord,
            record.id,
            tenant_id=tenant_id,
            channel="sms",
            destination=phone,
            code=code,
            template_id="verification-code",
            expires_at=record.expires_at,
            locale=locale,
        )
        return StartedVerification(
            verification_id=record.id,
            method=record.method,
            status=record.status,
            expires_at=record.expires_at,
            masked_code_destination=record.masked_destination,
        )

    def _start_enterprise(
        self,
        caller: Principal,
        enterprise_id: str,
        tenant_id: str,
        given: VerificationInput,
        actor: Actor | None,
        now: datetime,
    ) -> StartedVerification:
        policy = self._policy
        enterprise_name = _text(given.enterprise_name, "enterprise_name", required=True)
        legal = _text(given.legal_representative_name, "legal_representative_name", required=True)
        record = VerificationRecord(
            id=_new_id("ver"),
            tenant_id=tenant_id,
            account_id=enterprise_id,
            method=VerificationMethod.ENTERPRISE,
            status=VerificationStatus.PENDING,
            attempts=0,
            created_at=now,
            expires_at=now + policy.verification_session_ttl,
            retained_until=checks.add_years(now, policy.retention_years),
            operator_account_id=given.operator_account_id or None,
            operator_authorization_id=given.operator_authorization_id or None,
        )
        elements = {"enterprise_name": enterprise_name, "legal_representative_name": legal}
        code = checks.parse_credit_code(given.credit_code)
        if code is None:
            return self._fail_at_start(record, elements, FailureReason.INVALID_CREDIT_CODE, actor)
        elements["credit_code"] = code
        record.subject_lookup = self._vault.lookup("credit_code", code)
        record.masked_id_number = mask_id_number(code)
        if given.legal_representative_id_number:
            legal_id = checks.parse_resident_id(given.legal_representative_id_number, now.date())
            if legal_id is None:
                return self._fail_at_start(record, elements, FailureReason.INVALID_ID_NUMBER, actor)
            elements["legal_representative_id_number"] = legal_id.number
        with self._db.session() as s:
            enterprise = self._account(s, caller, enterprise_id)
            found = self._authorized_operator(
                s,
                enterprise,
                given.operator_account_id,
                OperatorRight.MANAGE_ACCOUNT,
                given.operator_authorization_id,
            )
        if found is None or not given.operator_authorization_id:
            return self._fail_at_start(
                record, elements, FailureReason.OPERATOR_NOT_AUTHORIZED, actor
            )
        try:
            verdict = self._providers.registry.check_enterprise(enterprise_name, code, legal)
            record.provider, record.provider_reference = verdict.provider, verdict.reference
            if not verdict.matched:
                return self._fail_at_start(
                    record, elements, verdict.reason or FailureReason.ELEMENTS_MISMATCH, actor
                )
            amount = secrets.randbelow(99) + 1
            record.provider_reference = self._providers.registry.send_verification_transfer(
                code, amount
            )
        except ProviderUnavailable:
            return self._fail_at_start(record, elements, FailureReason.PROVIDER_ERROR, actor)
        record.code_hash = checks.code_hash(
            self._vault.lookup_key, "verification", record.id, str(amount)
        )
        # The transfer takes time to arrive: the enterprise has the whole session to answer.
        record.expires_at = now + max(policy.verification_session_ttl, timedelta(days=2))
        self._store_verification(record, elements, actor)
        return StartedVerification(
            verification_id=record.id,
            method=record.method,
            status=record.status,
            expires_at=record.expires_at,
        )

    def _store_verification(
        self, record: VerificationRecord, elements: dict[str, str], actor: Actor | None
    ) -> None:
        with self._db.session() as s:
            s.add(record)
            s.flush()
            owner = f"verification:{record.id}"
            for field, value in elements.items():
                self._vault.put(
                    s,
                    record.account_id,
                    field,
                    value,
                    DataCategory.VERIFICATION_RECORDS,
                    owner_ref=owner,
                    retained_until=record.retained_until,
                )
            if record.status is VerificationStatus.FAILED and record.failure_reason is not None:
                events.emit(
                    s,
                    events.real_name_failed(
                        record.account_id, record.id, record.method, record.failure_reason, 0, False
                    ),
                    subject=record.account_id,
                    tenant=record.tenant_id,
                    actor=actor,
                )
        self._commit()

    def _fail_at_start(
        self,
        record: VerificationRecord,
        elements: dict[str, str],
        reason: FailureReason,
        actor: Actor | None,
    ) -> StartedVerification:
        record.status = VerificationStatus.FAILED
        record.failure_reason = reason
        record.completed_at = record.created_at
        self._store_verification(record, elements, actor)
        return StartedVerification(
            verification_id=record.id,
            method=record.method,
            status=record.status,
            expires_at=record.expires_at,
            masked_code_destination=record.masked_destination,
            failure_reason=reason,
        )

    def _rate_limit_destination(self, lookup: str, now: datetime) -> None:
        """At most ``max_codes_per_destination`` codes to one phone or address per window."""
        if not lookup:
            return
        since = now - self._policy.rate_window
        with self._db.session() as s:
            sent = WillingnessRepository(s).count_codes_to(lookup, since) + VerificationRepository(
                s
            ).count_codes_to(lookup, since)
        if sent >= self._policy.max_codes_per_destination:
            raise ResourceExhausted("too many codes were sent to this destination; retry later")

    def _send_or_expire(
        self,
        model: type[VerificationRecord] | type[WillingnessCheck],
        record_id: str,
        **message: Any,
    ) -> None:
        """Send the code; when notify cannot take it, the record expires and the error returns."""
        try:
            self._codes.send_code(idempotency_key=record_id, **message)
        except ServiceError:
            with self._db.session() as s:
                if model is VerificationRecord:
                    VerificationRepository(s).expire(record_id)
                else:
                    WillingnessRepository(s).expire(record_id)
            raise

    def complete_verification(
        self,
        caller: Principal,
        verification_id: str,
        proof: VerificationProof,
        actor: Actor | None,
    ) -> CompletedVerification:
        """Check the proof; on success the account is VERIFIED with the verified elements."""
        _require_id(verification_id, "verification_id")
        now = self._clock()
        max_attempts = self._policy.max_code_attempts
        with self._db.session() as s:
            # Locked on PostgreSQL, so two concurrent attempts cannot count as one.
            record = s.get(VerificationRecord, verification_id, with_for_update=True)
            if record is None:
                raise NotFound("verification not found")
            account = self._account(s, caller, record.account_id)
            if record.status is VerificationStatus.LOCKED:
                raise FailedPrecondition("the verification is locked; start a new one later")
            if record.status is not VerificationStatus.PENDING:
                raise FailedPrecondition(
                    f"the verification is {record.status.value}; start a new one"
                )
            failure: FailureReason | None = None
            if record.expires_at <= now:
                record.status = VerificationStatus.EXPIRED
                record.code_hash = None
                failure = FailureReason.CODE_EXPIRED
            elif record.method is VerificationMethod.FACE_MATCH:
                failure = self._face_proof(record, proof.face_session_token)
            else:
                presented = (
                    str(proof.transfer_amount_fen)
                    if record.method is VerificationMethod.ENTERPRISE
                    else proof.one_time_code
                )
                if (
                    record.method is VerificationMethod.ENTERPRISE
                    and proof.transfer_amount_fen <= 0
                ):
                    raise InvalidArgument("enterprise verification needs transfer_amount_fen")
                if record.method is not VerificationMethod.ENTERPRISE and not presented:
                    raise InvalidArgument("one_time_code is required")
                if not record.code_hash or not checks.codes_match(
                    record.code_hash, self._vault.lookup_key, "verification", record.id, presented
                ):
                    failure = FailureReason.CODE_MISMATCH
            if failure is not None:
                if failure is not FailureReason.CODE_EXPIRED:
                    record.attempts += 1
                    if record.attempts >= max_attempts:
                        record.status = VerificationStatus.LOCKED
                        record.code_hash = None
                        failure = FailureReason.TOO_MANY_ATTEMPTS
                record.failure_reason = failure
                remaining = max(max_attempts - record.attempts, 0)
                locked = record.status is VerificationStatus.LOCKED
                events.emit(
                    s,
                    events.real_name_failed(
                        account.id, record.id, record.method, failure, remaining, locked
                    ),
                    subject=account.id,
                    tenant=account.tenant_id,
                    actor=actor,
                )
                result = CompletedVerification(
                    verification_id=record.id,
                    status=record.status,
                    failure_reason=failure,
                    attempts_remaining=remaining,
                    account=self._view(s, account),
                    provider=record.provider,
                    provider_reference=record.provider_reference,
                )
            else:
                self._mark_verified(s, account, record, now, actor)
                result = CompletedVerification(
                    verification_id=record.id,
                    status=record.status,
                    failure_reason=None,
                    attempts_remaining=max(max_attempts - record.attempts, 0),
                    account=self._view(s, account),
                    provider=record.provider,
                    provider_reference=record.provider_reference,
                )
        self._commit()
        return result

    def _face_proof(self, record: VerificationRecord, token: str) -> FailureReason | None:
        if not token:
            raise InvalidArgument("face_match.session_token is required")
        if not record.face_session_token or not hmac.compare_digest(
            record.face_session_token, token
        ):
            raise InvalidArgument("the face session does not belong to this verification")
        try:
            verdict = self._providers.face.session_result(token)
        except ProviderUnavailable:
            raise Unavailable("the face match result is not available yet; retry") from None
        record.provider_reference = verdict.reference or record.provider_reference
        return None if verdict.matched else (verdict.reason or FailureReason.FACE_MISMATCH)

    def _mark_verified(
        self,
        s: Session,
        account: Account,
        record: VerificationRecord,
        now: datetime,
        actor: Actor | None,
    ) -> None:
        record.status = VerificationStatus.VERIFIED
        record.failure_reason = None
        record.code_hash = None
        record.completed_at = now
        record.valid_until = now + self._policy.verification_validity
        seen = self._vault.get_all(s, account.id, f"verification:{record.id}")
        if account.verification_id and account.verification_id != record.id:
            previous = s.get(VerificationRecord, account.verification_id)
            if previous is not None and previous.status is VerificationStatus.VERIFIED:
                previous.status = VerificationStatus.EXPIRED
                previous.valid_until = now
        if account.type is AccountType.PERSON:
            profile = {"name": seen["name"], "id_number": seen["id_number"]}
            kind, identifier = "id_number", seen["id_number"]
            account.display_name_masked = mask_name(seen["name"])
        else:
            profile = {
                "enterprise_name": seen["enterprise_name"],
                "credit_code": seen["credit_code"],
                "legal_representative_name": seen["legal_representative_name"],
            }
            kind, identifier = "credit_code", seen["credit_code"]
            account.display_name_masked = mask_middle(seen["enterprise_name"], 2, 4)
        for field, value in profile.items():
            self._vault.put(s, account.id, field, value, DataCategory.IDENTITY)
        if "phone" in seen and not account.phone_lookup:
            self._vault.put(s, account.id, "phone", seen["phone"], DataCategory.CONTACT)
            account.phone_lookup = self._vault.lookup("phone", seen["phone"])
            account.masked_phone = mask_phone(seen["phone"])
        subject = self._vault.subject_hash(kind, identifier)
        account.id_number_lookup = subject.hex()
        account.masked_id_number = mask_id_number(identifier)
        account.state = AccountState.VERIFIED
        account.verification_id = record.id
        account.updated_at = now
        events.emit(
            s,
            events.real_name_verified(
                account.id,
                record.id,
                record.method,
                record.provider,
                record.provider_reference,
                now,
                record.valid_until,
                subject,
            ),
            subject=account.id,
            tenant=account.tenant_id,
            actor=actor,
        )

    # ---- grant key -------------------------------------------------------------------

    def ensure_grant_key(self) -> str:
        """Identity's grant key id: the newest recorded, or one created now in the signer."""
        with self._db.session() as s:
            row = GrantKeyRepository(s).current()
            if row is not None:
                self._kid = row.kid
                return row.kid
        kid, spki = self._grant_keys.create_key(GRANT_KEY_REQUEST_ID)
        now = self._clock()
        try:
            with self._db.session() as s:
                s.add(GrantKey(kid=kid, spki_der=spki, not_before=now, created_at=now))
        except AlreadyExists:
            pass  # another replica recorded the same key first
        self._kid = kid
        return kid

    def grant_verification_keys(self) -> list[GrantKeyView]:
        """Every grant key that may still verify a grant."""
        with self._db.session() as s:
            rows = GrantKeyRepository(s).all()
            return [GrantKeyView(r.kid, r.spki_der, r.not_before, r.not_after) for r in rows]

    def _public_keys(self) -> dict[str, ec.EllipticCurvePublicKey]:
        keys: dict[str, ec.EllipticCurvePublicKey] = {}
        for view in self.grant_verification_keys():
            public = load_der_public_key(view.spki_der)
            if isinstance(public, ec.EllipticCurvePublicKey):
                keys[view.kid] = public
        return keys

    def _sign_grant(
        self,
        *,
        tenant_id: str,
        account_id: str,
        key_id: str,
        digests: Sequence[Digest],
        auto_sign_authorization_id: str = "",
    ) -> GrantView:
        kid = self._kid or self.ensure_grant_key()
        now = self._clock().replace(microsecond=0)
        claims = GrantClaims(
            grant_id=_new_id("g"),
            tenant=tenant_id,
            account=account_id,
            key_id=key_id,
            digests=tuple(d.value for d in digests),
            issued_at=now,
            expires_at=now + self._policy.grant_ttl,
            auto_sign_authorization=auto_sign_authorization_id,
        )
        token = encode_grant(claims, kid, lambda digest: self._grant_keys.sign_digest(kid, digest))
        return GrantView(
            grant_id=claims.grant_id,
            token=token,
            tenant_id=tenant_id,
            account_id=account_id,
            key_id=key_id,
            digests=tuple(digests),
            issued_at=claims.issued_at,
            expires_at=claims.expires_at,
            auto_sign_authorization_id=auto_sign_authorization_id,
        )

    # ---- willingness -----------------------------------------------------------------

    def start_willingness(
        self,
        caller: Principal,
        account_id: str,
        key_id: str,
        digests: Sequence[Digest],
        method: WillingnessMethod,
        operator_account_id: str,
        transaction_id: str,
        actor: Actor | None,
    ) -> StartedWillingness:
        """Bind a check to (account, key, digests) and send a code or open a face session."""
        _require_id(key_id, "key_id")
        _check_digests(digests, self._policy.max_digests)
        transaction = _text(transaction_id, "transaction_id", limit=128)
        now = self._clock()
        policy = self._policy
        with self._db.session() as s:
            account = self._account(s, caller, account_id)
            self._refresh_verification(s, account)
            if account.state is not AccountState.VERIFIED:
                raise FailedPrecondition("the account is not real-name verified")
            confirmer = account
            if account.type is AccountType.ENTERPRISE:
                found = self._authorized_operator(
                    s, account, operator_account_id, OperatorRight.SIGN
                )
                if found is None:
                    raise PermissionDenied(
                        "the operator is not authorised to sign for this enterprise (missing, "
                        "expired or revoked authorisation, or operator not verified)"
                    )
                confirmer = found[0]
            elif operator_account_id:
                raise InvalidArgument("operator_account_id applies to enterprise accounts only")
            recent = WillingnessRepository(s).count_started_since(
                account.id, now - policy.rate_window
            )
            if recent >= policy.max_checks_per_account:
                raise ResourceExhausted(
                    "too many willingness checks for this account; retry in a few minutes"
                )
            contact = self._vault.get_all(s, confirmer.id)
            tenant_id, locale = account.tenant_id, confirmer.locale
        check = WillingnessCheck(
            id=_new_id("wil"),
            tenant_id=tenant_id,
            account_id=account_id,
            operator_account_id=operator_account_id or None,
            key_id=key_id,
            digests=_digests_json(digests),
            method=method,
            status=WillingnessStatus.PENDING,
            attempts=0,
            transaction_id=transaction,
            created_at=now,
            expires_at=now + policy.code_ttl,
            retained_until=checks.add_years(now, policy.retention_years),
        )
        face_url = ""
        code = ""
        destination = ""
        if method is WillingnessMethod.FACE_MATCH:
            if "name" not in contact or "id_number" not in contact:
                raise FailedPrecondition("face match needs the verified name and ID number")
            try:
                session = self._providers.face.start_session(
                    contact["name"], contact["id_number"], ""
                )
            except ProviderUnavailable:
                raise Unavailable("the face match provider is unavailable; retry") from None
            check.face_session_token = session.session_token
            check.expires_at = now + policy.verification_session_ttl
            face_url = session.url
        else:
            field = "phone" if method is WillingnessMethod.SMS_CODE else "email"
            destination = contact.get(field, "")
            if not destination:
                raise FailedPrecondition(f"the confirming account has no {field} to send a code to")
            check.destination_lookup = self._vault.lookup(field, destination)
            check.masked_destination = (
                mask_phone(destination) if field == "phone" else mask_email(destination)
            )
            self._rate_limit_destination(check.destination_lookup, now)
            code = self._new_code()
            check.code_hash = checks.code_hash(
                self._vault.lookup_key, "willingness", check.id, code
            )
        with self._db.session() as s:
            s.add(check)
        if code:
            self._send_or_expire(
                WillingnessCheck,
                check.id,
                tenant_id=tenant_id,
                channel="sms" if method is WillingnessMethod.SMS_CODE else "email",
                destination=destination,
                code=code,
                template_id="willingness-code",
                expires_at=check.expires_at,
                locale=locale,
            )
        return StartedWillingness(
            willingness_id=check.id,
            method=method,
            expires_at=check.expires_at,
            masked_code_destination=check.masked_destination,
            face_session_url=face_url,
            attempts_remaining=policy.max_code_attempts,
        )

    def confirm_willingness(
        self,
        caller: Principal,
        willingness_id: str,
        one_time_code: str,
        face_session_token: str,
        actor: Actor | None,
    ) -> ConfirmedWillingness:
        """Check the proof and return the single-use signing grant.

        A wrong, expired or reused code is PermissionDenied (the attempt is recorded first);
        a locked check is FailedPrecondition.
        """
        _require_id(willingness_id, "willingness_id")
        now = self._clock()
        max_attempts = self._policy.max_code_attempts
        failure: _Failure | None = None
        with self._db.session() as s:
            # Locked on PostgreSQL, so two concurrent attempts cannot count as one.
            check = s.get(WillingnessCheck, willingness_id, with_for_update=True)
            if check is None:
                raise NotFound("willingness check not found")
            account = self._account(s, caller, check.account_id)
            if check.status is WillingnessStatus.LOCKED:
                raise FailedPrecondition(
                    "the willingness check is locked after too many attempts; start a new one"
                )
            if check.status is WillingnessStatus.CONFIRMED:
                raise PermissionDenied("this willingness check was already used")
            if check.status is WillingnessStatus.EXPIRED or check.expires_at <= now:
                if check.status is WillingnessStatus.PENDING:
                    check.status = WillingnessStatus.EXPIRED
                    check.code_hash = None
                    events.emit(
                        s,
                        events.willingness_failed(
                            account.id, check.id, check.method, FailureReason.CODE_EXPIRED, 0, False
                        ),
                        subject=account.id,
                        tenant=account.tenant_id,
                        actor=actor,
                        transaction_id=check.transaction_id,
                    )
                failure = _Failure(
                    PermissionDenied("the willingness check has expired; start a new one")
                )
            else:
                reason = self._willingness_proof(check, one_time_code, face_session_token)
                if reason is not None:
                    check.attempts += 1
                    remaining = max(max_attempts - check.attempts, 0)
                    locked = remaining == 0
                    if locked:
                        check.status = WillingnessStatus.LOCKED
                        check.code_hash = None
                    events.emit(
                        s,
                        events.willingness_failed(
                            account.id,
                            check.id,
                            check.method,
                            FailureReason.TOO_MANY_ATTEMPTS if locked else reason,
                            remaining,
                            locked,
                        ),
                        subject=account.id,
                        tenant=account.tenant_id,
                        actor=actor,
                        transaction_id=check.transaction_id,
                    )
                    what = (
                        "wrong code"
                        if reason is FailureReason.CODE_MISMATCH
                        else "face match failed"
                    )
                    failure = _Failure(
                        PermissionDenied(
                            f"{what}; the check is now locked"
                            if locked
                            else f"{what}; {remaining} attempts left"
                        )
                    )
            snapshot = (
                check.tenant_id,
                check.account_id,
                check.key_id,
                _digests_from(check.digests),
            )
            attempts = check.attempts
        if failure is not None:
            self._commit()
            raise failure.error
        tenant_id, account_id, key_id, digests = snapshot
        grant = self._sign_grant(
            tenant_id=tenant_id, account_id=account_id, key_id=key_id, digests=digests
        )
        with self._db.session() as s:
            if not WillingnessRepository(s).confirm(willingness_id, grant.grant_id, now):
                raise PermissionDenied("this willingness check was already used")
            check = s.get(WillingnessCheck, willingness_id)
            assert check is not None
            s.add(
                GrantRecord(
                    id=grant.grant_id,
                    tenant_id=tenant_id,
                    account_id=account_id,
                    key_id=key_id,
                    digests=_digests_json(digests),
                    willingness_id=willingness_id,
                    transaction_id=check.transaction_id,
                    issued_at=grant.issued_at,
                    expires_at=grant.expires_at,
                    retained_until=check.retained_until,
                )
            )
            events.emit(
                s,
                events.willingness_confirmed(
                    account_id,
                    willingness_id,
                    check.method,
                    key_id,
                    digests,
                    grant.grant_id,
                    grant.expires_at,
                    check.operator_account_id or "",
                ),
                subject=account_id,
                tenant=tenant_id,
                actor=actor,
                transaction_id=check.transaction_id,
                digests=digests,
            )
        self._commit()
        return ConfirmedWillingness(
            status=WillingnessStatus.CONFIRMED,
            grant=grant,
            attempts_remaining=max(max_attempts - attempts, 0),
        )

    def _willingness_proof(
        self, check: WillingnessCheck, code: str, face_token: str
    ) -> FailureReason | None:
        if check.method is WillingnessMethod.FACE_MATCH:
            if not face_token:
                raise InvalidArgument("face_match.session_token is required")
            if not check.face_session_token or not hmac.compare_digest(
                check.face_session_token, face_token
            ):
                raise InvalidArgument("the face session does not belong to this check")
            try:
                verdict = self._providers.face.session_result(face_token)
            except ProviderUnavailable:
                raise Unavailable("the face match result is not available yet; retry") from None
            return None if verdict.matched else (verdict.reason or FailureReason.FACE_MISMATCH)
        if not code:
            raise InvalidArgument("one_time_code is required")
        if not check.code_hash or not checks.codes_match(
            check.code_hash, self._vault.lookup_key, "willingness", check.id, code
        ):
            return FailureReason.CODE_MISMATCH
        return None

    # ---- automatic signing -----------------------------------------------------------

    def create_auto_sign(
        self,
        caller: Principal,
        account_id: str,
        key_id: str,
        business_scope: str,
        valid_from: datetime | None,
        valid_until: datetime | None,
        max_uses: int,
        confirmation_grant: str,
        text_digest: Digest | None,
        operator_account_id: str,
        request_id: str,
    ) -> AutoSignView:
        """A standing authorisation, confirmed by a willingness grant over its text digest."""
        _require_id(key_id, "key_id")
        scope = _text(business_scope, "business_scope", required=True, limit=128)
        if max_uses <= 0:
            raise InvalidArgument("max_uses must be at least 1")
        if valid_until is None:
            raise InvalidArgument("valid_until is required")
        if text_digest is None:
            raise InvalidArgument("authorization_text_digest is required")
        _check_digests([text_digest], 1)
        now = self._clock()
        start = valid_from or now
        if valid_until <= start or valid_until <= now:
            raise InvalidArgument("valid_until must be in the future and after valid_from")
        rid = _request_id(request_id)
        if not confirmation_grant:
            raise PermissionDenied("a confirmation grant from a willingness check is required")
        claims = verify_grant(confirmation_grant, self._public_keys(), now)
        with self._db.session() as s:
            account = self._account(s, caller, account_id)
            if rid is not None:
                existing = AutoSignRepository(s).by_request_id(account.tenant_id, rid)
                if existing is not None:
                    return _auto_view(existing, now)
            self._refresh_verification(s, account)
            if account.state is not AccountState.VERIFIED:
                raise FailedPrecondition("the account is not real-name verified")
            if account.type is AccountType.ENTERPRISE and (
                self._authorized_operator(
                    s, account, operator_account_id, OperatorRight.MANAGE_AUTO_SIGN
                )
                is None
            ):
                raise PermissionDenied("the operator is not authorised to manage automatic signing")
            if (
                claims.account != account.id
                or claims.tenant != account.tenant_id
                or claims.key_id != key_id
                or text_digest.value not in claims.digests
                or claims.auto_sign_authorization
            ):
                raise PermissionDenied(
                    "the confirmation grant does not name this account, key and text digest"
                )
            grant = s.get(GrantRecord, claims.grant_id)
            if grant is None or grant.willingness_id is None:
                raise PermissionDenied("the confirmation grant is unknown")
            if not GrantRepository(s).consume(grant.id, now):
                raise PermissionDenied("the confirmation grant has already been used")
            record = AutoSignAuthorizationRecord(
                id=_new_id("asa"),
                tenant_id=account.tenant_id,
                request_id=rid,
                account_id=account.id,
                operator_account_id=operator_account_id or None,
                key_id=key_id,
                business_scope=scope,
                valid_from=start,
                valid_until=valid_until,
                max_uses=max_uses,
                uses=0,
                state=AuthorizationState.ACTIVE,
                willingness_grant_id=claims.grant_id,
                text_digest=_digests_json([text_digest])[0],
                created_at=now,
                retained_until=checks.add_years(valid_until, self._policy.retention_years),
            )
            s.add(record)
            s.flush()
            events.emit(
                s,
                events.auto_sign_authorized(
                    record.id,
                    account.id,
                    key_id,
                    scope,
                    start,
                    valid_until,
                    max_uses,
                    claims.grant_id,
                    text_digest,
                ),
                subject=account.id,
                tenant=account.tenant_id,
                digests=[text_digest],
            )
            view = _auto_view(record, now)
        self._commit()
        return view

    def revoke_auto_sign(self, caller: Principal, authorization_id: str) -> AutoSignView:
        """Revoke an automatic-signing authorisation at once."""
        _require_id(authorization_id, "authorization_id")
        now = self._clock()
        with self._db.session() as s:
            record = s.get(AutoSignAuthorizationRecord, authorization_id)
            if record is None:
                raise NotFound("automatic-signing authorisation not found")
            self._account(s, caller, record.account_id)
            if record.state is AuthorizationState.ACTIVE:
                record.state = AuthorizationState.REVOKED
                record.revoked_at = now
                events.emit(
                    s,
                    events.auto_sign_revoked(record.id, record.account_id, caller.subject),
                    subject=record.account_id,
                    tenant=record.tenant_id,
                )
            view = _auto_view(record, now)
        self._commit()
        return view

    def list_auto_sign(
        self,
        caller: Principal,
        account_id: str,
        include_inactive: bool,
        page_size: int,
        page_token: str,
    ) -> tuple[list[AutoSignView], str]:
        """An account's automatic-signing authorisations, by id."""
        size = _page_size(page_size)
        now = self._clock()
        with self._db.session() as s:
            self._account(s, caller, account_id)
            rows = AutoSignRepository(s).for_account(account_id, after=page_token)
            views = [_auto_view(r, now) for r in rows]
        if not include_inactive:
            views = [v for v in views if v.state is AuthorizationState.ACTIVE]
        more = len(views) > size
        views = views[:size]
        return views, (views[-1].authorization_id if more else "")

    def issue_auto_sign_grant(
        self,
        caller: Principal,
        authorization_id: str,
        digests: Sequence[Digest],
        transaction_id: str,
        request_id: str,
        actor: Actor | None,
    ) -> tuple[GrantView, int]:
        """Use an authorisation once: a recorded grant for ``digests`` (idempotent on request)."""
        _require_id(authorization_id, "authorization_id")
        _check_digests(digests, self._policy.max_digests)
        rid = _request_id(request_id)
        transaction = _text(transaction_id, "transaction_id", limit=128)
        now = self._clock()
        with self._db.session() as s:
            record = s.get(AutoSignAuthorizationRecord, authorization_id)
            if record is None:
                raise NotFound("automatic-signing authorisation not found")
            account = self._account(s, caller, record.account_id)
            if rid is not None:
                earlier = GrantRepository(s).by_request(authorization_id, rid)
                if earlier is not None:
                    if _digests_json(digests) != earlier.digests:
                        raise AlreadyExists("request_id was used with other digests")
                    if earlier.token is None or earlier.expires_at <= now:
                        raise FailedPrecondition("the grant of this request has expired")
                    return (
                        GrantView(
                            grant_id=earlier.id,
                            token=earlier.token,
                            tenant_id=earlier.tenant_id,
                            account_id=earlier.account_id,
                            key_id=earlier.key_id,
                            digests=_digests_from(earlier.digests),
                            issued_at=earlier.issued_at,
                            expires_at=earlier.expires_at,
                            auto_sign_authorization_id=authorization_id,
                        ),
                        record.max_uses - record.uses,
                    )
            view = _auto_view(record, now)
            if view.state is not AuthorizationState.ACTIVE:
                raise FailedPrecondition(
                    f"the automatic-signing authorisation is {view.state.value}"
                )
            if record.valid_from > now:
                raise FailedPrecondition("the automatic-signing authorisation is not valid yet")
            self._refresh_verification(s, account)
            if account.state is not AccountState.VERIFIED:
                raise FailedPrecondition("the account is not real-name verified")
            tenant_id, account_id, key_id = record.tenant_id, record.account_id, record.key_id
        grant = self._sign_grant(
            tenant_id=tenant_id,
            account_id=account_id,
            key_id=key_id,
            digests=digests,
            auto_sign_authorization_id=authorization_id,
        )
        with self._db.session() as s:
            if not AutoSignRepository(s).use_once(authorization_id):
                raise FailedPrecondition("the automatic-signing authorisation is exhausted")
            record = s.get(AutoSignAuthorizationRecord, authorization_id)
            assert record is not None
            s.refresh(record)
            if record.uses >= record.max_uses:
                record.state = AuthorizationState.EXHAUSTED
            s.add(
                GrantRecord(
                    id=grant.grant_id,
                    tenant_id=tenant_id,
                    account_id=account_id,
                    key_id=key_id,
                    digests=_digests_json(digests),
                    auto_sign_authorization_id=authorization_id,
                    request_id=rid,
                    transaction_id=transaction,
                    token=grant.token if rid else None,
                    issued_at=grant.issued_at,
                    expires_at=grant.expires_at,
                    retained_until=checks.add_years(now, self._policy.retention_years),
                )
            )
            remaining = record.max_uses - record.uses
            events.emit(
                s,
                events.auto_sign_grant_issued(
                    authorization_id,
                    account_id,
                    key_id,
                    grant.grant_id,
                    digests,
                    record.uses,
                    remaining,
                ),
                subject=account_id,
                tenant=tenant_id,
                actor=actor,
                transaction_id=transaction,
                digests=digests,
            )
        self._commit()
        return grant, remaining

    # ---- personal-data rights --------------------------------------------------------

    def _record_request(
        self,
        s: Session,
        account: Account,
        kind: DataRequestKind,
        outcome: dict[str, Any],
        *,
        state: str = "completed",
        client_request_id: str | None = None,
        due_by: datetime | None = None,
    ) -> DataRequest:
        now = self._clock()
        request = DataRequest(
            id=_new_id("dsr"),
            account_id=account.id,
            tenant_id=account.tenant_id,
            kind=kind,
            client_request_id=client_request_id,
            state=state,
            outcome=outcome,
            requested_at=now,
            due_by=due_by,
            completed_at=now if state == "completed" else None,
        )
        s.add(request)
        s.flush()
        return request

    def export_personal_data(
        self, caller: Principal, account_id: str
    ) -> tuple[str, bytes, datetime]:
        """A JSON copy of every category of data held about the account, with retention."""
        now = self._clock()
        with self._db.session() as s:
            account = self._account(s, caller, account_id)
            request = self._record_request(s, account, DataRequestKind.EXPORT, {})
            document = self._export_document(s, account, now)
            request.outcome = {"categories": sorted(document["personal_data"].keys())}
            events.emit(
                s,
                events.data_exported(account.id, request.id),
                subject=account.id,
                tenant=account.tenant_id,
            )
            request_id = request.id
        self._commit()
        return request_id, json.dumps(document, ensure_ascii=False, indent=2).encode(), now

    def _export_document(self, s: Session, account: Account, now: datetime) -> dict[str, Any]:
        years = self._policy.retention_years

        def ts(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        data: dict[str, Any] = {}
        for entry, value in self._vault.entries(s, account.id):
            bucket = data.setdefault(entry.category.value, [])
            bucket.append(
                {
                    "record": entry.owner_ref,
                    "field": entry.field,
                    "value": value,
                    "retained_until": ts(entry.retained_until),
                }
            )
        verifications = VerificationRepository(s).for_account(account.id)
        checks_ = WillingnessRepository(s).for_account(account.id)
        grants = GrantRepository(s).for_account(account.id)
        autos = AutoSignRepository(s).for_account(account.id)
        requests = DataRequestRepository(s).for_account(account.id)
        return {
            "format": "signet.identity.personal-data-export/v1",
            "generated_at": now.isoformat(),
            "account": {
                "account_id": account.id,
                "tenant_id": account.tenant_id,
                "type": account.type.value,
                "state": account.state.value,
                "locale": account.locale,
                "created_at": ts(account.created_at),
            },
            "personal_data": data,
            "verification_records": [
                {
                    "verification_id": v.id,
                    "method": v.method.value,
                    "status": v.status.value,
                    "failure_reason": v.failure_reason.value if v.failure_reason else None,
                    "provider": v.provider,
                    "provider_reference": v.provider_reference,
                    "started_at": ts(v.created_at),
                    "completed_at": ts(v.completed_at),
                    "valid_until": ts(v.valid_until),
                    "retained_until": ts(v.retained_until),
                }
                for v in verifications
            ],
            "willingness_records": [
                {
                    "willingness_id": w.id,
                    "method": w.method.value,
                    "status": w.status.value,
                    "key_id": w.key_id,
                    "digests": w.digests,
                    "transaction_id": w.transaction_id,
                    "created_at": ts(w.created_at),
                    "confirmed_at": ts(w.confirmed_at),
                    "grant_id": w.grant_id,
                    "retained_until": ts(w.retained_until),
                }
                for w in checks_
            ],
            "signature_records": [
                {
                    "grant_id": g.id,
                    "key_id": g.key_id,
                    "digests": g.digests,
                    "transaction_id": g.transaction_id,
                    "auto_sign_authorization_id": g.auto_sign_authorization_id,
                    "issued_at": ts(g.issued_at),
                    "retained_until": ts(g.retained_until),
                }
                for g in grants
            ],
            "auto_sign_authorizations": [
                {
                    "authorization_id": a.id,
                    "key_id": a.key_id,
                    "business_scope": a.business_scope,
                    "valid_from": ts(a.valid_from),
                    "valid_until": ts(a.valid_until),
                    "max_uses": a.max_uses,
                    "uses": a.uses,
                    "state": a.state.value,
                }
                for a in autos
            ],
            "requests": [
                {
                    "request_id": r.id,
                    "kind": r.kind.value,
                    "state": r.state,
                    "requested_at": ts(r.requested_at),
                    "completed_at": ts(r.completed_at),
                    "outcome": r.outcome,
                }
                for r in requests
            ],
            "retention": {
                DataCategory.VERIFICATION_RECORDS.value: f"at least {years} years",
                DataCategory.WILLINGNESS_RECORDS.value: f"at least {years} years",
                DataCategory.SIGNATURE_RECORDS.value: f"at least {years} years; deleted only "
                "on a joint instruction of all parties",
                DataCategory.IDENTITY.value: "until deletion or cancellation",
                DataCategory.CONTACT.value: "until deletion or cancellation",
            },
        }

    def correct_personal_data(
        self, caller: Principal, account_id: str, values: dict[str, str]
    ) -> tuple[str, AccountView, bool]:
        """Correct data at the user's request; identity data requires re-verification."""
        allowed = {
            "name",
            "id_number",
            "phone",
            "email",
            "enterprise_name",
            "credit_code",
            "legal_representative_name",
        }
        unknown = set(values) - allowed
        if unknown:
            raise InvalidArgument(f"update_mask may name only: {', '.join(sorted(allowed))}")
        if not values:
            raise InvalidArgument("update_mask names no field")
        with self._db.session() as s:
            account = self._account(s, caller, account_id)
            changed, reverify = self._apply_changes(s, account, values)
            request = self._record_request(
                s,
                account,
                DataRequestKind.CORRECT,
                {"changed_fields": changed, "reverification_required": reverify},
            )
            events.emit(
                s,
                events.data_corrected(account.id, request.id, changed, reverify),
                subject=account.id,
                tenant=account.tenant_id,
            )
            view = self._view(s, account)
            request_id = request.id
        self._commit()
        return request_id, view, reverify

    def request_deletion(
        self,
        caller: Principal,
        account_id: str,
        categories: Sequence[DataCategory],
        jointly_instructed_transactions: Sequence[str],
    ) -> tuple[str, list[CategoryOutcome]]:
        """Delete what the law does not hold; say per category what is kept until when."""
        wanted = list(dict.fromkeys(categories)) or list(DataCategory)
        joint = {t for t in jointly_instructed_transactions if t}
        with self._db.session() as s:
            account = self._account(s, caller, account_id)
            request = self._record_request(
                s, account, DataRequestKind.DELETE, {}, state="processing"
            )
            events.emit(
                s,
                events.deletion_requested(account.id, request.id, wanted),
                subject=account.id,
                tenant=account.tenant_id,
            )
            outcomes = [self._delete_category(s, account, c, joint) for c in wanted]
            request.state = "completed"
            request.completed_at = self._clock()
            request.outcome = {"outcomes": [_outcome_json(o) for o in outcomes]}
            events.emit(
                s,
                events.deletion_completed(account.id, request.id, outcomes),
                subject=account.id,
                tenant=account.tenant_id,
            )
            request_id = request.id
        self._commit()
        return request_id, outcomes

    def _delete_category(
        self, s: Session, account: Account, category: DataCategory, joint: set[str]
    ) -> CategoryOutcome:
        if category in (DataCategory.IDENTITY, DataCategory.CONTACT):
            removed = self._vault.remove(
                s, account.id, owner_ref=ACCOUNT_OWNER, categories=[category]
            )
            if category is DataCategory.CONTACT:
                account.phone_lookup = account.email_lookup = None
                account.masked_phone = account.masked_email = ""
            elif removed:
                # Without its identity data the account can no longer sign: it needs a new
                # verification (the verification records themselves are kept by law).
                account.id_number_lookup = None
                account.masked_id_number = ""
                account.display_name_masked = "*"
                if account.state is AccountState.VERIFIED:
                    self._invalidate_verification(s, account)
            return CategoryOutcome(category, DELETED if removed else NONE_HELD)
        if category is DataCategory.BANK_CARD:
            until = retained_until_of_field(s, account.id, "bank_card")
            return (
                CategoryOutcome(category, RETAINED_BY_LAW, until)
                if until
                else CategoryOutcome(category, NONE_HELD)
            )
        if category is DataCategory.VERIFICATION_RECORDS:
            until = VerificationRepository(s).retained_until(account.id)
            return (
                CategoryOutcome(category, RETAINED_BY_LAW, until)
                if until
                else CategoryOutcome(category, NONE_HELD)
            )
        if category is DataCategory.WILLINGNESS_RECORDS:
            until = WillingnessRepository(s).retained_until(account.id)
            return (
                CategoryOutcome(category, RETAINED_BY_LAW, until)
                if until
                else CategoryOutcome(category, NONE_HELD)
            )
        if category is DataCategory.SIGNATURE_RECORDS:
            grants = GrantRepository(s).for_account(account.id)
            if not grants:
                return CategoryOutcome(category, NONE_HELD)
            open_ = [g for g in grants if not g.transaction_id or g.transaction_id not in joint]
            for g in grants:
                if g not in open_:
                    s.delete(g)
            if joint:
                WillingnessRepository(s).delete_for_transactions(account.id, joint)
            if open_:
                return CategoryOutcome(category, AWAITING_JOINT_INSTRUCTION)
            return CategoryOutcome(category, DELETED)
        # Notifications and access logs are not held by identity.
        return CategoryOutcome(category, NONE_HELD)

    def cancel_account(
        self, caller: Principal, account_id: str, reason: str, request_id: str
    ) -> CancellationView:
        """Start cancelling: REQUESTED now, completed by :meth:`process_cancellations`."""
        rid = _request_id(request_id)
        reason = _text(reason, "reason", limit=2000)
        now = self._clock()
        with self._db.session() as s:
            account = self._account(s, caller, account_id)
            existing = self._latest_cancellation(s, account.id)
            if existing is not None and existing.state in (
                CancellationState.REQUESTED.value,
                CancellationState.PROCESSING.value,
                CancellationState.COMPLETED.value,
            ):
                return self._cancellation_view(existing)
            due = checks.add_working_days(now, self._policy.cancellation_working_days)
            blockers = self._cancellation_blockers(s, account, now)
            request = self._record_request(
                s,
                account,
                DataRequestKind.CANCEL,
                {"blocking_reasons": blockers, "previous_state": account.state.value},
                state=(
                    CancellationState.REJECTED if blockers else CancellationState.REQUESTED
                ).value,
                client_request_id=rid,
                due_by=due,
            )
            if blockers:
                request.completed_at = now
            else:
                if reason:
                    self._vault.put(
                        s,
                        account.id,
                        "cancellation_reason",
                        reason,
                        DataCategory.IDENTITY,
                        owner_ref=f"request:{request.id}",
                    )
                account.state = AccountState.CANCELLING
                events.emit(
                    s,
                    events.cancellation_requested(account.id, request.id, due),
                    subject=account.id,
                    tenant=account.tenant_id,
                )
            view = self._cancellation_view(request)
        self._commit()
        return view

    def get_cancellation_status(self, caller: Principal, account_id: str) -> CancellationView:
        """The latest cancellation request of the account."""
        with self._db.session() as s:
            account = self._account(s, caller, account_id)
            request = self._latest_cancellation(s, account.id)
            if request is None:
                raise NotFound("the account has no cancellation request")
            return self._cancellation_view(request)

    def _latest_cancellation(self, s: Session, account_id: str) -> DataRequest | None:
        return DataRequestRepository(s).latest_cancellation(account_id)

    def _cancellation_blockers(self, s: Session, account: Account, now: datetime) -> list[str]:
        reasons: list[str] = []
        open_checks = WillingnessRepository(s).open_count(account.id, now)
        live_grants = GrantRepository(s).live_count(account.id, now)
        if open_checks or live_grants:
            reasons.append("open signing transaction")
        if account.type is AccountType.PERSON and AccountRepository(s).count_wards(account.id):
            reasons.append("guardian of an active account")
        return reasons

    def _cancellation_view(self, request: DataRequest) -> CancellationView:
        outcome = request.outcome or {}
        retained = tuple(
            CategoryOutcome(
                DataCategory(o["category"]),
                o["disposition"],
                datetime.fromisoformat(o["retained_until"]) if o.get("retained_until") else None,
            )
            for o in outcome.get("retained", [])
        )
        return CancellationView(
            request_id=request.id,
            account_id=request.account_id,
            state=CancellationState(request.state),
            requested_at=request.requested_at,
            due_by=request.due_by or request.requested_at,
            completed_at=request.completed_at,
            blocking_reasons=tuple(outcome.get("blocking_reasons", [])),
            retained=retained,
        )

    def process_cancellations(self) -> int:
        """Complete due cancellations (the state machine's worker); returns how many."""
        now = self._clock()
        cutoff = now - self._policy.cancellation_cooling_off
        with self._db.session() as s:
            due = DataRequestRepository(s).due_cancellations(cutoff)
        done = 0
        for request_id in due:
            with self._db.session() as s:
                request = s.get(DataRequest, request_id)
                if request is None or request.state not in (
                    CancellationState.REQUESTED.value,
                    CancellationState.PROCESSING.value,
                ):
                    continue
                account = s.get(Account, request.account_id)
                if account is None:
                    continue
                self._finish_cancellation(s, account, request, now)
                done += 1
            self._commit()
        return done

    def _finish_cancellation(
        self, s: Session, account: Account, request: DataRequest, now: datetime
    ) -> None:
        request.state = CancellationState.PROCESSING.value
        keep_until = checks.add_years(now, self._policy.retention_years)
        keep_records_until(s, account.id, keep_until)
        self._vault.retain_category(s, account.id, DataCategory.VERIFICATION_RECORDS, keep_until)
        for auto in AutoSignRepository(s).active_for(account.id):
            auto.state = AuthorizationState.REVOKED
            auto.revoked_at = now
            events.emit(
                s,
                events.auto_sign_revoked(auto.id, account.id, "cancellation"),
                subject=account.id,
                tenant=account.tenant_id,
            )
        for op in OperatorAuthorizationRepository(s).active_involving(account.id):
            op.state = AuthorizationState.REVOKED
            op.revoked_at = now
            events.emit(
                s,
                events.operator_revoked(op.id, op.enterprise_account_id, op.operator_account_id),
                subject=op.enterprise_account_id,
                tenant=op.tenant_id,
            )
        # Deletable data goes: the profile and contact data, the request's free text.
        self._vault.remove(
            s,
            account.id,
            categories=[DataCategory.IDENTITY, DataCategory.CONTACT, DataCategory.BANK_CARD],
        )
        account.phone_lookup = account.email_lookup = None
        account.masked_phone = account.masked_email = ""
        account.display_name_masked = "*"
        account.state = AccountState.CANCELLED
        account.cancelled_at = now
        retained = [
            self._delete_category(s, account, c, set())
            for c in (
                DataCategory.VERIFICATION_RECORDS,
                DataCategory.WILLINGNESS_RECORDS,
                DataCategory.SIGNATURE_RECORDS,
            )
        ]
        retained = [
            replace(o, disposition=RETAINED_BY_LAW, retained_until=keep_until)
            if o.disposition != NONE_HELD
            else o
            for o in retained
        ]
        request.state = CancellationState.COMPLETED.value
        request.completed_at = now
        outcome = dict(request.outcome or {})
        outcome["retained"] = [_outcome_json(o) for o in retained]
        request.outcome = outcome
        events.emit(
            s,
            events.account_cancelled(account.id, request.id, retained),
            subject=account.id,
            tenant=account.tenant_id,
        )

    def purge_expired_records(self) -> int:
        """The retention job: delete records whose legal retention has ended.

        A verification that is an active account's current proof is kept while it is.
        """
        now = self._clock()
        purged = 0
        with self._db.session() as s:
            accounts: dict[str, set[DataCategory]] = {}
            for v in VerificationRepository(s).past_retention(now):
                account = s.get(Account, v.account_id)
                if (
                    account is not None
                    and account.verification_id == v.id
                    and account.state
                    in (
                        AccountState.VERIFIED,
                        AccountState.REGISTERED,
                        AccountState.SUSPENDED,
                    )
                ):
                    continue
                self._vault.remove(s, v.account_id, owner_ref=f"verification:{v.id}")
                s.delete(v)
                accounts.setdefault(v.account_id, set()).add(DataCategory.VERIFICATION_RECORDS)
            for grant in GrantRepository(s).past_retention(now):
                accounts.setdefault(grant.account_id, set()).add(DataCategory.SIGNATURE_RECORDS)
                s.delete(grant)
            for check in WillingnessRepository(s).past_retention(now):
                accounts.setdefault(check.account_id, set()).add(DataCategory.WILLINGNESS_RECORDS)
                s.delete(check)
            for auto in AutoSignRepository(s).past_retention(now):
                accounts.setdefault(auto.account_id, set()).add(DataCategory.SIGNATURE_RECORDS)
                s.delete(auto)
            for account_id, categories in accounts.items():
                account = s.get(Account, account_id)
                self._vault.shred_if_empty(s, account_id)
                events.emit(
                    s,
                    events.data_purged(account_id, sorted(categories)),
                    subject=account_id,
                    tenant=account.tenant_id if account is not None else "",
                )
                purged += 1
        if purged:
            self._commit()
        return purged


# ---- helpers -------------------------------------------------------------------------


def _page_size(value: int) -> int:
    if value < 0:
        raise InvalidArgument("page_size must not be negative")
    return min(value or 50, 500)


def _scope(value: str) -> str:
    scope = value.strip()
    if not scope or len(scope) > 64 or not all(c.isalnum() or c in "._-:" for c in scope):
        raise InvalidArgument("scopes are 1 to 64 characters of letters, digits and . _ - :")
    return scope


def _secret_row(credential_id: str, secret: str, now: datetime) -> CredentialSecret:
    return CredentialSecret(
        credential_id=credential_id, secret_hash=_hash_secret(secret), created_at=now
    )


def _hash_secret(secret: str) -> str:
    # The secret is 256 random bits, so a plain SHA-256 cannot be brute-forced.
    return hashlib.sha256(secret.encode()).hexdigest()


def _credential_view(record: ApiCredentialRecord, now: datetime) -> CredentialView:
    state = record.state
    if (
        state is CredentialState.ACTIVE
        and record.expires_at is not None
        and record.expires_at <= now
    ):
        state = CredentialState.EXPIRED
    return CredentialView(
        credential_id=record.id,
        tenant_id=record.tenant_id,
        display_name=record.display_name,
        scopes=tuple(record.scopes),
        state=state.value,
        created_at=record.created_at,
        expires_at=record.expires_at,
        rotated_at=record.rotated_at,
        last_used_at=record.last_used_at,
    )


def _auto_view(record: AutoSignAuthorizationRecord, now: datetime) -> AutoSignView:
    state = record.state
    if state is AuthorizationState.ACTIVE:
        if record.uses >= record.max_uses:
            state = AuthorizationState.EXHAUSTED
        elif record.valid_until <= now:
            state = AuthorizationState.EXPIRED
    return AutoSignView(
        authorization_id=record.id,
        tenant_id=record.tenant_id,
        account_id=record.account_id,
        key_id=record.key_id,
        business_scope=record.business_scope,
        valid_from=record.valid_from,
        valid_until=record.valid_until,
        max_uses=record.max_uses,
        uses=record.uses,
        state=state,
        willingness_grant_id=record.willingness_grant_id,
        created_at=record.created_at,
        revoked_at=record.revoked_at,
    )


def _check_digests(digests: Sequence[Digest], limit: int) -> None:
    if not digests:
        raise InvalidArgument("at least one digest is required")
    if len(digests) > limit:
        raise InvalidArgument(f"at most {limit} digests per check")
    for d in digests:
        size = DIGEST_SIZES.get(d.algorithm)
        if size is None:
            raise InvalidArgument("digest algorithm must be sha256, sha384, sha512 or sm3")
        if len(d.value) != size:
            raise InvalidArgument(f"a {d.algorithm} digest is {size} bytes")


def _outcome_json(outcome: CategoryOutcome) -> dict[str, Any]:
    return {
        "category": outcome.category.value,
        "disposition": outcome.disposition,
        "retained_until": outcome.retained_until.isoformat() if outcome.retained_until else None,
    }


def jwk_of(view: GrantKeyView) -> dict[str, str]:
    """The JWK (EC P-256) of a grant verification key."""
    public = load_der_public_key(view.spki_der)
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise FailedPrecondition("grant key is not an EC key")
    numbers = public.public_numbers()
    return {
        "kid": view.kid,
        "alg": "ES256",
        "kty": "EC",
        "crv": "P-256",
        "use": "sig",
        "x": _b64url(numbers.x.to_bytes(32, "big")),
        "y": _b64url(numbers.y.to_bytes(32, "big")),
    }


__all__ = ["CodeSender", "GrantKeyBackend", "IdentityService", "jwk_of"]

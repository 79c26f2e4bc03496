"""The ground the identity rules stand on: ports, shared checks, and the service base.

:class:`ServiceBase` holds what every group of rules needs: its collaborators (database,
vault, providers, notify, the signer's grant key), who may call what, how an account is
loaded and shown, how a code is rate limited and sent. The groups of rules
(:mod:`~signet.identity.accounts`, :mod:`~signet.identity.verification`,
:mod:`~signet.identity.willingness`, :mod:`~signet.identity.privacy`) build on it and
:class:`signet.identity.service.IdentityService` combines them.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from signet.common.auth import Principal
from signet.common.db import Database
from signet.common.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    ServiceError,
)
from signet.common.masking import mask_email, mask_id_number, mask_middle, mask_name, mask_phone
from signet.identity import checks, events
from signet.identity.domain import (
    DIGEST_SIZES,
    AccountView,
    AutoSignView,
    CategoryOutcome,
    CredentialView,
    Digest,
    OperatorAuthorizationView,
    Policy,
    VerificationSummaryView,
)
from signet.identity.models import (
    Account,
    AccountState,
    AccountType,
    ApiCredentialRecord,
    AuthorizationState,
    AutoSignAuthorizationRecord,
    CredentialSecret,
    CredentialState,
    DataCategory,
    DataRequest,
    DataRequestKind,
    OperatorAuthorizationRecord,
    OperatorRight,
    VerificationRecord,
    VerificationStatus,
    WillingnessCheck,
)
from signet.identity.providers import Providers
from signet.identity.repository import (
    OperatorAuthorizationRepository,
    VerificationRepository,
    WillingnessRepository,
)
from signet.identity.vault import ACCOUNT_OWNER, PersonalDataVault

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


class ServiceBase:
    """Collaborators and shared rules of the identity service."""

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

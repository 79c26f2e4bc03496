"""Real-name verification: local checks, provider adapters, one-time codes, outcomes."""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from signet.common.auth import Principal
from signet.common.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from signet.common.masking import mask_id_number, mask_middle, mask_name, mask_phone
from signet.identity import checks, events
from signet.identity.base import (
    ServiceBase,
    _new_id,
    _phone,
    _require_id,
    _text,
)
from signet.identity.domain import (
    Actor,
    CompletedVerification,
    StartedVerification,
    VerificationInput,
    VerificationProof,
)
from signet.identity.models import (
    Account,
    AccountState,
    AccountType,
    DataCategory,
    FailureReason,
    OperatorRight,
    VerificationMethod,
    VerificationRecord,
    VerificationStatus,
)
from signet.identity.providers import ProviderUnavailable
from signet.identity.repository import (
    VerificationRepository,
)


class VerificationRules(ServiceBase):
    """Starting and completing real-name verifications."""

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

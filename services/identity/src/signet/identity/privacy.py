"""Personal-data rights: export, correction, deletion, cancellation and retention."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from signet.common.auth import Principal
from signet.common.errors import (
    InvalidArgument,
    NotFound,
)
from signet.identity import checks, events
from signet.identity.base import (
    ServiceBase,
    _outcome_json,
    _request_id,
    _text,
)
from signet.identity.domain import (
    AWAITING_JOINT_INSTRUCTION,
    DELETED,
    NONE_HELD,
    RETAINED_BY_LAW,
    AccountView,
    CancellationView,
    CategoryOutcome,
)
from signet.identity.models import (
    Account,
    AccountState,
    AccountType,
    AuthorizationState,
    CancellationState,
    DataCategory,
    DataRequest,
    DataRequestKind,
)
from signet.identity.repository import (
    AccountRepository,
    AutoSignRepository,
    DataRequestRepository,
    GrantRepository,
    OperatorAuthorizationRepository,
    VerificationRepository,
    WillingnessRepository,
    keep_records_until,
    retained_until_of_field,
)
from signet.identity.vault import ACCOUNT_OWNER


class PrivacyRules(ServiceBase):
    """Export, correction, deletion, cancellation and the retention job."""

    # ---- personal-data rights --------------------------------------------------------

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

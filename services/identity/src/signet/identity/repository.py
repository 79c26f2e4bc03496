"""Data access for identity's records: the queries the service's rules are built on.

Each repository works inside the caller's unit of work (a session from
:meth:`signet.common.db.Database.session`), so a rule and its event commit together.
Single-row look-ups by primary key stay ``session.get`` in the service.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from signet.common.db import get_or_not_found
from signet.identity.models import (
    Account,
    AccountState,
    AuthorizationState,
    AutoSignAuthorizationRecord,
    CancellationState,
    CredentialSecret,
    DataRequest,
    DataRequestKind,
    GrantKey,
    GrantRecord,
    OperatorAuthorizationRecord,
    Tenant,
    VaultEntry,
    VerificationRecord,
    VerificationStatus,
    WillingnessCheck,
    WillingnessStatus,
)


def _count(session: Session, stmt: object) -> int:
    return int(session.scalar(stmt) or 0)  # type: ignore[call-overload]


def _changed(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


class TenantRepository:
    """Tenants of one unit of work."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, tenant: Tenant) -> Tenant:
        """Store a new tenant (a duplicate id fails with AlreadyExists at commit)."""
        self._session.add(tenant)
        self._session.flush()
        return tenant

    def get(self, tenant_id: str) -> Tenant:
        """The tenant, or NotFound."""
        return get_or_not_found(self._session, Tenant, tenant_id, "tenant")

    def by_request_id(self, request_id: str) -> Tenant | None:
        """The tenant a CreateTenant with this idempotency key made."""
        return self._session.scalars(select(Tenant).where(Tenant.request_id == request_id)).first()


class AccountRepository:
    """Accounts of one unit of work."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, account: Account) -> Account:
        """Store a new account."""
        self._session.add(account)
        self._session.flush()
        return account

    def get(self, account_id: str) -> Account:
        """The account, or NotFound."""
        return get_or_not_found(self._session, Account, account_id, "account")

    def by_request_id(self, tenant_id: str, request_id: str) -> Account | None:
        """The account a RegisterAccount with this idempotency key made in the tenant."""
        return self._session.scalars(
            select(Account).where(Account.tenant_id == tenant_id, Account.request_id == request_id)
        ).first()

    def find_by_id_number_lookup(self, tenant_id: str, lookup: str) -> Sequence[Account]:
        """Accounts whose keyed hash of the ID number equals ``lookup``."""
        stmt = select(Account).where(
            Account.tenant_id == tenant_id, Account.id_number_lookup == lookup
        )
        return self._session.scalars(stmt).all()

    def count_wards(self, guardian_account_id: str) -> int:
        """Accounts (not cancelled) whose guardian is this account."""
        return _count(
            self._session,
            select(func.count())
            .select_from(Account)
            .where(
                Account.guardian_account_id == guardian_account_id,
                Account.state != AccountState.CANCELLED,
            ),
        )


class OperatorAuthorizationRepository:
    """Operator authorisations of one unit of work."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def by_request_id(self, tenant_id: str, request_id: str) -> OperatorAuthorizationRecord | None:
        """The authorisation a grant request with this idempotency key made."""
        return self._session.scalars(
            select(OperatorAuthorizationRecord).where(
                OperatorAuthorizationRecord.tenant_id == tenant_id,
                OperatorAuthorizationRecord.request_id == request_id,
            )
        ).first()

    def page(
        self,
        *,
        enterprise_account_id: str,
        operator_account_id: str,
        active_at: datetime | None,
        after: str,
        limit: int,
    ) -> Sequence[OperatorAuthorizationRecord]:
        """Authorisations by id after ``after``; only those active at ``active_at`` if set."""
        stmt = select(OperatorAuthorizationRecord).where(OperatorAuthorizationRecord.id > after)
        if enterprise_account_id:
            stmt = stmt.where(
                OperatorAuthorizationRecord.enterprise_account_id == enterprise_account_id
            )
        if operator_account_id:
            stmt = stmt.where(
                OperatorAuthorizationRecord.operator_account_id == operator_account_id
            )
        if active_at is not None:
            stmt = stmt.where(
                OperatorAuthorizationRecord.state == AuthorizationState.ACTIVE,
                OperatorAuthorizationRecord.valid_until > active_at,
            )
        return self._session.scalars(
            stmt.order_by(OperatorAuthorizationRecord.id).limit(limit)
        ).all()

    def current(
        self, enterprise_account_id: str, operator_account_id: str, now: datetime, only_id: str = ""
    ) -> Sequence[OperatorAuthorizationRecord]:
        """Active authorisations of the operator for the enterprise valid at ``now``."""
        stmt = select(OperatorAuthorizationRecord).where(
            OperatorAuthorizationRecord.enterprise_account_id == enterprise_account_id,
            OperatorAuthorizationRecord.operator_account_id == operator_account_id,
            OperatorAuthorizationRecord.state == AuthorizationState.ACTIVE,
            OperatorAuthorizationRecord.valid_from <= now,
            OperatorAuthorizationRecord.valid_until > now,
        )
        if only_id:
            stmt = stmt.where(OperatorAuthorizationRecord.id == only_id)
        return self._session.scalars(stmt).all()

    def active_involving(self, account_id: str) -> Sequence[OperatorAuthorizationRecord]:
        """Active authorisations where the account is the enterprise or the operator."""
        return self._session.scalars(
            select(OperatorAuthorizationRecord).where(
                or_(
                    OperatorAuthorizationRecord.enterprise_account_id == account_id,
                    OperatorAuthorizationRecord.operator_account_id == account_id,
                ),
                OperatorAuthorizationRecord.state == AuthorizationState.ACTIVE,
            )
        ).all()


class CredentialRepository:
    """API credentials' secrets of one unit of work."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def secrets(self, credential_id: str) -> Sequence[CredentialSecret]:
        """Every stored secret hash of the credential."""
        return self._session.scalars(
            select(CredentialSecret).where(CredentialSecret.credential_id == credential_id)
        ).all()


class VerificationRepository:
    """Real-name verification records of one unit of work."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def count_started_since(self, account_id: str, since: datetime) -> int:
        """Verifications the account started after ``since``."""
        return _count(
            self._session,
            select(func.count())
            .select_from(VerificationRecord)
            .where(
                VerificationRecord.account_id == account_id, VerificationRecord.created_at > since
            ),
        )

    def count_codes_to(self, phone_lookup: str, since: datetime) -> int:
        """Verification codes sent to the phone (by keyed hash) after ``since``."""
        return _count(
            self._session,
            select(func.count())
            .select_from(VerificationRecord)
            .where(
                VerificationRecord.phone_lookup == phone_lookup,
                VerificationRecord.created_at > since,
            ),
        )

    def expire(self, verification_id: str) -> None:
        """End a verification whose code could not be sent."""
        self._session.execute(
            update(VerificationRecord)
            .where(VerificationRecord.id == verification_id)
            .values(status=VerificationStatus.EXPIRED, code_hash=None)
        )

    def for_account(self, account_id: str) -> Sequence[VerificationRecord]:
        """Every verification of the account."""
        return self._session.scalars(
            select(VerificationRecord).where(VerificationRecord.account_id == account_id)
        ).all()

    def retained_until(self, account_id: str) -> datetime | None:
        """The latest retention end of the account's verifications (None: none held)."""
        return self._session.scalar(
            select(func.max(VerificationRecord.retained_until)).where(
                VerificationRecord.account_id == account_id
            )
        )

    def past_retention(self, now: datetime) -> Sequence[VerificationRecord]:
        """Verifications whose retention ended before ``now``."""
        return self._session.scalars(
            select(VerificationRecord).where(VerificationRecord.retained_until < now)
        ).all()


class WillingnessRepository:
    """Willingness checks of one unit of work."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def count_started_since(self, account_id: str, since: datetime) -> int:
        """Checks the account started after ``since``."""
        return _count(
            self._session,
            select(func.count())
            .select_from(WillingnessCheck)
            .where(WillingnessCheck.account_id == account_id, WillingnessCheck.created_at > since),
        )

    def count_codes_to(self, destination_lookup: str, since: datetime) -> int:
        """Codes sent to the destination (by keyed hash) after ``since``."""
        return _count(
            self._session,
            select(func.count())
            .select_from(WillingnessCheck)
            .where(
                WillingnessCheck.destination_lookup == destination_lookup,
                WillingnessCheck.created_at > since,
            ),
        )

    def confirm(self, willingness_id: str, grant_id: str, now: datetime) -> bool:
        """Mark a PENDING check confirmed with its grant; False when it no longer was pending."""
        result = self._session.execute(
            update(WillingnessCheck)
            .where(
                WillingnessCheck.id == willingness_id,
                WillingnessCheck.status == WillingnessStatus.PENDING,
            )
            .values(
                status=WillingnessStatus.CONFIRMED,
                confirmed_at=now,
                grant_id=grant_id,
                code_hash=None,
            )
        )
        return _changed(result) == 1

    def expire(self, willingness_id: str) -> None:
        """End a check whose code could not be sent."""
        self._session.execute(
            update(WillingnessCheck)
            .where(WillingnessCheck.id == willingness_id)
            .values(status=WillingnessStatus.EXPIRED, code_hash=None)
        )

    def open_count(self, account_id: str, now: datetime) -> int:
        """Checks of the account still waiting for their proof."""
        return _count(
            self._session,
            select(func.count())
            .select_from(WillingnessCheck)
            .where(
                WillingnessCheck.account_id == account_id,
                WillingnessCheck.status == WillingnessStatus.PENDING,
                WillingnessCheck.expires_at > now,
            ),
        )

    def for_account(self, account_id: str) -> Sequence[WillingnessCheck]:
        """Every check of the account."""
        return self._session.scalars(
            select(WillingnessCheck).where(WillingnessCheck.account_id == account_id)
        ).all()

    def retained_until(self, account_id: str) -> datetime | None:
        """The latest retention end of the account's checks (None: none held)."""
        return self._session.scalar(
            select(func.max(WillingnessCheck.retained_until)).where(
                WillingnessCheck.account_id == account_id
            )
        )

    def delete_for_transactions(self, account_id: str, transaction_ids: Collection[str]) -> None:
        """Delete the account's checks of these signing transactions."""
        self._session.execute(
            delete(WillingnessCheck).where(
                WillingnessCheck.account_id == account_id,
                WillingnessCheck.transaction_id.in_(list(transaction_ids)),
            )
        )

    def past_retention(self, now: datetime) -> Sequence[WillingnessCheck]:
        """Checks whose retention ended before ``now``."""
        return self._session.scalars(
            select(WillingnessCheck).where(WillingnessCheck.retained_until < now)
        ).all()


class GrantRepository:
    """Records of issued signing grants of one unit of work."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def by_request(self, authorization_id: str, request_id: str) -> GrantRecord | None:
        """The grant an automatic-signing use with this idempotency key issued."""
        return self._session.scalars(
            select(GrantRecord).where(
                GrantRecord.auto_sign_authorization_id == authorization_id,
                GrantRecord.request_id == request_id,
            )
        ).first()

    def consume(self, grant_id: str, now: datetime) -> bool:
        """Mark a grant used here (a confirmation grant); False when it already was."""
        result = self._session.execute(
            update(GrantRecord)
            .where(GrantRecord.id == grant_id, GrantRecord.consumed_at.is_(None))
            .values(consumed_at=now)
        )
        return _changed(result) == 1

    def live_count(self, account_id: str, now: datetime) -> int:
        """Grants of the account that are unexpired and not used here."""
        return _count(
            self._session,
            select(func.count())
            .select_from(GrantRecord)
            .where(
                GrantRecord.account_id == account_id,
                GrantRecord.expires_at > now,
                GrantRecord.consumed_at.is_(None),
            ),
        )

    def for_account(self, account_id: str) -> Sequence[GrantRecord]:
        """Every grant of the account."""
        return self._session.scalars(
            select(GrantRecord).where(GrantRecord.account_id == account_id)
        ).all()

    def past_retention(self, now: datetime) -> Sequence[GrantRecord]:
        """Grants whose retention ended before ``now``."""
        return self._session.scalars(
            select(GrantRecord).where(GrantRecord.retained_until < now)
        ).all()


class AutoSignRepository:
    """Automatic-signing authorisations of one unit of work."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def by_request_id(self, tenant_id: str, request_id: str) -> AutoSignAuthorizationRecord | None:
        """The authorisation a create request with this idempotency key made."""
        return self._session.scalars(
            select(AutoSignAuthorizationRecord).where(
                AutoSignAuthorizationRecord.tenant_id == tenant_id,
                AutoSignAuthorizationRecord.request_id == request_id,
            )
        ).first()

    def for_account(
        self, account_id: str, after: str = ""
    ) -> Sequence[AutoSignAuthorizationRecord]:
        """The account's authorisations by id, after ``after``."""
        return self._session.scalars(
            select(AutoSignAuthorizationRecord)
            .where(
                AutoSignAuthorizationRecord.account_id == account_id,
                AutoSignAuthorizationRecord.id > after,
            )
            .order_by(AutoSignAuthorizationRecord.id)
        ).all()

    def use_once(self, authorization_id: str) -> bool:
        """Count one use of an active authorisation below its maximum; False otherwise."""
        result = self._session.execute(
            update(AutoSignAuthorizationRecord)
            .where(
                AutoSignAuthorizationRecord.id == authorization_id,
                AutoSignAuthorizationRecord.state == AuthorizationState.ACTIVE,
                AutoSignAuthorizationRecord.uses < AutoSignAuthorizationRecord.max_uses,
            )
            .values(uses=AutoSignAuthorizationRecord.uses + 1)
        )
        return _changed(result) == 1

    def active_for(self, account_id: str) -> Sequence[AutoSignAuthorizationRecord]:
        """The account's authorisations in state ACTIVE."""
        return self._session.scalars(
            select(AutoSignAuthorizationRecord).where(
                AutoSignAuthorizationRecord.account_id == account_id,
                AutoSignAuthorizationRecord.state == AuthorizationState.ACTIVE,
            )
        ).all()

    def past_retention(self, now: datetime) -> Sequence[AutoSignAuthorizationRecord]:
        """Ended authorisations whose retention ended before ``now``."""
        return self._session.scalars(
            select(AutoSignAuthorizationRecord).where(
                AutoSignAuthorizationRecord.retained_until < now,
                AutoSignAuthorizationRecord.state != AuthorizationState.ACTIVE,
            )
        ).all()


class DataRequestRepository:
    """Data-subject requests of one unit of work."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def for_account(self, account_id: str) -> Sequence[DataRequest]:
        """Every request of the account."""
        return self._session.scalars(
            select(DataRequest).where(DataRequest.account_id == account_id)
        ).all()

    def latest_cancellation(self, account_id: str) -> DataRequest | None:
        """The account's newest cancellation request."""
        return self._session.scalars(
            select(DataRequest)
            .where(DataRequest.account_id == account_id, DataRequest.kind == DataRequestKind.CANCEL)
            .order_by(DataRequest.requested_at.desc())
        ).first()

    def due_cancellations(self, requested_before: datetime) -> Sequence[str]:
        """Ids of cancellations still open that were requested before the cut-off."""
        return self._session.scalars(
            select(DataRequest.id).where(
                DataRequest.kind == DataRequestKind.CANCEL,
                DataRequest.state.in_(
                    [CancellationState.REQUESTED.value, CancellationState.PROCESSING.value]
                ),
                DataRequest.requested_at <= requested_before,
            )
        ).all()


class GrantKeyRepository:
    """Identity's grant keys."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def current(self) -> GrantKey | None:
        """The newest key still in use for new grants."""
        return self._session.scalars(
            select(GrantKey)
            .where(GrantKey.not_after.is_(None))
            .order_by(GrantKey.created_at.desc())
        ).first()

    def all(self) -> Sequence[GrantKey]:
        """Every key, oldest first."""
        return self._session.scalars(select(GrantKey).order_by(GrantKey.created_at)).all()


def retained_until_of_field(session: Session, account_id: str, field: str) -> datetime | None:
    """The latest retention end of the account's vault entries named ``field``."""
    return session.scalar(
        select(func.max(VaultEntry.retained_until)).where(
            VaultEntry.account_id == account_id, VaultEntry.field == field
        )
    )


def keep_records_until(session: Session, account_id: str, until: datetime) -> None:
    """Extend the retention of everything the law keeps about the account to ``until``."""
    for model in (VerificationRecord, WillingnessCheck, GrantRecord, AutoSignAuthorizationRecord):
        session.execute(
            update(model)
            .where(
                model.account_id == account_id,
                or_(model.retained_until.is_(None), model.retained_until < until),
            )
            .values(retained_until=until)
        )

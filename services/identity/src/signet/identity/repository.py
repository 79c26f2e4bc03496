"""Data access for tenants and accounts."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from signet.common.db import get_or_not_found
from signet.identity.models import Account, Tenant


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

    def find_by_id_number_lookup(self, tenant_id: str, lookup: str) -> Sequence[Account]:
        """Accounts whose keyed hash of the ID number equals ``lookup``."""
        stmt = select(Account).where(
            Account.tenant_id == tenant_id, Account.id_number_lookup == lookup
        )
        return self._session.scalars(stmt).all()

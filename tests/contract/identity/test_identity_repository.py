"""Identity repositories on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from signet.common.db import Database
from signet.common.errors import AlreadyExists, FailedPrecondition, NotFound
from signet.identity.models import MIGRATIONS_DIR, Account, AccountState, AccountType, Tenant
from signet.identity.repository import AccountRepository, TenantRepository


@pytest.fixture
def db(migrated_db: Callable[[Path], Database]) -> Database:
    database = migrated_db(MIGRATIONS_DIR)
    with database.session() as s:
        TenantRepository(s).add(Tenant(id="t1", name="Tenant One"))
    return database


def _account(account_id: str, tenant: str = "t1", ref: str | None = None) -> Account:
    return Account(
        id=account_id,
        tenant_id=tenant,
        external_ref=ref,
        type=AccountType.PERSON,
        display_name_masked="**明",
        id_number_lookup="lookup-" + account_id,
        masked_id_number="3301**********1234",
    )


def test_account_round_trips_in_registered_state(db: Database) -> None:
    with db.session() as s:
        AccountRepository(s).add(_account("a1"))
    with db.session() as s:
        account = AccountRepository(s).get("a1")
        assert account.state is AccountState.REGISTERED
        assert account.type is AccountType.PERSON
        assert account.masked_id_number == "3301**********1234"


def test_account_of_unknown_tenant_is_failed_precondition(db: Database) -> None:
    with pytest.raises(FailedPrecondition), db.session() as s:
        AccountRepository(s).add(_account("a1", tenant="nope"))


def test_external_reference_is_unique_per_tenant(db: Database) -> None:
    with db.session() as s:
        TenantRepository(s).add(Tenant(id="t2", name="Tenant Two"))
        AccountRepository(s).add(_account("a1", ref="crm-1"))
        AccountRepository(s).add(_account("a2", tenant="t2", ref="crm-1"))
    with pytest.raises(AlreadyExists), db.session() as s:
        AccountRepository(s).add(_account("a3", ref="crm-1"))


def test_lookup_by_keyed_hash_stays_within_the_tenant(db: Database) -> None:
    with db.session() as s:
        AccountRepository(s).add(_account("a1"))
    with db.session() as s:
        repo = AccountRepository(s)
        assert [a.id for a in repo.find_by_id_number_lookup("t1", "lookup-a1")] == ["a1"]
        assert repo.find_by_id_number_lookup("t2", "lookup-a1") == []


def test_unknown_tenant_and_account_are_not_found(db: Database) -> None:
    with pytest.raises(NotFound, match="tenant not found"), db.session() as s:
        TenantRepository(s).get("zz")
    with pytest.raises(NotFound, match="account not found"), db.session() as s:
        AccountRepository(s).get("zz")


def test_vault_round_trips_and_shreds_on_both_databases(db: Database) -> None:
    from signet.identity.backends.memory import MemoryKeyWrapper
    from signet.identity.models import DataCategory, DataKey, VaultEntry
    from signet.identity.vault import PersonalDataVault

    vault = PersonalDataVault(db, MemoryKeyWrapper())
    with db.session() as s:
        vault.put(s, "a1", "phone", "13812345678", DataCategory.CONTACT)
        vault.put(s, "a1", "phone", "13900001111", DataCategory.CONTACT)
    with db.session() as s:
        assert vault.get_all(s, "a1") == {"phone": "13900001111"}
        assert len(s.scalars(select(VaultEntry)).all()) == 1
    with db.session() as s:
        vault.remove(s, "a1")
    with db.session() as s:
        assert s.scalars(select(DataKey).where(DataKey.account_id == "a1")).first() is None


def test_migrations_create_what_the_models_declare(db: Database) -> None:
    from sqlalchemy import inspect

    from signet.identity.models import Base

    inspector = inspect(db.engine)
    for table in Base.metadata.sorted_tables:
        have = {c["name"] for c in inspector.get_columns(table.name)}
        assert have == {c.name for c in table.columns}, table.name

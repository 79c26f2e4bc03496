"""The personal-data vault: envelope encryption, keyed look-ups, crypto-shredding."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from signet.common.db import Database
from signet.common.errors import Internal
from signet.identity.backends.memory import MemoryKeyWrapper
from signet.identity.models import MIGRATIONS_DIR, DataCategory, DataKey, VaultEntry
from signet.identity.vault import PersonalDataVault


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database.from_url(f"sqlite:///{tmp_path / 'v.db'}")
    database.migrate(MIGRATIONS_DIR)
    return database


def test_values_round_trip_and_are_stored_encrypted(db: Database) -> None:
    vault = PersonalDataVault(db, MemoryKeyWrapper())
    with db.session() as s:
        vault.put(s, "a1", "id_number", "330106199003071234", DataCategory.IDENTITY)
    with db.session() as s:
        assert vault.get_all(s, "a1") == {"id_number": "330106199003071234"}
        entry = s.scalars(select(VaultEntry)).one()
        key = s.scalars(select(DataKey).where(DataKey.account_id == "a1")).one()
        assert b"330106199003071234" not in entry.ciphertext
        assert len(key.wrapped_key) == 12 + 32 + 16


def test_a_ciphertext_moved_to_another_field_does_not_open(db: Database) -> None:
    vault = PersonalDataVault(db, MemoryKeyWrapper(), cache_ttl=0)
    with db.session() as s:
        vault.put(s, "a1", "phone", "13812345678", DataCategory.CONTACT)
        vault.put(s, "a1", "email", "z@example.com", DataCategory.CONTACT)
    with db.session() as s:
        rows = {e.field: e for e in s.scalars(select(VaultEntry))}
        rows["email"].ciphertext, rows["email"].nonce = (
            rows["phone"].ciphertext,
            rows["phone"].nonce,
        )
    with pytest.raises(Internal), db.session() as s:
        vault.get_all(s, "a1")


def test_lookup_hashes_survive_a_restart_and_differ_per_kind(db: Database) -> None:
    wrapper = MemoryKeyWrapper()
    first = PersonalDataVault(db, wrapper)
    again = PersonalDataVault(db, wrapper)
    assert first.lookup("phone", "13812345678") == again.lookup("phone", "13812345678")
    assert first.lookup("phone", "13812345678") != first.lookup("email", "13812345678")


def test_removing_the_last_entry_destroys_the_data_key(db: Database) -> None:
    vault = PersonalDataVault(db, MemoryKeyWrapper())
    with db.session() as s:
        vault.put(s, "a1", "phone", "13812345678", DataCategory.CONTACT)
        vault.put(
            s, "a1", "id_number", "x", DataCategory.VERIFICATION_RECORDS, owner_ref="verification:v"
        )
    with db.session() as s:
        assert vault.remove(s, "a1", categories=[DataCategory.CONTACT]) == 1
        assert s.scalars(select(DataKey).where(DataKey.account_id == "a1")).first() is not None
    with db.session() as s:
        vault.remove(s, "a1", owner_ref="verification:v")
        assert s.scalars(select(DataKey).where(DataKey.account_id == "a1")).first() is None


def test_a_wrong_key_encryption_key_cannot_open_the_data(db: Database) -> None:
    PersonalDataVault(db, MemoryKeyWrapper())
    with pytest.raises(Internal):
        PersonalDataVault(db, MemoryKeyWrapper())

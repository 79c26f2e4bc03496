"""Signer repositories on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from signet.common.db import Database, utcnow
from signet.common.errors import AlreadyExists, NotFound, PermissionDenied
from signet.signer.models import MIGRATIONS_DIR, KeyRecord, KeyState
from signet.signer.repository import ConsumedGrantRepository, KeyRepository


@pytest.fixture
def db(migrated_db: Callable[[Path], Database]) -> Database:
    return migrated_db(MIGRATIONS_DIR)


def _key(key_id: str, tenant: str = "t1", account: str | None = "a1") -> KeyRecord:
    return KeyRecord(
        id=key_id,
        algorithm="ec_p256",
        purpose="signing",
        tenant=tenant,
        account_id=account,
        public_key_der=b"\x30\x00",
    )


def test_key_round_trips_with_defaults(db: Database) -> None:
    with db.session() as s:
        KeyRepository(s).add(_key("k1"))
    with db.session() as s:
        key = KeyRepository(s).get("k1")
        assert key.state is KeyState.ACTIVE
        assert key.sign_count == 0
        assert key.created_at.tzinfo is not None
        assert key.public_key_der == b"\x30\x00"


def test_unknown_key_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound, match="key not found"), db.session() as s:
        KeyRepository(s).get("missing")


def test_duplicate_key_id_is_already_exists_and_keeps_the_first(db: Database) -> None:
    with db.session() as s:
        KeyRepository(s).add(_key("k1", account="first"))
    with pytest.raises(AlreadyExists), db.session() as s:
        KeyRepository(s).add(_key("k1", account="second"))
    with db.session() as s:
        assert KeyRepository(s).get("k1").account_id == "first"


def test_keys_are_listed_per_owner_in_pages(db: Database) -> None:
    with db.session() as s:
        repo = KeyRepository(s)
        for i in range(5):
            repo.add(_key(f"k{i}"))
        repo.add(_key("other", tenant="t2"))
    with db.session() as s:
        repo = KeyRepository(s)
        first = [k.id for k in repo.list_for_owner("t1", limit=3)]
        rest = [k.id for k in repo.list_for_owner("t1", limit=3, after=first[-1])]
        assert first == ["k0", "k1", "k2"]
        assert rest == ["k3", "k4"]
        assert [k.id for k in repo.list_for_owner("t2")] == ["other"]
        assert repo.list_for_owner("t1", "nobody") == []


def test_a_grant_is_consumed_once_and_the_transaction_survives_a_replay(db: Database) -> None:
    expires = utcnow() + timedelta(minutes=5)
    with db.session() as s:
        ConsumedGrantRepository(s).consume("g1", "k1", expires)
    with db.session() as s:
        repo = ConsumedGrantRepository(s)
        with pytest.raises(PermissionDenied, match="already been used"):
            repo.consume("g1", "k1", expires)
        repo.consume("g2", "k1", expires)  # same transaction still usable
    with db.session() as s, pytest.raises(PermissionDenied):
        ConsumedGrantRepository(s).consume("g2", "k1", expires)


def test_expired_grants_are_purged(db: Database) -> None:
    now = utcnow()
    with db.session() as s:
        repo = ConsumedGrantRepository(s)
        repo.consume("old", "k1", now - timedelta(minutes=1))
        repo.consume("new", "k1", now + timedelta(minutes=1))
    with db.session() as s:
        assert ConsumedGrantRepository(s).purge_expired(now) == 1
    with db.session() as s:
        ConsumedGrantRepository(s).consume("old", "k1", now)  # forgotten, so accepted again

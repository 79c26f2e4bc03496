"""Evidence repositories on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from signet.common.db import Database, utcnow
from signet.common.errors import AlreadyExists
from signet.evidence.models import MIGRATIONS_DIR, LogEntry, TreeHead
from signet.evidence.repository import LogRepository


@pytest.fixture
def db(migrated_db: Callable[[Path], Database]) -> Database:
    return migrated_db(MIGRATIONS_DIR)


def _entry(event_id: str) -> LogEntry:
    data = event_id.encode()
    return LogEntry(
        event_id=event_id,
        event_type="signet.events.v1.SignatureCreated",
        leaf_data=data,
        leaf_hash=hashlib.sha256(b"\x00" + data).digest(),
    )


def test_entries_are_sequenced_in_arrival_order(db: Database) -> None:
    with db.session() as s:
        repo = LogRepository(s)
        for i in range(4):
            repo.add_entry(_entry(f"e{i}"))
    with db.session() as s:
        repo = LogRepository(s)
        pending = repo.unsequenced(limit=3)
        assert [e.event_id for e in pending] == ["e0", "e1", "e2"]
        for index, entry in enumerate(pending):
            entry.leaf_index = index
    with db.session() as s:
        repo = LogRepository(s)
        assert repo.tree_size() == 3
        assert [e.event_id for e in repo.unsequenced(limit=10)] == ["e3"]
        assert repo.leaf_hashes(1, 3) == [_entry("e1").leaf_hash, _entry("e2").leaf_hash]


def test_the_same_event_is_appended_once(db: Database) -> None:
    with db.session() as s:
        LogRepository(s).add_entry(_entry("dup"))
    with pytest.raises(AlreadyExists), db.session() as s:
        LogRepository(s).add_entry(_entry("dup"))


def test_latest_tree_head_is_the_largest(db: Database) -> None:
    with db.session() as s:
        repo = LogRepository(s)
        assert repo.latest_tree_head() is None
        for size in (1, 7, 3):
            repo.add_tree_head(
                TreeHead(tree_size=size, root_hash=bytes(32), timestamp=utcnow(), signature=b"s")
            )
    with db.session() as s:
        head = LogRepository(s).latest_tree_head()
        assert head is not None
        assert head.tree_size == 7

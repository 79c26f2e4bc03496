"""Evidence repositories on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from signet.common.db import Database, utcnow
from signet.common.errors import AlreadyExists
from signet.common.events import new_envelope
from signet.events.v1 import events_pb2
from signet.evidence import merkle
from signet.evidence.backends.memory import MemoryKeyService
from signet.evidence.models import MIGRATIONS_DIR, LogEntry, TreeHead
from signet.evidence.repository import LogRepository
from signet.evidence.service import EvidenceLog


@pytest.fixture
def db(migrated_db: Callable[[Path], Database]) -> Database:
    return migrated_db(MIGRATIONS_DIR)


def _entry(event_id: str, tx: str = "") -> LogEntry:
    data = event_id.encode()
    return LogEntry(
        event_id=event_id,
        event_type="signet.events.v1.SignatureCreated",
        transaction_id=tx,
        event_time=utcnow(),
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
        repo.sequence([(e.id, index) for index, e in enumerate(pending)])
    with db.session() as s:
        repo = LogRepository(s)
        assert repo.pending_count() == 1
        assert [e.event_id for e in repo.unsequenced(limit=10)] == ["e3"]
        second = repo.by_leaf_index(1)
        assert second is not None
        assert second.event_id == "e1"


def test_the_same_event_is_appended_once(db: Database) -> None:
    with db.session() as s:
        LogRepository(s).add_entry(_entry("dup"))
    with pytest.raises(AlreadyExists), db.session() as s:
        LogRepository(s).add_entry(_entry("dup"))


def test_a_subtree_hash_is_stored_once(db: Database) -> None:
    with db.session() as s:
        LogRepository(s).add_nodes({(0, 0): b"\x01" * 32, (1, 0): b"\x02" * 32})
    with db.session() as s:
        assert LogRepository(s).nodes([(0, 0), (1, 0), (2, 0)]) == {
            (0, 0): b"\x01" * 32,
            (1, 0): b"\x02" * 32,
        }
    with pytest.raises(AlreadyExists), db.session() as s:
        LogRepository(s).add_nodes({(1, 0): b"\x03" * 32})


def test_latest_tree_head_is_the_largest_and_newest(db: Database) -> None:
    with db.session() as s:
        repo = LogRepository(s)
        assert repo.latest_tree_head() is None
        for size, sig in ((1, b"a"), (7, b"b"), (3, b"c"), (7, b"d")):
            repo.add_tree_head(
                TreeHead(
                    tree_size=size,
                    root_hash=bytes(32),
                    timestamp=utcnow(),
                    signature=sig,
                    key_id="k-1",
                )
            )
    with db.session() as s:
        head = LogRepository(s).latest_tree_head()
        assert head is not None
        assert (head.tree_size, head.signature) == (7, b"d")


def test_related_finds_entries_by_reference_and_transaction(db: Database) -> None:
    with db.session() as s:
        repo = LogRepository(s)
        repo.add_entry(_entry("a", tx="tx-1"), [("serial", "0a")])
        repo.add_entry(_entry("b", tx="tx-2"), [("serial", "0b"), ("digest", "sha256:00")])
        repo.add_entry(_entry("c", tx="tx-3"))
        repo.sequence([(e.id, i) for i, e in enumerate(repo.unsequenced(10))])
    with db.session() as s:
        found = LogRepository(s).related({("serial", "0b")}, {"tx-1"}, limit=10)
        assert [e.event_id for e in found] == ["a", "b"]


def test_the_log_integrates_and_proves_on_this_database(db: Database) -> None:
    log = EvidenceLog(db, MemoryKeyService(), batch_size=5)
    log.start()
    for _ in range(12):
        log.append(new_envelope(events_pb2.KeyCreated(key_id="k"), source="signer", subject="k"))
    while log.integrate().event_ids:
        pass
    head = log.tree_head()
    assert head.tree_size == 12
    for index in range(12):
        proof = log.inclusion_proof(leaf_index=index)
        merkle.verify_inclusion(index, 12, proof.leaf_hash, proof.hashes, head.root_hash)
    again = new_envelope(events_pb2.KeyCreated(key_id="k"), source="signer", subject="k")
    assert not log.append(again).duplicate
    assert log.append(again).duplicate
    log.close()

"""The evidence log with SQLite and in-memory keys: append, integrate, sign, prove."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from signet.common.db import Database
from signet.common.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from signet.common.events import EventEnvelope, new_envelope
from signet.common.outbox import OutboxMessage
from signet.common.v1 import common_pb2
from signet.events.v1 import events_pb2
from signet.evidence import merkle
from signet.evidence.backends.memory import MemoryKeyService
from signet.evidence.domain import EntryFilter, KeyPurpose
from signet.evidence.index import digest_ref
from signet.evidence.models import MIGRATIONS_DIR, MerkleNode
from signet.evidence.service import EvidenceLog, Sequencer
from signet.evidence.treehead import TreeHeadError, verify_tree_head


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database.from_url(f"sqlite:///{tmp_path / 'evidence.db'}")
    database.migrate(MIGRATIONS_DIR)
    return database


@pytest.fixture
def keys() -> MemoryKeyService:
    return MemoryKeyService()


@pytest.fixture
def log(db: Database, keys: MemoryKeyService) -> Iterator[EvidenceLog]:
    evidence = EvidenceLog(db, keys, batch_size=7)
    evidence.start()
    yield evidence
    evidence.close()


def signature_event(transaction: str = "tx-1", digest: bytes = b"\x11" * 32) -> EventEnvelope:
    payload = events_pb2.SignatureCreated(
        signature_id="s-" + uuid.uuid4().hex,
        key_id="k-1",
        certificate_serial="0abc",
        grant_id="g-1",
        digest=common_pb2.Digest(algorithm=common_pb2.HASH_ALGORITHM_SHA256, value=digest),
    )
    envelope = new_envelope(payload, source="signer", subject="k-1", tenant="t-1")
    envelope.transaction_id = transaction
    envelope.actor.account_id = "acc-1"
    envelope.actor.client_ip = "10.0.0.8"
    return envelope


def test_a_new_log_has_a_signed_empty_head(log: EvidenceLog) -> None:
    head = log.tree_head()
    assert head.tree_size == 0
    assert head.root_hash == merkle.EMPTY_ROOT
    verify_tree_head(head, log.public_key().spki_der)


def test_appended_entries_are_integrated_in_batches_with_provable_inclusion(
    log: EvidenceLog, keys: MemoryKeyService
) -> None:
    events = [signature_event() for _ in range(20)]
    for envelope in events:
        assert not log.append(envelope).duplicate
    sizes = []
    while True:
        result = log.integrate()
        if not result.event_ids:
            break
        sizes.append(result.head.tree_size if result.head else -1)
    assert sizes == [7, 14, 20]
    head = log.tree_head()
    verify_tree_head(head, log.public_key().spki_der)
    for envelope in events:
        proof = log.inclusion_proof(event_id=envelope.id)
        merkle.verify_inclusion(
            proof.leaf_index, head.tree_size, proof.leaf_hash, proof.hashes, head.root_hash
        )
    # an older signed size still proves against its own head
    old = log.inclusion_proof(leaf_index=3, tree_size=7)
    assert old.tree_head.tree_size == 7
    merkle.verify_inclusion(3, 7, old.leaf_hash, old.hashes, old.tree_head.root_hash)
    consistency = log.consistency_proof(7, 20)
    merkle.verify_consistency(
        7, 20, log.tree_head(7).root_hash, head.root_hash, list(consistency.hashes)
    )


def test_the_same_event_twice_appends_nothing_new(log: EvidenceLog) -> None:
    envelope = signature_event()
    first = log.append(envelope)
    again = log.append(envelope)
    assert again.duplicate
    assert again.entry.id == first.entry.id
    log.integrate()
    assert log.tree_head().tree_size == 1


def test_proofs_read_stored_subtrees_not_every_leaf(log: EvidenceLog, db: Database) -> None:
    for _ in range(3):
        for _ in range(7):
            log.append(signature_event())
        log.integrate()
    with db.session() as session:
        nodes = session.scalar(select(func.count()).select_from(MerkleNode))
    # 21 leaves + 10 + 5 + 2 + 1 complete interior subtrees
    assert nodes == 21 + 10 + 5 + 2 + 1


def test_integration_writes_appended_and_head_events(log: EvidenceLog, db: Database) -> None:
    log.append(signature_event())
    log.integrate()
    with db.session() as session:
        envelopes = [
            EventEnvelope.FromString(m.envelope) for m in session.scalars(select(OutboxMessage))
        ]
    types = [e.type for e in envelopes]
    assert "signet.events.v1.EvidenceAppended" in types
    assert types.count("signet.events.v1.TreeHeadSigned") == 2  # empty head, then size 1


def test_a_head_signed_by_another_key_is_rejected(log: EvidenceLog) -> None:
    log.append(signature_event())
    log.integrate()
    other = MemoryKeyService().create_system_key(KeyPurpose.LOG_SIGNING, "another-log")
    with pytest.raises(TreeHeadError):
        verify_tree_head(log.tree_head(), other.spki_der)


def test_entries_filter_by_transaction_and_digest(log: EvidenceLog) -> None:
    log.append(signature_event("tx-a", b"\x01" * 32))
    log.append(signature_event("tx-b", b"\x02" * 32))
    log.append(signature_event("tx-a", b"\x03" * 32))
    log.integrate()
    by_tx, _ = log.entries(EntryFilter(transaction_id="tx-a"))
    assert [e.leaf_index for e in by_tx] == [0, 2]
    ref = digest_ref(common_pb2.HASH_ALGORITHM_SHA256, b"\x02" * 32)
    by_digest, _ = log.entries(EntryFilter(digest_ref=ref))
    assert [e.transaction_id for e in by_digest] == ["tx-b"]
    page, token = log.entries(EntryFilter(), page_size=2)
    assert [e.leaf_index for e in page] == [0, 1]
    rest, end = log.entries(EntryFilter(), page_size=2, page_token=token)
    assert [e.leaf_index for e in rest] == [2]
    assert end == ""


def test_bad_requests_get_actionable_errors(log: EvidenceLog) -> None:
    with pytest.raises(InvalidArgument, match=r"event\.id"):
        log.append(EventEnvelope(type="x"))
    with pytest.raises(NotFound):
        log.inclusion_proof(event_id="missing")
    queued = log.append(signature_event())
    with pytest.raises(FailedPrecondition, match="not integrated"):
        log.inclusion_proof(event_id=queued.entry.event_id)
    with pytest.raises(NotFound, match="ahead"):
        log.tree_head(5)
    with pytest.raises(InvalidArgument):
        log.consistency_proof(3, 0)


def test_the_sequencer_integrates_in_the_background_and_re_signs_on_schedule(
    log: EvidenceLog, db: Database
) -> None:
    sequencer = Sequencer(log, interval_seconds=0.02, sign_every_seconds=0.1)
    sequencer.start()
    try:
        appended = log.append(signature_event())
        integrated = log.wait_integrated(appended.entry.id, timeout=10)
        assert integrated.leaf_index == 0
        first = log.tree_head()
        deadline = time.monotonic() + 10
        while log.tree_head().timestamp == first.timestamp and time.monotonic() < deadline:
            time.sleep(0.02)
        fresh = log.tree_head()
    finally:
        sequencer.stop()
    assert fresh.tree_size == first.tree_size == 1
    assert fresh.timestamp > first.timestamp
    verify_tree_head(fresh, log.public_key().spki_der)


def test_a_failing_signer_leaves_entries_queued_until_it_recovers(
    db: Database, keys: MemoryKeyService
) -> None:
    class FlakySigner(MemoryKeyService):
        down = False

        def sign_digest(self, key_id: str, digest: bytes) -> bytes:
            if self.down:
                raise Unavailable("signer down")
            return super().sign_digest(key_id, digest)

    flaky = FlakySigner()
    evidence = EvidenceLog(db, flaky)
    evidence.start()
    evidence.append(signature_event())
    flaky.down = True
    with pytest.raises(Unavailable):
        evidence.integrate()
    assert evidence.tree_head().tree_size == 0
    flaky.down = False
    evidence.integrate()
    assert evidence.tree_head().tree_size == 1
    evidence.close()


def test_concurrent_appends_of_one_event_store_it_once(log: EvidenceLog, db: Database) -> None:
    envelope = signature_event()
    others = [signature_event() for _ in range(30)]
    results: list[bool] = []
    lock = threading.Lock()

    def append(event: EventEnvelope) -> None:
        outcome = log.append(event)
        with lock:
            results.append(outcome.duplicate)

    threads = [threading.Thread(target=append, args=(envelope,)) for _ in range(10)]
    threads += [threading.Thread(target=append, args=(e,)) for e in others]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results).count(False) == 31
    while log.integrate().event_ids:
        pass
    assert log.tree_head().tree_size == 31
    entries, _ = log.entries(EntryFilter(transaction_id="tx-1"), page_size=100)
    assert len({e.event_id for e in entries}) == 31

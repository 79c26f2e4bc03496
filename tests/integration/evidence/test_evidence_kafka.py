"""The evidence consumer on the real Kafka broker: every topic in, each event once.

Events are published twice (as a relay that crashed after publishing would), and a second
consumer group replays every topic from the start: the log still holds each event once,
and the evidence service's own events are never appended.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf.message import Message as ProtoMessage

from signet.common.bus import Message
from signet.common.db import Database
from signet.common.events import (
    ALL_TOPICS,
    CERTIFICATE_TOPIC,
    EVIDENCE_TOPIC,
    IDENTITY_TOPIC,
    NOTIFY_TOPIC,
    SIGNATURE_TOPIC,
    EventEnvelope,
    encode_envelope,
    envelope_headers,
    new_envelope,
)
from signet.common.kafka import KafkaConsumerLoop, KafkaPublisher
from signet.events.v1 import events_pb2
from signet.evidence import merkle
from signet.evidence.backends.memory import MemoryKeyService
from signet.evidence.consumer import EvidenceConsumer
from signet.evidence.domain import EntryFilter
from signet.evidence.models import MIGRATIONS_DIR
from signet.evidence.service import EvidenceLog, Sequencer
from tests.fixtures.kafka import wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture
def log(tmp_path: Path) -> Iterator[EvidenceLog]:
    db = Database.from_url(f"sqlite:///{tmp_path / 'evidence.db'}")
    db.migrate(MIGRATIONS_DIR)
    evidence = EvidenceLog(db, MemoryKeyService(), batch_size=50)
    evidence.start()
    sequencer = Sequencer(evidence, interval_seconds=0.1)
    sequencer.start()
    yield evidence
    sequencer.stop()
    evidence.close()
    db.dispose()


def _publish(publisher: KafkaPublisher, topic: str, envelope: EventEnvelope) -> None:
    publisher.publish(
        topic, envelope.subject.encode(), encode_envelope(envelope), envelope_headers(envelope)
    )


def _events() -> list[tuple[str, EventEnvelope]]:
    def make(payload: ProtoMessage, source: str, topic: str) -> tuple[str, EventEnvelope]:
        return topic, new_envelope(payload, source=source, subject="s-" + uuid.uuid4().hex[:8])

    return [
        make(events_pb2.AccountRegistered(account_id="a-1"), "identity", IDENTITY_TOPIC),
        make(events_pb2.CertificateIssued(serial="0a1b"), "ca-gateway", CERTIFICATE_TOPIC),
        make(events_pb2.SignatureCreated(signature_id="s-1"), "signer", SIGNATURE_TOPIC),
        make(events_pb2.NotificationSent(notification_id="n-1"), "notify", NOTIFY_TOPIC),
    ]


def test_every_topic_is_appended_once_despite_redelivery_and_replay(
    log: EvidenceLog, kafka_bootstrap: str
) -> None:
    events = _events()
    own = new_envelope(events_pb2.TreeHeadSigned(tree_size=1), source="evidence", subject="log")
    publisher = KafkaPublisher(kafka_bootstrap, client_id="evidence-test")
    try:
        for topic, envelope in events:
            _publish(publisher, topic, envelope)
            _publish(publisher, topic, envelope)  # a redelivery
        _publish(publisher, EVIDENCE_TOPIC, own)
        publisher.flush()
    finally:
        publisher.close()
    ids = {envelope.id for _, envelope in events}

    def appended() -> set[str]:
        found: set[str] = set()
        token = ""
        while True:
            entries, token = log.entries(EntryFilter(), page_size=1000, page_token=token)
            found |= {e.event_id for e in entries}
            if not token:
                return found

    first = EvidenceConsumer(log)
    loop = KafkaConsumerLoop(kafka_bootstrap, "evidence-" + uuid.uuid4().hex[:8], ALL_TOPICS, first)
    loop.start()
    try:
        assert wait_until(lambda: ids <= appended() and first.duplicates >= len(ids), 90)
    finally:
        loop.stop()
    assert own.id not in appended()
    size = log.tree_head().tree_size
    # A replay of every topic from the start (a new group) appends none of them again
    # (other tests may publish to the shared topics meanwhile, so count ours only).
    replay = EvidenceConsumer(log)
    outcomes: dict[str, list[bool]] = {}

    def handle(envelope: EventEnvelope, message: Message) -> None:
        before = replay.duplicates
        replay(envelope, message)
        outcomes.setdefault(envelope.id, []).append(replay.duplicates > before)

    loop = KafkaConsumerLoop(
        kafka_bootstrap, "evidence-replay-" + uuid.uuid4().hex[:8], ALL_TOPICS, handle
    )
    loop.start()
    try:
        assert wait_until(lambda: all(len(outcomes.get(i, [])) >= 2 for i in ids), 90)
    finally:
        loop.stop()
    assert all(all(outcomes[i]) for i in ids)
    log.integrate()
    assert size <= log.tree_head().tree_size
    for event_id in ids:
        proof = log.inclusion_proof(event_id=event_id)
        head = proof.tree_head
        merkle.verify_inclusion(
            proof.leaf_index, head.tree_size, proof.leaf_hash, proof.hashes, head.root_hash
        )

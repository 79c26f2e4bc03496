"""Two relay replicas on one service database: nothing lost, and on PostgreSQL (row locks
with SKIP LOCKED) nothing published twice."""

from __future__ import annotations

from collections import Counter

from google.protobuf.struct_pb2 import Struct
from sqlalchemy import func, select

from signet.common.db import Base as CommonBase
from signet.common.db import Database
from signet.common.events import decode_envelope, new_envelope
from signet.common.outbox import Outbox, OutboxMessage, OutboxRelay
from signet.common.testing.memory_bus import InMemoryBus
from tests.fixtures.kafka import wait_until

TOPIC = "signet.certificate.v1"
EVENTS = 300


def _unpublished(db: Database) -> int:
    with db.session() as session:
        stmt = select(func.count()).where(OutboxMessage.published_at.is_(None))
        return int(session.scalar(stmt) or 0)


def test_two_relays_publish_every_event_and_postgres_publishes_each_once(
    database_url: str,
) -> None:
    db = Database.from_url(database_url)
    CommonBase.metadata.create_all(db.engine)
    ids: list[str] = []
    with db.session() as session:
        for i in range(EVENTS):
            payload = Struct()
            payload.update({"i": i})
            envelope = new_envelope(payload, source="ca-gateway", subject=f"cert-{i % 7}")
            ids.append(envelope.id)
            Outbox.add(session, TOPIC, envelope)
    bus = InMemoryBus()
    relays = [OutboxRelay(db, bus, poll_seconds=0.05, batch_size=10) for _ in range(2)]
    for relay in relays:
        relay.start()
    try:
        assert wait_until(lambda: _unpublished(db) == 0, 120)
    finally:
        for relay in relays:
            relay.stop()
        db.dispose()

    published = Counter(decode_envelope(m.value).id for m in bus.records(TOPIC))
    assert set(published) == set(ids)
    if database_url.startswith("postgresql"):
        assert max(published.values()) == 1

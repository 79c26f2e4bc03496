"""The outbox relay on an SQLite file another process writes to (two replicas, one file).

A relay that read its batch, published it and marked it in one transaction either failed
to mark it (a WAL read transaction cannot become a write after another connection
committed) or, with units of work that take the write lock when they begin, held the
whole file locked while it waited for the broker, so the other replica could not write.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf.struct_pb2 import Struct
from sqlalchemy import func, select

from signet.common.db import Base as CommonBase
from signet.common.db import Database
from signet.common.events import EventEnvelope, Headers, new_envelope
from signet.common.outbox import Outbox, OutboxMessage, OutboxRelay
from signet.common.testing.memory_bus import InMemoryBus

TOPIC = "signet.identity.v1"


class OtherReplicaWritesDuringFlush:
    """A publisher whose flush lets the other replica commit an event first."""

    def __init__(self, bus: InMemoryBus, other: Database) -> None:
        self.bus = bus
        self.other = other

    def publish(self, topic: str, key: bytes | None, value: bytes, headers: Headers = ()) -> None:
        """Hand the record to the bus."""
        self.bus.publish(topic, key, value, headers)

    def flush(self, timeout: float | None = None) -> None:
        """The other replica commits while this batch is in flight; then flush."""
        with self.other.session() as session:
            Outbox.add(session, TOPIC, _envelope("other"))
        self.bus.flush(timeout)

    def close(self) -> None:
        """Nothing to release."""


def _envelope(subject: str) -> EventEnvelope:
    payload = Struct()
    payload.update({"n": subject})
    return new_envelope(payload, source="identity", subject=subject)


@pytest.fixture
def two_replicas(tmp_path: Path) -> Iterator[tuple[Database, Database]]:
    url = f"sqlite:///{tmp_path / 'identity.db'}"
    first, second = Database.from_url(url), Database.from_url(url)
    CommonBase.metadata.create_all(first.engine)
    yield first, second
    first.dispose()
    second.dispose()


def test_relay_marks_its_batch_published_although_another_replica_committed_meanwhile(
    two_replicas: tuple[Database, Database],
) -> None:
    db, other = two_replicas
    with db.session() as session:
        for n in range(3):
            Outbox.add(session, TOPIC, _envelope(f"acct-{n}"))
    bus = InMemoryBus()
    relay = OutboxRelay(db, OtherReplicaWritesDuringFlush(bus, other), batch_size=10)
    assert relay.relay_once() == 3
    with db.session() as session:
        unpublished = session.scalar(
            select(func.count()).where(OutboxMessage.published_at.is_(None))
        )
    assert unpublished == 1  # only the other replica's new event waits
    assert len(bus.records(TOPIC)) == 3

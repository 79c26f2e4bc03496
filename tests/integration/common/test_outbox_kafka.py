"""Issue 2 acceptance: an event written through the outbox in one service's transaction
reaches a consumer in another service over the real broker exactly once, trace id intact,
also when the broker is down while the event is written."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from google.protobuf.struct_pb2 import Struct
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from sqlalchemy import MetaData, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from signet.common.bus import Message, RetryPolicy
from signet.common.db import Base as CommonBase
from signet.common.db import Database
from signet.common.events import EventEnvelope, encode_envelope, envelope_headers, new_envelope
from signet.common.kafka import KafkaConsumerLoop, KafkaPublisher
from signet.common.local.kafka import KafkaBroker
from signet.common.outbox import Outbox, OutboxMessage, OutboxRelay, process_once
from tests.fixtures.kafka import wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


class ProducerBase(DeclarativeBase):
    metadata = MetaData()


class ConsumerBase(DeclarativeBase):
    metadata = MetaData()


class Account(ProducerBase):
    """The producing service's state change."""

    __tablename__ = "accounts"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)


class Received(ConsumerBase):
    """What the consuming service records per event it handled."""

    __tablename__ = "received"
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(64))
    trace_id: Mapped[str] = mapped_column(String(32))


def _database(path: Path, base: type[DeclarativeBase]) -> Database:
    db = Database.from_url(f"sqlite:///{path}")
    CommonBase.metadata.create_all(db.engine)
    base.metadata.create_all(db.engine)
    return db


@dataclass
class Platform:
    """A producing service (outbox + relay) and a consuming service, each with its own DB."""

    producer_db: Database
    consumer_db: Database
    topic: str
    group: str
    publisher: KafkaPublisher
    relay: OutboxRelay
    consumer: KafkaConsumerLoop
    handled: list[str] = field(default_factory=list)

    def register_account(self, trace_id: int) -> EventEnvelope:
        """The producing service's use case: state change and event in one transaction."""
        parent = SpanContext(
            trace_id=trace_id,
            span_id=int(uuid.uuid4().hex[:16], 16),
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
        account_id = f"acct-{uuid.uuid4().hex[:8]}"
        with trace.use_span(NonRecordingSpan(parent)), self.producer_db.session() as session:
            session.add(Account(id=account_id))
            payload = Struct()
            payload.update({"account_id": account_id})
            envelope = new_envelope(payload, source="identity", subject=account_id, tenant="t1")
            Outbox.add(session, self.topic, envelope)
        self.relay.wake()
        return envelope

    def received(self) -> list[Received]:
        with self.consumer_db.session() as session:
            return list(session.scalars(select(Received)))

    def unpublished(self) -> list[OutboxMessage]:
        with self.producer_db.session() as session:
            return list(
                session.scalars(select(OutboxMessage).where(OutboxMessage.published_at.is_(None)))
            )


@pytest.fixture
def platform(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Platform]:
    suffix = uuid.uuid4().hex[:10]
    producer_db = _database(tmp_path / "identity.db", ProducerBase)
    consumer_db = _database(tmp_path / "evidence.db", ConsumerBase)
    lock = threading.Lock()
    handled: list[str] = []

    def handle(envelope: EventEnvelope, record: Message) -> None:
        with lock:
            handled.append(envelope.id)
        span = trace.get_current_span().get_span_context()
        with consumer_db.session() as session:
            if not process_once(session, "evidence", envelope.id):
                return
            session.add(
                Received(
                    event_id=envelope.id,
                    subject=envelope.subject,
                    trace_id=format(span.trace_id, "032x"),
                )
            )

    publisher = KafkaPublisher(kafka_bootstrap, client_id="identity", timeout_seconds=5.0)
    relay = OutboxRelay(producer_db, publisher, poll_seconds=0.2, max_backoff_seconds=2.0)
    consumer = KafkaConsumerLoop(
        kafka_bootstrap,
        f"evidence-{suffix}",
        [f"itest.{suffix}"],
        handle,
        policy=RetryPolicy(max_attempts=3, backoff_seconds=0.1),
    )
    env = Platform(
        producer_db,
        consumer_db,
        f"itest.{suffix}",
        f"evidence-{suffix}",
        publisher,
        relay,
        consumer,
        handled,
    )
    relay.start()
    consumer.start()
    yield env
    consumer.stop()
    relay.stop()
    publisher.close()
    producer_db.dispose()
    consumer_db.dispose()


def _settle() -> None:
    """Give a duplicate delivery time to show up before asserting 'exactly once'."""
    time.sleep(2.0)


def test_outbox_event_reaches_other_service_exactly_once_with_trace_id(
    platform: Platform,
) -> None:
    trace_id = int(uuid.uuid4().hex, 16)
    envelope = platform.register_account(trace_id)

    assert wait_until(lambda: len(platform.received()) == 1, 90)
    _settle()
    received = platform.received()
    assert [(r.event_id, r.subject) for r in received] == [(envelope.id, envelope.subject)]
    assert received[0].trace_id == format(trace_id, "032x")
    assert platform.handled == [envelope.id]
    assert platform.unpublished() == []


def test_event_written_while_broker_is_down_arrives_once_after_restart(
    platform: Platform, kafka_broker: KafkaBroker
) -> None:
    first = platform.register_account(int(uuid.uuid4().hex, 16))
    assert wait_until(lambda: len(platform.received()) == 1, 90)

    kafka_broker.stop()
    try:
        trace_id = int(uuid.uuid4().hex, 16)
        second = platform.register_account(trace_id)
        # The relay tried, failed, and kept the row.
        assert wait_until(lambda: any(m.attempts >= 1 for m in platform.unpublished()), 60)
        assert [m.event_id for m in platform.unpublished()] == [second.id]
    finally:
        kafka_broker.start(timeout=180)

    assert wait_until(lambda: len(platform.received()) == 2, 120)
    _settle()
    by_id = {r.event_id: r for r in platform.received()}
    assert set(by_id) == {first.id, second.id}
    assert by_id[second.id].trace_id == format(trace_id, "032x")
    assert sorted(platform.handled) == sorted([first.id, second.id])
    assert platform.unpublished() == []


def test_redelivered_envelope_changes_nothing(platform: Platform) -> None:
    envelope = platform.register_account(int(uuid.uuid4().hex, 16))
    assert wait_until(lambda: len(platform.received()) == 1, 90)

    # The same event again, as after a relay crash between publish and mark-published.
    platform.publisher.publish(
        platform.topic, b"dup", encode_envelope(envelope), envelope_headers(envelope)
    )
    platform.publisher.flush()

    assert wait_until(lambda: platform.handled.count(envelope.id) == 2, 90)
    _settle()
    assert [r.event_id for r in platform.received()] == [envelope.id]

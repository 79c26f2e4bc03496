"""Outbox writer, relay and processed-events on SQLite with the in-memory bus."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.operations import Operations
from google.protobuf.struct_pb2 import Struct
from sqlalchemy import select, update

from signet.common import outbox
from signet.common.bus import Message, RetryPolicy
from signet.common.db import Base as CommonBase
from signet.common.db import Database, utcnow
from signet.common.errors import Unavailable
from signet.common.events import (
    HEADER_EVENT_ID,
    EventEnvelope,
    decode_envelope,
    new_envelope,
)
from signet.common.outbox import (
    Outbox,
    OutboxMessage,
    OutboxRelay,
    ProcessedEvent,
    process_once,
    purge_processed,
    purge_published,
)
from signet.common.testing.memory_bus import InMemoryBus
from tests.fixtures.kafka import wait_until

TOPIC = "signet.identity.v1"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.from_url(f"sqlite:///{tmp_path / 'svc.db'}")
    CommonBase.metadata.create_all(database.engine)
    yield database
    database.dispose()


def _envelope(subject: str = "acct-1") -> EventEnvelope:
    payload = Struct()
    payload.update({"n": subject})
    return new_envelope(payload, source="identity", subject=subject)


def _rows(db: Database) -> list[OutboxMessage]:
    with db.session() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def test_outbox_add_stores_the_event_with_subject_key_and_headers(db: Database) -> None:
    envelope = _envelope("acct-7")
    with db.session() as session:
        Outbox.add(session, TOPIC, envelope)
    [row] = _rows(db)
    assert (row.topic, row.key, row.event_id) == (TOPIC, b"acct-7", envelope.id)
    assert decode_envelope(row.envelope) == envelope
    assert [HEADER_EVENT_ID, envelope.id] in row.headers
    assert row.published_at is None
    assert row.attempts == 0


def test_outbox_row_disappears_with_a_rolled_back_transaction(db: Database) -> None:
    def failing_use_case() -> None:
        with db.session() as session:
            Outbox.add(session, TOPIC, _envelope())
            raise RuntimeError("the state change failed")

    with pytest.raises(RuntimeError):
        failing_use_case()
    assert _rows(db) == []


def test_relay_publishes_in_order_and_marks_rows_published(db: Database) -> None:
    envelopes = [_envelope(f"acct-{i}") for i in range(5)]
    with db.session() as session:
        for envelope in envelopes:
            Outbox.add(session, TOPIC, envelope)
    bus = InMemoryBus()
    relay = OutboxRelay(db, bus, batch_size=2)

    assert relay.relay_once() == 2
    assert relay.relay_once() == 2
    assert relay.relay_once() == 1
    assert relay.relay_once() == 0
    published = bus.records(TOPIC)
    assert [decode_envelope(m.value).id for m in published] == [e.id for e in envelopes]
    assert published[0].key == b"acct-0"
    assert all(row.published_at is not None and row.attempts == 1 for row in _rows(db))


def test_relay_keeps_rows_and_counts_attempts_while_the_broker_is_down(db: Database) -> None:
    with db.session() as session:
        Outbox.add(session, TOPIC, _envelope())
    bus = InMemoryBus()
    bus.set_available(False)
    relay = OutboxRelay(db, bus)

    for _ in range(3):
        with pytest.raises(Unavailable):
            relay.relay_once()
    [row] = _rows(db)
    assert (row.published_at, row.attempts) == (None, 3)

    bus.set_available(True)
    assert relay.relay_once() == 1
    assert len(bus.records(TOPIC)) == 1


def test_relay_thread_survives_an_outage_and_publishes_afterwards(db: Database) -> None:
    bus = InMemoryBus()
    bus.set_available(False)
    relay = OutboxRelay(db, bus, poll_seconds=0.05, max_backoff_seconds=0.2)
    relay.start()
    try:
        with db.session() as session:
            Outbox.add(session, TOPIC, _envelope())
        assert wait_until(lambda: _rows(db)[0].attempts >= 3, 30)
        attempts_during_outage = _rows(db)[0].attempts
        bus.set_available(True)
        assert wait_until(lambda: len(bus.records(TOPIC)) == 1, 30)
    finally:
        relay.stop()
    assert _rows(db)[0].published_at is not None
    # Backoff, not a busy loop: a handful of attempts, not thousands.
    assert attempts_during_outage < 100


def test_relay_stop_returns_promptly_when_idle(db: Database) -> None:
    relay = OutboxRelay(db, InMemoryBus(), poll_seconds=30.0)
    relay.start()
    stopped = threading.Event()

    def stop() -> None:
        relay.stop()
        stopped.set()

    threading.Thread(target=stop).start()
    assert stopped.wait(10)


def test_process_once_is_true_then_false_for_the_same_consumer_only(db: Database) -> None:
    with db.session() as session:
        assert process_once(session, "evidence", "e-1") is True
    with db.session() as session:
        assert process_once(session, "evidence", "e-1") is False
        assert process_once(session, "notify", "e-1") is True


def test_process_once_marker_rolls_back_with_the_handler_transaction(db: Database) -> None:
    def failing_handler() -> None:
        with db.session() as session:
            assert process_once(session, "evidence", "e-2")
            raise RuntimeError("handler failed after marking")

    with pytest.raises(RuntimeError):
        failing_handler()
    with db.session() as session:
        assert process_once(session, "evidence", "e-2") is True


def test_memory_consumer_with_process_once_makes_redelivery_a_no_op(db: Database) -> None:
    bus = InMemoryBus()
    envelope = _envelope()
    effects: list[str] = []

    def handle(env: EventEnvelope, record: Message) -> None:
        with db.session() as session:
            if process_once(session, "evidence", env.id):
                effects.append(env.id)

    relay = OutboxRelay(db, bus)
    with db.session() as session:
        Outbox.add(session, TOPIC, envelope)
    relay.relay_once()
    # The relay crashed before marking the row: it publishes the event again.
    with db.session() as session:
        session.execute(update(OutboxMessage).values(published_at=None))
    relay.relay_once()

    consumer = bus.consumer("evidence", [TOPIC], handle, policy=RetryPolicy(max_attempts=1))
    assert consumer.run_pending() == 2
    assert effects == [envelope.id]
    assert bus.committed("evidence", TOPIC) == 2


def test_purge_deletes_only_old_published_rows_and_old_markers(db: Database) -> None:
    with db.session() as session:
        old, fresh, pending = (Outbox.add(session, TOPIC, _envelope()) for _ in range(3))
        session.flush()
        old.published_at = utcnow() - timedelta(days=10)
        fresh.published_at = utcnow()
        session.add(
            ProcessedEvent(consumer="c", event_id="old", processed_at=utcnow() - timedelta(days=40))
        )
        session.add(ProcessedEvent(consumer="c", event_id="new", processed_at=utcnow()))
    with db.session() as session:
        assert purge_published(session, timedelta(days=7)) == 1
        assert purge_processed(session, timedelta(days=30)) == 1
    assert {row.event_id for row in _rows(db)} == {fresh.event_id, pending.event_id}
    with db.session() as session:
        assert [p.event_id for p in session.scalars(select(ProcessedEvent))] == ["new"]


def test_upgrade_ops_create_exactly_the_model_schema_and_downgrade_ops_drop_it(
    tmp_path: Path,
) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'migrated.db'}")
    with engine.begin() as conn:
        with Operations.context(MigrationContext.configure(conn)):
            outbox.upgrade_ops()
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, CommonBase.metadata) == []
        with Operations.context(MigrationContext.configure(conn)):
            outbox.downgrade_ops()
        assert sa.inspect(conn).get_table_names() == []
    engine.dispose()

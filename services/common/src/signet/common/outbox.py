"""Transactional outbox, its relay, and the processed-events table for idempotent consumers.

A service writes its state change and the event about it in ONE database transaction
(:meth:`Outbox.add`); :class:`OutboxRelay` publishes the stored events afterwards and
marks them published only after the broker acknowledged them. A crash or a broker outage
therefore loses nothing; it can only publish an event twice, which consumers absorb with
:func:`process_once` inside their own transaction.

Both tables live on :class:`signet.common.db.Base`; every service's first migration calls
:func:`upgrade_ops` / :func:`downgrade_ops` so they exist in each service database.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import cast

import sqlalchemy as sa
from sqlalchemy import (
    JSON,
    BigInteger,
    Integer,
    LargeBinary,
    String,
    Table,
    delete,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from signet.common.bus import Publisher
from signet.common.db import Base, Database, UtcDateTime, utcnow
from signet.common.errors import ServiceError
from signet.common.events import EventEnvelope, encode_envelope, envelope_headers

log = logging.getLogger(__name__)

# SQLite only auto-numbers a column declared exactly INTEGER PRIMARY KEY.
_ID_TYPE = BigInteger().with_variant(Integer(), "sqlite")


class OutboxMessage(Base):
    """An event waiting to be (or already) published; ``id`` gives the publishing order."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(_ID_TYPE, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64))
    topic: Mapped[str] = mapped_column(String(249))
    key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    envelope: Mapped[bytes] = mapped_column(LargeBinary)
    # [[name, value], ...]: Kafka headers may repeat a name, and ours are all text.
    headers: Mapped[list[list[str]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)


OUTBOX_TABLE = cast(Table, OutboxMessage.__table__)
"""The outbox as a Core table, for bulk inserts on a Connection."""


class ProcessedEvent(Base):
    """An event a consumer has handled; its key makes redelivery a no-op."""

    __tablename__ = "processed_events"

    consumer: Mapped[str] = mapped_column(String(128), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(UtcDateTime)


def upgrade_ops() -> None:
    """Create the outbox tables; called from every service's first Alembic migration.

    Spelled out rather than derived from the models: a migration must keep meaning what
    it meant when it was written. A test compares the result with the models.
    """
    from alembic import op

    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("topic", sa.String(249), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=True),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("published_at", UtcDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
    )
    op.create_index("ix_outbox_published_at", "outbox", ["published_at"])
    op.create_table(
        "processed_events",
        sa.Column("consumer", sa.String(128), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("processed_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id", name="pk_processed_events"),
    )


def downgrade_ops() -> None:
    """Drop the tables :func:`upgrade_ops` created."""
    from alembic import op

    op.drop_table("processed_events")
    op.drop_index("ix_outbox_published_at", table_name="outbox")
    op.drop_table("outbox")


class Outbox:
    """Writes events into the outbox inside the caller's transaction."""

    @staticmethod
    def add(
        session: Session, topic: str, envelope: EventEnvelope, *, key: bytes | None = None
    ) -> OutboxMessage:
        """Store ``envelope`` for ``topic``; it is published only if the caller commits.

        The record key defaults to the envelope's subject, so all events about one entity
        land on one partition and keep their order.
        """
        if key is None and envelope.subject:
            key = envelope.subject.encode()
        row = OutboxMessage(
            event_id=envelope.id,
            topic=topic,
            key=key,
            envelope=encode_envelope(envelope),
            headers=[[name, value.decode()] for name, value in envelope_headers(envelope)],
            created_at=utcnow(),
            published_at=None,
            attempts=0,
        )
        session.add(row)
        return row

    @staticmethod
    def rows(topic: str, envelopes: Sequence[EventEnvelope]) -> list[dict[str, object]]:
        """Outbox rows for a multi-row insert into :data:`OUTBOX_TABLE` (hot paths)."""
        now = utcnow()
        return [
            {
                "event_id": env.id,
                "topic": topic,
                "key": env.subject.encode() if env.subject else None,
                "envelope": encode_envelope(env),
                "headers": [[name, value.decode()] for name, value in envelope_headers(env)],
                "created_at": now,
                "published_at": None,
                "attempts": 0,
            }
            for env in envelopes
        ]


def process_once(session: Session, consumer: str, event_id: str) -> bool:
    """Record that ``consumer`` handles ``event_id``; False when it already did.

    Call it first in the handler's transaction and skip the work on False: the marker
    commits (or rolls back) together with the work, so redelivery changes nothing. Two
    concurrent deliveries collide on the primary key; the loser's transaction fails and
    its retry then sees the marker.
    """
    if session.get(ProcessedEvent, (consumer, event_id)) is not None:
        return False
    session.add(ProcessedEvent(consumer=consumer, event_id=event_id, processed_at=utcnow()))
    session.flush()
    return True


def purge_published(session: Session, older_than: timedelta) -> int:
    """Delete outbox rows published more than ``older_than`` ago; returns how many."""
    cutoff = utcnow() - older_than
    result = session.execute(
        delete(OutboxMessage).where(
            OutboxMessage.published_at.is_not(None), OutboxMessage.published_at < cutoff
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def purge_processed(session: Session, older_than: timedelta) -> int:
    """Delete processed-event markers older than ``older_than``; returns how many.

    Keep them longer than the broker retains records, or a very late redelivery would be
    handled a second time.
    """
    cutoff = utcnow() - older_than
    result = session.execute(delete(ProcessedEvent).where(ProcessedEvent.processed_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)


class OutboxRelay:
    """Publishes unpublished outbox rows, oldest first, from a background thread.

    A batch is marked published only after :meth:`Publisher.flush` confirmed it. When the
    broker (or the database) is unavailable the relay backs off exponentially up to
    ``max_backoff_seconds`` and tries again: nothing is lost and nothing spins.

    Several relays may share a database. On PostgreSQL each claims its batch with
    ``SELECT ... FOR UPDATE SKIP LOCKED``, so no row is published by two of them (order is
    kept per relay, not across relays). SQLite has no row locks; there the batch is read,
    published and marked in separate short units of work, so no transaction (and, as units
    of work take SQLite's write lock when they begin, no lock on the whole file) is held
    while the broker is waited for: a broker outage would otherwise stall every write of
    the service, and the other replica's too, for the flush timeout of each batch. A second
    relay on the same file can still publish a row twice, which consumers absorb
    (at-least-once).
    """

    def __init__(
        self,
        db: Database,
        publisher: Publisher,
        poll_seconds: float = 0.2,
        *,
        batch_size: int = 100,
        max_backoff_seconds: float = 10.0,
        flush_timeout: float | None = None,
    ) -> None:
        if poll_seconds <= 0 or batch_size < 1:
            raise ValueError("poll_seconds must be positive and batch_size at least 1")
        self._db = db
        self._publisher = publisher
        self._poll_seconds = poll_seconds
        self._batch_size = batch_size
        self._max_backoff = max(max_backoff_seconds, poll_seconds)
        self._flush_timeout = flush_timeout
        self._stopping = threading.Event()
        self._wakeup = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        """Publish now instead of at the next poll (e.g. right after a commit)."""
        self._wakeup.set()

    def relay_once(self) -> int:
        """Publish one batch; returns how many rows it marked published.

        Raises :class:`~signet.common.errors.Unavailable` when the broker did not
        acknowledge the batch (its rows stay unpublished, with ``attempts`` raised).
        """
        if self._db.engine.dialect.name == "sqlite":
            return self._relay_without_row_locks()
        failure: ServiceError | None = None
        with self._db.session() as session:
            rows = self._claim(session)
            if not rows:
                return 0
            try:
                for row in rows:
                    headers = [(name, value.encode()) for name, value in row.headers]
                    self._publisher.publish(row.topic, row.key, row.envelope, headers)
                self._publisher.flush(self._flush_timeout)
            except ServiceError as err:
                failure = err
            ids = [row.id for row in rows]
            self._mark(session, ids, published=failure is None)
        if failure is not None:
            raise failure
        return len(ids)

    def _relay_without_row_locks(self) -> int:
        """Read the batch, publish it with no transaction open, then mark it (SQLite)."""
        with self._db.session() as session:
            rows = self._claim(session)
            batch = [(r.id, r.topic, r.key, r.envelope, list(r.headers)) for r in rows]
        if not batch:
            return 0
        failure: ServiceError | None = None
        try:
            for _, topic, key, envelope, pairs in batch:
                headers = [(name, value.encode()) for name, value in pairs]
                self._publisher.publish(topic, key, envelope, headers)
            self._publisher.flush(self._flush_timeout)
        except ServiceError as err:
            failure = err
        ids = [row[0] for row in batch]
        # A transaction whose first statement writes waits for the lock (busy timeout).
        with self._db.session() as session:
            self._mark(session, ids, published=failure is None)
        if failure is not None:
            raise failure
        return len(ids)

    @staticmethod
    def _mark(session: Session, ids: list[int], *, published: bool) -> None:
        values: dict[str, object] = {"attempts": OutboxMessage.attempts + 1}
        if published:
            values["published_at"] = utcnow()
        session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(ids)).values(values))

    def _claim(self, session: Session) -> Sequence[OutboxMessage]:
        stmt = (
            select(OutboxMessage)
            .where(OutboxMessage.published_at.is_(None))
            .order_by(OutboxMessage.id)
            .limit(self._batch_size)
            .with_for_update(skip_locked=True)
        )
        return session.scalars(stmt).all()

    def start(self) -> None:
        """Start the relay thread (idempotent while running)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the batch in flight (bounded by the publisher's flush timeout)."""
        self._stopping.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("outbox relay did not stop in time")
            self._thread = None

    def _run(self) -> None:
        backoff = self._poll_seconds
        while not self._stopping.is_set():
            try:
                published = self.relay_once()
            except ServiceError as err:
                log.warning(
                    "outbox relay could not publish; backing off",
                    extra={"error": type(err).__name__, "backoff_seconds": backoff},
                )
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            except Exception as err:  # noqa: BLE001  (the relay thread must outlive surprises)
                # Class name only: the text of a driver error can quote SQL and row values.
                log.error("outbox relay failed unexpectedly", extra={"error": type(err).__name__})
                self._stopping.wait(self._max_backoff)
                continue
            backoff = self._poll_seconds
            if published < self._batch_size:
                self._wakeup.wait(self._poll_seconds)
                self._wakeup.clear()

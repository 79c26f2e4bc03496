"""An in-memory message bus with Kafka's semantics, for unit and component tests.

:class:`InMemoryBus` is a :class:`~signet.common.bus.Publisher`; its consumers run the
same :class:`~signet.common.bus.RecordProcessor` as :class:`signet.common.kafka.KafkaConsumerLoop`
and commit per consumer group after the handler returned, so the bus contract tests run
one suite against both. Every topic has a single partition, which keeps order total.
Outages are simulated with :meth:`InMemoryBus.set_available`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from signet.common.bus import Handler, Message, Outcome, RecordProcessor, RetryPolicy
from signet.common.errors import Unavailable
from signet.common.events import Headers


@dataclass
class _Topic:
    records: list[Message] = field(default_factory=list)


class InMemoryBus:
    """Topics, records and committed offsets per consumer group, all in memory."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._topics: dict[str, _Topic] = {}
        self._committed: dict[tuple[str, str], int] = {}
        self._available = True
        self._closed = False

    # -- Publisher -------------------------------------------------------------------------

    def set_available(self, available: bool) -> None:
        """Simulate a broker outage (False) or its end (True)."""
        with self._cond:
            self._available = available

    def publish(self, topic: str, key: bytes | None, value: bytes, headers: Headers = ()) -> None:
        """Append a record to ``topic``; Unavailable while the bus is 'down'."""
        with self._cond:
            if not self._available or self._closed:
                raise Unavailable("the event broker is unavailable")
            records = self._topics.setdefault(topic, _Topic()).records
            records.append(
                Message(
                    topic=topic,
                    partition=0,
                    offset=len(records),
                    key=key,
                    value=value,
                    headers=tuple(headers),
                )
            )
            self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> None:
        """Records are stored on publish; only an outage makes a flush fail."""
        with self._cond:
            if not self._available:
                raise Unavailable("the event broker did not acknowledge the events")

    def close(self) -> None:
        """Refuse further publishes."""
        with self._cond:
            self._closed = True

    # -- inspection ------------------------------------------------------------------------

    def records(self, topic: str) -> list[Message]:
        """Everything published to ``topic`` so far, in order."""
        with self._cond:
            return list(self._topics.get(topic, _Topic()).records)

    def committed(self, group: str, topic: str) -> int:
        """The next offset ``group`` will read from ``topic`` (0 when nothing committed)."""
        with self._cond:
            return self._committed.get((group, topic), 0)

    # -- consuming -------------------------------------------------------------------------

    def consumer(
        self,
        group: str,
        topics: Sequence[str],
        handler: Handler,
        *,
        policy: RetryPolicy | None = None,
    ) -> InMemoryConsumer:
        """A consumer of ``topics`` in ``group``; dead letters go back onto this bus."""
        return InMemoryConsumer(self, group, topics, handler, policy or RetryPolicy())

    def _next(self, group: str, topics: Sequence[str], timeout: float) -> Message | None:
        with self._cond:
            self._cond.wait_for(lambda: self._pending(group, topics) is not None, timeout)
            return self._pending(group, topics)

    def _pending(self, group: str, topics: Sequence[str]) -> Message | None:
        if not self._available:
            return None
        for topic in topics:
            records = self._topics.get(topic, _Topic()).records
            position = self._committed.get((group, topic), 0)
            if position < len(records):
                return records[position]
        return None

    def _commit(self, group: str, record: Message) -> None:
        with self._cond:
            self._committed[(group, record.topic)] = record.offset + 1
            self._cond.notify_all()

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


class InMemoryConsumer:
    """Feeds a group's uncommitted records to a handler, like the Kafka consumer loop."""

    def __init__(
        self,
        bus: InMemoryBus,
        group: str,
        topics: Sequence[str],
        handler: Handler,
        policy: RetryPolicy,
    ) -> None:
        self._bus = bus
        self.group = group
        self.topics = tuple(topics)
        self._stopping = threading.Event()
        self._processor = RecordProcessor(
            group=group, handler=handler, dead_letters=bus, policy=policy, stopping=self._stopping
        )
        self._thread: threading.Thread | None = None

    def run_pending(self) -> int:
        """Process every available record in this thread; returns how many were committed."""
        done = 0
        while not self._stopping.is_set():
            record = self._bus._next(self.group, self.topics, timeout=0)
            if record is None or not self._step(record):
                break
            done += 1
        return done

    def _step(self, record: Message) -> bool:
        if self._processor.process(record) is Outcome.STOPPED:
            return False
        self._bus._commit(self.group, record)
        return True

    def start(self) -> None:
        """Consume in a background thread."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"memory-consumer-{self.group}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop promptly; a record still being retried stays uncommitted."""
        self._stopping.set()
        self._bus._wake()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            record = self._bus._next(self.group, self.topics, timeout=0.2)
            if record is not None and not self._stopping.is_set():
                self._step(record)

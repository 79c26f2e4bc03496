"""Kafka over kafka-python: :class:`KafkaPublisher` and :class:`KafkaConsumerLoop`.

The only module that imports the Kafka client library; its errors become
:class:`~signet.common.errors.Unavailable` here. The publisher waits for acks from all
in-sync replicas with the idempotent producer; the consumer loop commits an offset only
after the handler returned (the handler commits its own DB transaction first) and applies
the delivery rules of :class:`signet.common.bus.RecordProcessor`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.errors import CommitFailedError, KafkaError

from signet.common.bus import Handler, Message, Outcome, Publisher, RecordProcessor, RetryPolicy
from signet.common.errors import Unavailable
from signet.common.events import Headers

log = logging.getLogger(__name__)


class KafkaPublisher:
    """A :class:`~signet.common.bus.Publisher` on one kafka-python producer.

    The producer is created on first use, so a service starts while the broker is down,
    and replaced after any failure, so a broken idempotent-producer session never blocks
    later sends. Thread-safe; each thread's :meth:`flush` covers that thread's sends.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str = "signet",
        timeout_seconds: float = 15.0,
        **producer_config: Any,
    ) -> None:
        if not bootstrap:
            raise ValueError("a Kafka bootstrap address is required")
        timeout_ms = int(timeout_seconds * 1000)
        self._config: dict[str, Any] = {
            "bootstrap_servers": bootstrap.split(","),
            "client_id": client_id,
            "acks": "all",
            "enable_idempotence": True,
            "max_in_flight_requests_per_connection": 5,
            "linger_ms": 5,
            "bootstrap_timeout_ms": timeout_ms,
            "max_block_ms": timeout_ms,
            "request_timeout_ms": timeout_ms,
            "delivery_timeout_ms": 2 * timeout_ms,
            "reconnect_backoff_ms": 100,
            "reconnect_backoff_max_ms": 2000,
        }
        self._config.update(producer_config)
        self._flush_timeout = 2 * timeout_seconds + 5
        self._lock = threading.Lock()
        self._producer: KafkaProducer | None = None
        self._closed = False
        self._local = threading.local()

    def _pending(self) -> list[Any]:
        pending: list[Any] | None = getattr(self._local, "pending", None)
        if pending is None:
            pending = []
            self._local.pending = pending
        return pending

    def _get_producer(self) -> KafkaProducer:
        with self._lock:
            if self._closed:
                raise Unavailable("the event publisher is closed")
            if self._producer is None:
                try:
                    self._producer = KafkaProducer(**self._config)
                except KafkaError as err:
                    log.warning("kafka producer unavailable", extra={"error": type(err).__name__})
                    raise Unavailable("the event broker is unavailable") from err
            return self._producer

    def _discard(self, producer: KafkaProducer) -> None:
        with self._lock:
            current = self._producer is producer
            if current:
                self._producer = None
        if not current:
            return
        try:
            producer.close(timeout=0)
        except KafkaError as err:
            log.debug("closing a failed producer: %s", type(err).__name__)

    def publish(self, topic: str, key: bytes | None, value: bytes, headers: Headers = ()) -> None:
        """Queue one record; see :meth:`flush` for the acknowledgement."""
        producer = self._get_producer()
        try:
            future = producer.send(topic, value=value, key=key, headers=list(headers))
        except KafkaError as err:
            log.warning("kafka send failed", extra={"error": type(err).__name__})
            self._discard(producer)
            self._pending().clear()
            raise Unavailable("the event broker is unavailable") from err
        self._pending().append((producer, future))

    def flush(self, timeout: float | None = None) -> None:
        """Wait until this thread's records are acknowledged; Unavailable if any was not."""
        pending = self._pending()
        if not pending:
            return
        batch = list(pending)
        pending.clear()
        wait = self._flush_timeout if timeout is None else timeout
        failed: KafkaError | None = None
        for producer, future in batch:
            try:
                future.get(timeout=wait)
            except KafkaError as err:
                failed = err
                self._discard(producer)
        if failed is not None:
            log.warning("kafka delivery failed", extra={"error": type(failed).__name__})
            raise Unavailable("the event broker did not acknowledge the events") from failed

    def close(self) -> None:
        """Flush what is buffered (briefly) and close the connection."""
        with self._lock:
            producer, self._producer, self._closed = self._producer, None, True
        if producer is not None:
            try:
                producer.close(timeout=5)
            except KafkaError as err:
                log.debug("closing the producer: %s", type(err).__name__)


def _to_message(record: Any) -> Message:
    headers = tuple((str(k), bytes(v) if v is not None else b"") for k, v in record.headers or ())
    return Message(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value if record.value is not None else b"",
        headers=headers,
    )


class KafkaConsumerLoop:
    """Consumes ``topics`` as consumer group ``group`` in a background thread.

    Each record is handed to ``handler`` (in this thread) through
    :class:`~signet.common.bus.RecordProcessor`; its offset is committed synchronously
    only after the handler returned or the record was dead-lettered. A record still being
    retried when :meth:`stop` is called is left uncommitted and is delivered again later,
    so handlers must be idempotent (see :func:`signet.common.outbox.process_once`).
    """

    def __init__(
        self,
        bootstrap: str,
        group: str,
        topics: Sequence[str],
        handler: Handler,
        *,
        policy: RetryPolicy | None = None,
        dead_letters: Publisher | None = None,
        client_id: str | None = None,
        poll_seconds: float = 0.5,
        max_poll_records: int = 100,
        **consumer_config: Any,
    ) -> None:
        if not topics:
            raise ValueError("a consumer needs at least one topic")
        self.group = group
        self.topics = tuple(topics)
        self._owns_dead_letters = dead_letters is None
        self._dead_letters: Publisher = dead_letters or KafkaPublisher(
            bootstrap, client_id=f"{client_id or group}-dlq"
        )
        self._stopping = threading.Event()
        self._processor = RecordProcessor(
            group=group,
            handler=handler,
            dead_letters=self._dead_letters,
            policy=policy or RetryPolicy(),
            stopping=self._stopping,
        )
        self._poll_ms = int(poll_seconds * 1000)
        self._config: dict[str, Any] = {
            "bootstrap_servers": bootstrap.split(","),
            "group_id": group,
            "client_id": client_id or group,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "max_poll_records": max_poll_records,
            "bootstrap_timeout_ms": 10000,
            "reconnect_backoff_ms": 100,
            "reconnect_backoff_max_ms": 2000,
        }
        self._config.update(consumer_config)
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped = False

    @property
    def assigned(self) -> bool:
        """Whether the group has given this loop partitions at least once."""
        return self._ready.is_set()

    def start(self) -> None:
        """Start the consumer thread (idempotent while running; a stopped loop stays stopped)."""
        if self._thread is not None and self._thread.is_alive():
            return
        if self._stopped:
            raise RuntimeError("a stopped consumer loop cannot be restarted; build a new one")
        self._thread = threading.Thread(
            target=self._run, name=f"kafka-consumer-{self.group}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop within about one poll interval; nothing unprocessed is committed."""
        self._stopping.set()
        self._stopped = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning(
                    "kafka consumer thread did not stop in time", extra={"group": self.group}
                )
            self._thread = None
        if self._owns_dead_letters:
            self._dead_letters.close()

    def _connect(self) -> KafkaConsumer | None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                return KafkaConsumer(*self.topics, **self._config)
            except KafkaError as err:
                log.warning("kafka consumer cannot connect", extra={"error": type(err).__name__})
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 10.0)
        return None

    def _run(self) -> None:
        consumer = self._connect()
        if consumer is None:
            return
        try:
            while not self._stopping.is_set():
                try:
                    batches = consumer.poll(timeout_ms=self._poll_ms)
                except KafkaError as err:
                    log.warning("kafka poll failed", extra={"error": type(err).__name__})
                    self._stopping.wait(1.0)
                    continue
                if consumer.assignment():
                    self._ready.set()
                abandoned = False
                for tp, records in batches.items():
                    resume_at = records[0].offset if abandoned else self._handle(consumer, records)
                    if resume_at is not None:
                        abandoned = True
                        self._rewind(consumer, tp, resume_at)
        finally:
            try:
                consumer.close(autocommit=False)
            except KafkaError as err:
                log.debug("closing the consumer: %s", type(err).__name__)

    def _handle(self, consumer: KafkaConsumer, records: Sequence[Any]) -> int | None:
        """Process one partition's records in order.

        Returns None when all were processed and committed, else the offset to resume
        from (poll already moved past them, so the caller rewinds to it).
        """
        for raw in records:
            if self._stopping.is_set():
                return int(raw.offset)
            record = _to_message(raw)
            if self._processor.process(record) is Outcome.STOPPED:
                return record.offset
            tp = TopicPartition(record.topic, record.partition)
            try:
                consumer.commit({tp: OffsetAndMetadata(record.offset + 1, "", -1)})
            except CommitFailedError:
                # The group rebalanced and the partition may belong to another member now,
                # which resumes from the last committed offset; processed-events makes that
                # redelivery harmless.
                log.warning("offset commit lost to a rebalance", extra={"group": self.group})
                return record.offset + 1
            except KafkaError as err:
                # The record is handled; a later commit covers its offset too.
                log.warning("offset commit failed", extra={"error": type(err).__name__})
                return record.offset + 1
        return None

    @staticmethod
    def _rewind(consumer: KafkaConsumer, tp: TopicPartition, offset: int) -> None:
        """Make the next poll start at ``offset`` if ``tp`` is still assigned to us."""
        if tp not in consumer.assignment():
            return
        try:
            consumer.seek(tp, offset)
        except KafkaError as err:
            log.debug("rewind failed: %s", type(err).__name__)

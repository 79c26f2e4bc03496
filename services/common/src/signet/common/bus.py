"""The message bus seen by services: Publisher and Consumer protocols, and delivery rules.

Two implementations share these: :mod:`signet.common.kafka` (the real broker) and
:mod:`signet.common.testing.memory_bus` (in memory, for unit tests). The rules of what
happens to one record — decode the envelope, make its trace context current, call the
handler, retry with backoff, dead-letter after N failures — live once, in
:class:`RecordProcessor`, so both implementations behave the same and one contract test
suite runs against both.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from opentelemetry import context as otel_context
from opentelemetry import trace

from signet.common.errors import InvalidArgument, ServiceError
from signet.common.events import (
    EventEnvelope,
    Headers,
    dead_letter_topic,
    decode_envelope,
    extract_trace_context,
    header_value,
)

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

HEADER_DLQ_REASON = "signet-dlq-reason"
HEADER_DLQ_ATTEMPTS = "signet-dlq-attempts"
HEADER_DLQ_CONSUMER = "signet-dlq-consumer"
HEADER_DLQ_TOPIC = "signet-dlq-topic"
HEADER_DLQ_PARTITION = "signet-dlq-partition"
HEADER_DLQ_OFFSET = "signet-dlq-offset"
INVALID_ENVELOPE_REASON = "InvalidEnvelope"


@dataclass(frozen=True)
class Message:
    """One record as a consumer sees it (Kafka's ConsumerRecord, minus the library)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()

    def header(self, name: str) -> bytes | None:
        """The last value of header ``name`` (case-insensitive), or None."""
        return header_value(self.headers, name)


Handler = Callable[[EventEnvelope, Message], None]
"""Called once per record in the consumer's thread; runs its own DB transaction.

Returning means "done, commit the offset"; raising means "failed, try again".
"""


@runtime_checkable
class Publisher(Protocol):
    """Sends records to topics; :meth:`flush` says whether everything sent was acknowledged."""

    def publish(self, topic: str, key: bytes | None, value: bytes, headers: Headers = ()) -> None:
        """Queue one record. Raises Unavailable when it cannot even be queued."""

    def flush(self, timeout: float | None = None) -> None:
        """Wait for every record this thread published since its last flush.

        Raises Unavailable unless all of them were acknowledged by the broker.
        """

    def close(self) -> None:
        """Release connections; publishing after close is an error."""


@runtime_checkable
class Consumer(Protocol):
    """A background loop feeding records of some topics to a handler."""

    def start(self) -> None:
        """Start consuming in a background thread."""

    def stop(self, timeout: float = 30.0) -> None:
        """Stop promptly; a record not yet fully handled is not committed."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failing record is retried before it goes to the dead-letter topic."""

    max_attempts: int = 5
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 10.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff_seconds < 0 or self.max_backoff_seconds < 0:
            raise ValueError("backoff must not be negative")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return min(
            self.backoff_seconds * self.multiplier ** (attempt - 1), self.max_backoff_seconds
        )


class Outcome(enum.Enum):
    """What became of one record; only DONE and DEAD_LETTERED may be committed."""

    DONE = "done"
    DEAD_LETTERED = "dead_lettered"
    STOPPED = "stopped"


@dataclass
class RecordProcessor:
    """Applies the delivery rules to one record at a time, for any consumer implementation.

    ``stopping`` interrupts backoff waits so ``stop()`` is prompt; an interrupted record
    reports STOPPED and must not be committed, so it is delivered again later.
    """

    group: str
    handler: Handler
    dead_letters: Publisher
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    stopping: threading.Event = field(default_factory=threading.Event)

    def process(self, record: Message) -> Outcome:
        """Handle ``record`` with retries; dead-letter it when it keeps failing."""
        try:
            envelope = decode_envelope(record.value)
        except InvalidArgument:
            log.warning(
                "record is not an event envelope; dead-lettering",
                extra={"topic": record.topic, "partition": record.partition},
            )
            return self._dead_letter(record, INVALID_ENVELOPE_REASON, 0)

        attempt = 0
        while True:
            attempt += 1
            try:
                self._call_handler(envelope, record)
            except Exception as err:  # noqa: BLE001  (any handler failure is retried)
                reason = type(err).__name__
                # Only the class name: handler errors may carry personal data in their text.
                log.warning(
                    "event handler failed",
                    extra={
                        "consumer": self.group,
                        "event_id": envelope.id,
                        "attempt": attempt,
                        "error": reason,
                        "retryable": err.retryable if isinstance(err, ServiceError) else None,
                    },
                )
                if attempt >= self.policy.max_attempts:
                    return self._dead_letter(record, reason, attempt)
                if self.stopping.wait(self.policy.backoff(attempt)):
                    return Outcome.STOPPED
                continue
            return Outcome.DONE

    def _call_handler(self, envelope: EventEnvelope, record: Message) -> None:
        parent = extract_trace_context(record.headers, envelope)
        token = otel_context.attach(parent)
        try:
            with _tracer.start_as_current_span(
                f"{record.topic} process",
                kind=trace.SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.destination.name": record.topic,
                    "messaging.consumer.group.name": self.group,
                    "messaging.message.id": envelope.id,
                },
            ):
                self.handler(envelope, record)
        finally:
            otel_context.detach(token)

    def _dead_letter(self, record: Message, reason: str, attempts: int) -> Outcome:
        """Publish ``record`` unchanged to the group's DLQ, retrying until acked or stopped."""
        topic = dead_letter_topic(record.topic, self.group)
        headers = [
            *record.headers,
            (HEADER_DLQ_REASON, reason.encode()),
            (HEADER_DLQ_ATTEMPTS, str(attempts).encode()),
            (HEADER_DLQ_CONSUMER, self.group.encode()),
            (HEADER_DLQ_TOPIC, record.topic.encode()),
            (HEADER_DLQ_PARTITION, str(record.partition).encode()),
            (HEADER_DLQ_OFFSET, str(record.offset).encode()),
        ]
        failures = 0
        while True:
            try:
                self.dead_letters.publish(topic, record.key, record.value, headers)
                self.dead_letters.flush()
            except ServiceError as err:
                failures += 1
                log.warning(
                    "dead-letter publish failed; will retry",
                    extra={"consumer": self.group, "error": type(err).__name__},
                )
                if self.stopping.wait(self.policy.backoff(failures)):
                    return Outcome.STOPPED
                continue
            log.error(
                "record dead-lettered",
                extra={
                    "consumer": self.group,
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "reason": reason,
                    "attempts": attempts,
                },
            )
            return Outcome.DEAD_LETTERED

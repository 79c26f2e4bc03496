"""One suite, two buses: the in-memory bus and the real Kafka broker behave the same.

Covers what services rely on: delivery with the producer's trace context, retries,
dead-lettering after N failures, offsets committed only after the handler returned, and a
prompt stop that leaves an unfinished record for the next consumer of the group.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from google.protobuf.struct_pb2 import Struct
from kafka import KafkaConsumer
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from signet.common.bus import (
    HEADER_DLQ_ATTEMPTS,
    HEADER_DLQ_CONSUMER,
    HEADER_DLQ_REASON,
    HEADER_DLQ_TOPIC,
    INVALID_ENVELOPE_REASON,
    Consumer,
    Handler,
    Message,
    Publisher,
    RetryPolicy,
)
from signet.common.events import (
    EventEnvelope,
    dead_letter_topic,
    encode_envelope,
    envelope_headers,
    new_envelope,
    trace_id_of,
)
from signet.common.kafka import KafkaConsumerLoop, KafkaPublisher
from signet.common.testing.memory_bus import InMemoryBus
from tests.fixtures.kafka import wait_until

FAST = RetryPolicy(max_attempts=3, backoff_seconds=0.05, max_backoff_seconds=0.2)


@dataclass
class BusUnderTest:
    """What the suite needs from an implementation."""

    name: str
    publisher: Publisher
    make_consumer: Callable[[str, list[str], Handler, RetryPolicy], Consumer]
    read: Callable[[str, int, float], list[Message]]


def _kafka_read(bootstrap: str) -> Callable[[str, int, float], list[Message]]:
    def read(topic: str, count: int, timeout: float) -> list[Message]:
        reader = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=f"reader-{uuid.uuid4().hex}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        found: list[Message] = []
        deadline = time.monotonic() + timeout
        try:
            while len(found) < count and time.monotonic() < deadline:
                for records in reader.poll(timeout_ms=500).values():
                    found.extend(
                        Message(r.topic, r.partition, r.offset, r.key, r.value, tuple(r.headers))
                        for r in records
                    )
        finally:
            reader.close()
        return found

    return read


def _memory_read(bus: InMemoryBus) -> Callable[[str, int, float], list[Message]]:
    def read(topic: str, count: int, timeout: float) -> list[Message]:
        wait_until(lambda: len(bus.records(topic)) >= count, timeout)
        return bus.records(topic)

    return read


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
def bus(request: pytest.FixtureRequest) -> Iterator[BusUnderTest]:
    if request.param == "memory":
        memory = InMemoryBus()
        yield BusUnderTest(
            "memory",
            memory,
            lambda group, topics, handler, policy: memory.consumer(
                group, topics, handler, policy=policy
            ),
            _memory_read(memory),
        )
        return
    bootstrap: str = request.getfixturevalue("kafka_bootstrap")
    publisher = KafkaPublisher(bootstrap, client_id="contract-test")

    def make(group: str, topics: list[str], handler: Handler, policy: RetryPolicy) -> Consumer:
        return KafkaConsumerLoop(bootstrap, group, topics, handler, policy=policy)

    yield BusUnderTest("kafka", publisher, make, _kafka_read(bootstrap))
    publisher.close()


class Recorder:
    """A handler that records what it saw; ``fail`` decides per call whether to raise."""

    def __init__(self, fail: Callable[[EventEnvelope, int], bool] = lambda _e, _n: False) -> None:
        self.lock = threading.Lock()
        self.calls: list[str] = []
        self.done: list[str] = []
        self.trace_ids: dict[str, str] = {}
        self._fail = fail

    def __call__(self, envelope: EventEnvelope, record: Message) -> None:
        with self.lock:
            self.calls.append(envelope.id)
            attempt = self.calls.count(envelope.id)
        if self._fail(envelope, attempt):
            raise ValueError(f"cannot handle event about {envelope.subject}")
        ctx = trace.get_current_span().get_span_context()
        with self.lock:
            self.done.append(envelope.id)
            self.trace_ids[envelope.id] = format(ctx.trace_id, "032x")


def _envelope(subject: str = "acct-1") -> EventEnvelope:
    payload = Struct()
    payload.update({"subject": subject})
    return new_envelope(payload, source="identity", subject=subject, tenant="t1")


def _publish(bus: BusUnderTest, topic: str, envelope: EventEnvelope) -> None:
    bus.publisher.publish(
        topic, envelope.subject.encode(), encode_envelope(envelope), envelope_headers(envelope)
    )
    bus.publisher.flush()


def _names() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:10]
    return f"contract.{suffix}", f"group-{suffix}"


def test_published_event_reaches_handler_once_with_its_trace_context(bus: BusUnderTest) -> None:
    topic, group = _names()
    parent = SpanContext(
        trace_id=int(uuid.uuid4().hex, 16),
        span_id=int(uuid.uuid4().hex[:16], 16),
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    with trace.use_span(NonRecordingSpan(parent)):
        envelope = _envelope()
    assert trace_id_of(envelope) == format(parent.trace_id, "032x")
    _publish(bus, topic, envelope)

    handler = Recorder()
    consumer = bus.make_consumer(group, [topic], handler, FAST)
    consumer.start()
    try:
        assert wait_until(lambda: envelope.id in handler.done, 90)
        time.sleep(1.0)  # a duplicate would show up in this window
    finally:
        consumer.stop()
    assert handler.calls == [envelope.id]
    assert handler.trace_ids[envelope.id] == format(parent.trace_id, "032x")


def test_handler_failing_twice_then_succeeding_is_handled_without_dead_letter(
    bus: BusUnderTest,
) -> None:
    topic, group = _names()
    envelope = _envelope()
    _publish(bus, topic, envelope)
    handler = Recorder(fail=lambda _e, attempt: attempt < 3)
    consumer = bus.make_consumer(group, [topic], handler, FAST)
    consumer.start()
    try:
        assert wait_until(lambda: envelope.id in handler.done, 90)
    finally:
        consumer.stop()
    assert handler.calls == [envelope.id] * 3
    assert bus.read(dead_letter_topic(topic, group), 1, 3.0) == []


def test_always_failing_record_is_dead_lettered_after_n_attempts_and_the_loop_moves_on(
    bus: BusUnderTest,
) -> None:
    topic, group = _names()
    poison = _envelope("poison")
    good = _envelope("good")
    # Same key, so both land on one partition and the good one queues behind the poison.
    bus.publisher.publish(topic, b"k", encode_envelope(poison), envelope_headers(poison))
    bus.publisher.publish(topic, b"k", encode_envelope(good), envelope_headers(good))
    bus.publisher.flush()
    handler = Recorder(fail=lambda envelope, _n: envelope.subject == "poison")
    consumer = bus.make_consumer(group, [topic], handler, FAST)
    consumer.start()
    try:
        assert wait_until(lambda: good.id in handler.done, 90)
    finally:
        consumer.stop()
    assert handler.calls.count(poison.id) == FAST.max_attempts
    dead = bus.read(dead_letter_topic(topic, group), 1, 60.0)
    assert len(dead) == 1
    assert dead[0].value == encode_envelope(poison)
    assert dead[0].header(HEADER_DLQ_REASON) == b"ValueError"
    assert dead[0].header(HEADER_DLQ_ATTEMPTS) == str(FAST.max_attempts).encode()
    assert dead[0].header(HEADER_DLQ_CONSUMER) == group.encode()
    assert dead[0].header(HEADER_DLQ_TOPIC) == topic.encode()
    # The reason is the class name only, never the exception text (it named the subject).
    assert all(b"cannot handle" not in value for _, value in dead[0].headers)


def test_value_that_is_not_an_envelope_is_dead_lettered_without_calling_the_handler(
    bus: BusUnderTest,
) -> None:
    topic, group = _names()
    good = _envelope("good")
    bus.publisher.publish(topic, b"k", b"\xff\xffnot a protobuf", ())
    bus.publisher.publish(topic, b"k", encode_envelope(good), envelope_headers(good))
    bus.publisher.flush()
    handler = Recorder()
    consumer = bus.make_consumer(group, [topic], handler, FAST)
    consumer.start()
    try:
        assert wait_until(lambda: good.id in handler.done, 90)
    finally:
        consumer.stop()
    assert handler.calls == [good.id]
    dead = bus.read(dead_letter_topic(topic, group), 1, 60.0)
    assert [d.header(HEADER_DLQ_REASON) for d in dead] == [INVALID_ENVELOPE_REASON.encode()]


def test_committed_records_are_not_delivered_again_to_the_same_group(bus: BusUnderTest) -> None:
    topic, group = _names()
    first, second, third = _envelope("a"), _envelope("b"), _envelope("c")
    for envelope in (first, second):
        _publish(bus, topic, envelope)
    handler = Recorder()
    consumer = bus.make_consumer(group, [topic], handler, FAST)
    consumer.start()
    try:
        assert wait_until(lambda: len(handler.done) == 2, 90)
    finally:
        consumer.stop()

    _publish(bus, topic, third)
    later = Recorder()
    consumer = bus.make_consumer(group, [topic], later, FAST)
    consumer.start()
    try:
        assert wait_until(lambda: third.id in later.done, 90)
        time.sleep(1.0)
    finally:
        consumer.stop()
    assert later.calls == [third.id]


def test_stop_during_retries_is_prompt_and_leaves_the_record_for_the_group(
    bus: BusUnderTest,
) -> None:
    topic, group = _names()
    envelope = _envelope()
    _publish(bus, topic, envelope)
    patient = RetryPolicy(max_attempts=100, backoff_seconds=30.0, max_backoff_seconds=30.0)
    failing = Recorder(fail=lambda _e, _n: True)
    consumer = bus.make_consumer(group, [topic], failing, patient)
    consumer.start()
    try:
        assert wait_until(lambda: len(failing.calls) >= 1, 90)
    finally:
        began = time.monotonic()
        consumer.stop()
        stop_took = time.monotonic() - began
    # Well under the 30 s backoff it was sleeping in: stop interrupts the wait.
    assert stop_took < 20.0

    handler = Recorder()
    consumer = bus.make_consumer(group, [topic], handler, FAST)
    consumer.start()
    try:
        assert wait_until(lambda: envelope.id in handler.done, 90)
    finally:
        consumer.stop()
    assert handler.calls == [envelope.id]
    assert bus.read(dead_letter_topic(topic, group), 1, 3.0) == []

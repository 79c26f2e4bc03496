"""Event envelope: building, parsing, payload packing, topics and trace context in headers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from signet.common.errors import InvalidArgument
from signet.common.events import (
    ALL_TOPICS,
    HEADER_EVENT_ID,
    HEADER_EVENT_TYPE,
    HEADER_TRACEPARENT,
    HEADER_TRACESTATE,
    dead_letter_topic,
    decode_envelope,
    encode_envelope,
    envelope_headers,
    extract_trace_context,
    header_value,
    inject_trace_headers,
    new_envelope,
    trace_id_of,
    unpack_payload,
)


def _span(trace_id: int | None = None) -> NonRecordingSpan:
    return NonRecordingSpan(
        SpanContext(
            trace_id=trace_id or int(uuid.uuid4().hex, 16),
            span_id=int(uuid.uuid4().hex[:16], 16),
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
    )


def _payload() -> Struct:
    payload = Struct()
    payload.update({"account": "acct-1", "level": 2})
    return payload


def test_topics_are_one_per_domain_and_versioned() -> None:
    assert ALL_TOPICS == (
        "signet.identity.v1",
        "signet.certificate.v1",
        "signet.signature.v1",
        "signet.evidence.v1",
        "signet.notify.v1",
    )


def test_dead_letter_topic_is_per_topic_and_consumer_group() -> None:
    assert dead_letter_topic("signet.identity.v1", "notify") == "signet.identity.v1.notify.dlq"
    assert dead_letter_topic("signet.identity.v1", "evidence") != dead_letter_topic(
        "signet.identity.v1", "notify"
    )


def test_dead_letter_topic_rejects_names_kafka_would_refuse() -> None:
    with pytest.raises(ValueError, match="only"):
        dead_letter_topic("signet.identity.v1", "bad group/name")


def test_new_envelope_fills_id_type_time_and_packs_the_payload() -> None:
    before = datetime.now(UTC)
    envelope = new_envelope(_payload(), source="identity", subject="acct-1", tenant="t1")

    assert uuid.UUID(envelope.id).version == 4
    assert envelope.type == "google.protobuf.Struct"
    assert (envelope.source, envelope.subject, envelope.tenant) == ("identity", "acct-1", "t1")
    assert envelope.time.ToDatetime(tzinfo=UTC) >= before.replace(microsecond=0)
    assert unpack_payload(envelope, Struct) == _payload()


def test_new_envelopes_get_distinct_ids() -> None:
    ids = {new_envelope(_payload(), source="identity", subject="s").id for _ in range(50)}
    assert len(ids) == 50


def test_new_envelope_without_source_is_refused() -> None:
    with pytest.raises(ValueError, match="source"):
        new_envelope(_payload(), source="", subject="s")


def test_new_envelope_captures_the_current_trace_context() -> None:
    span = _span()
    with trace.use_span(span):
        envelope = new_envelope(_payload(), source="signer", subject="key-1")
    expected = format(span.get_span_context().trace_id, "032x")
    assert envelope.trace.traceparent.split("-")[1] == expected
    assert trace_id_of(envelope) == expected


def test_new_envelope_outside_a_trace_has_no_trace_context() -> None:
    envelope = new_envelope(_payload(), source="signer", subject="key-1")
    assert envelope.trace.traceparent == ""
    assert trace_id_of(envelope) == ""


def test_unpack_payload_as_the_wrong_type_is_invalid_argument() -> None:
    envelope = new_envelope(_payload(), source="identity", subject="s")
    with pytest.raises(InvalidArgument, match=r"not google\.protobuf\.Timestamp"):
        unpack_payload(envelope, Timestamp)


def test_envelope_round_trips_through_bytes() -> None:
    envelope = new_envelope(_payload(), source="identity", subject="s", tenant="t")
    assert decode_envelope(encode_envelope(envelope)) == envelope


@pytest.mark.parametrize("data", [b"\xff\xff\xff", b"", b"\x0a\x03abc"])
def test_decoding_something_that_is_not_a_complete_envelope_is_invalid_argument(
    data: bytes,
) -> None:
    with pytest.raises(InvalidArgument):
        decode_envelope(data)


def test_envelope_headers_carry_id_type_and_the_envelope_trace_not_the_current_one() -> None:
    producer_span = _span()
    with trace.use_span(producer_span):
        envelope = new_envelope(_payload(), source="identity", subject="s")
    # Published later by the relay, inside some other trace.
    with trace.use_span(_span()):
        headers = envelope_headers(envelope)
    assert header_value(headers, HEADER_EVENT_ID) == envelope.id.encode()
    assert header_value(headers, HEADER_EVENT_TYPE) == b"google.protobuf.Struct"
    assert header_value(headers, HEADER_TRACEPARENT) == envelope.trace.traceparent.encode()
    assert trace_id_of(extract_trace_context(headers)) == format(
        producer_span.get_span_context().trace_id, "032x"
    )


def test_inject_then_extract_round_trips_the_trace_and_replaces_stale_headers() -> None:
    span = _span()
    stale = [(HEADER_TRACEPARENT, b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01"), ("x", b"y")]
    with trace.use_span(span):
        headers = inject_trace_headers(stale)
    assert [k for k, _ in headers].count(HEADER_TRACEPARENT) == 1
    assert header_value(headers, "x") == b"y"
    ctx = extract_trace_context(headers)
    assert trace.get_current_span(ctx).get_span_context().trace_id == (
        span.get_span_context().trace_id
    )


def test_extract_falls_back_to_the_envelope_when_headers_lack_a_trace() -> None:
    with trace.use_span(_span()):
        envelope = new_envelope(_payload(), source="identity", subject="s")
    ctx = extract_trace_context([(HEADER_EVENT_ID, b"x")], envelope)
    assert trace_id_of(ctx) == trace_id_of(envelope) != ""


def test_extract_of_garbage_gives_an_empty_context() -> None:
    ctx = extract_trace_context([(HEADER_TRACEPARENT, b"not-a-trace"), (HEADER_TRACESTATE, b"")])
    assert trace_id_of(ctx) == ""
    assert isinstance(ctx, Context)


def test_header_value_is_case_insensitive_and_takes_the_last() -> None:
    headers = [("A", b"1"), ("a", b"2")]
    assert header_value(headers, "a") == b"2"
    assert header_value(headers, "missing") is None

"""The event envelope: topics, building and parsing envelopes, trace context in headers.

Every state change travels as a :class:`EventEnvelope` (id, type, source, subject, tenant,
time, W3C trace context, ``Any``-packed payload) on its domain's topic. The trace context
is captured when the envelope is built, inside the request that changed the state, and it
travels both in the envelope and in the Kafka headers, so the consumer continues the
producer's trace even though the outbox relay publishes later from another thread.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from google.protobuf.message import DecodeError, Message
from opentelemetry.context import Context
from opentelemetry.trace import get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from signet.common.errors import InvalidArgument
from signet.events.v1.events_pb2 import EventEnvelope, TraceContext

__all__ = [
    "ALL_TOPICS",
    "CERTIFICATE_TOPIC",
    "EVIDENCE_TOPIC",
    "HEADER_EVENT_ID",
    "HEADER_EVENT_TYPE",
    "HEADER_TRACEPARENT",
    "HEADER_TRACESTATE",
    "IDENTITY_TOPIC",
    "NOTIFY_TOPIC",
    "SIGNATURE_TOPIC",
    "EventEnvelope",
    "Headers",
    "TraceContext",
    "dead_letter_topic",
    "decode_envelope",
    "encode_envelope",
    "envelope_headers",
    "extract_trace_context",
    "header_value",
    "inject_trace_headers",
    "new_envelope",
    "trace_id_of",
    "unpack_payload",
]

IDENTITY_TOPIC = "signet.identity.v1"
CERTIFICATE_TOPIC = "signet.certificate.v1"
SIGNATURE_TOPIC = "signet.signature.v1"
EVIDENCE_TOPIC = "signet.evidence.v1"
NOTIFY_TOPIC = "signet.notify.v1"
ALL_TOPICS: tuple[str, ...] = (
    IDENTITY_TOPIC,
    CERTIFICATE_TOPIC,
    SIGNATURE_TOPIC,
    EVIDENCE_TOPIC,
    NOTIFY_TOPIC,
)

HEADER_TRACEPARENT = "traceparent"
HEADER_TRACESTATE = "tracestate"
HEADER_EVENT_ID = "signet-event-id"
HEADER_EVENT_TYPE = "signet-event-type"

Headers = Sequence[tuple[str, bytes]]
"""Kafka record headers: ordered (name, value) pairs; names may repeat."""

_M = TypeVar("_M", bound=Message)
_W3C = TraceContextTextMapPropagator()
_TOPIC_PART = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


def dead_letter_topic(topic: str, consumer_group: str) -> str:
    """The dead-letter topic for records of ``topic`` that ``consumer_group`` gave up on.

    One per (topic, group): a record notify cannot handle says nothing about evidence,
    and each group replays or inspects only its own failures.
    """
    for part in (topic, consumer_group):
        if not _TOPIC_PART.match(part):
            raise ValueError("topic and consumer group may use only [A-Za-z0-9._-]")
    return f"{topic}.{consumer_group}.dlq"


def _current_trace_carrier(context: Context | None = None) -> dict[str, str]:
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, context=context)
    return carrier


def new_envelope(
    payload: Message,
    *,
    source: str,
    subject: str,
    tenant: str = "",
    event_id: str | None = None,
    time: datetime | None = None,
    trace: TraceContext | None = None,
) -> EventEnvelope:
    """Wrap ``payload`` in a new envelope carrying the current OpenTelemetry trace context.

    ``type`` is the payload's full proto name, ``id`` a fresh UUID (the consumers'
    idempotency key) unless given, ``time`` now (UTC) unless given. ``trace`` reuses a
    trace context already captured (many events of one request) instead of reading it.
    """
    if not source:
        raise ValueError("an event needs its source service")
    envelope = EventEnvelope(
        id=event_id or str(uuid.uuid4()),
        type=payload.DESCRIPTOR.full_name,
        source=source,
        subject=subject,
        tenant=tenant,
    )
    envelope.time.FromDatetime(time or datetime.now(UTC))
    if trace is not None:
        envelope.trace.CopyFrom(trace)
    else:
        carrier = _current_trace_carrier()
        envelope.trace.traceparent = carrier.get(HEADER_TRACEPARENT, "")
        envelope.trace.tracestate = carrier.get(HEADER_TRACESTATE, "")
    envelope.payload.Pack(payload)
    return envelope


def unpack_payload(envelope: EventEnvelope, message_type: type[_M]) -> _M:
    """The envelope's payload as ``message_type``; InvalidArgument when it is another type."""
    message = message_type()
    if envelope.payload.TypeName() != message.DESCRIPTOR.full_name:
        raise InvalidArgument(f"event payload is not {message.DESCRIPTOR.full_name}")
    try:
        envelope.payload.Unpack(message)
    except DecodeError as err:
        raise InvalidArgument("the event payload is malformed") from err
    return message


def encode_envelope(envelope: EventEnvelope) -> bytes:
    """The record value for ``envelope`` (deterministic protobuf bytes)."""
    return envelope.SerializeToString(deterministic=True)


def decode_envelope(data: bytes) -> EventEnvelope:
    """Parse a record value; InvalidArgument when it is not an envelope with id and type."""
    envelope = EventEnvelope()
    try:
        envelope.ParseFromString(data)
    except DecodeError as err:
        raise InvalidArgument("the record is not an event envelope") from err
    if not envelope.id or not envelope.type:
        raise InvalidArgument("the event envelope lacks its id or type")
    return envelope


def header_value(headers: Iterable[tuple[str, bytes]], name: str) -> bytes | None:
    """The last value of header ``name`` (case-insensitive), or None."""
    found: bytes | None = None
    lowered = name.lower()
    for key, value in headers:
        if key.lower() == lowered:
            found = value
    return found


def envelope_headers(envelope: EventEnvelope) -> list[tuple[str, bytes]]:
    """Kafka headers for ``envelope``: its id, type and the trace context it was built in.

    The trace context comes from the envelope, not from the publishing thread, because
    the outbox relay publishes outside the request that produced the event.
    """
    headers = [
        (HEADER_EVENT_ID, envelope.id.encode()),
        (HEADER_EVENT_TYPE, envelope.type.encode()),
    ]
    if envelope.trace.traceparent:
        headers.append((HEADER_TRACEPARENT, envelope.trace.traceparent.encode()))
        if envelope.trace.tracestate:
            headers.append((HEADER_TRACESTATE, envelope.trace.tracestate.encode()))
    return headers


def inject_trace_headers(
    headers: Sequence[tuple[str, bytes]] = (), context: Context | None = None
) -> list[tuple[str, bytes]]:
    """``headers`` plus the W3C trace context of ``context`` (default: the current one).

    Existing trace headers are replaced, so a record never carries two parents.
    """
    carrier = _current_trace_carrier(context)
    kept = [
        (k, v)
        for k, v in headers
        if k.lower() not in (HEADER_TRACEPARENT, HEADER_TRACESTATE) or not carrier
    ]
    return kept + [(k, v.encode()) for k, v in carrier.items()]


def extract_trace_context(
    headers: Iterable[tuple[str, bytes]], envelope: EventEnvelope | None = None
) -> Context:
    """The OpenTelemetry context carried by ``headers``, else by ``envelope.trace``.

    Returns an empty context (a new root) when neither carries a valid traceparent.
    """
    carrier: dict[str, str] = {}
    for name in (HEADER_TRACEPARENT, HEADER_TRACESTATE):
        value = header_value(headers, name)
        if value is not None:
            carrier[name] = value.decode("ascii", errors="replace")
    if HEADER_TRACEPARENT not in carrier and envelope is not None:
        if envelope.trace.traceparent:
            carrier[HEADER_TRACEPARENT] = envelope.trace.traceparent
        if envelope.trace.tracestate:
            carrier[HEADER_TRACESTATE] = envelope.trace.tracestate
    return _W3C.extract(carrier, context=Context())


def trace_id_of(source: EventEnvelope | Context | Mapping[str, str]) -> str:
    """The 32-hex-digit trace id of an envelope, a context or a W3C carrier ("" if none)."""
    if isinstance(source, EventEnvelope):
        ctx = extract_trace_context((), source)
    elif isinstance(source, Context):
        ctx = source
    else:
        ctx = _W3C.extract(dict(source), context=Context())
    span_context = get_current_span(ctx).get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else ""

"""OpenTelemetry setup and W3C trace-context helpers shared by gRPC and Kafka code.

An SDK tracer provider is installed even when nothing is exported (``none``), so every
request still gets real trace and span ids: logs carry them and downstream calls and events
continue the same trace. ``console`` prints spans (local debugging); ``otlp`` ships them
to a collector.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableSequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)

from signet.common.config import ServiceSettings

INSTRUMENTATION_NAME = "signet.common"


def build_tracer_provider(
    service_name: str, exporter: str = "none", otlp_endpoint: str = ""
) -> TracerProvider:
    """A tracer provider for ``service_name`` exporting to ``exporter`` (none, console, otlp)."""
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter == "console":
        # Simple (synchronous) so local output appears in order with the logs.
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":
        provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(otlp_endpoint)))
    elif exporter != "none":
        raise ValueError("tracing exporter must be none, console or otlp")
    return provider


def _otlp_exporter(endpoint: str) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    if endpoint:
        return OTLPSpanExporter(endpoint=endpoint)
    # Without an explicit endpoint the exporter honours the standard OTEL_EXPORTER_OTLP_* env.
    return OTLPSpanExporter()


def configure_tracing(settings: ServiceSettings) -> TracerProvider:
    """Install the process-wide tracer provider from settings and return it (call once, in serve()).

    Call ``shutdown()`` on the result when the process drains, so batched spans are flushed.
    """
    provider = build_tracer_provider(
        settings.service_name, settings.tracing_exporter, settings.otlp_endpoint
    )
    trace.set_tracer_provider(provider)
    return provider


def get_tracer(provider: trace.TracerProvider | None = None) -> trace.Tracer:
    """Signet's tracer from ``provider`` (the process-wide one when None)."""
    return trace.get_tracer(INSTRUMENTATION_NAME, tracer_provider=provider)


class _MetadataGetter(Getter[Iterable[tuple[str, Any]]]):
    """Reads W3C headers out of gRPC metadata or Kafka headers ((key, value) pairs)."""

    def get(self, carrier: Iterable[tuple[str, Any]], key: str) -> list[str] | None:
        found = [_text(v) for k, v in carrier if k.lower() == key]
        return found or None

    def keys(self, carrier: Iterable[tuple[str, Any]]) -> list[str]:
        return [k for k, _ in carrier]


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


_GETTER = _MetadataGetter()


def extract_context(pairs: Iterable[tuple[str, str | bytes]]) -> otel_context.Context:
    """The trace context carried in ``pairs`` (gRPC metadata or Kafka headers); empty if none."""
    return propagate.extract(list(pairs), getter=_GETTER)


def inject_context(
    pairs: MutableSequence[tuple[str, str]], context: otel_context.Context | None = None
) -> None:
    """Append the W3C headers of ``context`` (default: the current one) to ``pairs``."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context)
    pairs.extend(carrier.items())


def current_trace_headers() -> Mapping[str, str]:
    """The current context as W3C headers (e.g. for an event envelope's trace context)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier

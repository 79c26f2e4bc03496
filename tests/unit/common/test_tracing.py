"""Trace-context helpers and tracer provider construction."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from signet.common.config import ServiceSettings
from signet.common.tracing import (
    build_tracer_provider,
    current_trace_headers,
    extract_context,
    inject_context,
)


def test_injected_headers_extract_to_the_same_span_context() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("op") as span:
        headers: list[tuple[str, str]] = [("authorization", "Bearer x")]
        inject_context(headers)
        assert current_trace_headers()["traceparent"] == dict(headers)["traceparent"]
    extracted = trace.get_current_span(extract_context(headers)).get_span_context()
    assert extracted.trace_id == span.get_span_context().trace_id
    assert extracted.span_id == span.get_span_context().span_id
    assert extracted.is_remote


def test_extract_accepts_bytes_values_and_mixed_case_keys() -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    context = extract_context([("Traceparent", parent.encode())])
    assert trace.get_current_span(context).get_span_context().trace_id == int(
        "0af7651916cd43dd8448eb211c80319c", 16
    )


def test_no_headers_extract_to_no_parent() -> None:
    context = extract_context([("x-other", "1")])
    assert not trace.get_current_span(context).get_span_context().is_valid


@pytest.mark.parametrize("exporter", ["none", "console", "otlp"])
def test_provider_is_built_for_each_exporter(exporter: str) -> None:
    settings = ServiceSettings(service_name="evidence", otlp_endpoint="http://127.0.0.1:4317")
    provider = build_tracer_provider(settings.service_name, exporter, settings.otlp_endpoint)
    try:
        assert provider.resource.attributes["service.name"] == "evidence"
        span = provider.get_tracer("t").start_span("op")
        # Real ids even when nothing is exported: logs and downstream calls need them.
        assert span.get_span_context().is_valid
    finally:
        # The span is never ended, so the OTLP exporter has nothing to send on shutdown.
        provider.shutdown()


def test_unknown_exporter_is_rejected() -> None:
    with pytest.raises(ValueError, match="exporter"):
        build_tracer_provider("x", "zipkin")

"""Metric naming, get-or-create collectors and the /metrics HTTP endpoint."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from signet.common.metrics import (
    GrpcServerMetrics,
    MetricsServer,
    counter,
    gauge,
    histogram,
    metric_name,
    service_prefix,
)


@pytest.mark.parametrize(
    ("service", "prefix"),
    [
        ("signer", "signet_signer"),
        ("ca-gateway", "signet_ca_gateway"),
        ("signet-notify", "signet_notify"),
        ("signet", "signet"),
    ],
)
def test_service_prefix_follows_the_naming_rule(service: str, prefix: str) -> None:
    assert service_prefix(service) == prefix


def test_metric_name_rejects_invalid_characters() -> None:
    assert metric_name("evidence", "tree_size") == "signet_evidence_tree_size"
    with pytest.raises(ValueError, match="lower-case"):
        metric_name("evidence", "Tree Size")


def test_counters_must_end_in_total() -> None:
    with pytest.raises(ValueError, match="_total"):
        counter("signet_x_events", "doc", registry=CollectorRegistry())


def test_asking_twice_returns_the_same_collector() -> None:
    registry = CollectorRegistry()
    first = counter("signet_x_events_total", "doc", ("topic",), registry)
    second = counter("signet_x_events_total", "doc", ("topic",), registry)
    first.labels(topic="a").inc()
    assert first is second
    assert registry.get_sample_value("signet_x_events_total", {"topic": "a"}) == 1


def test_same_name_as_another_type_is_an_error() -> None:
    registry = CollectorRegistry()
    gauge("signet_x_depth", "doc", registry=registry)
    with pytest.raises(ValueError, match="different metric type"):
        histogram("signet_x_depth", "doc", registry=registry)


def test_grpc_metrics_names_and_buckets() -> None:
    registry = CollectorRegistry()
    metrics = GrpcServerMetrics.create("ca-gateway", registry)
    metrics.requests.labels(method="/m", code="OK").inc()
    metrics.duration.labels(method="/m").observe(0.0005)
    metrics.duration.labels(method="/m").observe(7)
    metrics.in_flight.labels(method="/m").inc()

    def value(name: str, labels: dict[str, str]) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("signet_ca_gateway_grpc_requests_total", {"method": "/m", "code": "OK"}) == 1
    bucket = "signet_ca_gateway_grpc_request_duration_seconds_bucket"
    assert value(bucket, {"method": "/m", "le": "0.001"}) == 1
    assert value(bucket, {"method": "/m", "le": "5.0"}) == 1
    assert value(bucket, {"method": "/m", "le": "10.0"}) == 2
    assert value("signet_ca_gateway_grpc_in_flight", {"method": "/m"}) == 1
    assert GrpcServerMetrics.create("ca-gateway", registry).requests is metrics.requests


def test_metrics_server_serves_the_registry_and_frees_its_port() -> None:
    registry = CollectorRegistry()
    counter("signet_x_scrapes_total", "doc", registry=registry).inc(3)
    server = MetricsServer("127.0.0.1", 0, registry)
    try:
        assert server.port > 0
        with urllib.request.urlopen(server.url, timeout=5) as response:
            body = response.read().decode()
    finally:
        server.stop()
    assert "signet_x_scrapes_total 3.0" in body
    again = MetricsServer("127.0.0.1", server.port, registry)
    again.stop()

"""RPC metrics as Prometheus scrapes them from /metrics over HTTP."""

from __future__ import annotations

import contextlib
import threading
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from signet.common.errors import InvalidArgument
from signet.common.testing.grpc import (
    InProcessServer,
    bytes_service,
    bytes_unary_unary,
    settings_for_tests,
)

SERVICE = "test.Metered"
release = threading.Event()
entered = threading.Event()


def ok(request: bytes, context: grpc.ServicerContext) -> bytes:
    return b"ok"


def invalid(request: bytes, context: grpc.ServicerContext) -> bytes:
    raise InvalidArgument("bad digest length")


def crash(request: bytes, context: grpc.ServicerContext) -> bytes:
    raise ZeroDivisionError


def aborts(request: bytes, context: grpc.ServicerContext) -> bytes:
    context.abort(grpc.StatusCode.PERMISSION_DENIED, "no")


def blocks(request: bytes, context: grpc.ServicerContext) -> bytes:
    entered.set()
    release.wait(10)
    return b"done"


register = bytes_service(
    SERVICE,
    unary_unary={"Ok": ok, "Invalid": invalid, "Crash": crash, "Aborts": aborts, "Blocks": blocks},
)


@pytest.fixture
def server() -> Iterator[InProcessServer]:
    srv = InProcessServer(
        register, service_names=[SERVICE], settings=settings_for_tests(service_name="ca-gateway")
    )
    with srv:
        yield srv


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def call(server: InProcessServer, method: str) -> None:
    assert server.channel is not None
    with contextlib.suppress(grpc.RpcError):
        bytes_unary_unary(server.channel, f"/{SERVICE}/{method}")(b"")


def requests_total(samples: Samples, method: str, code: str) -> float:
    key = (
        "signet_ca_gateway_grpc_requests_total",
        (("code", code), ("method", f"/{SERVICE}/{method}")),
    )
    return float(samples.get(key, 0.0))


def test_requests_are_counted_with_their_real_status_code(server: InProcessServer) -> None:
    call(server, "Ok")
    call(server, "Ok")
    call(server, "Invalid")
    call(server, "Crash")
    call(server, "Aborts")

    samples = scrape(server.metrics_url)

    assert requests_total(samples, "Ok", "OK") == 2
    assert requests_total(samples, "Invalid", "INVALID_ARGUMENT") == 1
    assert requests_total(samples, "Crash", "INTERNAL") == 1
    assert requests_total(samples, "Aborts", "PERMISSION_DENIED") == 1
    assert requests_total(samples, "Invalid", "OK") == 0


def test_latency_histogram_counts_each_call(server: InProcessServer) -> None:
    call(server, "Ok")
    call(server, "Invalid")

    samples = scrape(server.metrics_url)

    method = (("method", f"/{SERVICE}/Ok"),)
    assert samples[("signet_ca_gateway_grpc_request_duration_seconds_count", method)] == 1
    assert (
        samples[
            (
                "signet_ca_gateway_grpc_request_duration_seconds_bucket",
                (("le", "10.0"), ("method", f"/{SERVICE}/Ok")),
            )
        ]
        == 1
    )


def test_in_flight_gauge_shows_a_running_call(server: InProcessServer) -> None:
    release.clear()
    entered.clear()
    assert server.channel is not None
    future = bytes_unary_unary(server.channel, f"/{SERVICE}/Blocks").future(b"")
    try:
        assert entered.wait(10)
        during = scrape(server.metrics_url)
    finally:
        release.set()
    assert future.result(timeout=10) == b"done"
    after = scrape(server.metrics_url)

    key = ("signet_ca_gateway_grpc_in_flight", (("method", f"/{SERVICE}/Blocks"),))
    assert during[key] == 1
    assert after[key] == 0


def test_unknown_methods_add_no_label_values(server: InProcessServer) -> None:
    assert server.channel is not None
    with pytest.raises(grpc.RpcError) as info:
        bytes_unary_unary(server.channel, f"/{SERVICE}/NoSuchMethod")(b"")
    assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED

    samples = scrape(server.metrics_url)

    assert not any("NoSuchMethod" in dict(labels).get("method", "") for _, labels in samples)

"""The client channel factory against real servers: balancing, retries, deadlines, trace context."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from signet.common.channels import RetryPolicy, create_channel
from signet.common.errors import InvalidArgument, Unavailable
from signet.common.server import Register
from signet.common.testing.grpc import InProcessServer, bytes_service, bytes_unary_unary

SERVICE = "test.Client"
Behaviour = Callable[[bytes, grpc.ServicerContext], bytes]


def service(handlers: dict[str, Behaviour]) -> Register:
    return bytes_service(SERVICE, unary_unary=handlers)


def named(name: str) -> Behaviour:
    def behaviour(request: bytes, context: grpc.ServicerContext) -> bytes:
        return name.encode()

    return behaviour


# Round robin -----------------------------------------------------------------------------


@pytest.fixture
def servers_a_and_b() -> Iterator[tuple[InProcessServer, InProcessServer]]:
    a = InProcessServer(service({"Name": named("a")}))
    b = InProcessServer(service({"Name": named("b")}))
    with a, b:
        yield a, b


def spread(channel: grpc.Channel) -> Counter[bytes]:
    call = bytes_unary_unary(channel, f"/{SERVICE}/Name")
    seen: Counter[bytes] = Counter()
    deadline = time.monotonic() + 20
    # Subchannels connect independently; once both are up, calls alternate.
    while len(seen) < 2 and time.monotonic() < deadline:
        seen[call(b"")] += 1
    assert len(seen) == 2, f"only reached {set(seen)}"
    later: Counter[bytes] = Counter(call(b"") for _ in range(20))
    return later


def test_calls_are_spread_over_all_addresses_of_a_service(
    servers_a_and_b: tuple[InProcessServer, InProcessServer],
) -> None:
    a, b = servers_a_and_b
    channel = create_channel([a.address, b.address], default_timeout=5)
    try:
        later = spread(channel)
    finally:
        channel.close()
    assert later[b"a"] >= 5
    assert later[b"b"] >= 5


def test_comma_separated_host_names_are_balanced_too(
    servers_a_and_b: tuple[InProcessServer, InProcessServer],
) -> None:
    a, b = servers_a_and_b
    channel = create_channel(f"localhost:{a.port},localhost:{b.port}", default_timeout=5)
    try:
        later = spread(channel)
    finally:
        channel.close()
    assert set(later) == {b"a", b"b"}


# Retries ---------------------------------------------------------------------------------


class Flaky:
    """Fails with the given error ``failures`` times, then answers."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        with self._lock:
            self.calls += 1
            if self.calls <= self.failures:
                raise self.error
        return b"ok"


FAST_RETRY = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.05)


def test_unavailable_twice_then_success_is_retried_to_success() -> None:
    flaky = Flaky(2, Unavailable("hsm busy"))
    with InProcessServer(service({"Do": flaky}), retry=FAST_RETRY) as channel:
        assert bytes_unary_unary(channel, f"/{SERVICE}/Do")(b"") == b"ok"
    assert flaky.calls == 3


def test_invalid_argument_is_not_retried() -> None:
    flaky = Flaky(2, InvalidArgument("bad digest"))
    with (
        InProcessServer(service({"Do": flaky}), retry=FAST_RETRY) as channel,
        pytest.raises(grpc.RpcError) as info,
    ):
        bytes_unary_unary(channel, f"/{SERVICE}/Do")(b"")
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert flaky.calls == 1


def test_retries_stop_after_the_attempt_limit_with_the_last_status() -> None:
    flaky = Flaky(100, Unavailable("hsm down"))
    with (
        InProcessServer(service({"Do": flaky}), retry=FAST_RETRY) as channel,
        pytest.raises(grpc.RpcError) as info,
    ):
        bytes_unary_unary(channel, f"/{SERVICE}/Do")(b"")
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    assert info.value.details() == "hsm down"
    assert flaky.calls == 4


def test_retries_stop_at_the_deadline() -> None:
    flaky = Flaky(1000, Unavailable("hsm down"))
    slow_backoff = RetryPolicy(max_attempts=1000, initial_backoff=0.3, max_backoff=0.3)
    with InProcessServer(service({"Do": flaky}), retry=slow_backoff) as channel:
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            bytes_unary_unary(channel, f"/{SERVICE}/Do")(b"", timeout=1.0)
        elapsed = time.monotonic() - started
    assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    # Full jitter sleeps 0..0.3 s: far fewer than 1000 attempts fit into one second.
    assert flaky.calls < 200
    assert elapsed < 5


# Deadlines -------------------------------------------------------------------------------


def sleeps(request: bytes, context: grpc.ServicerContext) -> bytes:
    time.sleep(float(request.decode()))
    return b"awake"


def test_calls_without_deadline_get_the_default_one() -> None:
    with InProcessServer(service({"Sleep": sleeps}), timeout=0.3) as channel:
        with pytest.raises(grpc.RpcError) as info:
            bytes_unary_unary(channel, f"/{SERVICE}/Sleep")(b"2")
        assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        # An explicit timeout wins over the default.
        assert bytes_unary_unary(channel, f"/{SERVICE}/Sleep")(b"0.5", timeout=10) == b"awake"


# Trace context ---------------------------------------------------------------------------


def in_memory_provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_trace_id_propagates_from_client_to_server_span() -> None:
    server_provider, server_spans = in_memory_provider()
    client_provider, _ = in_memory_provider()
    register = service({"Name": named("a"), "Bad": Flaky(100, InvalidArgument("no"))})
    with InProcessServer(register, tracer_provider=server_provider) as channel:
        tracer = client_provider.get_tracer("test")
        with tracer.start_as_current_span("client operation") as client_span:
            bytes_unary_unary(channel, f"/{SERVICE}/Name")(b"")
            with pytest.raises(grpc.RpcError):
                bytes_unary_unary(channel, f"/{SERVICE}/Bad")(b"")

    spans = {span.name: span for span in server_spans.get_finished_spans()}
    ok, bad = spans[f"/{SERVICE}/Name"], spans[f"/{SERVICE}/Bad"]
    client = client_span.get_span_context()
    for span in (ok, bad):
        assert span.kind is SpanKind.SERVER
        assert span.context.trace_id == client.trace_id
        assert span.parent is not None
        assert span.parent.span_id == client.span_id
    assert ok.status.status_code is StatusCode.UNSET
    assert bad.status.status_code is StatusCode.ERROR
    assert bad.attributes is not None
    assert bad.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]


def test_call_without_caller_trace_starts_a_new_trace() -> None:
    server_provider, server_spans = in_memory_provider()
    with InProcessServer(service({"Name": named("a")}), tracer_provider=server_provider) as ch:
        bytes_unary_unary(ch, f"/{SERVICE}/Name")(b"")
    (span,) = server_spans.get_finished_spans()
    assert span.context.trace_id != 0
    assert span.parent is None

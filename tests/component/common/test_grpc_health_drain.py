"""Health reporting and graceful drain: in process, and via SIGTERM to a real serve() process."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from signet.common.testing.grpc import (
    InProcessServer,
    bytes_service,
    bytes_unary_stream,
    bytes_unary_unary,
    settings_for_tests,
)

SERVICE = "test.Drainable"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

entered = threading.Event()
release = threading.Event()


def blocks(request: bytes, context: grpc.ServicerContext) -> bytes:
    entered.set()
    release.wait(20)
    return b"finished"


register = bytes_service(SERVICE, unary_unary={"Blocks": blocks})


class RecordingBackground:
    """A background loop whose stop() can be held, which holds the drain at that step."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.may_stop = threading.Event()
        self.may_stop.set()

    def start(self) -> None:
        self.events.append("start")

    def stop(self) -> None:
        self.events.append("stop")
        self.may_stop.wait(20)


@pytest.fixture
def background() -> RecordingBackground:
    return RecordingBackground()


@pytest.fixture
def server(background: RecordingBackground) -> Iterator[InProcessServer]:
    entered.clear()
    release.clear()
    srv = InProcessServer(
        register,
        service_names=[SERVICE],
        settings=settings_for_tests(drain_seconds=4.0),
        background=[background],
    )
    try:
        with srv:
            yield srv
    finally:
        release.set()
        background.may_stop.set()


def check(channel: grpc.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status)


def test_health_is_serving_for_overall_and_each_service_after_start(
    server: InProcessServer,
) -> None:
    assert server.channel is not None
    assert check(server.channel) == SERVING
    assert check(server.channel, SERVICE) == SERVING


def test_health_is_not_serving_before_start() -> None:
    srv = InProcessServer(register, service_names=[SERVICE])
    response = srv.server.health_servicer.Check(health_pb2.HealthCheckRequest(service=""), None)
    assert response.status == NOT_SERVING


def test_drain_reports_not_serving_and_lets_the_in_flight_call_finish(
    server: InProcessServer, background: RecordingBackground
) -> None:
    channel = server.channel
    assert channel is not None
    watch = health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service=SERVICE), timeout=20
    )
    assert next(watch).status == SERVING
    in_flight = bytes_unary_unary(channel, f"/{SERVICE}/Blocks").future(b"", timeout=20)
    assert entered.wait(10)

    # Holding the background stop holds the drain right after health changed.
    background.may_stop.clear()
    stopper = threading.Thread(target=server.server.stop)
    stopper.start()
    try:
        # Pushed to watchers at once: health-checking balancers stop sending here.
        assert next(watch).status == NOT_SERVING
        watch.cancel()
        # Polled probes see it too, while the server still answers.
        assert check(channel) == NOT_SERVING
        assert check(channel, SERVICE) == NOT_SERVING
        assert background.events == ["start", "stop"]
    finally:
        background.may_stop.set()
    assert not in_flight.done()
    release.set()
    assert in_flight.result(timeout=10) == b"finished"
    stopper.join(timeout=20)
    assert not stopper.is_alive()
    assert server.server.wait(timeout=0)


def test_new_calls_fail_after_the_server_stopped(server: InProcessServer) -> None:
    channel = server.channel
    assert channel is not None
    server.server.stop(grace=0)

    with pytest.raises(grpc.RpcError) as info:
        check(channel)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE


SERVE_SCRIPT = """
import sys, time
import grpc
from signet.common.config import ServiceSettings
from signet.common.server import serve

def run(request, context):
    yield b"started"
    time.sleep(1.0)
    yield b"finished"

def register(server):
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "test.Slow", {"Run": grpc.unary_stream_rpc_method_handler(run)}),))

class Loop:
    def start(self):
        print("loop started", flush=True)
    def stop(self):
        print("loop stopped", flush=True)

serve(
    ServiceSettings(service_name="drain-test", grpc_port=0, metrics_port=0, drain_seconds=4,
                    auth_mode="none", tracing_exporter="none"),
    register, service_names=["test.Slow"], background=[Loop()],
)
print("serve returned", flush=True)
"""


def _read_lines(stream: object, sink: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        sink.put(line)


def _serving_record(lines: queue.Queue[str], seen: list[str]) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        seen.append(line)
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("message") == "serving":
            return dict(record)
    raise AssertionError("server did not report serving:\n" + "".join(seen))


def test_sigterm_drains_in_flight_call_and_exits_zero() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNET_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE_SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    errors: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stderr, errors), daemon=True).start()
    stderr_seen: list[str] = []
    try:
        record = _serving_record(errors, stderr_seen)
        assert record["service"] == "drain-test"
        channel = grpc.insecure_channel(f"127.0.0.1:{record['grpc_port']}")
        try:
            responses = bytes_unary_stream(channel, "/test.Slow/Run")(b"", timeout=20)
            assert next(responses) == b"started"

            proc.send_signal(signal.SIGTERM)

            assert list(responses) == [b"finished"]
            assert responses.code() is grpc.StatusCode.OK
        finally:
            channel.close()
        assert proc.wait(timeout=30) == 0
        stdout = proc.stdout.read() if proc.stdout else ""
        assert stdout.splitlines() == ["loop started", "loop stopped", "serve returned"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

"""The gRPC server every Signet service runs: :class:`SignetServer` and :func:`serve`.

One bootstrap for all five services: the interceptor chain (tracing, metrics, auth,
errors), the standard health service, reflection, TLS/mTLS, the /metrics endpoint, the
service's background loops (outbox relay, consumers) and a graceful drain on SIGTERM:

1. health turns NOT_SERVING for every service, so probes and health-checking balancers
   stop sending new calls;
2. background loops stop;
3. for a short announce window new calls are still served (callers that have not yet
   noticed step 1 are not failed);
4. the listener closes and in-flight calls get the rest of ``drain_seconds`` to finish;
5. the process exits 0.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import trace
from prometheus_client import REGISTRY, CollectorRegistry

from signet.common.auth import Authenticator, build_authenticator
from signet.common.config import ServiceSettings
from signet.common.interceptors import server_interceptors
from signet.common.logging import configure_logging
from signet.common.metrics import MetricsServer
from signet.common.tracing import configure_tracing

_log = logging.getLogger("signet.common.server")

MAX_MESSAGE_BYTES = 16 * 1024 * 1024

SERVER_OPTIONS: tuple[tuple[str, int], ...] = (
    # gRPC sets SO_REUSEPORT by default, which lets a second process bind a port that is
    # already in use without an error; a clash must fail loudly instead.
    ("grpc.so_reuseport", 0),
    # Accept the keepalive pings clients send (see channels.KEEPALIVE_OPTIONS).
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    # Without this, gRPC core still answered an idle client's 30 s keepalive pings with
    # GOAWAY "too_many_pings" (seen on every idle channel after about a minute), so each
    # client reconnected and logged an error; the pings above are the ones we ask for.
    ("grpc.http2.max_ping_strikes", 0),
    # Signing requests may carry whole PDF documents.
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
)

# Part of the drain budget during which the server keeps accepting calls after turning
# NOT_SERVING: a quarter of it, at most this many seconds.
MAX_ANNOUNCE_SECONDS = 2.0

Register = Callable[[grpc.Server], None]


class Background(Protocol):
    """A loop beside the server (outbox relay, consumer): started after it, stopped in drain."""

    def start(self) -> None:
        """Start working (return promptly; run on own threads)."""
        ...

    def stop(self) -> None:
        """Stop working and return when stopped."""
        ...


def check_mtls_files(settings: ServiceSettings) -> None:
    """ValueError when ``mtls`` mode lacks the server certificate, its key or the client CA."""
    if settings.auth_mode == "mtls" and not (
        settings.tls_cert_file and settings.tls_key_file and settings.tls_client_ca_file
    ):
        raise ValueError("auth_mode mtls needs tls_cert_file, tls_key_file, tls_client_ca_file")


def server_credentials(settings: ServiceSettings) -> grpc.ServerCredentials | None:
    """TLS credentials for the listener: mTLS in ``mtls`` mode, server TLS when a cert is set.

    In ``mtls`` mode a client must present a certificate signed by ``tls_client_ca_file``.
    Behind a front (``behind_front``) the front terminates TLS: none here.
    """
    if settings.behind_front:
        return None
    if settings.auth_mode == "mtls":
        check_mtls_files(settings)
        return grpc.ssl_server_credentials(
            [(Path(settings.tls_key_file).read_bytes(), Path(settings.tls_cert_file).read_bytes())],
            root_certificates=Path(settings.tls_client_ca_file).read_bytes(),
            require_client_auth=True,
        )
    if settings.tls_cert_file and settings.tls_key_file:
        return grpc.ssl_server_credentials(
            [(Path(settings.tls_key_file).read_bytes(), Path(settings.tls_cert_file).read_bytes())]
        )
    return None


class SignetServer:
    """A gRPC server with Signet's interceptors, health, reflection, /metrics and drain.

    ``register`` adds the service's servicers to the grpc server; ``service_names`` are
    their full proto names (``signet.signer.v1.Signer``) for health and reflection.
    """

    def __init__(
        self,
        settings: ServiceSettings,
        register: Register,
        *,
        service_names: Sequence[str] = (),
        authenticator: Authenticator | None = None,
        background: Sequence[Background] = (),
        registry: CollectorRegistry = REGISTRY,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self._settings = settings
        self._register = register
        self._service_names = tuple(service_names)
        self._authenticator = authenticator or build_authenticator(settings)
        self._background = tuple(background)
        self._registry = registry
        self._tracer_provider = tracer_provider
        self._health = health.HealthServicer()
        # Nothing is served before start(); the overall status is SERVING only after it.
        self._health.set(health.OVERALL_HEALTH, health_pb2.HealthCheckResponse.NOT_SERVING)
        self._server: grpc.Server | None = None
        self._metrics: MetricsServer | None = None
        self._started_background: list[Background] = []
        self._port = 0
        self._lock = threading.Lock()
        self._draining = False
        self._stopped = threading.Event()

    @property
    def settings(self) -> ServiceSettings:
        """The settings this server was built from."""
        return self._settings

    @property
    def port(self) -> int:
        """The bound gRPC port (0 before start)."""
        return self._port

    @property
    def address(self) -> str:
        """``host:port`` of the bound gRPC listener."""
        if self._settings.grpc_listen:
            return self._settings.grpc_listen
        host = self._settings.grpc_host
        return f"[{host}]:{self._port}" if ":" in host else f"{host}:{self._port}"

    @property
    def metrics_port(self) -> int:
        """The bound /metrics port (0 before start)."""
        return self._metrics.port if self._metrics is not None else 0

    @property
    def metrics_url(self) -> str:
        """Where /metrics is served."""
        if self._metrics is None:
            raise RuntimeError("server not started")
        return self._metrics.url

    @property
    def health_servicer(self) -> health.HealthServicer:
        """The health servicer, for services that report dependency health themselves."""
        return self._health

    def start(self) -> int:
        """Bind, start serving, report SERVING, start background loops; return the gRPC port."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError("server already started")
            settings = self._settings
            if settings.metrics_enabled:
                self._metrics = MetricsServer(
                    settings.grpc_host, settings.metrics_port, self._registry
                )
            try:
                self._server = self._build()
                credentials = server_credentials(settings)
                if credentials is None:
                    port = self._server.add_insecure_port(settings.grpc_address)
                else:
                    port = self._server.add_secure_port(settings.grpc_address, credentials)
                if port == 0:
                    raise RuntimeError("could not bind the gRPC port")
                self._port = port
                self._server.start()
                for name in (health.OVERALL_HEALTH, *self._service_names):
                    self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
                for task in self._background:
                    task.start()
                    self._started_background.append(task)
            except BaseException:
                self._abort_start()
                raise
        _log.info(
            "grpc server started",
            extra={"grpc_address": self.address, "metrics_port": self.metrics_port},
        )
        return self._port

    def _build(self) -> grpc.Server:
        settings = self._settings
        server = grpc.server(
            ThreadPoolExecutor(max_workers=settings.grpc_max_workers, thread_name_prefix="grpc"),
            interceptors=list(
                server_interceptors(
                    settings.service_name,
                    self._authenticator,
                    registry=self._registry,
                    tracer_provider=self._tracer_provider,
                )
            ),
            options=[
                *(opt for opt in SERVER_OPTIONS if opt[0] != "grpc.so_reuseport"),
                ("grpc.so_reuseport", 1 if settings.grpc_reuse_port else 0),
            ],
        )
        self._register(server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (*self._service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        return server

    def _abort_start(self) -> None:
        self._draining = True
        for task in reversed(self._started_background):
            _stop_quietly(task)
        self._started_background.clear()
        if self._server is not None:
            self._server.stop(None)
        if self._metrics is not None:
            self._metrics.stop()
            self._metrics = None
        self._stopped.set()

    def stop(self, grace: float | None = None) -> None:
        """Drain and stop; ``grace`` (default ``drain_seconds``) bounds the whole drain.

        Safe to call more than once and from several threads: later calls wait for the
        first drain to finish.
        """
        with self._lock:
            server = self._server
            first = not self._draining and server is not None
            self._draining = True
        if not first or server is None:
            if server is not None:
                self._stopped.wait()
            return
        budget = self._settings.drain_seconds if grace is None else max(grace, 0.0)
        announce = min(MAX_ANNOUNCE_SECONDS, budget / 4)
        started = time.monotonic()
        _log.info("draining", extra={"drain_seconds": budget})
        self._health.enter_graceful_shutdown()
        for task in reversed(self._started_background):
            _stop_quietly(task)
        self._started_background.clear()
        if announce > 0:
            time.sleep(announce)
        remaining = max(budget - (time.monotonic() - started), 0.0)
        server.stop(remaining).wait()
        if self._metrics is not None:
            self._metrics.stop()
        _log.info("drained", extra={"drain_took_seconds": round(time.monotonic() - started, 3)})
        self._stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server has stopped (or ``timeout`` passed); True when stopped."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> SignetServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _stop_quietly(task: Background) -> None:
    try:
        task.stop()
    except Exception:  # noqa: BLE001
        # Drain must go on: the other loops and the in-flight calls still need stopping.
        _log.exception("background task failed to stop", extra={"task": type(task).__name__})


def serve(
    settings: ServiceSettings,
    register: Register,
    *,
    service_names: Sequence[str],
    authenticator: Authenticator | None = None,
    background: Sequence[Background] = (),
) -> None:
    """Run a service until SIGTERM or SIGINT, then drain and return (the process exits 0).

    Configures JSON logging and tracing from ``settings``, starts /metrics and the gRPC
    server and blocks. Call from the main thread (signal handlers live there).
    """
    configure_logging(settings.service_name, settings.log_level)
    provider = configure_tracing(settings)
    server = SignetServer(
        settings,
        register,
        service_names=service_names,
        authenticator=authenticator,
        background=background,
    )
    stop_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop_requested.is_set():
            _log.warning("already draining", extra={"signal": signal.Signals(signum).name})
            return
        _log.info("stop requested", extra={"signal": signal.Signals(signum).name})
        stop_requested.set()

    previous: dict[int, Any] = {
        sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        port = server.start()
        _log.info(
            "serving",
            extra={
                "grpc_host": settings.grpc_host,
                "grpc_port": port,
                "metrics_port": server.metrics_port,
                "services": list(service_names),
            },
        )
        # A timeout keeps the wait interruptible so the handler above runs promptly.
        while not stop_requested.wait(timeout=1.0):
            pass
        server.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        provider.shutdown()

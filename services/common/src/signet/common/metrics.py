"""Prometheus metrics: naming, get-or-create collectors, the gRPC server metrics and /metrics.

Names follow ``signet_<svc>_<what>_<unit>`` (counters end ``_total``). Collectors are
created through :func:`counter`, :func:`histogram` and :func:`gauge`, which return the
existing collector when the same name is asked for twice in one registry, so building a
component twice in one process (tests, several servers) does not fail on duplicate
registration.
"""

from __future__ import annotations

import re
import socket
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

# 1 ms .. 10 s: signing is a few ms, a slow HSM or database call can take seconds.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]*$")

_C = TypeVar("_C", Counter, Gauge, Histogram)

_lock = threading.Lock()
_collectors: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, Any]] = (
    weakref.WeakKeyDictionary()
)


def service_prefix(service_name: str) -> str:
    """``signet_<svc>`` for a service name such as ``ca-gateway`` (-> ``signet_ca_gateway``)."""
    svc = service_name.strip().lower().replace("-", "_").replace(".", "_")
    if svc.startswith("signet_"):
        svc = svc[len("signet_") :]
    name = f"signet_{svc}" if svc and svc != "signet" else "signet"
    if not _NAME_RE.match(name):
        raise ValueError("service name must give a valid metric prefix")
    return name


def metric_name(service_name: str, what: str) -> str:
    """The full metric name ``signet_<svc>_<what>``, e.g. ``signet_signer_signatures_total``."""
    name = f"{service_prefix(service_name)}_{what}"
    if not _NAME_RE.match(name):
        raise ValueError("metric names use lower-case letters, digits and underscores")
    return name


def _get_or_create(kind: type[_C], name: str, registry: CollectorRegistry, **kwargs: Any) -> _C:
    with _lock:
        known = _collectors.setdefault(registry, {})
        existing = known.get(name)
        if existing is not None:
            if not isinstance(existing, kind):
                raise ValueError("metric name already used by a different metric type")
            return existing
        created = kind(name, registry=registry, **kwargs)
        known[name] = created
        return created


def counter(
    name: str,
    documentation: str,
    labelnames: Sequence[str] = (),
    registry: CollectorRegistry = REGISTRY,
) -> Counter:
    """A counter (name must end ``_total``), or the one already registered under that name."""
    if not name.endswith("_total"):
        raise ValueError("counter names end with _total")
    # prometheus_client appends _total itself; pass the base name so the exposed name is exact.
    return _get_or_create(
        Counter,
        name[: -len("_total")],
        registry,
        documentation=documentation,
        labelnames=labelnames,
    )


def histogram(
    name: str,
    documentation: str,
    labelnames: Sequence[str] = (),
    registry: CollectorRegistry = REGISTRY,
    buckets: Sequence[float] = LATENCY_BUCKETS,
) -> Histogram:
    """A histogram (latency buckets by default), or the one already registered under that name."""
    return _get_or_create(
        Histogram,
        name,
        registry,
        documentation=documentation,
        labelnames=labelnames,
        buckets=tuple(buckets),
    )


def gauge(
    name: str,
    documentation: str,
    labelnames: Sequence[str] = (),
    registry: CollectorRegistry = REGISTRY,
) -> Gauge:
    """A gauge, or the one already registered under that name."""
    return _get_or_create(Gauge, name, registry, documentation=documentation, labelnames=labelnames)


@dataclass(frozen=True)
class GrpcServerMetrics:
    """The per-method RPC metrics every Signet server exports (the SLA dashboards read them)."""

    requests: Counter
    duration: Histogram
    in_flight: Gauge

    @classmethod
    def create(cls, service_name: str, registry: CollectorRegistry = REGISTRY) -> GrpcServerMetrics:
        """Create or reuse signet_<svc>_grpc_{requests_total,request_duration_seconds,in_flight}."""
        return cls(
            requests=counter(
                metric_name(service_name, "grpc_requests_total"),
                "gRPC requests handled, by full method name and final status code.",
                ("method", "code"),
                registry,
            ),
            duration=histogram(
                metric_name(service_name, "grpc_request_duration_seconds"),
                "Time from receiving a gRPC request to its final status, by method.",
                ("method",),
                registry,
            ),
            in_flight=gauge(
                metric_name(service_name, "grpc_in_flight"),
                "gRPC requests currently being handled, by method.",
                ("method",),
                registry,
            ),
        )


class _QuietHandler(WSGIRequestHandler):
    """Request handler that does not log: a scrape every few seconds would flood stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing."""


class MetricsServer:
    """The /metrics HTTP endpoint (Prometheus text format) running on a daemon thread."""

    # How often the serving loop checks for stop(); bounds how long stop() takes.
    POLL_SECONDS = 0.05

    def __init__(self, host: str, port: int, registry: CollectorRegistry = REGISTRY) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class _Server(ThreadingWSGIServer):
            address_family = family

        self._httpd = make_server(
            host, port, make_wsgi_app(registry), _Server, handler_class=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": self.POLL_SECONDS},
            name="metrics-http",
            daemon=True,
        )
        self._thread.start()
        self.host = host
        self.port: int = self._httpd.server_port

    @property
    def url(self) -> str:
        """Where to scrape, e.g. ``http://127.0.0.1:9464/metrics``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

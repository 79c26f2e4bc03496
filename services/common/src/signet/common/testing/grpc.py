"""An in-process Signet gRPC server on a free port, for component tests of every service.

It is the production :class:`~signet.common.server.SignetServer` (same interceptors,
health, reflection, auth), bound to 127.0.0.1 port 0 with /metrics on a free port and its
own metrics registry, so tests can run many servers in one process::

    with InProcessServer(register, service_names=["signet.signer.v1.Signer"]) as channel:
        stub = SignerStub(channel)
        ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import grpc
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from signet.common.auth import Authenticator
from signet.common.channels import RetryPolicy, TlsConfig, create_channel
from signet.common.config import ServiceSettings
from signet.common.server import Background, Register, SignetServer

DEFAULT_TEST_TIMEOUT = 10.0


def settings_for_tests(**overrides: Any) -> ServiceSettings:
    """Settings for a test server: loopback, free ports, auth off, short drain."""
    values: dict[str, Any] = {
        "service_name": "test",
        "grpc_host": "127.0.0.1",
        "grpc_port": 0,
        "metrics_port": 0,
        "grpc_max_workers": 8,
        "drain_seconds": 1.0,
        "auth_mode": "none",
        "tracing_exporter": "none",
    }
    values.update(overrides)
    return ServiceSettings(**values)


class InProcessServer:
    """Context manager: starts a SignetServer on port 0 and yields a channel to it.

    ``settings`` (default :func:`settings_for_tests`) always gets loopback and free ports.
    ``tls``/``bearer_token``/``retry`` configure the yielded channel; more channels (e.g.
    with other credentials) come from :meth:`new_channel`. The server is drained with no
    grace on exit, and every channel handed out is closed.
    """

    def __init__(
        self,
        register: Register,
        *,
        service_names: Sequence[str] = (),
        settings: ServiceSettings | None = None,
        authenticator: Authenticator | None = None,
        background: Sequence[Background] = (),
        registry: CollectorRegistry | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        tls: TlsConfig | None = None,
        bearer_token: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = DEFAULT_TEST_TIMEOUT,
    ) -> None:
        base = settings or settings_for_tests()
        self.settings = base.model_copy(
            update={"grpc_host": "127.0.0.1", "grpc_port": 0, "metrics_port": 0}
        )
        self.registry = registry or CollectorRegistry()
        self.server = SignetServer(
            self.settings,
            register,
            service_names=service_names,
            authenticator=authenticator,
            background=background,
            registry=self.registry,
            tracer_provider=tracer_provider,
        )
        self._tls = tls
        self._bearer_token = bearer_token
        self._retry = retry
        self._timeout = timeout
        self._channels: list[grpc.Channel] = []
        self.channel: grpc.Channel | None = None

    @property
    def port(self) -> int:
        """The bound gRPC port."""
        return self.server.port

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``."""
        return self.server.address

    @property
    def metrics_url(self) -> str:
        """The /metrics URL of this server."""
        return self.server.metrics_url

    def new_channel(
        self,
        *,
        tls: TlsConfig | None = None,
        bearer_token: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> grpc.Channel:
        """Another channel to this server (closed on exit), e.g. with other credentials."""
        channel = create_channel(
            self.address,
            default_timeout=timeout or self._timeout,
            tls=tls,
            bearer_token=bearer_token,
            retry=retry,
        )
        self._channels.append(channel)
        return channel

    def start(self) -> grpc.Channel:
        """Start the server and return the default channel (what ``with`` yields)."""
        self.server.start()
        self.channel = self.new_channel(
            tls=self._tls, bearer_token=self._bearer_token, retry=self._retry
        )
        return self.channel

    def stop(self) -> None:
        """Close the channels and stop the server without grace."""
        for channel in self._channels:
            channel.close()
        self._channels.clear()
        self.server.stop(grace=0)

    def __enter__(self) -> grpc.Channel:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# Proto-less test services: raw bytes in and out, for testing the plumbing itself (and for
# services' tests that need a stand-in peer without generated code).

UnaryBehaviour = Callable[[bytes, grpc.ServicerContext], bytes]
StreamBehaviour = Callable[[bytes, grpc.ServicerContext], Iterator[bytes]]
ClientStreamBehaviour = Callable[[Iterator[bytes], grpc.ServicerContext], bytes]
BidiBehaviour = Callable[[Iterator[bytes], grpc.ServicerContext], Iterator[bytes]]


def bytes_service(
    service: str,
    *,
    unary_unary: Mapping[str, UnaryBehaviour] | None = None,
    unary_stream: Mapping[str, StreamBehaviour] | None = None,
    stream_unary: Mapping[str, ClientStreamBehaviour] | None = None,
    stream_stream: Mapping[str, BidiBehaviour] | None = None,
) -> Register:
    """A ``register`` callback adding methods of full name ``/<service>/<name>`` that take bytes."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for name, unary in (unary_unary or {}).items():
        handlers[name] = grpc.unary_unary_rpc_method_handler(unary)
    for name, streaming in (unary_stream or {}).items():
        handlers[name] = grpc.unary_stream_rpc_method_handler(streaming)
    for name, client_streaming in (stream_unary or {}).items():
        handlers[name] = grpc.stream_unary_rpc_method_handler(client_streaming)
    for name, bidi in (stream_stream or {}).items():
        handlers[name] = grpc.stream_stream_rpc_method_handler(bidi)

    def register(server: grpc.Server) -> None:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))

    return register


def bytes_unary_unary(
    channel: grpc.Channel, method: str
) -> grpc.UnaryUnaryMultiCallable[bytes, bytes]:
    """A client callable for a raw-bytes unary method (``method`` is the full ``/svc/Name``)."""
    return channel.unary_unary(method)


def bytes_unary_stream(
    channel: grpc.Channel, method: str
) -> grpc.UnaryStreamMultiCallable[bytes, bytes]:
    """A client callable for a raw-bytes server-streaming method."""
    return channel.unary_stream(method)


def bytes_stream_unary(
    channel: grpc.Channel, method: str
) -> grpc.StreamUnaryMultiCallable[bytes, bytes]:
    """A client callable for a raw-bytes client-streaming method."""
    return channel.stream_unary(method)


def bytes_stream_stream(
    channel: grpc.Channel, method: str
) -> grpc.StreamStreamMultiCallable[bytes, bytes]:
    """A client callable for a raw-bytes bidirectional-streaming method."""
    return channel.stream_stream(method)

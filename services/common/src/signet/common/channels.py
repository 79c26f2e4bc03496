"""Client channels to Signet services: deadlines, credentials, trace context, retries, balancing.

:func:`create_channel` is the only way services call each other, so every outgoing call
gets a deadline (a call without one can hang a worker forever), carries the caller's trace
context, and is spread over all addresses of the target service (client-side round robin).
Unary calls failing with UNAVAILABLE are retried with exponential backoff and full jitter,
within the call's deadline; nothing else is retried, because only UNAVAILABLE promises
that retrying is safe.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import grpc
import tenacity

from signet.common.config import ServiceSettings
from signet.common.tracing import inject_context

_log = logging.getLogger("signet.common.grpc.client")

# Keepalive pings find dead connections (a pod that vanished without FIN) within ~40 s
# instead of waiting for TCP timeouts; the server accepts pings this often.
KEEPALIVE_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)

# A peer that was down (starting, restarted, a killed replica) must be tried again within
# seconds: gRPC's default reconnect backoff grows to 120 s, during which every call to that
# address fails at once with UNAVAILABLE although the peer is long back.
RECONNECT_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 3_000),
)

_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:")


@dataclass(frozen=True)
class TlsConfig:
    """Client TLS material: the CA bundle that signs servers, and our certificate for mTLS."""

    root_certificates: bytes | None = None
    certificate_chain: bytes | None = None
    private_key: bytes | None = None
    # Name to verify in the server certificate when it differs from the target host
    # (e.g. when dialling IP addresses).
    server_name: str | None = None

    @classmethod
    def from_files(
        cls,
        ca_file: str | Path,
        cert_file: str | Path = "",
        key_file: str | Path = "",
        server_name: str | None = None,
    ) -> TlsConfig:
        """Read PEM files; the certificate and key are optional (server-only TLS)."""
        return cls(
            root_certificates=Path(ca_file).read_bytes() if ca_file else None,
            certificate_chain=Path(cert_file).read_bytes() if cert_file else None,
            private_key=Path(key_file).read_bytes() if key_file else None,
            server_name=server_name,
        )

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> TlsConfig | None:
        """Client TLS for service-to-service calls in ``mtls`` mode, else None (plaintext).

        The platform's CA bundle (``tls_client_ca_file``) signs both servers and clients,
        and a service presents its own serving certificate as its client identity.
        """
        if settings.auth_mode != "mtls":
            return None
        return cls.from_files(
            settings.tls_client_ca_file, settings.tls_cert_file, settings.tls_key_file
        )

    def credentials(self) -> grpc.ChannelCredentials:
        """The channel credentials made from this material."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )


@dataclass(frozen=True)
class RetryPolicy:
    """How unary calls failing with UNAVAILABLE are retried (the deadline always wins)."""

    max_attempts: int = 4
    initial_backoff: float = 0.05
    max_backoff: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.initial_backoff < 0 or self.max_backoff < 0:
            raise ValueError("retry policy needs max_attempts >= 1 and non-negative backoffs")


DEFAULT_RETRY = RetryPolicy()


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: tuple[tuple[str, str | bytes], ...] | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


class _ClientCallDetails(_CallDetails, grpc.ClientCallDetails):
    """Concrete ClientCallDetails (gRPC only ships the abstract class)."""


def _with(
    details: grpc.ClientCallDetails,
    *,
    timeout: float | None,
    metadata: tuple[tuple[str, str | bytes], ...] | None,
) -> grpc.ClientCallDetails:
    return _ClientCallDetails(
        method=details.method,
        timeout=timeout,
        metadata=metadata,
        credentials=details.credentials,
        wait_for_ready=getattr(details, "wait_for_ready", None),
        compression=getattr(details, "compression", None),
    )


class _CallDefaultsInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the default deadline, the bearer token and the W3C trace context to every call."""

    def __init__(self, default_timeout: float, bearer_token: str | None) -> None:
        self._timeout = default_timeout
        self._authorization = f"Bearer {bearer_token}" if bearer_token else None

    def _complete(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata: list[tuple[str, str | bytes]] = list(details.metadata or ())
        keys = {key.lower() for key, _ in metadata}
        if self._authorization is not None and "authorization" not in keys:
            metadata.append(("authorization", self._authorization))
        if "traceparent" not in keys:
            headers: list[tuple[str, str]] = []
            inject_context(headers)
            metadata.extend(headers)
        timeout = details.timeout if details.timeout is not None else self._timeout
        return _with(details, timeout=timeout, metadata=tuple(metadata))

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        """Complete the call details, then call."""
        return continuation(self._complete(client_call_details), request)

    def intercept_unary_stream(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        """Complete the call details, then call."""
        return continuation(self._complete(client_call_details), request)

    def intercept_stream_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Iterator[Any]], Any],
        client_call_details: grpc.ClientCallDetails,
        request_iterator: Iterator[Any],
    ) -> Any:
        """Complete the call details, then call."""
        return continuation(self._complete(client_call_details), request_iterator)

    def intercept_stream_stream(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Iterator[Any]], Any],
        client_call_details: grpc.ClientCallDetails,
        request_iterator: Iterator[Any],
    ) -> Any:
        """Complete the call details, then call."""
        return continuation(self._complete(client_call_details), request_iterator)


def _is_unavailable(call: Any) -> bool:
    return bool(call.code() is grpc.StatusCode.UNAVAILABLE)


def _last_outcome(state: tenacity.RetryCallState) -> Any:
    assert state.outcome is not None
    return state.outcome.result()


class _RetryInterceptor(grpc.UnaryUnaryClientInterceptor):
    """Retries unary-unary calls that end UNAVAILABLE, each attempt within the remaining deadline.

    Streaming calls are not retried: their requests cannot be replayed. A ``future()`` call
    through this interceptor resolves before it is returned, as the outcome of an attempt
    must be known to decide on the next one.
    """

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        """Call, and call again after a backoff while the result is UNAVAILABLE."""
        policy = self._policy
        timeout = client_call_details.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(policy.max_attempts)
        if timeout is not None:
            stop = stop | tenacity.stop_before_delay(timeout)

        def attempt() -> Any:
            details = client_call_details
            if deadline is not None:
                remaining = max(deadline - time.monotonic(), 0.0)
                details = _with(details, timeout=remaining, metadata=details.metadata)
            return continuation(details, request)

        def log_retry(state: tenacity.RetryCallState) -> None:
            _log.info(
                "retrying unavailable call",
                extra={
                    "rpc_method": client_call_details.method,
                    "attempt": state.attempt_number,
                },
            )

        retrying = tenacity.Retrying(
            stop=stop,
            wait=tenacity.wait_random_exponential(
                multiplier=policy.initial_backoff, max=policy.max_backoff
            ),
            retry=tenacity.retry_if_result(_is_unavailable),
            retry_error_callback=_last_outcome,
            before_sleep=log_retry,
            reraise=True,
        )
        return retrying(attempt)


def resolve_target(targets: str | Sequence[str]) -> str:
    """The gRPC target for one service reachable at ``targets``.

    One address (or a URI with a scheme, e.g. ``dns:///signer:50051``) is used as is;
    several ``host:port`` addresses become a static ``ipv4:``/``ipv6:`` address list, host
    names resolved once, now.
    """
    if isinstance(targets, str):
        if targets.startswith(_SCHEMES):
            return targets
        targets = targets.split(",")
    addresses = [t.strip() for t in targets if t.strip()]
    if not addresses:
        raise ValueError("at least one target address is needed")
    if len(addresses) == 1:
        return addresses[0]
    v4: list[str] = []
    v6: list[str] = []
    for address in addresses:
        host, port = _split_host_port(address)
        for ip in _resolve(host, port):
            bucket, text = (v6, f"[{ip}]:{port}") if ":" in ip else (v4, f"{ip}:{port}")
            if text not in bucket:
                bucket.append(text)
    if v4 and v6:
        raise ValueError("a target list must be all IPv4 or all IPv6")
    return f"ipv4:{','.join(v4)}" if v4 else f"ipv6:{','.join(v6)}"


def _split_host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError("target addresses must be host:port")
    return host.strip("[]"), int(port)


def _resolve(host: str, port: int) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _first_host(targets: str | Sequence[str]) -> str:
    first = targets.split(",")[0] if isinstance(targets, str) else targets[0]
    return _split_host_port(first.strip())[0]


def create_channel(
    targets: str | Sequence[str],
    *,
    default_timeout: float,
    tls: TlsConfig | None = None,
    bearer_token: str | None = None,
    retry: RetryPolicy | None = DEFAULT_RETRY,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.Channel:
    """A channel to one service, with every Signet client default applied.

    ``targets``: ``host:port``, several of them (list or comma-separated; balanced round
    robin), or a gRPC URI such as ``dns:///signer.signet.svc:50051``. ``default_timeout``
    is the deadline of calls that set none. ``tls`` switches to TLS (mTLS when it holds a
    client certificate). ``retry=None`` disables retries. Close the channel when done.
    """
    target = resolve_target(targets)
    channel_options: list[tuple[str, Any]] = [
        ("grpc.lb_policy_name", "round_robin"),
        *KEEPALIVE_OPTIONS,
        *RECONNECT_OPTIONS,
    ]
    if tls is not None:
        name = tls.server_name
        multi = not isinstance(targets, str) or (
            "," in targets and not targets.startswith(_SCHEMES)
        )
        if name is None and multi:
            # An address list has no single host name to verify; use the first one given.
            name = _first_host(targets)
        if name is not None:
            channel_options.append(("grpc.ssl_target_name_override", name))
    channel_options.extend(options)
    if tls is None:
        channel = grpc.insecure_channel(target, options=channel_options)
    else:
        channel = grpc.secure_channel(target, tls.credentials(), options=channel_options)
    interceptors: list[Any] = [_CallDefaultsInterceptor(default_timeout, bearer_token)]
    if retry is not None:
        interceptors.append(_RetryInterceptor(retry))
    return grpc.intercept_channel(channel, *interceptors)

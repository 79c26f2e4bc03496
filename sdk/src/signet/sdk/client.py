"""The typed Signet client: one object holding a channel and a stub per service.

:class:`Signet` is built from :class:`Endpoints` (every service's addresses; several per
service are balanced round robin) and one bearer token. Its ``identity``, ``ca_gateway``,
``signer``, ``evidence`` and ``notify`` attributes are the generated stubs, so every RPC
keeps its request and response types, over channels from the shared channel factory
(:func:`signet.common.channels.create_channel`): a deadline on every call, the bearer
token, trace context, and retries of UNAVAILABLE with backoff within the deadline.

Two SDK interceptors wrap that channel:

* request ids: a request message with an empty ``request_id`` or ``idempotency_key`` gets a
  fresh one before its first attempt, so every retry of it carries the same id and the
  service answers the retry with the first outcome instead of acting twice;
* errors: a call ending in any non-OK status raises :class:`~signet.sdk.errors.SignetError`
  (code, message, RPC name) instead of a raw ``grpc.RpcError``.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from google.protobuf.message import Message

from signet.ca_gateway.v1 import ca_gateway_pb2_grpc
from signet.common.channels import RetryPolicy, TlsConfig, create_channel
from signet.evidence.v1 import evidence_pb2_grpc
from signet.identity.v1 import identity_pb2_grpc
from signet.notify.v1 import notify_pb2_grpc
from signet.sdk.errors import SignetError
from signet.signer.v1 import signer_pb2_grpc

SERVICES = ("identity", "ca-gateway", "signer", "evidence", "notify")
"""The five services, by the names the local platform and the CLI use."""

DEFAULT_TIMEOUT = 10.0
"""Deadline (seconds) of a call that sets none."""

SDK_RETRY = RetryPolicy(max_attempts=5, initial_backoff=0.1, max_backoff=2.0)
"""Retries of UNAVAILABLE: a replica restarting or a short network blip is ridden out."""

_IDEMPOTENCY_FIELDS = ("request_id", "idempotency_key")


def _env_name(service: str) -> str:
    return "SIGNET_SDK_" + service.upper().replace("-", "_") + "_TARGETS"


def _split(value: str | Sequence[str]) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(item.strip() for item in items if item.strip())


@dataclass(frozen=True)
class Endpoints:
    """Where each service is: one or more ``host:port`` addresses, or one gRPC URI."""

    identity: tuple[str, ...]
    ca_gateway: tuple[str, ...]
    signer: tuple[str, ...]
    evidence: tuple[str, ...]
    notify: tuple[str, ...]

    def __post_init__(self) -> None:
        for name in SERVICES:
            if not self.of(name):
                raise ValueError(f"no address given for the {name} service")

    def of(self, service: str) -> tuple[str, ...]:
        """The addresses of ``service`` (``identity``, ``ca-gateway``, ...)."""
        value: tuple[str, ...] = getattr(self, service.replace("-", "_"))
        return value

    @classmethod
    def create(cls, targets: Mapping[str, str | Sequence[str]]) -> Endpoints:
        """From ``{service: "host:port,host:port" or [addresses]}`` for all five services."""
        missing = [s for s in SERVICES if s not in targets and s.replace("-", "_") not in targets]
        if missing:
            raise ValueError(f"no address given for: {', '.join(missing)}")

        def get(name: str) -> tuple[str, ...]:
            value = targets.get(name, targets.get(name.replace("-", "_"), ""))
            return _split(value)

        return cls(
            identity=get("identity"),
            ca_gateway=get("ca-gateway"),
            signer=get("signer"),
            evidence=get("evidence"),
            notify=get("notify"),
        )

    @classmethod
    def local(cls) -> Endpoints:
        """The local platform's addresses (``make run``, shifted by its port offset)."""
        from signet.common.local import platform

        targets: dict[str, list[str]] = {}
        for svc in platform.services():  # every replica (SIGNET_LOCAL_REPLICAS)
            targets.setdefault(svc.name, []).append(svc.address)
        return cls.create(dict(targets))

    def with_env(self, environ: Mapping[str, str] | None = None) -> Endpoints:
        """These endpoints, each replaced by ``SIGNET_SDK_<SERVICE>_TARGETS`` when set."""
        env = os.environ if environ is None else environ
        changes = {
            name.replace("-", "_"): _split(env[_env_name(name)])
            for name in SERVICES
            if env.get(_env_name(name), "").strip()
        }
        return replace(self, **changes)


def local_token(name: str = "local-admin", state_dir: Path | None = None) -> str:
    """A bearer token the local platform made (``<state>/tokens.json``), by principal name."""
    if state_dir is None:
        from signet.common.local import platform

        state_dir = platform.state_dir()
    path = state_dir / "tokens.json"
    try:
        tokens = json.loads(path.read_text())
    except (OSError, ValueError):
        raise SignetError(
            grpc.StatusCode.UNAUTHENTICATED,
            f"no local tokens at {path}: start the platform with `make run` first",
            "local_token",
        ) from None
    token = tokens.get(name)
    if not isinstance(token, str) or not token:
        raise SignetError(
            grpc.StatusCode.UNAUTHENTICATED, f"no local token for {name!r}", "local_token"
        )
    return token


def _short_method(method: str | bytes) -> str:
    text = method.decode() if isinstance(method, bytes) else method
    return text.rsplit("/", 1)[-1]


class _ErrorInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Raises :class:`SignetError` for every call that ends with a non-OK status."""

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        """Call; turn a failed outcome into SignetError."""
        outcome = continuation(client_call_details, request)
        code = outcome.code()
        if code is not grpc.StatusCode.OK:
            raise SignetError.from_rpc_error(outcome, _short_method(client_call_details.method))
        return outcome

    def intercept_unary_stream(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        """Streams are passed through (no Signet API streams today)."""
        return continuation(client_call_details, request)


class _RequestIdInterceptor(grpc.UnaryUnaryClientInterceptor):
    """Gives a request without an idempotency key a fresh one (on a copy of the message)."""

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        """Fill ``request_id`` / ``idempotency_key`` when the message has one and it is empty."""
        return continuation(client_call_details, with_request_id(request))


def with_request_id(request: Any) -> Any:
    """``request``, or a copy with a fresh idempotency key when its key field is empty."""
    if not isinstance(request, Message):
        return request
    fields = request.DESCRIPTOR.fields_by_name
    for name in _IDEMPOTENCY_FIELDS:
        if name in fields and not getattr(request, name):
            copy = type(request)()
            copy.CopyFrom(request)
            setattr(copy, name, "sdk-" + uuid.uuid4().hex)
            return copy
    return request


@dataclass
class _Channels:
    channels: dict[str, grpc.Channel] = field(default_factory=dict)

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()
        self.channels.clear()


class Signet:
    """A client of the whole platform: typed stubs of the five services on shared channels.

    ``timeout`` is the deadline of every call that passes none (``timeout=`` on a call
    overrides it); ``retry`` governs retries of UNAVAILABLE (``None``: no retries);
    ``tls`` switches every channel to TLS or mTLS. Use it as a context manager, or call
    :meth:`close`. Thread-safe: stubs and channels may be shared between threads.
    """

    def __init__(
        self,
        endpoints: Endpoints,
        token: str | None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = SDK_RETRY,
        tls: TlsConfig | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.endpoints = endpoints
        self.timeout = timeout
        self._channels = _Channels()
        for name in SERVICES:
            inner = create_channel(
                list(endpoints.of(name)),
                default_timeout=timeout,
                tls=tls,
                bearer_token=token,
                retry=retry,
            )
            self._channels.channels[name] = grpc.intercept_channel(
                inner, _ErrorInterceptor(), _RequestIdInterceptor()
            )
        self.identity = identity_pb2_grpc.IdentityServiceStub(self.channel("identity"))
        self.ca_gateway = ca_gateway_pb2_grpc.CaGatewayServiceStub(self.channel("ca-gateway"))
        self.signer = signer_pb2_grpc.SignerServiceStub(self.channel("signer"))
        self.evidence = evidence_pb2_grpc.EvidenceServiceStub(self.channel("evidence"))
        self.notify = notify_pb2_grpc.NotifyServiceStub(self.channel("notify"))

    @classmethod
    def local(
        cls, token: str | None = None, *, timeout: float = DEFAULT_TIMEOUT, **kwargs: Any
    ) -> Signet:
        """A client of the local platform (``make run``) as the ``local-admin`` principal.

        ``SIGNET_SDK_<SERVICE>_TARGETS`` and ``SIGNET_SDK_TOKEN`` override the addresses
        and the token.
        """
        token = token or os.environ.get("SIGNET_SDK_TOKEN") or local_token()
        return cls(Endpoints.local().with_env(), token, timeout=timeout, **kwargs)

    def channel(self, service: str) -> grpc.Channel:
        """The channel to ``service`` (for stubs of APIs this class does not name)."""
        try:
            return self._channels.channels[service]
        except KeyError:
            raise ValueError(f"unknown service {service!r}; one of {SERVICES}") from None

    def close(self) -> None:
        """Close every channel; calls in flight are cancelled."""
        self._channels.close()

    def __enter__(self) -> Signet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

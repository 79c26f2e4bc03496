"""gRPC server interceptors: tracing, metrics, authentication and error mapping.

Every interceptor wraps the handler's behaviour in a *guard* (a context manager around the
call, and around the whole iteration for streaming responses), so one implementation
serves unary and streaming handlers alike. :func:`server_interceptors` returns them in the
order the server must install them, outermost first:

    tracing -> metrics -> auth -> errors -> handler

Tracing and metrics sit outside so they see the final status code, whichever layer set it;
auth runs before any handler code; the error interceptor is the one place that turns a
:class:`~signet.common.errors.ServiceError` or an unexpected exception into a status.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeAlias, cast

import grpc
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import REGISTRY, CollectorRegistry

from signet.common.auth import AuthContext, Authenticator, principal_scope
from signet.common.errors import ServiceError
from signet.common.metrics import GrpcServerMetrics
from signet.common.tracing import extract_context, get_tracer

_log = logging.getLogger("signet.common.grpc")

GENERIC_INTERNAL_MESSAGE = "internal error"

# Methods every caller may use unauthenticated: probes and tooling must work without
# credentials, and they reveal nothing about tenants.
EXEMPT_METHOD_PREFIXES: tuple[str, ...] = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)

# Statuses caused by the caller: logged as warnings without a traceback. Anything else is
# our fault or a dependency's and is logged with the traceback.
CLIENT_ERROR_CODES: frozenset[grpc.StatusCode] = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.ABORTED,
    }
)

Guard = Callable[[grpc.ServicerContext], AbstractContextManager[None]]
# A string: the stubs make RpcMethodHandler generic, the runtime class is not.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


def is_exempt(method: str) -> bool:
    """Whether ``method`` is a health or reflection method (no authentication)."""
    return method.startswith(EXEMPT_METHOD_PREFIXES)


def explicit_code(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    """The code set on the call by ``abort`` or ``set_code``, if any."""
    # ServicerContext.code() exists at runtime but is missing from the type stubs.
    code = cast(Callable[[], object], context.code)()  # type: ignore[attr-defined]
    return code if isinstance(code, grpc.StatusCode) else None


def status_code(context: grpc.ServicerContext, *, raised: BaseException | None) -> grpc.StatusCode:
    """The status the call ends with, as far as the server can tell after the behaviour ran.

    A code set by ``abort``/``set_code`` wins. Otherwise an exception means UNKNOWN (what
    gRPC reports for it), a closed generator means the client went away, and a normal
    return means OK unless the call is no longer active (cancelled or past its deadline).
    """
    code = explicit_code(context)
    if code is not None:
        return code
    if isinstance(raised, GeneratorExit):
        return grpc.StatusCode.CANCELLED
    if raised is not None:
        return grpc.StatusCode.UNKNOWN
    if not context.is_active():
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            return grpc.StatusCode.DEADLINE_EXCEEDED
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.OK


def _details_set(context: grpc.ServicerContext) -> bool:
    details = cast(Callable[[], object], context.details)()  # type: ignore[attr-defined]
    return details is not None


def wrap_handler(handler: Handler, guard: Guard) -> Handler:
    """A handler like ``handler`` whose behaviour runs inside ``guard(context)``.

    For streaming responses the guard spans the whole iteration, so durations, spans and
    error mapping cover the stream, not just the creation of the generator.
    """
    if handler.response_streaming:
        inner_stream = handler.stream_stream if handler.request_streaming else handler.unary_stream
        assert inner_stream is not None

        def streaming(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            with guard(context):
                yield from inner_stream(request, context)

        if handler.request_streaming:
            return grpc.stream_stream_rpc_method_handler(
                streaming, handler.request_deserializer, handler.response_serializer
            )
        return grpc.unary_stream_rpc_method_handler(
            streaming, handler.request_deserializer, handler.response_serializer
        )

    inner_unary = handler.stream_unary if handler.request_streaming else handler.unary_unary
    assert inner_unary is not None

    def unary(request: Any, context: grpc.ServicerContext) -> Any:
        with guard(context):
            return inner_unary(request, context)

    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(
            unary, handler.request_deserializer, handler.response_serializer
        )
    return grpc.unary_unary_rpc_method_handler(
        unary, handler.request_deserializer, handler.response_serializer
    )


class _GuardInterceptor(grpc.ServerInterceptor):
    """Base: wraps every known method's handler in the guard built by :meth:`guard`."""

    def applies_to(self, method: str) -> bool:
        """Whether this interceptor wraps ``method``."""
        return True

    def guard(
        self, details: grpc.HandlerCallDetails
    ) -> Callable[[grpc.ServicerContext], AbstractContextManager[None]]:
        """The guard for one call."""
        raise NotImplementedError

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        """Wrap the handler; unknown methods (no handler) stay unknown and are not counted."""
        handler = continuation(handler_call_details)
        if handler is None or not self.applies_to(handler_call_details.method):
            return handler
        return wrap_handler(handler, self.guard(handler_call_details))


class ErrorInterceptor(_GuardInterceptor):
    """ServiceError -> its status and message; anything else -> INTERNAL "internal error".

    The text of an unexpected exception goes to the log (with the traceback and trace id),
    never to the caller. A status the handler set itself (``context.abort`` or
    ``set_code``) is left alone.
    """

    def guard(
        self, details: grpc.HandlerCallDetails
    ) -> Callable[[grpc.ServicerContext], AbstractContextManager[None]]:
        """Map exceptions escaping the handler to statuses."""
        method = details.method

        @contextmanager
        def mapping(context: grpc.ServicerContext) -> Iterator[None]:
            try:
                yield
            except ServiceError as exc:
                fields = {"rpc_method": method, "rpc_code": exc.code.name}
                if exc.code in CLIENT_ERROR_CODES:
                    _log.warning("rpc failed: %s", exc.message, extra=fields)
                else:
                    _log.error("rpc failed: %s", exc.message, extra=fields, exc_info=True)
                context.abort(exc.code, exc.message)
            except Exception as exc:
                chosen = explicit_code(context)
                if chosen is not None and chosen is not grpc.StatusCode.OK:
                    # The handler chose the status; only make sure gRPC does not fill the
                    # empty details with the exception text.
                    if not _details_set(context):
                        context.set_details(GENERIC_INTERNAL_MESSAGE)
                    if not _aborted_by_handler(exc):
                        _log.error(
                            "handler failed after setting a status",
                            exc_info=True,
                            extra={"rpc_method": method},
                        )
                    raise
                _log.error(
                    "unexpected error in handler",
                    exc_info=True,
                    extra={"rpc_method": method, "rpc_code": grpc.StatusCode.INTERNAL.name},
                )
                context.abort(grpc.StatusCode.INTERNAL, GENERIC_INTERNAL_MESSAGE)

        return mapping


def _aborted_by_handler(exc: BaseException) -> bool:
    # ServicerContext.abort raises a bare Exception() once it has recorded the status.
    return type(exc) is Exception and not exc.args


class AuthInterceptor(_GuardInterceptor):
    """Authenticates the caller before the handler and exposes it via current_principal().

    It runs outside the error interceptor, so it aborts itself: a ServiceError from the
    authenticator keeps its code (normally UNAUTHENTICATED), a bug in it is INTERNAL.
    Health and reflection methods are exempt.
    """

    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator

    def applies_to(self, method: str) -> bool:
        """Everything but health and reflection."""
        return not is_exempt(method)

    def guard(
        self, details: grpc.HandlerCallDetails
    ) -> Callable[[grpc.ServicerContext], AbstractContextManager[None]]:
        """Authenticate, then run the handler with the principal set."""
        method = details.method
        metadata = tuple(details.invocation_metadata or ())

        @contextmanager
        def authenticated(context: grpc.ServicerContext) -> Iterator[None]:
            try:
                auth_context = cast(AuthContext, context.auth_context())
                principal = self._authenticator.authenticate(method, metadata, auth_context)
            except ServiceError as exc:
                _log.warning(
                    "caller rejected: %s",
                    exc.message,
                    extra={"rpc_method": method, "rpc_code": exc.code.name},
                )
                context.abort(exc.code, exc.message)
            except Exception:  # noqa: BLE001  (a bug in an authenticator must fail closed)
                _log.error("authenticator failed", exc_info=True, extra={"rpc_method": method})
                context.abort(grpc.StatusCode.INTERNAL, GENERIC_INTERNAL_MESSAGE)
            with principal_scope(principal):
                yield

        return authenticated


class MetricsInterceptor(_GuardInterceptor):
    """Counts requests by method and final code, times them, and tracks in-flight calls."""

    def __init__(self, metrics: GrpcServerMetrics) -> None:
        self._metrics = metrics

    def guard(
        self, details: grpc.HandlerCallDetails
    ) -> Callable[[grpc.ServicerContext], AbstractContextManager[None]]:
        """Record one call."""
        method = details.method
        metrics = self._metrics

        @contextmanager
        def measured(context: grpc.ServicerContext) -> Iterator[None]:
            in_flight = metrics.in_flight.labels(method=method)
            in_flight.inc()
            start = time.perf_counter()
            raised: BaseException | None = None
            try:
                yield
            except BaseException as exc:
                raised = exc
                raise
            finally:
                code = status_code(context, raised=raised)
                in_flight.dec()
                metrics.duration.labels(method=method).observe(time.perf_counter() - start)
                metrics.requests.labels(method=method, code=code.name).inc()

        return measured


class TracingInterceptor(_GuardInterceptor):
    """One SERVER span per call, named by the full method, continuing the caller's W3C trace."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def applies_to(self, method: str) -> bool:
        """Not health and reflection: probes every few seconds would drown real traces."""
        return not is_exempt(method)

    def guard(
        self, details: grpc.HandlerCallDetails
    ) -> Callable[[grpc.ServicerContext], AbstractContextManager[None]]:
        """Open the span around the call and record its final status."""
        method = details.method
        parent = extract_context(details.invocation_metadata or ())
        service, _, name = method.lstrip("/").partition("/")
        tracer = self._tracer

        @contextmanager
        def traced(context: grpc.ServicerContext) -> Iterator[None]:
            # Exception text is not recorded: spans leave the platform like logs do.
            with tracer.start_as_current_span(
                method,
                context=parent,
                kind=SpanKind.SERVER,
                record_exception=False,
                set_status_on_exception=False,
                attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
            ) as span:
                raised: BaseException | None = None
                try:
                    yield
                except BaseException as exc:
                    raised = exc
                    raise
                finally:
                    code = status_code(context, raised=raised)
                    span.set_attribute("rpc.grpc.status_code", code.value[0])
                    if code is not grpc.StatusCode.OK:
                        span.set_status(Status(StatusCode.ERROR, code.name))

        return traced


def server_interceptors(
    service_name: str,
    authenticator: Authenticator,
    *,
    registry: CollectorRegistry = REGISTRY,
    tracer_provider: trace.TracerProvider | None = None,
) -> Sequence[grpc.ServerInterceptor]:
    """The interceptor chain of a Signet server, outermost first, for ``grpc.server()``."""
    return (
        TracingInterceptor(get_tracer(tracer_provider)),
        MetricsInterceptor(GrpcServerMetrics.create(service_name, registry)),
        AuthInterceptor(authenticator),
        ErrorInterceptor(),
    )

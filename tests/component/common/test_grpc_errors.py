"""The error interceptor on a real server: ServiceErrors, unexpected exceptions, set statuses."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import cast

import grpc
import pytest

from signet.common import errors
from signet.common.testing.grpc import (
    InProcessServer,
    bytes_service,
    bytes_stream_stream,
    bytes_stream_unary,
    bytes_unary_stream,
    bytes_unary_unary,
)

SECRET = "leaked-secret-110101199003077777"
SERVICE = "test.Errors"


def _all_service_errors() -> list[type[errors.ServiceError]]:
    found: list[type[errors.ServiceError]] = []
    pending = [errors.ServiceError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: c.__name__)


ERROR_CLASSES = _all_service_errors()
_BY_NAME = {cls.__name__: cls for cls in ERROR_CLASSES}


def _error_for(request: bytes) -> errors.ServiceError:
    cls = _BY_NAME[request.decode()]
    return cls(f"safe message from {cls.__name__}")


def raise_unary(request: bytes, context: grpc.ServicerContext) -> bytes:
    raise _error_for(request)


def raise_unary_stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    yield b"first"
    raise _error_for(request)


def raise_stream_unary(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
    raise _error_for(next(requests))


def raise_stream_stream(
    requests: Iterator[bytes], context: grpc.ServicerContext
) -> Iterator[bytes]:
    for request in requests:
        yield b"got"
        raise _error_for(request)


def crash_unary(request: bytes, context: grpc.ServicerContext) -> bytes:
    raise ValueError(SECRET)


def crash_unary_stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    yield b"first"
    raise RuntimeError(SECRET)


def crash_stream_unary(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
    raise KeyError(SECRET)


def crash_stream_stream(
    requests: Iterator[bytes], context: grpc.ServicerContext
) -> Iterator[bytes]:
    for _ in requests:
        raise OSError(SECRET)
    yield b"never"


def handler_aborts(request: bytes, context: grpc.ServicerContext) -> bytes:
    context.abort(grpc.StatusCode.OUT_OF_RANGE, "handler chose this")


def handler_sets_code(request: bytes, context: grpc.ServicerContext) -> bytes:
    context.set_code(grpc.StatusCode.ABORTED)
    context.set_details("handler set this")
    return b""


def handler_sets_code_then_crashes(request: bytes, context: grpc.ServicerContext) -> bytes:
    context.set_code(grpc.StatusCode.FAILED_PRECONDITION)
    raise ValueError(SECRET)


def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    return request


register = bytes_service(
    SERVICE,
    unary_unary={
        "RaiseUnary": raise_unary,
        "CrashUnary": crash_unary,
        "Aborts": handler_aborts,
        "SetsCode": handler_sets_code,
        "SetsCodeThenCrashes": handler_sets_code_then_crashes,
        "Echo": echo,
    },
    unary_stream={"RaiseUnaryStream": raise_unary_stream, "CrashUnaryStream": crash_unary_stream},
    stream_unary={"RaiseStreamUnary": raise_stream_unary, "CrashStreamUnary": crash_stream_unary},
    stream_stream={
        "RaiseStreamStream": raise_stream_stream,
        "CrashStreamStream": crash_stream_stream,
    },
)


@pytest.fixture(scope="module")
def channel() -> Iterator[grpc.Channel]:
    with InProcessServer(register, service_names=[SERVICE]) as channel:
        yield channel


def _call(channel: grpc.Channel, kind: str, method: str, request: bytes) -> grpc.RpcError:
    path = f"/{SERVICE}/{method}"
    calls: dict[str, Callable[[], object]] = {
        "unary_unary": lambda: bytes_unary_unary(channel, path)(request),
        "unary_stream": lambda: list(bytes_unary_stream(channel, path)(request)),
        "stream_unary": lambda: bytes_stream_unary(channel, path)(iter([request])),
        "stream_stream": lambda: list(bytes_stream_stream(channel, path)(iter([request]))),
    }
    with pytest.raises(grpc.RpcError) as info:
        calls[kind]()
    return info.value


KINDS = {
    "unary_unary": ("RaiseUnary", "CrashUnary"),
    "unary_stream": ("RaiseUnaryStream", "CrashUnaryStream"),
    "stream_unary": ("RaiseStreamUnary", "CrashStreamUnary"),
    "stream_stream": ("RaiseStreamStream", "CrashStreamStream"),
}


@pytest.mark.parametrize("error_class", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_each_service_error_becomes_its_status_code_and_message(
    channel: grpc.Channel, error_class: type[errors.ServiceError]
) -> None:
    error = _call(channel, "unary_unary", "RaiseUnary", error_class.__name__.encode())

    assert error.code() is error_class.code
    assert error.details() == f"safe message from {error_class.__name__}"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_service_error_is_mapped_for_every_handler_kind(channel: grpc.Channel, kind: str) -> None:
    error = _call(channel, kind, KINDS[kind][0], b"NotFound")

    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert error.details() == "safe message from NotFound"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_unexpected_exception_is_internal_without_its_text(
    channel: grpc.Channel, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    error = _call(channel, kind, KINDS[kind][1], b"x")

    assert error.code() is grpc.StatusCode.INTERNAL
    assert error.details() == "internal error"
    call = cast(grpc.Call, error)
    # str() of the client error includes the transport's debug string.
    response_text = repr(call.trailing_metadata()) + repr(call.initial_metadata()) + str(error)
    assert "debug_error_string" in response_text
    assert "leaked-secret" not in response_text
    assert "110101199003077777" not in response_text
    # The traceback goes to the log instead, for the operators.
    logged = [r for r in caplog.records if r.getMessage() == "unexpected error in handler"]
    assert logged
    assert logged[-1].exc_info is not None


def test_status_set_by_handler_abort_is_left_alone(channel: grpc.Channel) -> None:
    error = _call(channel, "unary_unary", "Aborts", b"x")

    assert error.code() is grpc.StatusCode.OUT_OF_RANGE
    assert error.details() == "handler chose this"


def test_status_set_by_handler_set_code_is_left_alone(channel: grpc.Channel) -> None:
    error = _call(channel, "unary_unary", "SetsCode", b"x")

    assert error.code() is grpc.StatusCode.ABORTED
    assert error.details() == "handler set this"


def test_crash_after_set_code_keeps_code_but_not_exception_text(channel: grpc.Channel) -> None:
    error = _call(channel, "unary_unary", "SetsCodeThenCrashes", b"x")

    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "leaked-secret" not in (error.details() or "")


def test_client_errors_are_logged_as_warnings_without_traceback(
    channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    _call(channel, "unary_unary", "RaiseUnary", b"InvalidArgument")

    records = [r for r in caplog.records if getattr(r, "rpc_code", None) == "INVALID_ARGUMENT"]
    assert records
    assert records[-1].levelname == "WARNING"
    assert records[-1].exc_info is None


def test_successful_call_passes_through_untouched(channel: grpc.Channel) -> None:
    assert bytes_unary_unary(channel, f"/{SERVICE}/Echo")(b"payload") == b"payload"

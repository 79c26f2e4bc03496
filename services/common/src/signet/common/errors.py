"""The one error tree of Signet.

Domain code raises a :class:`ServiceError` subclass; only the gRPC error interceptor turns
it into a status. Every message here is shown to callers, so it must be safe: no exception
text, key labels, PINs, SQL or personal data. Library errors (SQLAlchemy, PKCS#11, Kafka) are
translated where the library is used.
"""

from __future__ import annotations

import grpc


class ServiceError(Exception):
    """A failure with a gRPC status code and a message a caller can act on."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class InvalidArgument(ServiceError):
    """The request itself is malformed; retrying it unchanged will fail again."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServiceError):
    """The named resource does not exist (or the caller may not know it exists)."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ServiceError):
    """A resource with the same identity already exists."""

    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(ServiceError):
    """The caller is known but not allowed to do this."""

    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(ServiceError):
    """The caller presented no valid credentials."""

    code = grpc.StatusCode.UNAUTHENTICATED


class FailedPrecondition(ServiceError):
    """The system is not in a state that allows the operation (e.g. key disabled)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(ServiceError):
    """A quota or rate limit was hit; retry later."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    retryable = True


class Unavailable(ServiceError):
    """A dependency (HSM, database, broker) is temporarily unreachable; safe to retry."""

    code = grpc.StatusCode.UNAVAILABLE
    retryable = True


class DeadlineExceeded(ServiceError):
    """The operation did not finish in time."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    retryable = True


class Internal(ServiceError):
    """A bug or an unexpected state; the message stays generic."""

    code = grpc.StatusCode.INTERNAL

    def __init__(self, message: str = "internal error") -> None:
        super().__init__(message)


_BY_CODE: dict[grpc.StatusCode, type[ServiceError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        FailedPrecondition,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
    )
}


def from_rpc_error(err: grpc.RpcError, dependency: str) -> ServiceError:
    """The :class:`ServiceError` to raise when a call to another Signet service failed.

    Client errors keep their code and the callee's message (Signet services only send
    client-safe messages); a failed call's ``UNAUTHENTICATED`` is this service's own
    misconfiguration and, like ``INTERNAL`` and unknown codes, becomes :class:`Internal`
    so the caller is not told to fix a credential it never sent.
    """
    code = err.code() if callable(getattr(err, "code", None)) else None
    details = err.details() if callable(getattr(err, "details", None)) else None
    cls = _BY_CODE.get(code) if isinstance(code, grpc.StatusCode) else None
    if cls is Unavailable or cls is DeadlineExceeded:
        return cls(f"the {dependency} service is unavailable; retry later")
    if cls is None:
        return Internal(f"a call to the {dependency} service failed")
    return cls(str(details or f"the {dependency} service refused the request"))

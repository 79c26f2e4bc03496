"""The SDK's one error type: a failed call or flow step, with its gRPC code and message.

Every RPC made through :class:`signet.sdk.Signet` that ends in a non-OK status raises
:class:`SignetError` instead of a raw ``grpc.RpcError``, so callers catch one type and
branch on :attr:`SignetError.code`. Flow helpers raise it too when a step cannot go on
(e.g. a verification the provider refused), naming the step in :attr:`SignetError.method`.
"""

from __future__ import annotations

import grpc

RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class SignetError(Exception):
    """A Signet call or flow step that failed: gRPC status code, message, and where."""

    def __init__(self, code: grpc.StatusCode, message: str, method: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.method = method

    @property
    def retryable(self) -> bool:
        """Whether trying again later may succeed (the service was unreachable or slow)."""
        return self.code in RETRYABLE_CODES

    def __str__(self) -> str:
        where = f" ({self.method})" if self.method else ""
        return f"{self.code.name}: {self.message}{where}"

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError, method: str = "") -> SignetError:
        """The SDK error for a raw gRPC error (a call object carrying code and details)."""
        code_fn = getattr(error, "code", None)
        details_fn = getattr(error, "details", None)
        code = code_fn() if callable(code_fn) else grpc.StatusCode.UNKNOWN
        details = details_fn() if callable(details_fn) else ""
        if not isinstance(code, grpc.StatusCode):
            code = grpc.StatusCode.UNKNOWN
        return cls(code, str(details or code.name.lower()), method)

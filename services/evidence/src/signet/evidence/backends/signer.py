"""The signer as the evidence service's :class:`~signet.evidence.domain.KeyService`, over gRPC.

Evidence's keys are system keys (owner ``evidence``): the signer lets only the evidence
service, authenticated as itself, create and use them. gRPC failures become the errors of
:mod:`signet.common.errors`, with the signer's own client-safe message kept.
"""

from __future__ import annotations

import grpc

from signet.common.errors import (
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ServiceError,
    Unavailable,
)
from signet.common.v1 import common_pb2
from signet.evidence.domain import KeyPurpose, SigningKey
from signet.signer.v1 import signer_pb2, signer_pb2_grpc

SYSTEM_OWNER = "evidence"
_PURPOSES = {
    KeyPurpose.LOG_SIGNING: signer_pb2.KEY_PURPOSE_LOG_SIGNING,
    KeyPurpose.TIMESTAMPING: signer_pb2.KEY_PURPOSE_TIMESTAMPING,
}
_CODES: dict[grpc.StatusCode, type[ServiceError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: PermissionDenied,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Unavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Unavailable,
}


def translate_rpc_error(err: grpc.RpcError, service: str) -> ServiceError:
    """A dependency's gRPC failure as one of our errors (its status message is client-safe)."""
    code = err.code() if isinstance(err, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = err.details() if isinstance(err, grpc.Call) else ""
    cls = _CODES.get(code)
    if cls is None:
        return Internal()
    return cls(f"{service}: {details}" if details else f"{service} refused the call")


class SignerKeyService:
    """System keys and digest signatures through the signer's gRPC API."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._stub = signer_pb2_grpc.SignerServiceStub(channel)

    def create_system_key(self, purpose: KeyPurpose, request_id: str) -> SigningKey:
        """CreateKey for owner ``evidence`` (idempotent on ``request_id``)."""
        request = signer_pb2.CreateKeyRequest(
            algorithm=common_pb2.KEY_ALGORITHM_EC_P256,
            purpose=_PURPOSES[purpose],
            owner=signer_pb2.KeyOwner(system=SYSTEM_OWNER),
            request_id=request_id,
        )
        try:
            response = self._stub.CreateKey(request)
        except grpc.RpcError as err:
            raise translate_rpc_error(err, "signer") from err
        return SigningKey(response.key.key_id, response.public_key.spki_der)

    def sign_digest(self, key_id: str, digest: bytes) -> bytes:
        """SignDigest with ECDSA over a SHA-256 digest; the DER signature."""
        request = signer_pb2.SignDigestRequest(
            key_id=key_id,
            digest=common_pb2.Digest(algorithm=common_pb2.HASH_ALGORITHM_SHA256, value=digest),
            scheme=common_pb2.SIGNATURE_SCHEME_ECDSA,
        )
        try:
            return bytes(self._stub.SignDigest(request).signature)
        except grpc.RpcError as err:
            raise translate_rpc_error(err, "signer") from err

"""Identity's grant key in the signer: created there as a system key, used through SignDigest.

The key is an EC P-256 system key (owner ``identity``, purpose grant signing); its key id
is the JWS ``kid`` of every grant it signs, and the signer reads its public key from its
own records to verify grants, so no configuration is shared between the two.
"""

from __future__ import annotations

import grpc

from signet.common.errors import FailedPrecondition, PermissionDenied, ServiceError, Unavailable
from signet.common.v1 import common_pb2
from signet.signer.v1 import signer_pb2, signer_pb2_grpc

SYSTEM_OWNER = "identity"


def _translate(err: grpc.RpcError, what: str) -> ServiceError:
    code = err.code() if hasattr(err, "code") else None
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDenied(f"the signer refused {what}")
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return FailedPrecondition(f"the signer cannot do {what} now")
    return Unavailable("the signer is unavailable; retry")


class SignerGrantKeys:
    """Creates and uses identity's grant key in the signer service."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._stub = signer_pb2_grpc.SignerServiceStub(channel)

    def create_key(self, request_id: str) -> tuple[str, bytes]:
        """Create (idempotently on ``request_id``) the grant key; its id and SPKI DER."""
        try:
            reply = self._stub.CreateKey(
                signer_pb2.CreateKeyRequest(
                    algorithm=common_pb2.KEY_ALGORITHM_EC_P256,
                    purpose=signer_pb2.KEY_PURPOSE_GRANT_SIGNING,
                    owner=signer_pb2.KeyOwner(system=SYSTEM_OWNER),
                    request_id=request_id,
                )
            )
        except grpc.RpcError as err:
            raise _translate(err, "creating the grant key") from None
        return reply.key.key_id, reply.public_key.spki_der

    def sign_digest(self, kid: str, digest: bytes) -> bytes:
        """DER ECDSA signature over a SHA-256 digest with the grant key."""
        try:
            reply = self._stub.SignDigest(
                signer_pb2.SignDigestRequest(
                    key_id=kid,
                    digest=common_pb2.Digest(
                        algorithm=common_pb2.HASH_ALGORITHM_SHA256, value=digest
                    ),
                )
            )
        except grpc.RpcError as err:
            raise _translate(err, "signing the grant") from None
        return reply.signature

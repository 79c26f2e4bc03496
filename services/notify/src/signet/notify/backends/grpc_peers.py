"""gRPC clients of the services notify calls: identity (contact details) and evidence.

gRPC errors become :mod:`signet.common.errors`: NOT_FOUND stays NotFound, UNAVAILABLE and
DEADLINE_EXCEEDED become Unavailable (retry later), anything else FailedPrecondition with
a generic message (a configuration or permission problem of notify's, not of the caller).
"""

from __future__ import annotations

import logging

import grpc

from signet.common.errors import FailedPrecondition, NotFound, ServiceError, Unavailable
from signet.events.v1.events_pb2 import EventEnvelope
from signet.evidence.v1 import evidence_pb2, evidence_pb2_grpc
from signet.identity.v1 import identity_pb2, identity_pb2_grpc
from signet.notify.domain import Contact

log = logging.getLogger(__name__)

_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def _translate(err: grpc.RpcError, peer: str) -> ServiceError:
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    log.warning("call to %s failed", peer, extra={"grpc_code": code.name})
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(f"{peer} does not know the record")
    if code in _RETRYABLE:
        return Unavailable(f"{peer} is temporarily unavailable")
    return FailedPrecondition(f"{peer} refused the call")


class GrpcContactDirectory:
    """:class:`~signet.notify.domain.ContactDirectory` over identity's GetContactDetails."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._stub = identity_pb2_grpc.IdentityServiceStub(channel)

    def contact(self, account_id: str) -> Contact:
        """The account's phone, e-mail and locale, in clear, for one delivery."""
        try:
            response = self._stub.GetContactDetails(
                identity_pb2.GetContactDetailsRequest(account_id=account_id)
            )
        except grpc.RpcError as err:
            raise _translate(err, "identity") from None
        return Contact(
            account_id=account_id,
            email=response.email,
            phone=response.phone,
            locale=response.locale,
        )


class GrpcEvidenceLog:
    """:class:`~signet.notify.domain.EvidenceLog` over evidence's Append."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._stub = evidence_pb2_grpc.EvidenceServiceStub(channel)

    def append(self, envelope: EventEnvelope) -> None:
        """Append ``envelope`` (idempotent on its id at the evidence side)."""
        try:
            self._stub.Append(evidence_pb2.AppendRequest(event=envelope))
        except grpc.RpcError as err:
            raise _translate(err, "evidence") from None

"""EvidenceService over gRPC: requests to domain calls, results to responses.

Nothing here decides anything; :class:`signet.evidence.service.EvidenceLog`, the
:class:`~signet.evidence.tsa.TimestampAuthority` and the
:class:`~signet.evidence.package.PackageBuilder` do. A caller acting for one tenant only
sees that tenant's entries and packages.
"""

from __future__ import annotations

import grpc

from signet.common.auth import current_principal
from signet.common.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from signet.evidence import convert
from signet.evidence.domain import EntryFilter
from signet.evidence.index import digest_ref
from signet.evidence.package import PackageBuilder
from signet.evidence.service import EvidenceLog
from signet.evidence.tsa import TimestampAuthority
from signet.evidence.v1 import evidence_pb2, evidence_pb2_grpc

MAX_TIMESTAMP_REQUEST_BYTES = 16 * 1024
WAIT_FOR_INTEGRATION_SECONDS = 10.0


def _tenant_scope(requested: str) -> str:
    """The tenant a call may see: the caller's own when it acts for one tenant."""
    own = current_principal().tenant
    if own is None:
        return requested
    if requested and requested != own:
        raise PermissionDenied("the caller acts for another tenant")
    return own


class EvidenceServicer(evidence_pb2_grpc.EvidenceServiceServicer):
    """The gRPC face of the evidence log, the TSA and the package exporter."""

    def __init__(
        self,
        log: EvidenceLog,
        tsa: TimestampAuthority | None = None,
        packages: PackageBuilder | None = None,
    ) -> None:
        self._log = log
        self._tsa = tsa
        self._packages = packages

    def Append(
        self, request: evidence_pb2.AppendRequest, context: grpc.ServicerContext
    ) -> evidence_pb2.AppendResponse:
        """Record one event (idempotent on its id)."""
        if not request.HasField("event"):
            raise InvalidArgument("event is required")
        caller = current_principal()
        if caller.tenant is not None and request.event.tenant != caller.tenant:
            raise PermissionDenied("a tenant caller may only record its own tenant's events")
        result = self._log.append(request.event)
        entry = result.entry
        if request.wait_for_integration and entry.leaf_index is None:
            entry = self._log.wait_integrated(entry.id, WAIT_FOR_INTEGRATION_SECONDS)
        return evidence_pb2.AppendResponse(
            entry=convert.entry_message(entry, include_leaf_data=False),
            duplicate=result.duplicate,
        )

    def GetSignedTreeHead(
        self, request: evidence_pb2.GetSignedTreeHeadRequest, context: grpc.ServicerContext
    ) -> evidence_pb2.GetSignedTreeHeadResponse:
        """The latest signed head, or the one of a given size."""
        head = self._log.tree_head(request.tree_size)
        return evidence_pb2.GetSignedTreeHeadResponse(tree_head=convert.tree_head_message(head))

    def GetInclusionProof(
        self, request: evidence_pb2.GetInclusionProofRequest, context: grpc.ServicerContext
    ) -> evidence_pb2.GetInclusionProofResponse:
        """The audit path of one entry."""
        which = request.WhichOneof("leaf")
        if which is None:
            raise InvalidArgument("set leaf_index, leaf_hash or event_id")
        proof = self._log.inclusion_proof(
            leaf_index=request.leaf_index if which == "leaf_index" else None,
            leaf_hash=request.leaf_hash if which == "leaf_hash" else None,
            event_id=request.event_id if which == "event_id" else None,
            tree_size=request.tree_size,
        )
        return evidence_pb2.GetInclusionProofResponse(
            leaf_index=proof.leaf_index,
            tree_size=proof.tree_head.tree_size,
            leaf_hash=proof.leaf_hash,
            hashes=list(proof.hashes),
            tree_head=convert.tree_head_message(proof.tree_head),
        )

    def GetConsistencyProof(
        self, request: evidence_pb2.GetConsistencyProofRequest, context: grpc.ServicerContext
    ) -> evidence_pb2.GetConsistencyProofResponse:
        """Proof that an older tree is a prefix of a newer one."""
        proof = self._log.consistency_proof(request.first_tree_size, request.second_tree_size)
        return evidence_pb2.GetConsistencyProofResponse(
            first_tree_size=proof.first_size,
            second_tree_size=proof.tree_head.tree_size,
            hashes=list(proof.hashes),
            tree_head=convert.tree_head_message(proof.tree_head),
        )

    def GetEntries(
        self, request: evidence_pb2.GetEntriesRequest, context: grpc.ServicerContext
    ) -> evidence_pb2.GetEntriesResponse:
        """Integrated entries by range or filter, a page at a time."""
        digest = ""
        if request.HasField("digest"):
            if not request.digest.value or not request.digest.algorithm:
                raise InvalidArgument("digest needs algorithm and value")
            digest = digest_ref(request.digest.algorithm, request.digest.value)
        views, token = self._log.entries(
            EntryFilter(
                start_index=request.start_index,
                transaction_id=request.transaction_id,
                digest_ref=digest,
                event_type=request.event_type,
                tenant=_tenant_scope(request.tenant_id),
            ),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return evidence_pb2.GetEntriesResponse(
            entries=[
                convert.entry_message(v, include_leaf_data=request.include_leaf_data) for v in views
            ],
            next_page_token=token,
        )

    def Timestamp(
        self, request: evidence_pb2.TimestampRequest, context: grpc.ServicerContext
    ) -> evidence_pb2.TimestampResponse:
        """RFC 3161: a TimeStampReq in, a TimeStampResp out."""
        if self._tsa is None:
            raise FailedPrecondition("this evidence service has no time-stamping authority")
        if not request.request_der:
            raise InvalidArgument("request_der is required: a DER TimeStampReq")
        if len(request.request_der) > MAX_TIMESTAMP_REQUEST_BYTES:
            raise InvalidArgument(f"request_der is larger than {MAX_TIMESTAMP_REQUEST_BYTES} bytes")
        issued = self._tsa.timestamp(request.request_der)
        return evidence_pb2.TimestampResponse(response_der=issued.response_der)

    def ExportEvidencePackage(
        self, request: evidence_pb2.ExportEvidencePackageRequest, context: grpc.ServicerContext
    ) -> evidence_pb2.ExportEvidencePackageResponse:
        """The evidence package of one transaction or document."""
        if self._packages is None:
            raise FailedPrecondition("this evidence service does not export packages")
        if request.include_pdf_report:
            raise FailedPrecondition(
                "PDF reports are not offered; the package carries report.html (leave "
                "include_pdf_report unset)"
            )
        which = request.WhichOneof("selector")
        tenant = _tenant_scope(request.tenant_id)
        if which == "transaction_id":
            if not request.transaction_id:
                raise InvalidArgument("transaction_id must not be empty")
            package = self._packages.export(transaction_id=request.transaction_id, tenant=tenant)
        elif which == "document_digest":
            d = request.document_digest
            if not d.value or not d.algorithm:
                raise InvalidArgument("document_digest needs algorithm and value")
            package = self._packages.export(digest=digest_ref(d.algorithm, d.value), tenant=tenant)
        else:
            raise InvalidArgument("set transaction_id or document_digest")
        return evidence_pb2.ExportEvidencePackageResponse(
            package_id=package.package_id,
            file_name=package.file_name,
            package=package.data,
            package_sha256=package.sha256,
            tree_head=convert.tree_head_message(package.tree_head),
            entry_count=package.entry_count,
        )

    def GetLogPublicKey(
        self, request: evidence_pb2.GetLogPublicKeyRequest, context: grpc.ServicerContext
    ) -> evidence_pb2.GetLogPublicKeyResponse:
        """The log's public key."""
        return convert.log_key_message(self._log.public_key())

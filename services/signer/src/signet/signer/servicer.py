"""SignerService over gRPC: requests to domain calls, results to responses.

Nothing here decides who may do what; :class:`signet.signer.service.Signer` does. Bad
input raises :mod:`signet.common.errors`, which the error interceptor turns into statuses.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import grpc

from signet.common import prototime
from signet.common.auth import current_principal
from signet.common.errors import FailedPrecondition, Internal, InvalidArgument, ServiceError
from signet.common.interceptors import MethodCalls
from signet.common.keys import HashAlgorithm, KeyAlgorithm, SignatureScheme
from signet.common.metrics import GrpcServerMetrics
from signet.common.v1 import common_pb2
from signet.signer import convert, documents
from signet.signer.domain import (
    DEFAULT_SCHEME,
    EventContext,
    Purpose,
    RetirementReason,
    SignItem,
    SignResult,
)
from signet.signer.models import KeyState
from signet.signer.service import PendingSignature, Signer
from signet.signer.v1 import signer_pb2, signer_pb2_grpc, worker_pb2, worker_pb2_grpc

MAX_DOCUMENT_BYTES = 15 * 1024 * 1024
SIGN_DIGEST_METHOD = "/signet.signer.v1.SignerService/SignDigest"
# How long, per request of a SignDigests call, the front held it before sending (µs, ",").
FRONT_WAITED_HEADER = "signet-front-waited-us"
_CODES = {code.value[0]: code for code in grpc.StatusCode}


class SignerServicer(signer_pb2_grpc.SignerServiceServicer):
    """The gRPC face of :class:`Signer`."""

    def __init__(
        self,
        signer: Signer,
        *,
        tsa_url: str = "",
        timestamper: documents.TimestampFn | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._signer = signer
        self._tsa_url = tsa_url
        self._timestamper = timestamper
        self._clock = clock

    # ---- keys ----------------------------------------------------------------------

    def CreateKey(
        self, request: signer_pb2.CreateKeyRequest, context: grpc.ServicerContext
    ) -> signer_pb2.CreateKeyResponse:
        """Generate a key in the HSM for an owner."""
        view = self._signer.create_key(
            current_principal(),
            convert.owner_from(request.owner),
            convert.required(KeyAlgorithm, request.algorithm, "algorithm"),
            convert.required(Purpose, request.purpose, "purpose"),
            request.request_id,
        )
        return signer_pb2.CreateKeyResponse(
            key=convert.key_message(view), public_key=convert.public_key_message(view)
        )

    def GetKey(
        self, request: signer_pb2.GetKeyRequest, context: grpc.ServicerContext
    ) -> signer_pb2.GetKeyResponse:
        """A key's record."""
        view = self._signer.get_key(current_principal(), request.key_id)
        return signer_pb2.GetKeyResponse(key=convert.key_message(view))

    def GetPublicKey(
        self, request: signer_pb2.GetPublicKeyRequest, context: grpc.ServicerContext
    ) -> signer_pb2.GetPublicKeyResponse:
        """A key's public key, SPKI DER and PEM."""
        view = self._signer.public_key(request.key_id)
        return signer_pb2.GetPublicKeyResponse(
            key_id=view.key_id, public_key=convert.public_key_message(view)
        )

    def ListKeys(
        self, request: signer_pb2.ListKeysRequest, context: grpc.ServicerContext
    ) -> signer_pb2.ListKeysResponse:
        """One owner's keys, a page at a time."""
        views, token = self._signer.list_keys(
            current_principal(),
            tenant=request.tenant_id,
            account=request.account_id,
            system_owner=request.system_owner,
            purpose=convert.from_proto(Purpose, request.purpose, "purpose", required=False),
            state=convert.from_proto(KeyState, request.state, "state", required=False),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return signer_pb2.ListKeysResponse(
            keys=[convert.key_message(v) for v in views], next_page_token=token
        )

    def DisableKey(
        self, request: signer_pb2.DisableKeyRequest, context: grpc.ServicerContext
    ) -> signer_pb2.DisableKeyResponse:
        """Stop a key from signing, for good."""
        view = self._signer.disable_key(
            current_principal(), request.key_id, _reason(request.reason)
        )
        return signer_pb2.DisableKeyResponse(key=convert.key_message(view))

    def DestroyKey(
        self, request: signer_pb2.DestroyKeyRequest, context: grpc.ServicerContext
    ) -> signer_pb2.DestroyKeyResponse:
        """Delete a key from the HSM; its record stays."""
        view = self._signer.destroy_key(
            current_principal(), request.key_id, _reason(request.reason)
        )
        return signer_pb2.DestroyKeyResponse(key=convert.key_message(view))

    # ---- signatures ----------------------------------------------------------------

    def SignDigest(
        self, request: signer_pb2.SignDigestRequest, context: grpc.ServicerContext
    ) -> signer_pb2.SignDigestResponse:
        """Sign one digest (or, for Ed25519, one message)."""
        item = _item(request.key_id, request.digest, request.message, request.scheme, request.grant)
        result = self._signer.sign(
            current_principal(),
            [item],
            context=EventContext(transaction_id=request.transaction_id),
        )[0]
        if result.error is not None:
            raise result.error
        return _digest_response(result)

    def SignBatch(
        self, request: signer_pb2.SignBatchRequest, context: grpc.ServicerContext
    ) -> signer_pb2.SignBatchResponse:
        """Sign many digests; each item gets its own result or status."""
        items = request.items
        _check_count(len(items), self._signer.max_batch, "item")
        results = _sign_each(
            self._signer,
            [_parsed(_item, e.key_id, e.digest, b"", e.scheme, e.grant, e.item_id) for e in items],
            batch_grant=request.grant,
            context=EventContext(transaction_id=request.transaction_id),
        )
        return signer_pb2.SignBatchResponse(
            results=[
                _batch_result(
                    r if isinstance(r, SignResult) else SignResult(item_id=e.item_id, error=r)
                )
                for e, r in zip(items, results, strict=True)
            ]
        )

    def SignDocument(
        self, request: signer_pb2.SignDocumentRequest, context: grpc.ServicerContext
    ) -> signer_pb2.SignDocumentResponse:
        """A detached CMS (CAdES) signature, or a signed PDF (PAdES)."""
        fmt = request.format
        if fmt not in (signer_pb2.DOCUMENT_FORMAT_CMS_DETACHED, signer_pb2.DOCUMENT_FORMAT_PADES):
            raise InvalidArgument("format must be DOCUMENT_FORMAT_CMS_DETACHED or _PADES")
        level = request.level or signer_pb2.SIGNATURE_LEVEL_B_B
        if level not in (signer_pb2.SIGNATURE_LEVEL_B_B, signer_pb2.SIGNATURE_LEVEL_B_T):
            raise InvalidArgument("level must be SIGNATURE_LEVEL_B_B or _B_T")
        b_t = level == signer_pb2.SIGNATURE_LEVEL_B_T
        if b_t and not (self._tsa_url or self._timestamper):
            raise FailedPrecondition("level B-T needs a timestamp authority; none is configured")
        if not request.certificate_chain_der:
            raise InvalidArgument("certificate_chain_der is required: the signer's certificate")
        if fmt == signer_pb2.DOCUMENT_FORMAT_PADES and request.WhichOneof("content") != "document":
            raise InvalidArgument("PAdES signs the PDF itself: send `document`")
        caller = current_principal()
        key = self._signer.public_key(request.key_id)
        hash_alg, doc_digest, document = self._document(request, key.algorithm)
        scheme = convert.from_proto(SignatureScheme, request.scheme, "scheme", required=False)
        scheme = scheme or DEFAULT_SCHEME[key.algorithm]
        signing_time = self._clock().replace(microsecond=0)
        serial = documents.certificate_serial(request.certificate_chain_der[0])
        made: list[PendingSignature] = []

        def sign(digest_alg: HashAlgorithm | None, data: bytes) -> bytes:
            item = SignItem(
                key_id=key.key_id,
                data=data,
                hash_alg=digest_alg if digest_alg is not None else hash_alg,
                scheme=scheme,
                grant=request.grant,
                is_message=digest_alg is None,
                authorized_digest=doc_digest,
            )
            # Recorded (grant consumed, event written) only once the document is whole.
            pending = self._signer.sign_uncommitted(caller, item)
            made.append(pending)
            return pending.signature

        timestamp = self._signature_timestamper() if b_t else None
        chain = list(request.certificate_chain_der)
        if fmt == signer_pb2.DOCUMENT_FORMAT_CMS_DETACHED:
            output = documents.sign_cms_detached(
                content_digest=doc_digest,
                hash_alg=hash_alg,
                key_algorithm=key.algorithm,
                scheme=scheme,
                certificate_chain_der=chain,
                public_key_der=key.public_key_der,
                sign=sign,
                signing_time=signing_time,
                timestamp=timestamp,
            )
            token = documents.timestamp_token_of(output) if b_t else b""
        else:
            assert document is not None  # PAdES without a document was refused above
            field_name = request.pades.field_name or "Signature1"
            output = documents.sign_pdf(
                pdf=document,
                hash_alg=hash_alg,
                key_algorithm=key.algorithm,
                scheme=scheme,
                certificate_chain_der=chain,
                public_key_der=key.public_key_der,
                sign=sign,
                signing_time=signing_time,
                field_name=field_name,
                reason=request.pades.reason,
                location=request.pades.location,
                contact_info=request.pades.contact_info,
                timestamp=timestamp,
            )
            token = documents.pdf_timestamp_token_of(output, field_name) if b_t else b""
        if len(made) != 1:
            raise Internal()
        recorded = made[0].commit(
            EventContext(
                transaction_id=request.transaction_id,
                document_format=fmt,
                level=level,
                certificate_serial=serial,
                timestamp_token_sha256=hashlib.sha256(token).digest() if token else b"",
                output_sha256=hashlib.sha256(output).digest(),
            )
        )
        return signer_pb2.SignDocumentResponse(
            signature_id=recorded.signature_id,
            signed_output=output,
            document_digest=convert.digest_message(hash_alg, doc_digest),
            signing_time=prototime.timestamp(signing_time),
            level=level,
            timestamp_token=token,
            certificate_serial=serial,
        )

    def _document(
        self, request: signer_pb2.SignDocumentRequest, key_algorithm: KeyAlgorithm
    ) -> tuple[HashAlgorithm, bytes, bytes | None]:
        """The hash algorithm, the document digest and (when sent) the document.

        Ed25519 goes with SHA-512 in CMS (RFC 8419): that is the default for its keys, and
        any other hash is refused before anything is signed.
        """
        ed25519 = key_algorithm is KeyAlgorithm.ED25519
        chosen = convert.from_proto(
            HashAlgorithm, request.hash_algorithm, "hash_algorithm", required=False
        )
        which = request.WhichOneof("content")
        if which == "document":
            if len(request.document) > MAX_DOCUMENT_BYTES:
                raise InvalidArgument(f"document is larger than {MAX_DOCUMENT_BYTES} bytes")
            hash_alg = chosen or (HashAlgorithm.SHA512 if ed25519 else HashAlgorithm.SHA256)
            _check_ed25519_hash(ed25519, hash_alg, "hash_algorithm")
            return hash_alg, documents.document_digest(request.document, hash_alg), request.document
        if which == "document_digest":
            hash_alg = convert.required(
                HashAlgorithm, request.document_digest.algorithm, "document_digest.algorithm"
            )
            if chosen is not None and chosen is not hash_alg:
                raise InvalidArgument(
                    "hash_algorithm differs from document_digest.algorithm; leave it unset"
                )
            _check_ed25519_hash(ed25519, hash_alg, "document_digest")
            value = request.document_digest.value
            if len(value) != hash_alg.digest_size:
                raise InvalidArgument(
                    f"a {hash_alg.value} digest is {hash_alg.digest_size} bytes, got {len(value)}"
                )
            return hash_alg, value, None
        raise InvalidArgument("send the document or its document_digest")

    def _signature_timestamper(self) -> documents.TimestampFn:
        """The source of B-T signature timestamps: the injected one, else the TSA over HTTP."""
        if self._timestamper is not None:
            return self._timestamper
        return documents.http_timestamper(self._tsa_url)


class SignerWorkerServicer(worker_pb2_grpc.SignerWorkerServiceServicer):
    """The internal service the signer's front calls with coalesced SignDigest requests.

    Each request is signed as :meth:`SignerServicer.SignDigest` would sign it, all of them
    in one :meth:`Signer.sign` (one HSM pass per key, one journal write), and each gets
    the outcome SignDigest would have returned. The calls are counted in the SignDigest
    metrics, one per request, so dashboards and SLA rules see the callers' calls whether
    or not the front coalesced them.
    """

    def __init__(self, signer: Signer, metrics: GrpcServerMetrics | None = None) -> None:
        self._signer = signer
        self._calls = MethodCalls(SIGN_DIGEST_METHOD, metrics) if metrics is not None else None

    def SignDigests(
        self, request: worker_pb2.SignDigestsRequest, context: grpc.ServicerContext
    ) -> worker_pb2.SignDigestsResponse:
        """Sign many callers' SignDigest requests; one outcome per request, in order."""
        started = time.perf_counter()
        waits = _front_waits(context.invocation_metadata() or (), len(request.requests))
        try:
            outcomes = self._sign_all(request)
        except BaseException as exc:
            # The whole call failed (journal down, HSM gone ...): so did each caller's.
            code = exc.code if isinstance(exc, ServiceError) else grpc.StatusCode.INTERNAL
            self._count(
                [code.value[0]] * len(request.requests), time.perf_counter() - started, waits
            )
            raise
        self._count([o.status.code for o in outcomes], time.perf_counter() - started, waits)
        return worker_pb2.SignDigestsResponse(outcomes=outcomes)

    def _sign_all(
        self, request: worker_pb2.SignDigestsRequest
    ) -> list[worker_pb2.SignDigestOutcome]:
        requests = request.requests
        _check_count(len(requests), self._signer.max_batch, "request")
        results = _sign_each(
            self._signer,
            [
                _parsed(
                    _item,
                    r.key_id,
                    r.digest,
                    r.message,
                    r.scheme,
                    r.grant,
                    transaction_id=r.transaction_id,
                )
                for r in requests
            ],
        )
        return [_digest_outcome(r) for r in results]

    def _count(self, codes: list[int], seconds: float, waits: list[float]) -> None:
        """Count each request as one SignDigest call with its own status code.

        Its duration is this call's plus what the request waited in the front before.
        """
        if self._calls is None:
            return
        for number, waited in zip(codes, waits, strict=True):
            self._calls.count(_CODES.get(number, grpc.StatusCode.UNKNOWN))
            self._calls.duration.observe(seconds + waited)


def _check_count(count: int, limit: int, noun: str) -> None:
    """Refuse a call with no ``noun`` or more than ``limit`` of them."""
    if count == 0:
        raise InvalidArgument(f"at least one {noun} is required")
    if count > limit:
        raise InvalidArgument(f"at most {limit} {noun}s per call, got {count}")


def _parsed(parse: Callable[..., SignItem], *args: Any, **kwargs: Any) -> SignItem | ServiceError:
    """The sign item ``parse`` makes of a request entry, or the error that entry gets."""
    try:
        return parse(*args, **kwargs)
    except ServiceError as err:
        return err


def _sign_each(
    signer: Signer, parsed: Sequence[SignItem | ServiceError], **options: Any
) -> list[SignResult | ServiceError]:
    """Sign the items among ``parsed`` in one :meth:`Signer.sign` with ``options``.

    Returns, in order, each entry's result, or its error where it did not parse.
    """
    results: list[SignResult | ServiceError | None] = [
        p if isinstance(p, ServiceError) else None for p in parsed
    ]
    valid = [(index, p) for index, p in enumerate(parsed) if isinstance(p, SignItem)]
    if valid:
        signed = signer.sign(current_principal(), [item for _, item in valid], **options)
        for (index, _), result in zip(valid, signed, strict=True):
            results[index] = result
    return [r for r in results if r is not None]  # every item got its result above


def _digest_outcome(result: SignResult | ServiceError) -> worker_pb2.SignDigestOutcome:
    """What SignDigest would have answered for this request."""
    error = result if isinstance(result, ServiceError) else result.error
    if error is not None:
        return worker_pb2.SignDigestOutcome(status=convert.status_message(error))
    assert isinstance(result, SignResult)
    return worker_pb2.SignDigestOutcome(
        response=_digest_response(result), status=common_pb2.Status(code=0)
    )


def _front_waits(metadata: Sequence[tuple[str, str | bytes]], count: int) -> list[float]:
    """Seconds each request waited in the front (FRONT_WAITED_HEADER), or zeros.

    The front lists microseconds per request, in order; only it can reach this service.
    """
    header = next((v for k, v in metadata if k == FRONT_WAITED_HEADER), "")
    values = header.split(",") if isinstance(header, str) and header else []
    if len(values) != count or not all(v.isdigit() for v in values):
        return [0.0] * count
    return [int(v) / 1e6 for v in values]


def _digest_response(result: SignResult) -> signer_pb2.SignDigestResponse:
    response = signer_pb2.SignDigestResponse(
        signature_id=result.signature_id,
        key_id=result.key_id,
        signature=result.signature,
        signed_at=prototime.timestamp(result.signed_at),
    )
    if result.scheme is not None:
        response.scheme = convert.to_proto(result.scheme)  # type: ignore[assignment]
    return response


def _check_ed25519_hash(ed25519: bool, hash_alg: HashAlgorithm, field: str) -> None:
    if ed25519 and hash_alg is not HashAlgorithm.SHA512:
        raise InvalidArgument(
            f"an Ed25519 key signs documents with SHA512 (RFC 8419): {field} must be SHA512, "
            f"not {hash_alg.value}"
        )


def _reason(number: int) -> RetirementReason:
    reason = convert.from_proto(RetirementReason, number, "reason", required=False)
    return reason or RetirementReason.UNSPECIFIED


def _item(
    key_id: str,
    digest: common_pb2.Digest,
    message: bytes,
    scheme: int,
    grant: str,
    item_id: str = "",
    *,
    transaction_id: str = "",
) -> SignItem:
    """A sign item from the request fields; an Ed25519 request sends the message."""
    chosen = convert.from_proto(SignatureScheme, scheme, "scheme", required=False)
    if message:
        hash_alg = convert.from_proto(
            HashAlgorithm, digest.algorithm, "digest.algorithm", required=False
        )
        return SignItem(
            key_id,
            message,
            hash_alg,
            chosen,
            grant,
            item_id,
            is_message=True,
            transaction_id=transaction_id,
        )
    if not digest.value:
        raise InvalidArgument("digest is required (or, for Ed25519, message)")
    hash_alg = convert.required(HashAlgorithm, digest.algorithm, "digest.algorithm")
    return SignItem(
        key_id, digest.value, hash_alg, chosen, grant, item_id, transaction_id=transaction_id
    )


def _batch_result(result: SignResult) -> signer_pb2.SignBatchResult:
    status = (
        convert.status_message(result.error)
        if result.error is not None
        else common_pb2.Status(code=0)
    )
    return signer_pb2.SignBatchResult(
        item_id=result.item_id,
        status=status,
        signature=result.signature,
        signature_id=result.signature_id,
    )

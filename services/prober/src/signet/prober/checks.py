"""The calls the prober makes, one set per service, each checking the expected result.

A check raises :class:`ProbeFailed` with a short, client-safe reason (a gRPC code name or
what did not verify); anything else that escapes is a failure too. UNIMPLEMENTED is a
failure like any other code: the interface did not return the expected result.

- signer: sign a fixed SHA-256 digest with the prober's own system key (created once,
  idempotently) and verify the signature with the key's public key;
- ca-gateway: GetCaCertificates, then fetch each CA's CRL over HTTP and verify it is signed
  by that CA and not past its next update;
- identity: GetGrantVerificationKeys returns at least one parsable key;
- evidence: GetSignedTreeHead verified with GetLogPublicKey (RFC 6962 tree-head signature);
- notify: GetDeliveryStatus of an id that cannot exist answers NOT_FOUND;
- every service: the standard gRPC health check answers SERVING.
"""

from __future__ import annotations

import hashlib
import struct
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from grpc_health.v1 import health_pb2, health_pb2_grpc

from signet.ca_gateway.v1 import ca_gateway_pb2, ca_gateway_pb2_grpc
from signet.common.v1 import common_pb2
from signet.evidence.v1 import evidence_pb2, evidence_pb2_grpc
from signet.identity.v1 import identity_pb2, identity_pb2_grpc
from signet.notify.v1 import notify_pb2, notify_pb2_grpc
from signet.signer.v1 import signer_pb2, signer_pb2_grpc

# The system owner name the prober's signing key is recorded under in the signer.
PROBER_OWNER = "prober"
PROBE_DIGEST = hashlib.sha256(b"signet-prober: sign and verify").digest()


class ProbeFailed(Exception):
    """The call did not return the expected result; ``str()`` is the client-safe reason."""


class Check(Protocol):
    """One call on a service's interface."""

    name: str

    def run(self, timeout: float) -> None:
        """Make the call; raise ProbeFailed when the result is not the expected one."""
        ...


def _call(fn: Callable[..., Any], request: Any, timeout: float) -> Any:
    """A unary call whose gRPC error becomes ProbeFailed(<code name>)."""
    try:
        return fn(request, timeout=timeout)
    except grpc.RpcError as err:
        code = err.code() if hasattr(err, "code") else None
        raise ProbeFailed(code.name if code is not None else "RPC_ERROR") from None


def verify_signature(spki_der: bytes, signature: bytes, data: bytes, *, prehashed: bool) -> None:
    """Verify ``signature`` over ``data`` (or over the SHA-256 digest ``data``) with the key."""
    key = serialization.load_der_public_key(spki_der)
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            algorithm: Any = (
                ec.ECDSA(_prehashed_sha256()) if prehashed else ec.ECDSA(hashes.SHA256())
            )
            key.verify(signature, data, algorithm)
        elif isinstance(key, rsa.RSAPublicKey):
            hash_alg: Any = _prehashed_sha256() if prehashed else hashes.SHA256()
            key.verify(signature, data, padding.PKCS1v15(), hash_alg)
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            raise ProbeFailed("unsupported key type")
    except InvalidSignature:
        raise ProbeFailed("signature does not verify") from None


def _prehashed_sha256() -> Any:
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    return Prehashed(hashes.SHA256())


@dataclass
class HealthCheck:
    """grpc.health.v1 Check of the whole server: SERVING."""

    channel: grpc.Channel
    name: str = "health"

    def run(self, timeout: float) -> None:
        """Ask the overall health."""
        stub = health_pb2_grpc.HealthStub(self.channel)
        reply = _call(stub.Check, health_pb2.HealthCheckRequest(service=""), timeout)
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            raise ProbeFailed("NOT_SERVING")


@dataclass
class SignerCheck:
    """Sign a fixed digest with the prober's system key and verify the signature."""

    channel: grpc.Channel
    request_id: str = "signet-prober-key-1"
    name: str = "sign-and-verify"
    _key: tuple[str, bytes] | None = None

    def _ensure_key(
        self, stub: signer_pb2_grpc.SignerServiceStub, timeout: float
    ) -> tuple[str, bytes]:
        if self._key is None:
            # Idempotent on request_id: every prober start gets the same key back.
            reply = _call(
                stub.CreateKey,
                signer_pb2.CreateKeyRequest(
                    algorithm=common_pb2.KEY_ALGORITHM_EC_P256,
                    # No purpose names "monitoring"; the key is a system key nobody else
                    # trusts, and its owner keeps it apart from the evidence log's own keys.
                    purpose=signer_pb2.KEY_PURPOSE_LOG_SIGNING,
                    owner=signer_pb2.KeyOwner(system=PROBER_OWNER),
                    request_id=self.request_id,
                ),
                timeout,
            )
            self._key = (reply.key.key_id, bytes(reply.public_key.spki_der))
        return self._key

    def run(self, timeout: float) -> None:
        """CreateKey once, then SignDigest + local verification."""
        stub = signer_pb2_grpc.SignerServiceStub(self.channel)
        key_id, spki = self._ensure_key(stub, timeout)
        reply = _call(
            stub.SignDigest,
            signer_pb2.SignDigestRequest(
                key_id=key_id,
                digest=common_pb2.Digest(
                    algorithm=common_pb2.HASH_ALGORITHM_SHA256, value=PROBE_DIGEST
                ),
                scheme=common_pb2.SIGNATURE_SCHEME_ECDSA,
            ),
            timeout,
        )
        verify_signature(spki, bytes(reply.signature), PROBE_DIGEST, prehashed=True)


@dataclass
class CaGatewayCheck:
    """CA certificates over gRPC, then each CA's CRL over HTTP, signature and freshness."""

    channel: grpc.Channel
    http_base_url: str = ""
    name: str = "ca-certificates-and-crl"

    def run(self, timeout: float) -> None:
        """GetCaCertificates and verify every published CRL."""
        stub = ca_gateway_pb2_grpc.CaGatewayServiceStub(self.channel)
        reply = _call(stub.GetCaCertificates, ca_gateway_pb2.GetCaCertificatesRequest(), timeout)
        if not reply.certificates:
            raise ProbeFailed("no CA certificates")
        crls = 0
        for ca in reply.certificates:
            try:
                cert = x509.load_der_x509_certificate(bytes(ca.der))
            except ValueError:
                raise ProbeFailed("unparsable CA certificate") from None
            if not ca.crl_url:
                continue
            crl = self._fetch_crl(ca.crl_url, timeout)
            if not crl.is_signature_valid(cert.public_key()):  # type: ignore[arg-type]
                raise ProbeFailed(f"CRL of {ca.ca_id} is not signed by its CA")
            next_update = crl.next_update_utc
            if next_update is not None and next_update <= datetime.now(UTC):
                raise ProbeFailed(f"CRL of {ca.ca_id} is past its next update")
            crls += 1
        if crls == 0:
            raise ProbeFailed("no CA publishes a CRL")

    def _fetch_crl(self, crl_url: str, timeout: float) -> x509.CertificateRevocationList:
        url = crl_url
        if self.http_base_url:
            # Reach the gateway inside the cluster; the certificate names its public URL.
            path = urllib.parse.urlsplit(crl_url).path
            url = self.http_base_url.rstrip("/") + path
        if not url.startswith(("http://", "https://")):
            raise ProbeFailed("CRL URL is not HTTP")
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (checked)
                body = response.read()
        except urllib.error.HTTPError as err:
            raise ProbeFailed(f"CRL fetch answered HTTP {err.code}") from None
        except (urllib.error.URLError, TimeoutError, OSError):
            raise ProbeFailed("CRL endpoint unreachable") from None
        try:
            return x509.load_der_x509_crl(body)
        except ValueError:
            raise ProbeFailed("CRL is not DER") from None


@dataclass
class IdentityCheck:
    """The grant-verification keys the signer relies on are published and parse."""

    channel: grpc.Channel
    name: str = "grant-verification-keys"

    def run(self, timeout: float) -> None:
        """GetGrantVerificationKeys: at least one key, every SPKI loads."""
        stub = identity_pb2_grpc.IdentityServiceStub(self.channel)
        reply = _call(
            stub.GetGrantVerificationKeys, identity_pb2.GetGrantVerificationKeysRequest(), timeout
        )
        if not reply.keys:
            raise ProbeFailed("no grant verification keys")
        for key in reply.keys:
            try:
                serialization.load_der_public_key(bytes(key.spki_der))
            except ValueError:
                raise ProbeFailed("unparsable grant verification key") from None


def tree_head_signed_bytes(timestamp_ms: int, tree_size: int, root_hash: bytes) -> bytes:
    """RFC 6962 TreeHeadSignature: version v1, signature_type tree_hash, ms, size, root."""
    if len(root_hash) != 32:
        raise ProbeFailed("root hash is not 32 bytes")
    return struct.pack(">BBQQ", 0, 1, timestamp_ms, tree_size) + root_hash


@dataclass
class EvidenceCheck:
    """The latest signed tree head verifies with the log's public key."""

    channel: grpc.Channel
    name: str = "signed-tree-head"

    def run(self, timeout: float) -> None:
        """GetLogPublicKey + GetSignedTreeHead, then verify the head's signature."""
        stub = evidence_pb2_grpc.EvidenceServiceStub(self.channel)
        key = _call(stub.GetLogPublicKey, evidence_pb2.GetLogPublicKeyRequest(), timeout)
        head = _call(stub.GetSignedTreeHead, evidence_pb2.GetSignedTreeHeadRequest(), timeout)
        sth = head.tree_head
        spki = bytes(key.spki_der)
        if bytes(sth.log_id) != hashlib.sha256(spki).digest():
            raise ProbeFailed("tree head is from another log")
        millis = sth.timestamp.seconds * 1000 + sth.timestamp.nanos // 1_000_000
        signed = tree_head_signed_bytes(millis, sth.tree_size, bytes(sth.root_hash))
        verify_signature(spki, bytes(sth.signature), signed, prehashed=False)


@dataclass
class NotifyCheck:
    """A read for an id that cannot exist answers NOT_FOUND (the expected result)."""

    channel: grpc.Channel
    name: str = "delivery-status"

    def run(self, timeout: float) -> None:
        """GetDeliveryStatus of a fresh random id."""
        stub = notify_pb2_grpc.NotifyServiceStub(self.channel)
        request = notify_pb2.GetDeliveryStatusRequest(notification_id=f"probe-{uuid.uuid4()}")
        try:
            stub.GetDeliveryStatus(request, timeout=timeout)
        except grpc.RpcError as err:
            code = err.code() if hasattr(err, "code") else None
            if code == grpc.StatusCode.NOT_FOUND:
                return
            raise ProbeFailed(code.name if code is not None else "RPC_ERROR") from None
        raise ProbeFailed("an id that cannot exist was found")

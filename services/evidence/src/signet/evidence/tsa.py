"""The RFC 3161 time-stamping authority: TimeStampReq in, TimeStampResp out.

The TSTInfo is signed as CMS SignedData by a TSA key in the HSM (a system key of the
evidence service in the signer), under a certificate with the critical extended key usage
timeStamping that the ca-gateway issues for that key. The signed attributes carry the
ESS signing-certificate-v2 attribute (RFC 5816) that verifiers such as ``openssl ts``
require. Protocol problems (bad hash algorithm, unknown policy, extensions) are answered
with a rejection inside the TimeStampResp, as RFC 3161 says; only a TSA that cannot work
at all (no certificate, signer down) raises.

Every issued token is kept, so an evidence package can include the token a signature
embeds, and a TimestampIssued event is written with it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from asn1crypto import algos, cms, core, tsp, x509
from cryptography import x509 as cx509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID

from signet.common.db import Database, utcnow
from signet.common.errors import FailedPrecondition
from signet.common.events import EVIDENCE_TOPIC
from signet.common.metrics import counter
from signet.common.outbox import Outbox
from signet.common.v1 import common_pb2
from signet.evidence import convert
from signet.evidence.domain import (
    CertifiedKey,
    KeyPurpose,
    KeyService,
    SigningKey,
    TsaCertificateSource,
)
from signet.evidence.keys import ensure_service_key
from signet.evidence.models import TimestampToken
from signet.evidence.repository import LogRepository

DEFAULT_POLICY_OID = "2.25.250409625929004284751366525571169544903"
"""The TSA policy (a UUID-based OID, X.667), unless configured otherwise."""

_log = logging.getLogger("signet.evidence.tsa")
_HASHES = {"sha256": 32, "sha384": 48, "sha512": 64}
_HASH_ENUM = {
    "sha256": common_pb2.HASH_ALGORITHM_SHA256,
    "sha384": common_pb2.HASH_ALGORITHM_SHA384,
    "sha512": common_pb2.HASH_ALGORITHM_SHA512,
}
_RENEW_BEFORE = timedelta(days=1)
_TIMESTAMPS = counter(
    "signet_evidence_timestamps_total",
    "RFC 3161 requests answered; status granted or rejection.",
    ["status"],
)


@dataclass(frozen=True)
class IssuedToken:
    """What the TSA answered: the TimeStampResp and, when granted, its token's facts."""

    response_der: bytes
    granted: bool
    serial: str = ""
    gen_time: datetime | None = None
    token_der: bytes = b""


def rejection(failure: str, text: str) -> bytes:
    """A TimeStampResp with status rejection, ``failure`` (a PKIFailureInfo bit name) and text."""
    status = tsp.PKIStatusInfo(
        {
            "status": "rejection",
            "status_string": [text],
            "fail_info": tsp.PKIFailureInfo({failure}),
        }
    )
    # asn1crypto's TimeStampResp requires the token, which a rejection must leave out:
    # the response is SEQUENCE { status } encoded here.
    body = bytes(status.dump())
    return b"\x30" + _der_length(len(body)) + body


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def check_tsa_certificate(certified: CertifiedKey, key: SigningKey) -> cx509.Certificate:
    """The parsed TSA certificate, after checking it certifies ``key`` for time-stamping only."""
    cert = cx509.load_der_x509_certificate(certified.certificate_der)
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if spki != key.spki_der:
        raise FailedPrecondition("the TSA certificate does not certify the TSA key")
    try:
        eku = cert.extensions.get_extension_for_class(cx509.ExtendedKeyUsage)
    except cx509.ExtensionNotFound:
        raise FailedPrecondition("the TSA certificate lacks extended key usage") from None
    if not eku.critical or list(eku.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise FailedPrecondition(
            "the TSA certificate must have the critical extended key usage timeStamping only"
        )
    return cert


@dataclass
class TimestampAuthority:
    """Issues RFC 3161 timestamps with the TSA key in the HSM."""

    db: Database
    keys: KeyService
    certificates: TsaCertificateSource
    policy_oid: str = DEFAULT_POLICY_OID
    on_commit: Callable[[], None] = lambda: None
    _clock: Callable[[], datetime] = field(default=utcnow, repr=False)
    _key: SigningKey | None = field(default=None, repr=False)
    _certified: CertifiedKey | None = field(default=None, repr=False)
    _not_after: datetime | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def start(self) -> None:
        """Create the TSA key (once) and obtain its certificate."""
        with self._lock:
            self._key = ensure_service_key(self.db, self.keys, KeyPurpose.TIMESTAMPING)
            self._load_certificate(self._key)

    @property
    def key(self) -> SigningKey:
        """The TSA key (after :meth:`start`)."""
        if self._key is None:
            raise FailedPrecondition("the time-stamping authority is not ready yet")
        return self._key

    def _load_certificate(self, key: SigningKey) -> None:
        certified = self.certificates.certificate_for(key)
        cert = check_tsa_certificate(certified, key)
        self._certified = certified
        self._not_after = cert.not_valid_after_utc

    def certificate_chain(self) -> CertifiedKey:
        """The TSA certificate and its chain, renewed shortly before it expires."""
        with self._lock:
            if self._key is None or self._certified is None:
                raise FailedPrecondition("the time-stamping authority is not ready yet")
            if self._not_after is not None and self._clock() > self._not_after - _RENEW_BEFORE:
                try:
                    self._load_certificate(self._key)
                except Exception as err:
                    _log.warning(
                        "TSA certificate renewal failed", extra={"error": type(err).__name__}
                    )
                    if self._clock() >= self._not_after:
                        raise FailedPrecondition("the TSA certificate expired") from err
            return self._certified

    def timestamp(self, request_der: bytes) -> IssuedToken:
        """Answer one DER TimeStampReq with a DER TimeStampResp."""
        issued = self._answer(request_der)
        _TIMESTAMPS.labels("granted" if issued.granted else "rejection").inc()
        return issued

    def _answer(self, request_der: bytes) -> IssuedToken:
        certified = self.certificate_chain()
        key = self._key
        assert key is not None
        try:
            request = tsp.TimeStampReq.load(request_der, strict=True)
            version = request["version"].native
            imprint = request["message_imprint"]
            hash_name = imprint["hash_algorithm"]["algorithm"].native
            hashed = imprint["hashed_message"].native
            policy = request["req_policy"].native
            extensions = request["extensions"].native
            nonce = request["nonce"].native
            cert_req = bool(request["cert_req"].native)
        except (ValueError, TypeError, KeyError):
            return IssuedToken(rejection("bad_data_format", "not a DER TimeStampReq"), False)
        if version != "v1":
            return IssuedToken(rejection("bad_request", "only version 1 is supported"), False)
        if hash_name not in _HASHES:
            return IssuedToken(
                rejection("bad_alg", "message imprint must use SHA-256, SHA-384 or SHA-512"),
                False,
            )
        if not isinstance(hashed, bytes) or len(hashed) != _HASHES[hash_name]:
            return IssuedToken(
                rejection("bad_data_format", "message imprint length does not fit its hash"), False
            )
        if policy is not None and policy != self.policy_oid:
            return IssuedToken(rejection("unaccepted_policy", "unknown TSA policy"), False)
        if extensions:
            return IssuedToken(
                rejection("unaccepted_extensions", "request extensions are not supported"), False
            )
        return self._grant(key, certified, hash_name, hashed, nonce, cert_req)

    def _grant(
        self,
        key: SigningKey,
        certified: CertifiedKey,
        hash_name: str,
        hashed: bytes,
        nonce: int | None,
        cert_req: bool,
    ) -> IssuedToken:
        cert = x509.Certificate.load(certified.certificate_der)
        serial = uuid.uuid4().int >> 1
        gen_time = self._clock().replace(microsecond=0)
        tst_info = tsp.TSTInfo(
            {
                "version": "v1",
                "policy": self.policy_oid,
                "message_imprint": {
                    "hash_algorithm": {"algorithm": hash_name},
                    "hashed_message": hashed,
                },
                "serial_number": serial,
                "gen_time": gen_time,
                "accuracy": {"seconds": 1},
                "ordering": False,
                "nonce": nonce,
                "tsa": x509.GeneralName(name="directory_name", value=cert.subject),
            }
        )
        tst_der = tst_info.dump()
        signed_attrs = cms.CMSAttributes(
            [
                {"type": "content_type", "values": ["tst_info"]},
                {"type": "message_digest", "values": [hashlib.sha256(tst_der).digest()]},
                {
                    "type": "signing_certificate_v2",
                    "values": [
                        {
                            "certs": [
                                {
                                    "hash_algorithm": {"algorithm": "sha256"},
                                    "cert_hash": hashlib.sha256(certified.certificate_der).digest(),
                                    "issuer_serial": {
                                        "issuer": [
                                            x509.GeneralName(
                                                name="directory_name", value=cert.issuer
                                            )
                                        ],
                                        "serial_number": cert.serial_number,
                                    },
                                }
                            ]
                        }
                    ],
                },
            ]
        )
        signature = self.keys.sign_digest(key.key_id, hashlib.sha256(signed_attrs.dump()).digest())
        signer_info = cms.SignerInfo(
            {
                "version": "v1",
                "sid": cms.SignerIdentifier(
                    name="issuer_and_serial_number",
                    value={"issuer": cert.issuer, "serial_number": cert.serial_number},
                ),
                "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                "signed_attrs": signed_attrs,
                "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}),
                "signature": signature,
            }
        )
        # With certReq the token carries the TSA certificate and the CAs between it and the
        # root, so a relying party holding only the root can build the path (RFC 3161 2.4.1).
        certificates = [cert, *_intermediates(certified.chain_der)] if cert_req else []
        signed_data = cms.SignedData(
            {
                "version": "v3",
                "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
                "encap_content_info": {
                    "content_type": "tst_info",
                    "content": core.ParsableOctetString(tst_der),
                },
                "certificates": certificates or None,
                "signer_infos": [signer_info],
            }
        )
        token = cms.ContentInfo({"content_type": "signed_data", "content": signed_data})
        token_der = token.dump()
        response = tsp.TimeStampResp(
            {"status": {"status": "granted"}, "time_stamp_token": token}
        ).dump()
        serial_hex = format(serial, "x")
        self._record(serial_hex, gen_time, hash_name, hashed, token_der)
        return IssuedToken(response, True, serial_hex, gen_time, token_der)

    def _record(
        self, serial: str, gen_time: datetime, hash_name: str, hashed: bytes, token_der: bytes
    ) -> None:
        event = convert.timestamp_event(serial, _HASH_ENUM[hash_name], hashed, gen_time)
        with self.db.session() as session:
            LogRepository(session).add_timestamp(
                TimestampToken(
                    serial=serial,
                    gen_time=gen_time,
                    imprint_algorithm=hash_name,
                    imprint=hashed,
                    token_sha256=hashlib.sha256(token_der).digest(),
                    token_der=token_der,
                )
            )
            Outbox.add(session, EVIDENCE_TOPIC, event)
        self.on_commit()


def _intermediates(chain_der: tuple[bytes, ...]) -> list[x509.Certificate]:
    """The chain's CA certificates without the self-signed root (relying parties have it)."""
    chain = [x509.Certificate.load(der) for der in chain_der]
    return [c for c in chain if c.self_signed == "no"]

"""The OCSP responder (RFC 6960): requests in, signed BasicOCSPResponses out.

Responses are signed by a delegated responder certificate (extended key usage
OCSPSigning, id-pkix-ocsp-nocheck) issued by the issuing CA, whose key is in the HSM.
The status of each serial comes from the gateway's records: good, revoked with time and
reason, or unknown for serials the CA never issued. A request's nonce is echoed.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from asn1crypto import core, ocsp, x509

from signet.ca_gateway import certs
from signet.ca_gateway.domain import RFC_REASON_NAMES
from signet.ca_gateway.telemetry import OCSP_RESPONSES
from signet.common.errors import ServiceError

_log = logging.getLogger("signet.ca_gateway.ocsp")

MAX_REQUESTS = 20
"""Most certificates one OCSP request may ask about."""

MAX_NONCE = 32
"""RFC 8954: a nonce is 1 to 32 octets."""


@dataclass(frozen=True)
class SerialStatus:
    """What the records say about one serial now."""

    revoked_at: datetime | None = None
    rfc_reason: int = 0


Lookup = Callable[[list[str]], dict[str, SerialStatus]]
"""Maps serials (stored hex form) to their status; serials the CA never issued are absent."""


@dataclass(frozen=True)
class Responder:
    """Who signs OCSP responses for one issuing CA."""

    # The issuing CA the responder answers for.
    issuer: x509.Certificate
    # The delegated responder's certificate, and how its HSM key signs.
    certificate: x509.Certificate
    signer: certs.Issuer


class _Refusal(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


def error_response(status: str) -> bytes:
    """An unsigned OCSPResponse with an error status (malformed_request, internal_error ...)."""
    return bytes(ocsp.OCSPResponse({"response_status": status}).dump())


def respond(
    request_der: bytes,
    *,
    responder: Responder | None,
    lookup: Lookup,
    now: datetime,
    validity: timedelta,
) -> bytes:
    """The DER OCSPResponse to ``request_der``; never raises for bad input."""
    try:
        if responder is None:
            raise _Refusal("try_later")
        answer = _respond(request_der, responder, lookup, certs.whole_seconds(now), validity)
    except _Refusal as refusal:
        OCSP_RESPONSES.labels(refusal.status).inc()
        return error_response(refusal.status)
    except ServiceError as err:
        # The HSM or the signer is unavailable: relying parties should retry.
        _log.warning("OCSP response not signed", extra={"error": err.code.name})
        OCSP_RESPONSES.labels("try_later").inc()
        return error_response("try_later")
    OCSP_RESPONSES.labels("successful").inc()
    return answer


def _parse(request_der: bytes) -> tuple[list[ocsp.CertId], core.OctetString | None]:
    try:
        request = ocsp.OCSPRequest.load(request_der)
        tbs = request["tbs_request"]
        cert_ids = [item["req_cert"] for item in tbs["request_list"]]
        for cert_id in cert_ids:
            cert_id.native  # noqa: B018  (parse now: asn1crypto is lazy)
        nonce = None
        for extension in tbs["request_extensions"] or []:
            if extension["extn_id"].native == "nonce":
                nonce = extension["extn_value"].parsed
                nonce.native  # noqa: B018
    except (ValueError, TypeError, KeyError):
        raise _Refusal("malformed_request") from None
    if not cert_ids or len(cert_ids) > MAX_REQUESTS:
        raise _Refusal("malformed_request")
    if nonce is not None and not 1 <= len(nonce.native) <= MAX_NONCE:
        raise _Refusal("malformed_request")
    return cert_ids, nonce


def _matches_issuer(cert_id: ocsp.CertId, issuer: x509.Certificate) -> bool:
    algorithm = cert_id["hash_algorithm"]["algorithm"].native
    if algorithm not in ("sha1", "sha256", "sha384", "sha512"):
        return False
    name_hash = hashlib.new(algorithm, issuer.subject.dump()).digest()
    key_hash = hashlib.new(algorithm, issuer.public_key["public_key"].contents[1:]).digest()
    return bool(
        cert_id["issuer_name_hash"].native == name_hash
        and cert_id["issuer_key_hash"].native == key_hash
    )


def _respond(
    request_der: bytes,
    responder: Responder,
    lookup: Lookup,
    now: datetime,
    validity: timedelta,
) -> bytes:
    cert_ids, nonce = _parse(request_der)
    if not all(_matches_issuer(cert_id, responder.issuer) for cert_id in cert_ids):
        # This responder speaks only for its issuing CA.
        raise _Refusal("unauthorized")
    serials = [certs_serial(cert_id) for cert_id in cert_ids]
    statuses = lookup(serials)
    responses = []
    for cert_id, serial in zip(cert_ids, serials, strict=True):
        responses.append(
            {
                "cert_id": cert_id,
                "cert_status": _cert_status(statuses.get(serial)),
                "this_update": now,
                "next_update": now + validity,
            }
        )
    responder_key = responder.certificate.public_key["public_key"].contents[1:]
    data: dict[str, object] = {
        "version": "v1",
        "responder_id": {"by_key": hashlib.sha1(responder_key).digest()},  # noqa: S324  (RFC 6960 4.2.1)
        "produced_at": now,
        "responses": responses,
    }
    if nonce is not None:
        data["response_extensions"] = [{"extn_id": "nonce", "critical": False, "extn_value": nonce}]
    tbs = ocsp.ResponseData(data)
    signature = responder.signer.spec.sign(tbs.dump(), responder.signer.sign_digest)
    basic = ocsp.BasicOCSPResponse(
        {
            "tbs_response_data": tbs,
            "signature_algorithm": responder.signer.spec.algorithm(),
            "signature": signature,
            "certs": [responder.certificate],
        }
    )
    return bytes(
        ocsp.OCSPResponse(
            {
                "response_status": "successful",
                "response_bytes": {"response_type": "basic_ocsp_response", "response": basic},
            }
        ).dump()
    )


def certs_serial(cert_id: ocsp.CertId) -> str:
    """The serial a CertID asks about, in the stored hex form."""
    return format(int(cert_id["serial_number"].native), "x")


def _cert_status(status: SerialStatus | None) -> ocsp.CertStatus:
    if status is None:
        return ocsp.CertStatus(name="unknown", value=core.Null())
    if status.revoked_at is None:
        return ocsp.CertStatus(name="good", value=core.Null())
    info: dict[str, object] = {"revocation_time": certs.whole_seconds(status.revoked_at)}
    if status.rfc_reason:
        info["revocation_reason"] = RFC_REASON_NAMES[status.rfc_reason]
    return ocsp.CertStatus(name="revoked", value=ocsp.RevokedInfo(info))

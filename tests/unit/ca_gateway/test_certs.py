"""Certificate, CRL and OCSP building with a software key standing in for the HSM."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509 import ocsp

from signet.ca_gateway import certs
from signet.ca_gateway.domain import CertificateProfile, RevocationReason, normalize_serial
from signet.ca_gateway.ocsp import Responder, SerialStatus, respond
from signet.ca_gateway.profiles import PROFILES
from signet.ca_gateway.service import archive_until
from signet.common.errors import InvalidArgument
from signet.common.keys import HashAlgorithm, KeyAlgorithm, SignatureScheme

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _software_issuer(name: str) -> tuple[certs.Issuer, ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def sign(digest: bytes, hash_alg: HashAlgorithm, scheme: SignatureScheme) -> bytes:
        assert (hash_alg, scheme) == (HashAlgorithm.SHA256, SignatureScheme.ECDSA)
        return key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))

    template = certs.CertificateTemplate(
        serial=certs.new_serial(),
        subject=certs.build_name([("country_name", "CN"), ("common_name", name)]),
        spki_der=spki,
        not_before=NOW - timedelta(days=1),
        not_after=NOW + timedelta(days=365),
        extensions=certs.Extensions(
            is_ca=True, path_length=0, key_usage=frozenset({"key_cert_sign", "crl_sign"})
        ),
    )
    issuer = certs.self_issuer(template, certs.signature_spec(KeyAlgorithm.EC_P256), sign)
    der = certs.issue_certificate(template, issuer)
    return issuer, key, der


def test_serials_are_normalised_from_the_forms_tools_print() -> None:
    assert normalize_serial("0A:1B:ff") == "a1bff"
    assert normalize_serial("0x00ABC") == "abc"
    for bad in ("", "0", "00:00", "xyz", "1" * 41, "12 34"):
        with pytest.raises(InvalidArgument):
            normalize_serial(bad)


def test_new_serials_are_positive_random_and_at_least_64_bits() -> None:
    serials = {certs.new_serial() for _ in range(200)}
    assert len(serials) == 200
    assert all(0 < s < 2**127 for s in serials)
    assert max(s.bit_length() for s in serials) > 64


def test_platform_grounds_publish_as_rfc_5280_reasons() -> None:
    assert RevocationReason.PLATFORM_FALSE_DATA.rfc_code == 9
    assert RevocationReason.PLATFORM_CHANGED_DATA.rfc_code == 3
    assert RevocationReason.PLATFORM_KEY_LOSS.rfc_code == 1
    assert RevocationReason.PLATFORM_MISUSE.rfc_code == 9
    assert RevocationReason.PLATFORM_SUBJECT_EXPIRED.rfc_code == 5
    assert RevocationReason.PLATFORM_ILLEGAL_USE.rfc_code == 9
    assert RevocationReason.PLATFORM_KEY_LOSS.compromises_key
    assert not RevocationReason.SUPERSEDED.compromises_key


def test_archive_is_five_years_past_expiry_even_from_a_leap_day() -> None:
    assert archive_until(datetime(2028, 2, 29, tzinfo=UTC)) == datetime(2033, 3, 2, tzinfo=UTC)
    assert archive_until(NOW) == datetime(2031, 11, 25, 12, 0, tzinfo=UTC)


def test_times_switch_to_generalized_time_in_2050() -> None:
    assert certs.x509_time(datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC)).name == "utc_time"
    assert certs.x509_time(datetime(2050, 1, 1, tzinfo=UTC)).name == "general_time"


def test_names_keep_order_escape_specials_and_check_the_country() -> None:
    name = certs.build_name([("country_name", "CN"), ("common_name", "Zhang, San+1")])
    assert certs.subject_text(name) == "CN=Zhang\\, San\\+1,C=CN"
    with pytest.raises(InvalidArgument, match="two-letter"):
        certs.build_name([("country_name", "CHN")])


def test_profile_validity_is_capped_and_has_a_floor() -> None:
    person = PROFILES[CertificateProfile.PERSON_SIGNING]
    assert person.validity(None) == timedelta(days=365)
    assert person.validity(timedelta(days=10_000)) == person.max_validity
    with pytest.raises(InvalidArgument):
        person.validity(timedelta(minutes=5))


def test_a_certificate_signed_through_the_callback_verifies() -> None:
    issuer, _, root_der = _software_issuer("Unit Root")
    root = x509.load_der_x509_certificate(root_der)
    root.verify_directly_issued_by(root)
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    with pytest.raises(InvalidArgument, match="end after it begins"):
        certs.issue_certificate(
            certs.CertificateTemplate(
                serial=1,
                subject=issuer.name,
                spki_der=root.public_key().public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                ),
                not_before=NOW,
                not_after=NOW,
                extensions=certs.Extensions(is_ca=False, path_length=None, key_usage=frozenset()),
            ),
            issuer,
        )


def test_crl_entries_carry_reason_and_invalidity_date_but_not_unspecified() -> None:
    issuer, key, _ = _software_issuer("Unit CRL Root")
    der = certs.issue_crl(
        issuer,
        number=7,
        this_update=NOW,
        next_update=NOW + timedelta(days=1),
        entries=[
            certs.CrlEntry(
                serial=10, revoked_at=NOW, rfc_reason=1, invalidity_date=NOW - timedelta(days=2)
            ),
            certs.CrlEntry(serial=11, revoked_at=NOW, rfc_reason=0, invalidity_date=None),
        ],
    )
    crl = x509.load_der_x509_crl(der)
    assert crl.is_signature_valid(key.public_key())
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
    first = crl.get_revoked_certificate_by_serial_number(10)
    second = crl.get_revoked_certificate_by_serial_number(11)
    assert first is not None and second is not None
    assert (
        first.extensions.get_extension_for_class(x509.CRLReason).value.reason
        == x509.ReasonFlags.key_compromise
    )
    invalidity = first.extensions.get_extension_for_class(x509.InvalidityDate).value
    assert invalidity.invalidity_date_utc == NOW - timedelta(days=2)
    assert len(second.extensions) == 0


def _ocsp_request(issuer_der: bytes, serial: int, nonce: bytes | None = None) -> bytes:
    issuer = x509.load_der_x509_certificate(issuer_der)
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        _name_hash(issuer), _key_hash(issuer), serial, hashes.SHA1()
    )
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def _name_hash(cert: x509.Certificate) -> bytes:
    digest = hashes.Hash(hashes.SHA1())
    digest.update(cert.subject.public_bytes())
    return digest.finalize()


def _key_hash(cert: x509.Certificate) -> bytes:
    return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


def test_ocsp_answers_good_revoked_and_unknown_and_echoes_the_nonce() -> None:
    issuer, key, root_der = _software_issuer("Unit OCSP CA")
    responder = Responder(
        issuer=asn1_x509.Certificate.load(root_der),
        certificate=asn1_x509.Certificate.load(root_der),
        signer=issuer,
    )
    statuses = {"a": SerialStatus(), "b": SerialStatus(NOW - timedelta(hours=1), 4)}

    def answer(serial: int, nonce: bytes | None = None) -> ocsp.OCSPResponse:
        der = respond(
            _ocsp_request(root_der, serial, nonce),
            responder=responder,
            lookup=lambda serials: {s: statuses[s] for s in serials if s in statuses},
            now=NOW,
            validity=timedelta(hours=1),
        )
        return ocsp.load_der_ocsp_response(der)

    good = answer(0xA, nonce=b"0123456789abcdef")
    assert good.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert good.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert (
        good.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"0123456789abcdef"
    )
    key.public_key().verify(good.signature, good.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))
    revoked = answer(0xB)
    assert revoked.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert revoked.revocation_reason == x509.ReasonFlags.superseded
    assert answer(0xC).certificate_status == ocsp.OCSPCertStatus.UNKNOWN


def test_ocsp_refusals_are_unsigned_statuses() -> None:
    issuer, _, root_der = _software_issuer("Unit OCSP CA 2")
    _, _, other_der = _software_issuer("Another CA")
    responder = Responder(
        issuer=asn1_x509.Certificate.load(root_der),
        certificate=asn1_x509.Certificate.load(root_der),
        signer=issuer,
    )

    def status(request: bytes, with_responder: bool = True) -> str:
        der = respond(
            request,
            responder=responder if with_responder else None,
            lookup=lambda serials: {},
            now=NOW,
            validity=timedelta(hours=1),
        )
        return str(asn1_ocsp.OCSPResponse.load(der)["response_status"].native)

    assert status(b"\x30\x03\x02\x01\x01") == "malformed_request"
    assert status(b"") == "malformed_request"
    assert status(_ocsp_request(root_der, 5, nonce=b"x" * 33)) == "malformed_request"
    assert status(_ocsp_request(other_der, 5)) == "unauthorized"
    assert status(_ocsp_request(root_der, 5), with_responder=False) == "try_later"

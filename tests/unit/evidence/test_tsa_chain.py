"""Timestamp tokens carry the CAs between the TSA certificate and the root."""

from __future__ import annotations

from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from signet.evidence.tsa import _intermediates
from tests.fixtures.pki import Pki


def test_intermediates_keep_every_ca_but_the_self_signed_root(test_pki: Pki) -> None:
    pki = test_pki
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    issuing = pki.issue(
        public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo), "Issuing CA"
    )
    kept = _intermediates((issuing, pki.root_der))
    assert [c.dump() for c in kept] == [issuing]
    assert all(isinstance(c, asn1_x509.Certificate) for c in kept)
    assert _intermediates((pki.root_der,)) == []
